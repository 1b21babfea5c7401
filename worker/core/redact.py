"""What may leave the server: URLs without their secrets, sources without absolute server paths."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit


def redact_url(url: str) -> str:
    """A URL safe to show, log or export: no credentials, query string or fragment (signed URLs carry
    their secret there); ``?…`` marks a removed query."""
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<malformed URL>"
    if not parts.scheme or not parts.hostname:
        return url.split("?", 1)[0].split("#", 1)[0]
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}{port}{parts.path}{'?…' if parts.query else ''}"


def public_source(source: str, name: str | None = None) -> str:
    """A job's source as clients may see it: a redacted URL, or the file's name (never its server path)."""
    if "://" in source[:12]:
        return redact_url(source)
    return name or PurePosixPath(source).name


def public_job(job: dict[str, Any]) -> dict[str, Any]:
    """The job dict of an export without server paths or URL secrets."""
    out = dict(job)
    if isinstance(out.get("source"), str):
        out["source"] = public_source(out["source"], out.get("source_name"))
    if isinstance(out.get("source_name"), str) and "://" in out["source_name"][:12]:
        out["source_name"] = redact_url(out["source_name"])
    if isinstance(out.get("error"), str):
        out["error"] = redact_text(out["error"])
    return out


def redact_text(text: str) -> str:
    """Every http(s) URL inside free text redacted (job errors quote the URL they failed on)."""
    words = text.split(" ")
    return " ".join(redact_url(w) if w.startswith(("http://", "https://")) else w for w in words)
