"""Log lines for people (``logging.format: text``) or for a log pipeline (``json``: one object a line).

Every JSON line carries ``job_id`` and ``segment`` (null outside a job): Celery tasks bind them from
their arguments (``plan_job(job_id)``, ``run_segment(job_id, index)``), ``framescribe run`` binds
the job it runs; a message that names ``job <id>`` fills in the id when nothing was bound.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from worker.config import Settings


JOB_ID: ContextVar[str | None] = ContextVar("framescribe_job_id", default=None)
SEGMENT: ContextVar[int | None] = ContextVar("framescribe_segment", default=None)
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_JOB_IN_MESSAGE = re.compile(r"\bjob ([0-9a-f]{32})\b(?:\W+segment (\d+)\b)?")


def bind(job_id: str | None, segment: int | None = None) -> None:
    JOB_ID.set(job_id)
    SEGMENT.set(segment)


class ContextFilter(logging.Filter):
    """Puts the bound job id and segment index on every record (``record.job_id``, ``record.segment``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        job_id = getattr(record, "job_id", None) or JOB_ID.get()
        segment = getattr(record, "segment", None)
        if segment is None:
            segment = SEGMENT.get()
        if job_id is None:
            try:
                text = record.getMessage()
            except Exception:
                text = str(record.msg)
            found = _JOB_IN_MESSAGE.search(text)
            if found:
                job_id = found.group(1)
                segment = int(found.group(2)) if segment is None and found.group(2) else segment
        record.job_id = job_id
        record.segment = segment
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (UTC), level, logger, msg, job_id, segment, and exc when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string in someone's log call still yields a line
            message = str(record.msg)
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": message,
            "job_id": getattr(record, "job_id", None),
            "segment": getattr(record, "segment", None),
            "process": record.processName,
        }
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False, default=str)


def formatter_for(fmt: str) -> logging.Formatter:
    return JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT)


def apply(logger: logging.Logger, settings: Settings, *, plain_streams_only: bool = False) -> None:
    """Give the handlers of ``logger`` the configured format and the job-context filter (with
    ``plain_streams_only``, only plain stream handlers: not a test runner's capture handler)."""
    apply_format(logger, settings.logging.format, plain_streams_only=plain_streams_only)


def apply_format(logger: logging.Logger, fmt_name: str, *, plain_streams_only: bool = False) -> None:
    fmt = formatter_for(fmt_name)
    for handler in logger.handlers:
        if plain_streams_only and type(handler) is not logging.StreamHandler:
            continue
        handler.setFormatter(fmt)
        if not any(isinstance(f, ContextFilter) for f in handler.filters):
            handler.addFilter(ContextFilter())


def configure_logging(settings: Settings) -> None:
    """The CLI's logging: stderr, the configured level and format."""
    configure(settings.log_level, settings.logging.format)


def configure(level: str, fmt: str) -> None:
    """The CLI's logging from the two settings it needs (``sample`` has them from the settings cache)."""
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler(sys.stderr))
        root.setLevel(getattr(logging, level.upper(), logging.INFO))
    apply_format(root, fmt, plain_streams_only=True)
    for noisy in ("httpx", "urllib3", "dashscope", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def connect_celery() -> None:
    """Worker processes: format Celery's handlers as configured; bind job/segment from task arguments."""
    from celery.signals import after_setup_logger, after_setup_task_logger, task_postrun, task_prerun

    from worker.config import get_settings

    def _setup(logger: logging.Logger, **_: Any) -> None:
        apply(logger, get_settings())

    def _prerun(task: Any = None, args: Any = None, **_: Any) -> None:
        args = list(args or ())
        job_id = args[0] if args and isinstance(args[0], str) else None
        segment = args[1] if len(args) > 1 and isinstance(args[1], int) else None
        bind(job_id, segment)

    def _postrun(**_: Any) -> None:
        bind(None)

    after_setup_logger.connect(_setup, weak=False)
    after_setup_task_logger.connect(_setup, weak=False)
    task_prerun.connect(_prerun, weak=False)
    task_postrun.connect(_postrun, weak=False)
