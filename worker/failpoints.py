"""Test-only failpoints: named moments in a segment task where a test can kill or hold the process.

Off unless ``FRAMESCRIBE_FAILPOINTS`` names a folder (the tests set it on the worker processes). A test
arms a point by writing the file ``<folder>/<job_id>.<index>.<point>`` whose text is the action:

* ``kill``   SIGKILL this process (a pool child dying mid-task), on the first delivery only;
* ``hold``   create ``<name>.held`` and wait until ``<name>.release`` exists (at most 120 s), once;
* ``reject`` raise DescriberRejected (the segment fails like a provider 400), once;
* ``transient`` raise DescriberTransient (a 429/5xx the describer gave up on), once;
* ``auth``   raise DescriberAuthError (a revoked API key), once;
* ``always-kill`` SIGKILL on every delivery (the file is not consumed): exercises the redelivery cap.

Firing renames the file to ``<name>.fired`` first, so exactly one delivery acts on a one-shot point.
A ``*`` in place of the job id arms the point for whichever job reaches it first (a job whose id the
test cannot know in advance, such as ``framescribe run``'s).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from worker.errors import DescriberAuthError, DescriberRejected, DescriberTransient

POINTS = ("before_describe", "after_describe", "after_store", "after_summary_claim")  # the last: index -1
ENV = "FRAMESCRIBE_FAILPOINTS"


def hit(point: str, job_id: str, index: int) -> None:
    """Act on the failpoint armed for ``(job_id, index, point)``, if any."""
    root = os.environ.get(ENV)
    if not root:
        return
    for name in (job_id, "*"):
        armed = Path(root) / f"{name}.{index}.{point}"
        try:
            action = armed.read_text(encoding="utf-8").strip()
            break
        except FileNotFoundError:
            continue
    else:
        return
    if action == "always-kill":
        os.kill(os.getpid(), signal.SIGKILL)
    fired = armed.parent / f"{armed.name}.fired"
    try:
        os.rename(armed, fired)  # atomic: only one delivery wins
    except FileNotFoundError:
        return
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "hold":
        (armed.parent / f"{armed.name}.held").write_text(str(os.getpid()), encoding="utf-8")
        release = armed.parent / f"{armed.name}.release"
        deadline = time.monotonic() + 120
        while not release.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    elif action == "reject":
        raise DescriberRejected(f"failpoint {point} rejected segment {index}")
    elif action == "transient":
        raise DescriberTransient(f"failpoint {point}: the service is busy (segment {index})", retry_after_s=0.2)
    elif action == "auth":
        raise DescriberAuthError(f"failpoint {point}: the API key was refused (segment {index})")
