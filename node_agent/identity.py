"""The agent's own keys and certificate, kept under <data_dir>/identity (private files 0600)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from node_agent.files import durable_write


class NotEnrolled(Exception):
    pass


def encryption_key_id(raw_public: bytes) -> str:
    return hashlib.sha256(raw_public).hexdigest()[:32]


@dataclass
class AgentIdentity:
    org: str
    site: str
    signing_key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate
    ca_certificate: x509.Certificate
    encryption_key: X25519PrivateKey
    hub_receipt_key: ec.EllipticCurvePublicKey
    folder: Path

    @property
    def key_id(self) -> str:
        raw = self.encryption_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return encryption_key_id(raw)

    @property
    def serial_hex(self) -> str:
        return f"{self.certificate.serial_number:x}"

    @property
    def cert_file(self) -> Path:
        return self.folder / "site.pem"

    @property
    def key_file(self) -> Path:
        return self.folder / "site.key"

    @property
    def ca_file(self) -> Path:
        return self.folder / "ca.pem"


def write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    durable_write(path, data)
    os.chmod(path, 0o600)


def load_identity(folder: Path) -> AgentIdentity:
    meta_file = folder / "identity.json"
    if not meta_file.exists():
        raise NotEnrolled(
            f"this agent is not enrolled ({meta_file} is missing); run "
            "`hexchange-agent enroll --config FILE --token TOKEN` with a token from the "
            "network admin"
        )
    from node_agent.renewal import complete_pending

    complete_pending(folder)
    meta = json.loads(meta_file.read_text())
    signing_key = serialization.load_pem_private_key((folder / "site.key").read_bytes(), None)
    encryption_key = serialization.load_pem_private_key(
        (folder / "encryption.key").read_bytes(), None
    )
    receipt_key = serialization.load_pem_public_key(meta["hub_receipt_public_key_pem"].encode())
    assert isinstance(signing_key, ec.EllipticCurvePrivateKey)
    assert isinstance(encryption_key, X25519PrivateKey)
    assert isinstance(receipt_key, ec.EllipticCurvePublicKey)
    return AgentIdentity(
        org=meta["org"],
        site=meta["site"],
        signing_key=signing_key,
        certificate=x509.load_pem_x509_certificate((folder / "site.pem").read_bytes()),
        ca_certificate=x509.load_pem_x509_certificate((folder / "ca.pem").read_bytes()),
        encryption_key=encryption_key,
        hub_receipt_key=receipt_key,
        folder=folder,
    )
