"""Fixtures of the end-to-end tests."""

from tests.integration.test_ops_metrics import redis_server  # noqa: F401  (a private redis-server per test)
