"""The job service: what every entry point (CLI, REST, inline runner, Celery tasks) calls.

``jobs`` (submit, estimate, cancel, retry, delete, finish, run), ``sources`` (path, URL, upload).
"""
