"""The settings sections' base class, the limits on hostile media (the video readers import them without the
settings model: ``framescribe sample`` need not load pydantic-settings), and the sections of the later
features: ``ask`` and meaning-based search (issue 17), live cameras (issue 18). ``worker/config.py``
assembles them into ``Settings``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LimitSettings(Section):
    """Guards against hostile media: nothing may hang a worker or fill its disk."""

    max_input_bytes: int = Field(20 * 1024**3, description="Largest source file accepted.")
    max_duration_s: float = Field(24 * 3600, description="Longest video accepted.")
    max_source_pixels: int = Field(8192 * 8192, description="Largest frame (w*h) accepted.")
    max_frames_per_job: int = Field(200_000, ge=1, description="Most sampled frames in one job (overlaps counted).")
    max_segments_per_job: int = Field(20_000, ge=1, description="Most segments (model calls) in one job.")
    decode_timeout_s: float = Field(1800, description="Wall-clock cap on decoding one segment.")
    max_job_disk_bytes: int = Field(20 * 1024**3, description="Cap on frame bytes written per job.")
    download_timeout_s: float = Field(300)
    max_download_bytes: int = Field(4 * 1024**3)


class AskSettings(Section):
    """``framescribe ask`` / ``POST /v1/ask`` and meaning-based search (issue 17)."""

    model: str = Field("qwen-plus", description="Text model that writes answers (DashScope text generation).")
    max_tokens: int = Field(600, ge=16, le=8192, description="Longest answer.")
    evidence: int = Field(8, ge=1, le=50, description="Segments given to the answer model as evidence.")
    min_similarity: float = Field(
        0.3, ge=-1, le=1, description="Cosine below which a segment found only by meaning is not evidence."
    )
    embedder: Literal["auto", "local", "dashscope", "none"] = Field(
        "auto", description="auto = dashscope with an API key, else the offline MiniLM model when installed."
    )
    embed_model: str = Field("text-embedding-v4", description="DashScope text embedding model.")
    embed_dimension: int = Field(1024, ge=64, le=2048)
    look_again: bool = Field(True, description="Re-ask Qwen-VL with stored frames for visual-detail questions.")
    look_again_segments: int = Field(2, ge=1, le=5, description="Top segments whose frames are looked at again.")


class LiveSettings(Section):
    """Live cameras (worker/live): ingest deadlines, reconnects, MQTT, shared call budgets, stream leases."""

    mqtt_url: str | None = Field("mqtt://127.0.0.1:1883", description="MQTT broker for alerts (None = off).")
    allow_cameras: list[str] = Field(
        default_factory=list, description="Private/loopback camera hosts or CIDRs the operator allows."
    )
    devices: list[str] = Field(default_factory=lambda: ["/dev/video"], description="Allowed device path prefixes.")
    open_timeout_s: float = Field(10.0, gt=0, le=300, description="Deadline on connecting to a camera.")
    read_timeout_s: float = Field(5.0, gt=0, le=300, description="A stream without a frame this long is stalled.")
    backoff_initial_s: float = Field(0.5, gt=0, le=60)
    backoff_max_s: float = Field(15.0, gt=0, le=600)
    pre_event_s: float = Field(3.0, ge=0, le=30, description="Pre-event buffer kept in memory (motion).")
    motion_threshold: float = Field(0.003, gt=0, le=1, description="Changed-pixel fraction that counts as motion.")
    max_calls_per_hour: int = Field(0, ge=0, description="Model calls per hour across all cameras (0 = no cap).")
    max_calls_per_day: int = Field(0, ge=0, description="Model calls per UTC day across all cameras (0 = no cap).")
    lease_ttl_s: float = Field(15.0, ge=2, le=600, description="A dead owner's stream is taken over after this.")
    queue: str = Field("streams", min_length=1, description="Celery queue of stream tasks.")
