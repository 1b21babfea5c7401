"""Fixtures shared by the integration tests (the `store` fixture runs a test on SQLite and PostgreSQL;
`redis_server` is a private redis-server per test)."""

from tests.integration.celery_fixtures import redis_server
from tests.integration.store_fixtures import store

__all__ = ["redis_server", "store"]
