"""Fixtures of the end-to-end tests."""

from tests.integration.celery_fixtures import redis_server  # noqa: F401  (a private redis-server per test)
