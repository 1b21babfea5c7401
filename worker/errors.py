"""The framescribe error tree. Every error carries a ``message`` that is safe to show a person.

```
FramescribeError              .message is safe to show a user
├── InputError                bad request or media; never retried -> 4xx or failed job
│   ├── VideoOpenError        missing, unreadable, unsupported, no frame rate
│   ├── DecodeError           the video broke mid-way (at a known time)
│   ├── SourceError           a path or URL refused (outside roots, SSRF, too big)
│   └── PlanError             fps / segment / budget settings that cannot work
├── DescriberError
│   ├── DescriberTransient    timeout, 429, 5xx -> retry with backoff
│   ├── DescriberRejected     400 from the provider -> fail that segment
│   └── DescriberAuthError    401/403 -> fail the job at once
├── BudgetExceeded            a job reached its token / call cap
├── StoreError
├── NotFound                  a job, segment or schedule that does not exist
└── ConfigError               raised at start-up only
```
"""

from __future__ import annotations


class FramescribeError(Exception):
    """Base of all framescribe errors; ``message`` is meant for people, ``code`` for machines."""

    code = "error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InputError(FramescribeError):
    code = "bad_input"


class VideoOpenError(InputError):
    code = "video_unreadable"


class DecodeError(InputError):
    code = "decode_error"

    def __init__(self, message: str, *, at_ms: int | None = None) -> None:
        super().__init__(message)
        self.at_ms = at_ms


class SourceError(InputError):
    code = "source_refused"


class PlanError(InputError):
    code = "bad_plan"


class DescriberError(FramescribeError):
    code = "describer_error"


class DescriberTransient(DescriberError):
    code = "describer_unavailable"

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class DescriberRejected(DescriberError):
    code = "describer_rejected"


class DescriberAuthError(DescriberError):
    code = "describer_auth"


class DescriberUnavailable(DescriberAuthError):
    """DashScope is down (the circuit breaker is open): stops the job like a refused key, but
    ``framescribe retry JOB`` resumes it once the service is back."""

    code = "describer_outage"

    PREFIX = "DashScope unavailable since"

    @classmethod
    def named_in(cls, message: str | None) -> bool:
        """Whether a stored reason is an outage (a job it stopped ends ``partial``: retry resumes it)."""
        return bool(message) and cls.PREFIX in str(message)


class BudgetExceeded(FramescribeError):
    code = "budget_exceeded"


class StoreError(FramescribeError):
    code = "store_error"


class NotFound(FramescribeError):
    code = "not_found"


class ConfigError(FramescribeError):
    code = "config_error"


class QueueUnavailable(FramescribeError):
    """The job queue (the broker) cannot be reached; nothing was queued."""

    code = "queue_unavailable"


class JobConflict(FramescribeError):
    """The job's state forbids the request (cancel an ended job, retry a live one): HTTP 409."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
