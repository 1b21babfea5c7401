"""Live cameras: RTSP/HLS/device ingest in rolling wall-clock segments, motion gating, alerts, digests."""
