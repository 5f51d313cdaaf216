"""Settings, read from ``TRAILSEAL_*`` environment variables.

Built once by the entry point and passed down; nothing here runs at import time.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every setting of the service. Each field maps to ``TRAILSEAL_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="TRAILSEAL_", extra="ignore")

    database_url: str | None = Field(
        default=None,
        description="PostgreSQL (15 or newer) connection URL. Unset: an embedded "
        "PostgreSQL is started in the data directory.",
    )
    data_dir: Path = Field(
        default=Path(".trailseal"),
        description="Where the embedded PostgreSQL and local secrets live.",
    )
    secret_key: str | None = Field(
        default=None,
        description="Key that signs pagination cursors. Unset: one is created in the "
        "data directory.",
    )
    log_origin: str | None = Field(
        default=None,
        description="Host part of every log origin, <host>/trailseal/<tenant>. Unset: the "
        "machine's host name.",
    )
    signing_key_file: Path | None = Field(
        default=None,
        description="File holding the C2SP PRIVATE+KEY+... string that signs checkpoints "
        "(read by the sequencer only). Unset: <data dir>/log.key, created if absent.",
    )
    witness_dir: Path | None = Field(
        default=None,
        description="Write-once folder every checkpoint is also written to. Unset: "
        "<data dir>/witness.",
    )
    witness_url: str | None = Field(
        default=None,
        description="If set, every checkpoint is also POSTed (text/plain) to this URL.",
    )
    pool_min_size: int = Field(default=2, ge=1, description="Smallest connection pool.")
    pool_max_size: int = Field(default=10, ge=1, description="Largest connection pool.")
    run_sequencer: bool = Field(
        default=True, description="Run the sequencer inside the API process."
    )
    sequencer_batch_size: int = Field(
        default=5000, ge=1, le=10_000, description="Most events sequenced per transaction."
    )
    sequencer_idle_seconds: float = Field(
        default=0.2, gt=0, description="How long an idle sequencer waits between sweeps."
    )
    wait_sequenced_seconds: float = Field(
        default=10.0, gt=0, description="Longest a ?wait=sequenced request waits."
    )
    console_session_hours: float = Field(
        default=8.0, gt=0, le=24 * 30,
        description="How long a console sign-in lasts before the key must be entered again.",
    )
    segment_max_events: int = Field(
        default=10_000, ge=1, le=1_000_000,
        description="The archiver closes a segment at this many events.",
    )
    segment_max_age_seconds: float = Field(
        default=60.0, gt=0,
        description="The archiver closes a segment once its first event is this old.",
    )
    archive_url: str | None = Field(
        default=None,
        description="The write-once store of segments and checkpoints: file:///path or "
        "s3://bucket/prefix (a bucket with Object Lock enabled). Unset: <data dir>/archive.",
    )
    s3_endpoint_url: str | None = Field(
        default=None,
        description="Endpoint of an S3-compatible service (unset: AWS S3 itself).",
    )
    s3_cold_storage_class: str = Field(
        default="GLACIER",
        description="The S3 storage class of the cold tier: GLACIER or DEEP_ARCHIVE.",
    )
    archive_cache_dir: Path | None = Field(
        default=None,
        description="Where segment files read from the store are kept for warm queries. "
        "Unset: <data dir>/segment-cache.",
    )
    retention_preset: str = Field(
        default="finance",
        description="The retention of tenants without a policy of their own: soc2 (1 "
        "year), hipaa (6 years) or finance (7 years).",
    )
    run_archiver: bool = Field(
        default=True, description="Run the archiver inside the API process (serve)."
    )
    archiver_idle_seconds: float = Field(
        default=5.0, gt=0, description="How long the archiver waits between sweeps."
    )
    behind_proxy: bool = Field(
        default=False,
        description="The service is reached through a reverse proxy that terminates TLS "
        "and sets X-Forwarded-Proto: trust that header to mark console cookies Secure.",
    )
    sequencer_lease_seconds: float = Field(
        default=10.0, gt=0, le=3600,
        description="How long a sequencer's lease on a tenant lasts unless renewed: the "
        "longest a killed sequencer's tenants wait before another takes them.",
    )
    alert_inbox_age_seconds: float = Field(
        default=60.0, ge=0,
        description="Alert sequencer_stalled when an accepted event waits in the inbox "
        "longer than this.",
    )
    alert_checkpoint_age_seconds: float = Field(
        default=300.0, ge=0,
        description="Alert checkpoint_stale when a tenant has events waiting and its "
        "newest checkpoint is older than this.",
    )
    metrics_tenant_labels: bool = Field(
        default=False,
        description="Give /metrics per-tenant series (labelled with tenant names); off, "
        "only totals over all tenants.",
    )
    metrics_cache_seconds: float = Field(
        default=5.0, ge=0,
        description="How long /metrics and /readyz reuse one reading of the log's health.",
    )
    log_json: bool = Field(
        default=False,
        description="serve writes its logs as one JSON object per line, with request ids.",
    )
