"""Internal links a worker fetches a job's upload with from the API (machines without a shared disk).

A link is ``<api>/internal/v1/jobs/<job>/source.video?exp=<unix s>&sig=<hex>``: an HMAC-SHA256 of the
job id and the expiry, keyed by ``security.internal_secret`` (shared by the API and the workers, never
an API key). The worker signs a fresh link for each fetch; the API refuses expired links and links
valid further ahead than ``MAX_TTL_S`` (a leaked link is useful for minutes at most).
"""

from __future__ import annotations

import hashlib
import hmac

TTL_S = 300
MAX_TTL_S = 900
UPLOAD_PATH = "/internal/v1/jobs/{job_id}/source.video"


def _key(secret: str) -> bytes:
    return hashlib.sha256(b"framescribe-internal\x00" + secret.encode()).digest()


def upload_sig(secret: str, job_id: str, exp: int) -> str:
    return hmac.new(_key(secret), f"upload:{job_id}:{exp}".encode(), hashlib.sha256).hexdigest()


def upload_link(api_url: str, secret: str, job_id: str, *, now: float, ttl_s: int = TTL_S) -> str:
    exp = int(now) + ttl_s
    return f"{api_url.rstrip('/')}{UPLOAD_PATH.format(job_id=job_id)}?exp={exp}&sig={upload_sig(secret, job_id, exp)}"


def upload_link_ok(secret: str, job_id: str, exp: int, sig: str, *, now: float) -> bool:
    """Whether ``sig`` signs ``job_id`` until ``exp``, which is neither past nor too far ahead."""
    if exp < now or exp > now + MAX_TTL_S:
        return False
    return hmac.compare_digest(sig, upload_sig(secret, job_id, exp))
