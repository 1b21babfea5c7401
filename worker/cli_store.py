"""Which result store a command uses, said out loud; read-only commands never create one.

The data folder is ``data`` under the current folder unless the config file, ``FRAMESCRIBE_DATA_DIR``
or ``--data-dir`` says otherwise; the store is the SQLite file ``framescribe.db`` in it unless
``FRAMESCRIBE_DATABASE_URL`` / ``--database-url`` names another.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from worker.errors import NotFound

if TYPE_CHECKING:
    from worker.config import Settings

HINT = (
    "the data folder is 'data' under the current folder by default: run from the folder that holds it, "
    "or set FRAMESCRIBE_DATA_DIR=/path/to/data (or pass --data-dir / --database-url)"
)


def override_source(data_dir: object, database_url: str | None) -> str | None:
    """What moved the store away from the configured default, if anything."""
    if database_url is not None:
        return "--database-url"
    if os.environ.get("FRAMESCRIBE_DATABASE_URL"):
        return "FRAMESCRIBE_DATABASE_URL"
    if data_dir is not None:
        return "--data-dir"
    if os.environ.get("FRAMESCRIBE_DATA_DIR"):
        return "FRAMESCRIBE_DATA_DIR"
    return None


def _command_uses_store() -> bool:
    from typer._click.globals import get_current_context

    ctx = get_current_context(silent=True)
    if ctx is None:
        return False
    return any(p.name in ("data_dir", "database_url") for p in ctx.command.params)


def safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]


def announce(settings: Settings, data_dir: object, database_url: str | None) -> None:
    """One stderr line naming the store when it is not the configured default."""
    source = override_source(data_dir, database_url)
    if source is not None and _command_uses_store():
        sys.stderr.write(f"framescribe: store: {safe_url(settings.resolved_database_url)} (from {source})\n")


def sqlite_file(url: str) -> Path | None:
    if not url.startswith("sqlite") or url.count("///") == 0:
        return None
    path = url.split("///", 1)[-1].split("?", 1)[0]
    return None if not path or path == ":memory:" else Path(path)


def open_store(settings: Settings, *, read_only: bool = False) -> Any:
    """The result store; a read-only command that finds no SQLite file says where it looked instead of
    creating an empty store there."""
    from worker.adapters.stores.sql import SqlResultStore  # not worker.bootstrap: no video or model libraries

    url = settings.resolved_database_url
    path = sqlite_file(url)
    if read_only and path is not None and not path.is_file():
        raise NotFound(f"no result store at {path}; {HINT}")
    return SqlResultStore(url)
