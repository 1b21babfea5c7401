"""The framescribe service: REST API (``scheduler.main.create_app``), recurring schedules and webhooks."""
