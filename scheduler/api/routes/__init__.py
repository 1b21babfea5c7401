"""One router per resource: jobs, schedules, health (exports, search and the review page plug in too)."""
