"""Agent configuration: one TOML file, validated at start with errors that name the key."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from node_agent.answer_policy import AnsweringSection
from node_agent.dicom.pacs_config import PacsSection
from node_agent.dicom.qr_config import QrSection


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AgentSection(_Model):
    data_dir: Path = Field(description="Spool, outbox, keys and the agent's SQLite state")
    name: str = Field(default="hexchange-agent", description="Free text shown in status")
    heartbeat_seconds: float = Field(
        default=30.0,
        ge=1.0,
        le=3600.0,
        description="How often the agent reports its queues to the hub; the hub's fleet view "
        "marks the site stale after six missed reports",
    )


class HubSection(_Model):
    public_url: str = Field(description="Hub public API (enrollment), e.g. https://hub:8444")
    node_url: str = Field(description="Hub node API (mutual TLS), e.g. https://hub:8443")
    ca_file: Path = Field(description="The network CA certificate, given by the network admin")
    timeout_seconds: float = 30.0


class DicomSection(_Model):
    ae_title: str = "HEXCHANGE"
    host: str = "127.0.0.1"
    port: int = Field(default=11112, ge=1, le=65535)
    allowed_calling_aes: list[str] = Field(default_factory=list)
    tls_cert_file: Path | None = Field(
        default=None, description="DICOM TLS: the receiver's certificate (PEM); off when unset"
    )
    tls_key_file: Path | None = None
    tls_client_ca_file: Path | None = Field(
        default=None, description="DICOM TLS: require client certificates issued by this CA"
    )

    @model_validator(mode="after")
    def _tls_pair(self) -> DicomSection:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("dicom.tls_cert_file and dicom.tls_key_file go together")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError("dicom.tls_client_ca_file needs tls_cert_file and tls_key_file")
        return self

    @field_validator("ae_title")
    @classmethod
    def _ae(cls, value: str) -> str:
        if not 0 < len(value) <= 16 or "\\" in value:
            raise ValueError("an AE title is 1 to 16 characters without backslashes")
        return value


class PipelineSection(_Model):
    quiet_period_seconds: float = Field(default=30.0, ge=0)
    quiet_period_by_source: dict[str, float] = Field(
        default_factory=dict,
        description="Quiet period in seconds per calling AE title, for sources that send a "
        "study in bursts (e.g. a scanner that sends reconstructions minutes later); others "
        "get quiet_period_seconds. A study waits for the longest period of its sources",
    )
    part_mib: float = Field(
        default=64.0,
        ge=0,
        description="Seal and send a study that is still arriving in parts of this many MiB "
        "(a part ends with the instance that reaches the size; it is sealed as soon as that "
        "instance is spooled), so the upload overlaps the receive; the rest, less than a "
        "part, goes after the quiet period. 0: send only whole studies, after the quiet period",
    )
    poll_seconds: float = Field(default=1.0, gt=0)
    policy_poll_seconds: float = Field(default=60.0, gt=0, description="Policy refresh period")

    @field_validator("quiet_period_by_source")
    @classmethod
    def _sources(cls, value: dict[str, float]) -> dict[str, float]:
        for ae, seconds in value.items():
            if not 0 < len(ae.strip()) <= 16 or "\\" in ae:
                raise ValueError(f"{ae!r} is not an AE title (1 to 16 characters, no backslash)")
            if seconds < 0:
                raise ValueError(f"the quiet period for {ae} must be 0 or more seconds")
        return {ae.strip(): seconds for ae, seconds in value.items()}

    def quiet_period_for(self, calling_ae: str | None) -> float:
        """The quiet period for instances from this calling AE title."""
        if calling_ae is not None:
            found = self.quiet_period_by_source.get(calling_ae.strip())
            if found is not None:
                return found
        return self.quiet_period_seconds


class Destination(_Model):
    """Where one study goes, as the site's sharing policy (from the hub) decides."""

    org: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    mode: Literal["identified", "deidentified"] = "identified"
    priority: int = Field(default=100, description="Lower is sent first")
    deid_options: tuple[str, ...] = ()
    recipe: str | None = Field(default=None, description="the rule's site recipe (TOML)")
    pixel_policy: str = Field(default="blank", description="the rule's burned-in text policy")
    station_names: tuple[str, ...] = Field(
        default=(), description="the station names the rule matches on (the hub may see these)"
    )


class InboundSection(_Model):
    enabled: bool = True
    store: Literal["folder", "pacs"] = "folder"
    folder: Path | None = None
    pacs_host: str = "127.0.0.1"
    pacs_port: int = 4242
    pacs_ae_title: str = "ORTHANC"
    poll_seconds: float = Field(default=2.0, gt=0)


class DeidentifySection(_Model):
    key_file: Path | None = Field(
        default=None, description="Pseudonym secret (>= 32 bytes) issued for the network"
    )
    options: list[str] = Field(default_factory=list)
    pixel_rules_file: Path | None = Field(
        default=None,
        description="The site's own burned-in text layouts (TOML), added to the starter library",
    )
    pixel_learned: Literal["auto", "off", "every-frame"] = Field(
        default="auto",
        description="The learned text detector (pixel policy `learned`): auto = on frames where "
        "the classical screen found text; off saves its CPU and its worker process (~245 MiB "
        "peak, beside the agent)",
    )


class UploadSection(_Model):
    retry_base_seconds: float = Field(default=2.0, gt=0)
    retry_max_seconds: float = Field(default=600.0, gt=0)
    max_bytes_per_second: int | None = Field(
        default=None, gt=0, description="Bandwidth cap for uploads (leave room on a small link)"
    )
    offpeak_windows: list[str] = Field(
        default_factory=list,
        description="Local-time windows like 19:00-07:00; when set, bundles above "
        "urgent_priority are only uploaded inside them",
    )
    urgent_priority: int = Field(
        default=10, description="Bundles at or below this priority go at any time"
    )

    @field_validator("offpeak_windows")
    @classmethod
    def _windows(cls, value: list[str]) -> list[str]:
        from node_agent.throttle import Window

        for text in value:
            Window.parse(text)
        return value

    chunk_size_bytes: int = Field(
        default=1 << 20,
        ge=256 << 10,
        le=4 << 20,
        description="Sealed chunk size, the unit of upload and resume: a cut link resends at "
        "most one chunk, so slow links want small chunks. The hub accepts up to 4 MiB; a header "
        "lists at most ~15,000 chunks (256 KiB chunks: studies up to ~3.9 GB)",
    )
    parallel_chunks: int = Field(
        default=4,
        ge=1,
        le=16,
        description="Chunks in flight at once while chunks go through fast (each within "
        "a second, e.g. a LAN); after a slow chunk or an error, one at a time again, so a cut "
        "on a slow link still costs at most one partial chunk. Memory: one chunk each",
    )


class MetricsSection(_Model):
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=9464, ge=1, le=65535)


class AgentConfig(_Model):
    agent: AgentSection
    hub: HubSection
    dicom: DicomSection = DicomSection()
    pipeline: PipelineSection = PipelineSection()
    inbound: InboundSection = InboundSection()
    deidentify: DeidentifySection = DeidentifySection()
    upload: UploadSection = UploadSection()
    metrics: MetricsSection = MetricsSection()
    pacs: PacsSection | None = None
    answering: AnsweringSection | None = None  # federated queries from other orgs
    query_retrieve: QrSection | None = None  # Q/R SCP forwarding queries to other orgs

    @model_validator(mode="after")
    def _deidentified_answers_need_the_key(self) -> AgentConfig:
        rules = self.answering.rules if self.answering is not None else []
        for index, rule in enumerate(rules):
            if rule.mode == "deidentified" and self.deidentify.key_file is None:
                raise ValueError(
                    f"answering.rules.{index} (org {rule.org}) answers de-identified: set "
                    "[deidentify] key_file, the network's pseudonym secret"
                )
        return self

    @property
    def received_folder(self) -> Path:
        return self.inbound.folder or self.agent.data_dir / "received"


class ConfigError(Exception):
    pass


def load_config(path: Path) -> AgentConfig:
    """Read and validate the TOML file; errors name the key and say what is expected."""
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    base = path.parent.resolve()
    for section, key in (
        ("agent", "data_dir"),
        ("hub", "ca_file"),
        ("inbound", "folder"),
        ("deidentify", "key_file"),
        ("deidentify", "pixel_rules_file"),
        ("dicom", "tls_cert_file"),
        ("dicom", "tls_key_file"),
        ("dicom", "tls_client_ca_file"),
    ):
        value = raw.get(section, {}).get(key)
        if isinstance(value, str) and not Path(value).is_absolute():
            raw[section][key] = str(base / value)
    try:
        return AgentConfig.model_validate(raw)
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            key = ".".join(str(p) for p in error["loc"])
            lines.append(f"  {key}: {error['msg']}")
        raise ConfigError(f"{path} has invalid settings:\n" + "\n".join(lines)) from exc
