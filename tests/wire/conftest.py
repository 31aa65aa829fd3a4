from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from wire.envelope import RecipientKey, SealedHeader, seal
from wire.manifest import ManifestDraft, new_bundle_id

SMALL_CHUNK = 1024


@dataclass
class ListSink:
    chunks: list[bytes] = field(default_factory=list)

    def write_chunk(self, index: int, data: bytes) -> None:
        assert index == len(self.chunks), "chunks must arrive in order"
        self.chunks.append(data)


@dataclass
class Party:
    key_id: str
    private_key: X25519PrivateKey

    @property
    def recipient(self) -> RecipientKey:
        return RecipientKey(key_id=self.key_id, public_key=self.private_key.public_key())


def make_party(key_id: str) -> Party:
    return Party(key_id=key_id, private_key=X25519PrivateKey.generate())


def make_draft(recipients: list[str] | None = None) -> ManifestDraft:
    return ManifestDraft(
        bundle_id=new_bundle_id(),
        sender_org="clinic-a",
        sender_site="main",
        recipients=recipients or ["hospital-b"],
        mode="identified",
        instance_count=3,
        modalities=["CT"],
        created_at=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
    )


@dataclass
class Sealed:
    header: SealedHeader
    chunks: list[bytes]
    plaintext: bytes


@pytest.fixture
def signing_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def alice() -> Party:
    return make_party("alice-key")


@pytest.fixture
def bob() -> Party:
    return make_party("bob-key")


def do_seal(
    plaintext: bytes,
    parties: list[Party],
    signing_key: ec.EllipticCurvePrivateKey,
    chunk_size: int = SMALL_CHUNK,
) -> Sealed:
    sink = ListSink()
    header = seal(
        io.BytesIO(plaintext),
        sink,
        draft=make_draft(),
        recipients=[p.recipient for p in parties],
        signing_key=signing_key,
        signer_key_id="serial-01",
        chunk_size=chunk_size,
    )
    return Sealed(header=header, chunks=sink.chunks, plaintext=plaintext)
