"""The CLI's consoles are made on first use (``--help`` never imports rich.console) and still work
everywhere rich expects a Console: printing, as a context manager, and under ``framescribe run``'s
progress bar on a terminal."""

from __future__ import annotations

import pytest

from worker.cli import err, out, real_console
from worker.cli_run import _Reporter


def test_the_terminal_progress_bar_runs_on_the_lazy_console(capsys: pytest.CaptureFixture[str]) -> None:
    reporter = _Reporter(True)
    with reporter:
        reporter("planned", {"job_id": "j", "segments": 3})
        reporter("segment_text", {"index": 0, "text": "a red car"})
        reporter("segment_done", {"job_id": "j", "index": 0})
        reporter("segment_failed", {"job_id": "j", "index": 1})
    assert reporter.progress is not None
    assert reporter.progress.tasks[0].completed == 2 and reporter.progress.tasks[0].total == 3


def test_lazy_consoles_print_and_nest(capsys: pytest.CaptureFixture[str]) -> None:
    with err:
        err.print("to stderr", markup=False)
    out.print("to stdout", markup=False)
    captured = capsys.readouterr()
    assert "to stdout" in captured.out and "to stderr" in captured.err
    assert real_console(out) is real_console(out)
    assert type(real_console(err)).__name__ == "Console"
