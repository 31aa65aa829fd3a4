"""Hub settings: built once by the composition root and passed down (never a module global)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class HubSettings(BaseSettings):
    """Where the hub keeps its state and where it listens.

    Defaults are the embedded ones: SQLite and local files under `data_dir`.
    Environment variables use the prefix ``HEXCHANGE_HUB_`` (for example
    ``HEXCHANGE_HUB_DATABASE_URL=postgresql+psycopg://...``).
    """

    model_config = SettingsConfigDict(env_prefix="HEXCHANGE_HUB_", extra="forbid")

    data_dir: Path = Field(
        description="Folder for the CA, TLS files, blobs and the SQLite database"
    )
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default sqlite:///<data_dir>/hub.db"
    )
    host: str = "127.0.0.1"
    node_port: int = Field(default=8443, description="Node API: mutual TLS required")
    public_port: int = Field(default=8444, description="Enrollment and user API: server TLS")
    server_hostnames: list[str] = Field(default_factory=lambda: ["localhost"])
    server_ips: list[str] = Field(default_factory=lambda: ["127.0.0.1"])
    delivery_page_size: int = 100
    advertised_url: str | None = Field(
        default=None,
        description="How agents reach the public listener (default https://<host>:<public_port>)",
    )
    # --- security and robustness (issue 14) ---
    max_json_body: int = Field(
        default=64 * 1024, ge=1024, le=1 << 20,
        description="Cap in bytes on the body of every JSON route (enrollment included)",
    )  # fmt: skip
    site_cert_lifetime_s: int = Field(
        default=7 * 24 * 3600, ge=1, le=366 * 24 * 3600,
        description="Lifetime of the site certificates the hub's CA issues (enroll, renew)",
    )  # fmt: skip
    renewal_overlap_s: int = Field(
        default=60, ge=0, le=3600,
        description="After a renewal, how long the previous certificate of the site still "
        "authenticates (requests in flight, a renewal answer lost on the way); then only "
        "the current certificate does",
    )  # fmt: skip
    proxy_headers: bool = Field(
        default=False,
        description="Trust X-Forwarded-For/-Proto from `forwarded_allow_ips` (behind a proxy)",
    )
    forwarded_allow_ips: list[str] = Field(
        default_factory=list, description="Proxy addresses trusted when proxy_headers is on"
    )
    quota_pending_bundles: int = Field(
        default=200, ge=1, description="Per site: bundles started (header in) and not complete"
    )
    quota_bundles_per_day: int = Field(
        default=20_000, ge=1, description="Per site: bundle headers accepted in 24 hours"
    )
    quota_bytes_per_day: int = Field(
        default=500 * 1024**3, ge=1,
        description="Per site: payload bytes of the bundles accepted in 24 hours",
    )  # fmt: skip

    # --- research collections over DICOMweb (issue 11) ---
    collection_key_file: Path | None = Field(
        default=None,
        description="32 random bytes (chmod 600) sealing the collections' private keys; "
        "default <data_dir>/collection.key if that file exists",
    )
    dicomweb_cors_origins: list[str] = Field(
        default_factory=list,
        description="Browser origins (https://viewer.example) allowed to call /dicomweb",
    )
    collection_ingest_poll_s: float = Field(
        default=5.0, gt=0, le=3600,
        description="How often the ingest worker looks for queued collection bundles (a "
        "completion in this process wakes it at once)",
    )  # fmt: skip
    collection_ingest_batch: int = Field(
        default=500, ge=1, le=10_000,
        description="Collection instances verified, stored and indexed per transaction",
    )  # fmt: skip
    collection_ingest_processes: int = Field(
        default=0, ge=0, le=64,
        description="Processes that verify and index collection batches (0: the worker "
        "thread itself); more than one uses more cores",
    )  # fmt: skip
    # --- serving (hub.server) ---
    http_protocol: Literal["h11", "httptools"] = Field(
        default="httptools",
        description="HTTP/1.1 parser of both listeners: httptools (llhttp, the faster one; "
        "request heads capped as h11 caps them) or h11 (pure Python)",
    )  # fmt: skip
    workers: int = Field(
        default=1, ge=1, le=64,
        description="Hub processes serving both listeners on the same sockets (PostgreSQL "
        "only when more than one: the processes share nothing but the database and files)",
    )  # fmt: skip
    qido_max_limit: int = Field(
        default=1000, ge=1, le=100_000,
        description="Most QIDO-RS results in one response; more are paged (a Warning says so)",
    )  # fmt: skip

    @model_validator(mode="after")
    def _absolute_data_dir(self) -> HubSettings:
        self.data_dir = self.data_dir.expanduser().resolve()
        return self

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'hub.db'}"

    @property
    def public_url(self) -> str:
        return self.advertised_url or f"https://{self.host}:{self.public_port}"

    @property
    def ca_dir(self) -> Path:
        return self.data_dir / "ca"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def tls_dir(self) -> Path:
        return self.data_dir / "tls"

    @property
    def server_cert_file(self) -> Path:
        return self.tls_dir / "hub.pem"

    @property
    def server_key_file(self) -> Path:
        return self.tls_dir / "hub.key"

    @property
    def ca_cert_file(self) -> Path:
        return self.ca_dir / "ca.pem"

    @property
    def receipt_key_file(self) -> Path:
        return self.tls_dir / "receipt.key"

    @property
    def collection_key_path(self) -> Path:
        return self.collection_key_file or self.data_dir / "collection.key"
