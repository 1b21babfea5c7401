"""Webhook signatures for receivers: verify that a POST really came from this framescribe.

Every delivery carries ``X-Framescribe-Timestamp`` (unix seconds) and ``X-Framescribe-Signature:
v1=<hex>``, the HMAC-SHA256 of ``f"{timestamp}.".encode() + raw_body`` keyed with
``FRAMESCRIBE_SCHEDULER__WEBHOOK_SECRET``. ``X-Framescribe-Delivery`` is the same on every retry of one
delivery (deduplicate on it); ``X-Framescribe-Attempt`` counts the attempts. A receiver in Python::

    from scheduler.webhooks import verify_request
    problem = verify_request(secret, request.headers, raw_body)   # None when genuine
    if problem: return 401

Without framescribe installed, recompute ``hmac.new(secret, f"{ts}.".encode() + body, sha256).hexdigest()``
and compare in constant time; refuse timestamps more than five minutes away from now.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from worker.core.signing import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    sign,
    signature,
    verify,
)

__all__ = [
    "DELIVERY_HEADER",
    "EVENT_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "sign",
    "signature",
    "verify",
    "verify_request",
]


def verify_request(
    secret: str, headers: Mapping[str, str], body: bytes, *, tolerance_s: int = 300, now: int | None = None
) -> str | None:
    """None when ``headers`` carry a valid, fresh signature of ``body``; otherwise the reason."""
    return verify(secret, headers, body, now=int(time.time()) if now is None else now, tolerance_s=tolerance_s)
