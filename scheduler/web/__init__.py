"""The review page: plain HTML, CSS and JavaScript served by the scheduler service at ``/`` (no build, no CDN)."""
