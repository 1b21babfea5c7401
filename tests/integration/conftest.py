"""Fixtures shared by the integration tests (the `store` fixture runs a test on SQLite and PostgreSQL)."""

from tests.integration.store_fixtures import store

__all__ = ["store"]
