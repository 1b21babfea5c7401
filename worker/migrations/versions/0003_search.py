"""full-text search over segment descriptions and structured fields

SQLite: an FTS5 table ``segments_fts`` (rowid = segments.id) filled by triggers on ``segments``, with the
structured JSON flattened to its keys and values. PostgreSQL: a generated ``search_tsv`` column on
``segments`` (description weighted A, structured fields B) with a GIN index. No writer has to
remember to index: the database keeps the index in step with every insert, update and delete.

Revision ID: 0003
Revises: 0001
"""

from alembic import op

revision = "0003"
down_revision = "0001"
branch_labels = ("search",)
depends_on = None


def _flat(ref: str) -> str:
    """SQLite: the structured JSON of ``ref`` as 'key value key value …' text (invalid JSON counts as empty)."""
    return (
        "(SELECT group_concat(coalesce(CASE WHEN typeof(j.key) = 'text' THEN j.key END, '') || ' ' || "
        "coalesce(j.atom, ''), ' ') "
        f"FROM json_tree(CASE WHEN json_valid({ref}.structured) THEN {ref}.structured ELSE '{{}}' END) AS j)"
    )


SQLITE_UP = [
    "CREATE VIRTUAL TABLE segments_fts USING fts5(description, fields, "
    "tokenize = 'porter unicode61 remove_diacritics 2')",
    "CREATE TRIGGER segments_fts_ai AFTER INSERT ON segments BEGIN "
    f"INSERT INTO segments_fts(rowid, description, fields) VALUES (new.id, new.description, {_flat('new')}); END",
    "CREATE TRIGGER segments_fts_ad AFTER DELETE ON segments BEGIN DELETE FROM segments_fts WHERE rowid = old.id; END",
    "CREATE TRIGGER segments_fts_au AFTER UPDATE OF description, structured ON segments BEGIN "
    "DELETE FROM segments_fts WHERE rowid = old.id; "
    f"INSERT INTO segments_fts(rowid, description, fields) VALUES (new.id, new.description, {_flat('new')}); END",
    f"INSERT INTO segments_fts(rowid, description, fields) SELECT s.id, s.description, {_flat('s')} FROM segments s",
]
SQLITE_DOWN = [
    "DROP TRIGGER IF EXISTS segments_fts_au",
    "DROP TRIGGER IF EXISTS segments_fts_ad",
    "DROP TRIGGER IF EXISTS segments_fts_ai",
    "DROP TABLE IF EXISTS segments_fts",
]
PG_UP = [
    "ALTER TABLE segments ADD COLUMN search_tsv tsvector GENERATED ALWAYS AS ("
    "setweight(to_tsvector('english'::regconfig, coalesce(description, '')), 'A') || "
    "setweight(json_to_tsvector('english'::regconfig, coalesce(structured, '{}'::json), "
    '\'["string", "numeric", "boolean", "key"]\'::jsonb), \'B\')) STORED',
    "CREATE INDEX ix_segments_search_tsv ON segments USING gin (search_tsv)",
]
PG_DOWN = ["DROP INDEX IF EXISTS ix_segments_search_tsv", "ALTER TABLE segments DROP COLUMN IF EXISTS search_tsv"]


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    for stmt in SQLITE_UP if dialect == "sqlite" else PG_UP if dialect == "postgresql" else []:
        op.execute(stmt)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for stmt in SQLITE_DOWN if dialect == "sqlite" else PG_DOWN if dialect == "postgresql" else []:
        op.execute(stmt)
