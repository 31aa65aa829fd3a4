"""First-time set-up of a hub's data folder: CA, server certificate, receipt key, schema."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from certs.registry import CADirectory
from hub.db import create_schema, make_engine
from hub.settings import HubSettings
from hub.storage import durable_write


@dataclass(frozen=True)
class InitReport:
    created_ca: bool
    created_server_cert: bool
    created_receipt_key: bool


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    durable_write(path, data)
    os.chmod(path, 0o600)


def load_receipt_key(path: Path) -> ec.EllipticCurvePrivateKey:
    if not path.exists():
        raise FileNotFoundError(
            f"hub receipt key {path} is missing; run `hexchange-hub init` for this data folder"
        )
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{path} does not hold an EC private key")
    return key


def init_hub(settings: HubSettings, *, network_name: str = "Hexchange network") -> InitReport:
    """Create what is missing; never overwrite what exists (safe to run again)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    registry = CADirectory(settings.ca_dir)
    created_ca = False
    if not registry.exists():
        registry.init(network_name)
        created_ca = True
    created_cert = False
    if not settings.server_cert_file.exists() or created_ca:
        cert_pem, key_pem = registry.server_certificate(
            settings.server_hostnames, settings.server_ips
        )
        _write_private(settings.server_key_file, key_pem)
        durable_write(settings.server_cert_file, cert_pem)
        created_cert = True
    created_receipt = False
    if not settings.receipt_key_file.exists():
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _write_private(settings.receipt_key_file, pem)
        created_receipt = True
    create_schema(make_engine(settings.db_url))
    return InitReport(created_ca, created_cert, created_receipt)
