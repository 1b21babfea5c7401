"""Is a store's schema already at every migration head? Answered from the migration files' own
``revision`` / ``down_revision`` lines and the ``alembic_version`` table, without importing Alembic
(≈ 0.25 s of CPU): opening an up-to-date store — every read-only command, every worker start — then
skips the upgrade; any doubt (a file it cannot read, a missing table) answers "no" and Alembic decides.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # heads() is read by the quick commands, which load no SQLAlchemy (worker/cli_quick.py)
    from sqlalchemy import Engine


@functools.cache
def heads(versions: Path) -> frozenset[str] | None:
    """The revisions no other revision names as its parent; None when a file does not say plainly."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in sorted(versions.glob("*.py")):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (OSError, SyntaxError, ValueError):
            return None
        found: dict[str, object] = {}
        for node in tree.body:
            target: ast.expr | None = node.target if isinstance(node, ast.AnnAssign) else None
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                target = node.targets[0]
            value = node.value if isinstance(node, (ast.Assign, ast.AnnAssign)) else None
            if isinstance(target, ast.Name) and target.id in ("revision", "down_revision") and value is not None:
                try:
                    found[target.id] = ast.literal_eval(value)
                except ValueError:
                    return None
        revision, down = found.get("revision"), found.get("down_revision")
        if not isinstance(revision, str):
            return None
        revisions.add(revision)
        if isinstance(down, str):
            parents.add(down)
        elif isinstance(down, (tuple, list)) and all(isinstance(d, str) for d in down):
            parents.update(str(d) for d in down)
        elif down is not None:
            return None
    return frozenset(revisions - parents) or None


def at_heads(engine: Engine, versions: Path) -> bool:
    """True when the store records exactly the migration heads (nothing to upgrade)."""
    from sqlalchemy import text
    from sqlalchemy.exc import SQLAlchemyError

    wanted = heads(versions)
    if wanted is None:
        return False
    try:
        with engine.connect() as conn:
            stored = {str(row[0]) for row in conn.execute(text("SELECT version_num FROM alembic_version"))}
    except SQLAlchemyError:  # no table yet (a new store) or not readable: let Alembic look
        return False
    return stored == wanted
