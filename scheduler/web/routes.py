"""``/`` (the review page) and ``/static/<file>`` (its CSS and JavaScript). The page itself needs no key;
every API call it makes sends the key the user typed as ``Authorization: Bearer``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse

from scheduler.api.errors import ApiError

router = APIRouter(include_in_schema=False)
HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
SECURITY = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
        "media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


@router.get("/", response_class=HTMLResponse)
def review_page() -> HTMLResponse:
    html = (HERE / "templates" / "review.html").read_text(encoding="utf-8")
    return HTMLResponse(html, headers={**SECURITY, "Cache-Control": "no-cache"})


@router.get("/static/{name}")
def static(name: Annotated[str, PathParam(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]) -> FileResponse:
    path = (STATIC / name).resolve()
    if path.parent != STATIC or path.suffix not in TYPES or not path.is_file():
        raise ApiError(404, "not_found", f"no static file {name}")
    return FileResponse(path, media_type=TYPES[path.suffix], headers={**SECURITY, "Cache-Control": "no-cache"})
