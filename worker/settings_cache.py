"""The store a read-only command uses, remembered from the one settings model (``worker/config.py``) so the
quick commands (``status``, ``show``, ``jobs list``) need not import pydantic-settings to find it again;
likewise the few settings ``framescribe sample`` uses (``sample_defaults``).

The cache holds what ``Settings`` answered for one exact set of inputs: the key hashes everything the model
reads (every ``FRAMESCRIBE_*`` variable, the config file's path and bytes, the ``--config`` / ``--data-dir``
/ ``--database-url`` flags, the current folder) and what decides how it reads them (the settings modules'
and migration files' size and mtime, and those of the installed pydantic, pydantic-settings and PyYAML,
found without importing them). Any change is a miss, and a miss builds ``Settings`` as every other
command does (a bad config fails there, as before). Only SQLite stores are remembered: the entry holds no
secret, and the key is a hash. Files live in ``$XDG_CACHE_HOME/framescribe`` (else ``~/.cache/framescribe``).
"""

from __future__ import annotations

import hashlib
import json
import os
from importlib.machinery import PathFinder
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from worker.config import Settings

WORKER = Path(__file__).resolve().parent
CODE = [WORKER / name for name in ("config.py", "config_sections.py", "config_sources.py", "settings_cache.py")]
VERSIONS = WORKER / "migrations" / "versions"
REPO_CONFIG = WORKER.parent / "configs" / "default.yaml"  # as worker.config_sources.REPO_CONFIG (a test checks)
LIBRARIES = ("pydantic", "pydantic_settings", "yaml")  # what reads the settings: an upgrade is a miss
KEEP = 64  # entries kept (one per set of inputs); the oldest go when a new one is written


class Resolved:
    """The store the model names: its SQLite file, the URL as announced, and the schema heads it must have."""

    __slots__ = ("heads", "path", "safe_url", "unresolved")

    def __init__(self, path: str, safe_url: str, heads: list[str], unresolved: str | None) -> None:
        self.path, self.safe_url, self.heads, self.unresolved = path, safe_url, heads, unresolved


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "framescribe"


def _stat(path: Path) -> list[int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return [st.st_mtime_ns, st.st_size, st.st_ino]


def _library(name: str) -> list[Any] | None:
    """Where an installed package lies and its files' stat (an upgrade rewrites them), without importing it."""
    try:
        spec = PathFinder.find_spec(name)  # sys.path, as an import would look (importlib.util costs 2 ms)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    origin = Path(spec.origin)
    return [str(origin), _stat(origin), _stat(origin.parent)]


def key(config: Path | None, data_dir: Path | None, database_url: str | None) -> str | None:
    """A hash of every input of the settings model; None when the config file cannot be read (a miss)."""
    env = sorted((k, v) for k, v in os.environ.items() if k.upper().startswith("FRAMESCRIBE_"))
    named = str(config) if config is not None else os.environ.get("FRAMESCRIBE_CONFIG")
    path = Path(named) if named else REPO_CONFIG
    try:
        text = path.read_bytes().decode("utf-8", "surrogateescape") if named or path.is_file() else None
        cwd = os.getcwd()
    except OSError:  # no such file, or the current folder was removed: the model decides (and says why)
        return None
    versions = sorted((p.name, _stat(p)) for p in VERSIONS.glob("*.py"))
    parts: list[Any] = [cwd, env, named, text, None if data_dir is None else str(data_dir), database_url]
    parts += [[_stat(p) for p in CODE], versions, [_library(name) for name in LIBRARIES]]
    return hashlib.sha256(json.dumps(parts).encode("utf-8", "surrogateescape")).hexdigest()


def lookup(digest: str) -> Resolved | None:
    """The remembered answer, if it still names the same file (a symlinked data folder may have moved)."""
    try:
        entry = _read(digest)
        found = Resolved(entry["path"], entry["safe_url"], entry["heads"], entry["unresolved"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if found.unresolved is not None and os.path.realpath(found.unresolved) != found.path:
        return None
    return found


def remember(digest: str, found: Resolved) -> None:
    """Write the entry (a cache that cannot be written is no error)."""
    entry = {"path": found.path, "safe_url": found.safe_url, "heads": found.heads, "unresolved": found.unresolved}
    _write(digest, entry)


def _read(name: str) -> Any:
    return json.loads((cache_dir() / f"{name}.json").read_text(encoding="utf-8"))


def _write(name: str, entry: dict[str, Any]) -> None:
    """Atomically: a temporary file renamed; a cache that cannot be written is no error."""
    folder = cache_dir()
    tmp = folder / f".{name}.{os.getpid()}.tmp"
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(entry, fh)
        os.replace(tmp, folder / f"{name}.json")
    except OSError:
        tmp.unlink(missing_ok=True)
        return
    prune(folder)


SAMPLE_KEYS = ("reader_backend", "jpeg_quality", "limits", "log_level", "log_format")


def sample_defaults(config: Path | None) -> dict[str, Any]:
    """What ``framescribe sample`` takes from the settings model (reader backend, JPEG quality, the limits on
    hostile media, the log level and format), remembered for these inputs as the quick commands' store is:
    a hit imports neither pydantic-settings nor the settings model (0.16-0.29 s of ``sample``'s start-up
    here); a miss builds the model (a bad setting fails there, as in every command) and remembers it."""
    from worker.config_sections import LimitSettings  # pydantic only

    digest = key(config, None, None)
    if digest is not None:
        try:
            entry = _read(f"{digest}.sample")
            if isinstance(entry, dict) and set(entry) == set(SAMPLE_KEYS):
                return {**entry, "limits": LimitSettings.model_validate(entry["limits"])}
        except (OSError, ValueError):  # none yet, or not ours (a pydantic ValidationError is a ValueError)
            pass
    settings = build_settings(config, None, None)
    entry = {
        "reader_backend": settings.sampling.reader_backend,
        "jpeg_quality": settings.sampling.jpeg_quality,
        "limits": settings.limits.model_dump(mode="json"),
        "log_level": settings.log_level,
        "log_format": settings.logging.format,
    }
    if digest is not None:
        _write(f"{digest}.sample", entry)
    return {**entry, "limits": settings.limits}


def prune(folder: Path, keep: int = KEEP) -> None:
    """Delete all but the ``keep`` most recently written entries (each set of inputs writes one)."""
    try:
        entries = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime_ns, reverse=True)
        for old in entries[keep:]:
            old.unlink(missing_ok=True)
    except OSError:  # an entry removed meanwhile (another process pruning): the next write prunes again
        pass


def build_settings(config: Path | None, data_dir: Path | None, database_url: str | None) -> Settings:
    """The settings model for the CLI's flags (every command's, cached or not): ``--config`` names the file
    for the whole process; a bad setting fails here, one line, as in every command."""
    from worker.config import load_settings

    if config is not None:
        os.environ["FRAMESCRIBE_CONFIG"] = str(config)
    overrides: dict[str, Any] = {"data_dir": data_dir} if data_dir is not None else {}
    if database_url is not None:
        overrides["database_url"] = database_url
    return load_settings(**overrides)


def resolve(config: Path | None, data_dir: Path | None, database_url: str | None) -> Resolved | None:
    """The SQLite store the settings model names for these flags, from the cache or the model itself;
    None for another kind of store (PostgreSQL), which the full path opens with SQLAlchemy."""
    digest = key(config, data_dir, database_url)
    found = lookup(digest) if digest is not None else None
    if found is not None:
        return found
    from worker.cli_store import safe_url, sqlite_file

    settings = build_settings(config, data_dir, database_url)
    url = settings.resolved_database_url
    path = sqlite_file(url)
    if path is None or url != f"sqlite:///{path}" or not path.is_absolute():
        return None
    from worker.adapters.stores.schema_version import heads

    wanted = heads(VERSIONS)
    if wanted is None:
        return None
    unresolved = None if settings.database_url else str(settings.data_dir / "framescribe.db")
    found = Resolved(str(path), safe_url(url), sorted(wanted), unresolved)
    if digest is not None:
        remember(digest, found)
    return found
