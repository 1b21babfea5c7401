"""One settings model for the CLI, the workers and the REST API.

Sources, strongest first: explicit overrides (CLI flags), ``FRAMESCRIBE_*`` environment variables
(``__`` nests: ``FRAMESCRIBE_SAMPLING__FPS=2``), the YAML file named by ``FRAMESCRIBE_CONFIG``
(default ``configs/default.yaml`` when it exists), then the defaults below. Unknown keys are errors.

This module holds the settings model (the pipeline's sections and ``Settings``); the feature sections of
``ask`` and live cameras are in ``worker/config_sections.py``; reading the YAML file and turning a bad
value into one ConfigError (``load_settings``, ``get_settings``) is ``worker/config_sources.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from worker.config_sections import AskSettings, LimitSettings, LiveSettings, Section


class SamplingSettings(Section):
    fps: float = Field(1.0, gt=0, le=30, description="Frames sampled per second of video.")
    segment_seconds: float = Field(10.0, gt=0, le=3600, description="Length of one segment.")
    overlap_seconds: float = Field(0.0, ge=0, description="Overlap between consecutive segments.")
    min_frames: int = Field(4, ge=1, description="Fewest frames in one segment (DashScope needs 4).")
    max_frames: int | None = Field(
        None, ge=4, description="Most frames in one segment (default: the model's own limit, 512 without one)."
    )
    max_pixels: int = Field(401_408, ge=1024, description="Pixel budget per written frame; sides are multiples of 32.")
    jpeg_quality: int = Field(90, ge=30, le=100)
    segmenter: Literal["fixed", "scene", "motion", "hybrid"] = "fixed"
    dedup_hash_distance: int = Field(
        0, ge=0, le=64, description="Drop near-duplicate frames within this pHash distance (0 = off)."
    )
    # segmenters (worker/core/segmenters.py, worker/adapters/analysis.py)
    scene_detector: Literal["content", "adaptive"] = Field("content", description="PySceneDetect detector.")
    scene_threshold: float = Field(27.0, gt=0, le=255, description="ContentDetector threshold (HSV change).")
    adaptive_threshold: float = Field(3.0, gt=0, description="AdaptiveDetector ratio threshold.")
    analysis_max_fps: float = Field(30.0, gt=0, description="Analysis pass rate cap (every frame up to this).")
    motion_threshold: float = Field(
        0.002, gt=0, le=1, description="Foreground fraction (MOG2) from which a frame counts as active."
    )
    min_event_s: float = Field(0.5, ge=0, description="Shorter activity is ignored (motion segmenter).")
    pad_s: float = Field(1.0, ge=0, description="Video kept before and after each motion event.")
    merge_gap_s: float = Field(2.0, ge=0, description="Motion events closer than this are merged.")
    min_seconds: float = Field(2.0, ge=0, description="hybrid: scenes shorter than this join a neighbour.")
    max_seconds: float = Field(30.0, gt=0, description="hybrid/motion: longer spans are split.")
    reuse_hash_distance: int = Field(
        0, ge=0, le=64, description="Reuse the description of a near-identical segment of the job (0 = off)."
    )
    cache_descriptions: bool = Field(True, description="Cache model descriptions (a re-run makes no calls).")
    reader_backend: Literal["auto", "opencv", "pyav"] = Field(
        "auto", description="Video reader: auto picks PyAV or OpenCV and a read strategy per call by cost."
    )
    keyframe_tolerance: float = Field(
        0.0,
        ge=0,
        le=0.5,
        description="Keyframe fast path: a keyframe within this fraction of the sampling interval of a target "
        "stands in for it (true time kept). 0 = exact frames; 0.5 = half the interval.",
    )


class DescriberSettings(Section):
    kind: Literal["auto", "local", "dashscope"] = Field(
        "auto", description="auto = dashscope when an API key is set, else the local OpenCV describer."
    )
    preset: Literal["describe", "surveillance", "sports"] = "describe"
    prompt: str | None = Field(None, description="Overrides the preset's user prompt template.")
    concurrency: int = Field(4, ge=1, le=64, description="Describer calls in flight in one process.")
    continuity: bool = Field(
        False,
        description="Wait for each segment's description and pass it to the next prompt ($previous); "
        "serialises model calls. Off: the previous description is passed only when already finished.",
    )


class ModelPrice(Section):
    input: float = Field(ge=0, description="Per million input tokens (text + visual).")
    output: float = Field(ge=0, description="Per million output tokens.")
    cached: float = Field(0.0, ge=0, description="Per million cached input tokens.")


# CNY per million tokens, Beijing list prices (2025; check the Model Studio console for yours).
DEFAULT_PRICES: dict[str, dict[str, float]] = {
    "qwen-vl-max": {"input": 1.6, "output": 4.0, "cached": 0.32},
    "qwen-vl-plus": {"input": 0.8, "output": 2.0, "cached": 0.16},
    "qwen3-vl-plus": {"input": 1.0, "output": 10.0, "cached": 0.2},
    "qwen3-vl-flash": {"input": 0.15, "output": 1.5, "cached": 0.03},
    "qwen-plus": {"input": 0.8, "output": 2.0, "cached": 0.16},
    "qwen-flash": {"input": 0.15, "output": 1.5, "cached": 0.03},
    "qwen-turbo": {"input": 0.3, "output": 0.6, "cached": 0.06},
}


class DashScopeSettings(Section):
    api_key: SecretStr | None = Field(None, description="Falls back to DASHSCOPE_API_KEY.")
    base_url: str | None = Field(None, description="Native API base, e.g. https://dashscope-intl.aliyuncs.com/api/v1")
    compatible_base_url: str | None = Field(None, description="OpenAI-compatible base URL.")
    transport: Literal["native", "openai"] = "native"
    model: str = "qwen-vl-max-latest"
    summary_model: str | None = Field(
        "qwen-plus", description="Text model for job summaries (they see only text); null = the VL model."
    )
    vl_high_resolution_images: bool = False
    max_pixels: int | None = Field(
        None, ge=3136, description="Per-frame pixel cap DashScope applies to the frame list (video item key)."
    )
    temperature: float | None = Field(0.2, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    seed: int | None = 1234
    max_tokens: int = Field(800, ge=1, le=8192)
    stream: bool = False
    timeout_s: float = Field(120, gt=0)
    max_attempts: int = Field(5, ge=1, le=20)
    backoff_base_s: float = Field(1.0, ge=0)
    backoff_max_s: float = Field(30.0, ge=0)
    retry_budget_s: float = Field(300.0, ge=0, description="Total time one call may spend retrying.")
    rate_limit_per_s: float = Field(0, ge=0, description="Cross-worker requests/s (0 = unlimited).")
    max_in_flight: int = Field(0, ge=0, description="Cross-worker calls in flight (0 = unlimited).")
    max_video_tokens: int | None = Field(None, ge=1, description="Per-job cap on video tokens.")
    max_calls: int | None = Field(None, ge=1, description="Per-job cap on model requests (retries, repairs, summary).")
    summary_batch_tokens: int = Field(
        24_000, ge=500, description="Most input tokens in one summary call; longer jobs are summarised in batches."
    )
    breaker_failures: int = Field(
        5, ge=1, le=1000, description="Consecutive transient failures after which calls stop (circuit breaker)."
    )
    breaker_cooldown_s: float = Field(120.0, gt=0, description="How long the open circuit refuses calls.")
    frames_as: Literal["auto", "data_uri", "upload"] = Field(
        "auto",
        description="How the native API gets the frames: data URIs inside the request (no upload requests), "
        "uploads to DashScope's temporary storage (re-used by retries), or auto: data URIs while a segment's "
        "frames total at most 7 MiB and 250 frames, else uploads.",
    )
    upload_reuse_s: float = Field(
        47 * 3600, ge=0, le=48 * 3600, description="Re-use an uploaded frame's oss:// URL this long (DashScope: 48 h)."
    )
    currency: str = Field("CNY", description="Currency of the price table.")
    prices: dict[str, ModelPrice] = Field(
        default_factory=lambda: {k: ModelPrice(**v) for k, v in DEFAULT_PRICES.items()},
        description="Per model-name prefix: price per million input, output and cached input tokens.",
    )


class WorkerSettings(Section):
    task_time_limit_s: int = Field(1800, ge=5, description="Hard limit on one task (s); the soft limit is 90%.")
    visibility_timeout_s: int = Field(
        3600, ge=10, description="Redis re-delivers an unacked task after this; must exceed time limit + retry delay."
    )
    max_redeliveries: int = Field(5, ge=1, description="Worker crashes one task message may survive.")
    retry_max_delay_s: int = Field(600, ge=1)
    queue: str = Field("framescribe", min_length=1, description="Celery queue jobs are sent to and consumed from.")
    frames_retention_days: float | None = Field(None, description="Delete frames older than this.")
    # -- recovery (issue 16): leases in the store, so orphaned work is found in seconds, not after the
    # visibility timeout. A running segment's (and a summary's) lease is renewed every lease_heartbeat_s;
    # one that expired (its worker died or lost Redis) is re-queued by the recovery loop of any worker.
    lease_ttl_s: float = Field(20.0, ge=3, le=3600, description="A running segment's or summary's lease (s).")
    lease_heartbeat_s: float = Field(4.0, gt=0, le=600, description="How often a running task renews its lease.")
    reaper_interval_s: float = Field(5.0, gt=0, le=3600, description="How often a worker runs the recovery loop.")
    requeue_grace_s: float = Field(
        15.0, ge=1, description="Pending work with no message in the broker for this long is re-sent."
    )
    max_segment_attempts: int = Field(6, ge=1, description="Claims of one segment before it is failed.")
    store_retry_max_delay_s: float = Field(
        5.0, gt=0, le=600, description="Longest wait between retries while the result store is down."
    )
    # machines without a shared disk (issue 16)
    api_url: str | None = Field(
        None, description="Base URL of the REST API a worker fetches uploads from when they are not on its disk."
    )
    review_max_side: int = Field(640, ge=0, le=4096, description="Long side of the frame copies kept in the store.")
    sweep_interval_s: float = Field(600.0, ge=5, description="How often a worker sweeps files of deleted jobs.")


class SchedulerSettings(Section):
    host: str = "127.0.0.1"
    port: int = 8080
    max_upload_bytes: int = Field(2 * 1024**3)
    webhook_secret: SecretStr | None = None
    webhook_max_attempts: int = 5
    allow_private_urls: list[str] = Field(
        default_factory=list, description="Hosts/CIDRs allowed despite SSRF rules (tests, intranets)."
    )


class SecuritySettings(Section):
    """Hardening knobs of the REST service (issue 14); the defaults are the safe choice."""

    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host header names served besides loopback names and the bound address (DNS rebinding guard).",
    )
    body_timeout_s: float = Field(30.0, gt=0, le=3600, description="Time a request body may take (plus upload time).")
    min_upload_bytes_per_s: int = Field(64 * 1024, ge=1, description="Slowest upload accepted after body_timeout_s.")
    source_link_secret: SecretStr | None = Field(
        None, description="Signs /source links; unset: a random secret per process (links end at restart)."
    )
    internal_secret: SecretStr | None = Field(
        None, description="Shared by the API and the workers: signs the expiring links workers fetch uploads with."
    )
    url_check_timeout_s: float = Field(10.0, gt=0, le=600, description="Wall-clock cap on one URL preflight.")
    max_url_checks: int = Field(4, ge=1, le=64, description="URL preflights in flight at once (more: 503).")
    max_event_streams_per_client: int = Field(8, ge=1, le=1000, description="Open /events streams per key or client.")
    readiness_cache_s: float = Field(3.0, ge=0, le=300, description="How long a /readyz answer is reused.")
    readiness_timeout_s: float = Field(3.0, gt=0, le=60, description="Deadline of one readiness probe.")
    event_fallback_poll_s: float = Field(
        5.0, gt=0, le=300, description="/events re-reads a job this often when no change notice arrives."
    )


class LoggingSettings(Section):
    """Log lines (worker/logs.py): ``text`` for people, ``json`` (one object a line, with job_id and
    segment) for a log pipeline. FRAMESCRIBE_LOGGING__FORMAT=json."""

    format: Literal["text", "json"] = "text"


class Settings(BaseSettings):
    """The whole configuration. Top-level names are stable operator contracts."""

    model_config = SettingsConfigDict(
        env_prefix="FRAMESCRIBE_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    config: Path | None = Field(None, description="YAML file this was loaded from (FRAMESCRIBE_CONFIG).")
    data_dir: Path = Field(Path("data"), description="Frames and working files (FRAMESCRIBE_DATA_DIR).")
    database_url: str | None = Field(None, description="SQLAlchemy URL; default SQLite under data_dir.")
    broker_url: str = "redis://127.0.0.1:6379/0"
    allowed_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=list, description="Folders path sources may come from."
    )
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Accepted API keys or sha256:<hex> hashes."
    )
    read_only_api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    log_level: str = "INFO"

    sampling: SamplingSettings = SamplingSettings()
    limits: LimitSettings = LimitSettings()
    describer: DescriberSettings = DescriberSettings()
    dashscope: DashScopeSettings = DashScopeSettings()
    worker: WorkerSettings = WorkerSettings()
    scheduler: SchedulerSettings = SchedulerSettings()
    security: SecuritySettings = SecuritySettings()
    logging: LoggingSettings = LoggingSettings()
    ask: AskSettings = AskSettings()
    live: LiveSettings = LiveSettings()

    @field_validator("allowed_roots", "api_keys", "read_only_api_keys", mode="before")
    @classmethod
    def _json_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip()
            if value.startswith("["):
                try:
                    return json.loads(value)
                except ValueError:
                    raise ValueError("not a valid JSON list") from None
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    @field_validator("api_keys", "read_only_api_keys", mode="after")
    @classmethod
    def _no_empty_keys(cls, value: list[str]) -> list[str]:
        """An empty key (``'[""]'``) would count as "keys configured" and match nothing sensible."""
        for key in value:
            if not key.strip() or (key.startswith("sha256:") and len(key[7:].strip()) != 64):
                raise ValueError("API keys may not be empty (and sha256: entries need 64 hex digits)")
        return value

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'framescribe.db').resolve()}"

    @property
    def dashscope_api_key(self) -> str | None:
        if self.dashscope.api_key is not None:
            return self.dashscope.api_key.get_secret_value()
        return os.environ.get("DASHSCOPE_API_KEY") or None

    @property
    def effective_describer(self) -> str:
        return self.resolve_describer(self.describer.kind)

    def resolve_describer(self, kind: str) -> str:
        """The one "auto" rule: DashScope when an API key is set, else the local describer."""
        if kind == "auto":
            return "dashscope" if self.dashscope_api_key else "local"
        return kind

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        from worker.config_sources import YamlSource

        return (init_settings, env_settings, YamlSource(settings_cls))


# Loading lives in worker/config_sources.py; its names stay importable from here (they need Settings above).
from worker.config_sources import REPO_CONFIG, config_path, get_settings, load_settings  # noqa: E402

__all__ = [
    "REPO_CONFIG", "AskSettings", "DashScopeSettings", "DescriberSettings", "LimitSettings", "LiveSettings",
    "LoggingSettings", "ModelPrice", "SamplingSettings", "SchedulerSettings", "SecuritySettings", "Settings",
    "WorkerSettings", "config_path", "get_settings", "load_settings",
]  # fmt: skip
