"""Webhook signatures: HMAC-SHA256 over ``"<timestamp>.<body>"``, shared by the sender and receivers.

Headers sent with every delivery::

    X-Framescribe-Timestamp: 1764073200            (unix seconds when this attempt was signed)
    X-Framescribe-Signature: v1=<hex hmac>          (hmac_sha256(secret, f"{timestamp}.".encode() + body))
    X-Framescribe-Event: job.finished
    X-Framescribe-Delivery: <delivery id, the same on every retry>

A receiver recomputes the HMAC over the raw body, compares in constant time and refuses timestamps
older than its tolerance (replays).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

TIMESTAMP_HEADER = "X-Framescribe-Timestamp"
SIGNATURE_HEADER = "X-Framescribe-Signature"
EVENT_HEADER = "X-Framescribe-Event"
DELIVERY_HEADER = "X-Framescribe-Delivery"
SCHEME = "v1"


def signature(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"{SCHEME}={mac.hexdigest()}"


def sign(secret: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The signature headers for one delivery attempt."""
    return {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: signature(secret, timestamp, body)}


def verify(secret: str, headers: Mapping[str, str], body: bytes, *, now: int, tolerance_s: int = 300) -> str | None:
    """None when the headers sign ``body`` with ``secret`` within ``tolerance_s`` of ``now``; else why not."""
    lowered = {k.lower(): v for k, v in headers.items()}
    ts_raw = lowered.get(TIMESTAMP_HEADER.lower(), "")
    sig = lowered.get(SIGNATURE_HEADER.lower(), "")
    if not ts_raw.isdigit():
        return "missing or malformed timestamp header"
    timestamp = int(ts_raw)
    if abs(now - timestamp) > tolerance_s:
        return f"timestamp is {abs(now - timestamp)} s away from now (tolerance {tolerance_s} s)"
    candidates = [part.strip() for part in sig.split(",") if part.strip().startswith(f"{SCHEME}=")]
    expected = signature(secret, timestamp, body)
    if not any(hmac.compare_digest(expected, c) for c in candidates):
        return "signature does not match the body"
    return None
