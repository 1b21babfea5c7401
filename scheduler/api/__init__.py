"""The REST API under ``/v1``: models, dependencies, error mapping and one router module per resource."""
