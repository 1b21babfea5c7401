"""Dependencies shared by every router (the adapters live on ``app.state``, built by the lifespan).

For route authors::

    from scheduler.api.deps import ReadAccess, SettingsDep, StoreDep, WriteAccess

    @router.get("/v1/jobs/{job_id}/export")
    def export(job_id: str, store: StoreDep, settings: SettingsDep, _: ReadAccess) -> ...

* ``SettingsDep``: the service's ``worker.config.Settings``.
* ``StoreDep``: the ``SqlResultStore``; ``SchedulesDep``: the ``ScheduleStore``; ``EnqueuerDep``: the queue;
  ``MirrorDep``: the RedBeat mirror of schedules (None without a broker).
* ``ReadAccess`` / ``WriteAccess`` (or ``Depends(require_read)`` / ``Depends(require_write)`` in
  ``dependencies=[...]``): the auth checks, returning the caller's ``Principal``.

Auth model: ``Authorization: Bearer <key>``. Keys come from ``FRAMESCRIBE_API_KEYS`` (read + write) and
``FRAMESCRIBE_READ_ONLY_API_KEYS`` (read only), each plain or ``sha256:<hex>`` of the key. A missing or
wrong key is 401, a read-only key on a write endpoint 403. Keys in the query string are refused. With no
key configured at all the API is open, but only to clients on a loopback address (and
``framescribe scheduler`` refuses a non-loopback bind without keys). Health endpoints never need a key.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends, Request

from scheduler.api.errors import ApiError
from scheduler.enqueue import Enqueuer
from scheduler.schedules import ScheduleMirror
from worker.adapters.stores.schedules import ScheduleStore
from worker.adapters.stores.sql import SqlResultStore
from worker.config import Settings
from worker.service.context import Ports

Scope = Literal["read", "write"]
BEARER = {"WWW-Authenticate": 'Bearer realm="framescribe"'}
QUERY_KEY_NAMES = ("api_key", "apikey", "key", "token", "access_token")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: ``id`` is a short hash of the key (or ``local`` on an open loopback API)."""

    id: str
    scope: Scope


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_store(request: Request) -> SqlResultStore:
    store: SqlResultStore = request.app.state.store
    return store


def get_schedules(request: Request) -> ScheduleStore:
    schedules: ScheduleStore = request.app.state.schedules
    return schedules


def get_enqueuer(request: Request) -> Enqueuer:
    enqueuer: Enqueuer = request.app.state.enqueuer
    return enqueuer


def get_ports(request: Request) -> Ports:
    """The job service's ports (store, settings, describers, enqueuer) built at start-up."""
    ports: Ports = request.app.state.ports
    return ports


def get_mirror(request: Request) -> ScheduleMirror | None:
    mirror: ScheduleMirror | None = request.app.state.mirror
    return mirror


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[SqlResultStore, Depends(get_store)]
SchedulesDep = Annotated[ScheduleStore, Depends(get_schedules)]
EnqueuerDep = Annotated[Enqueuer, Depends(get_enqueuer)]
PortsDep = Annotated[Ports, Depends(get_ports)]
MirrorDep = Annotated[ScheduleMirror | None, Depends(get_mirror)]


def key_matches(given: str, configured: Sequence[str]) -> bool:
    """Constant-time comparison against every configured key (plain or ``sha256:<hex>``)."""
    digest = hashlib.sha256(given.encode("utf-8", "surrogateescape")).hexdigest()
    hit = False
    for entry in configured:
        if entry.startswith("sha256:"):
            hit |= hmac.compare_digest(digest, entry[7:].strip().lower())
        else:
            hit |= hmac.compare_digest(given.encode("utf-8", "surrogateescape"), entry.encode())
    return hit


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def authenticate(request: Request, settings: Settings) -> Principal:
    """The caller's principal, or ApiError 401 (no/wrong key)."""
    if any(name in request.query_params for name in QUERY_KEY_NAMES):
        raise ApiError(
            401, "key_in_url", "send the API key in the Authorization header (Bearer), never in the URL", headers=BEARER
        )
    write_keys, read_keys = settings.api_keys, settings.read_only_api_keys
    header = request.headers.get("authorization", "")
    if not write_keys and not read_keys:
        client = request.client.host if request.client else None
        if is_loopback(client):
            return Principal("local", "write")
        raise ApiError(
            401, "unauthorized", "no API keys are configured, so only loopback clients are served", headers=BEARER
        )
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "unauthorized", "missing API key: send 'Authorization: Bearer <key>'", headers=BEARER)
    pid = hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()[:12]
    if key_matches(token, write_keys):
        return Principal(pid, "write")
    if key_matches(token, read_keys):
        return Principal(pid, "read")
    raise ApiError(401, "unauthorized", "the API key is not valid", headers=BEARER)


def require_read(request: Request, settings: SettingsDep) -> Principal:
    return authenticate(request, settings)


def require_write(request: Request, settings: SettingsDep) -> Principal:
    principal = authenticate(request, settings)
    if principal.scope != "write":
        raise ApiError(403, "forbidden", "this API key is read-only; use a read-write key to change anything")
    return principal


ReadAccess = Annotated[Principal, Depends(require_read)]
WriteAccess = Annotated[Principal, Depends(require_write)]
