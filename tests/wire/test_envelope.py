from __future__ import annotations

import io
import random

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.wire.conftest import SMALL_CHUNK, ListSink, Party, do_seal, make_draft, make_party
from wire.envelope import (
    add_recipient,
    check_chunk,
    open_chunk,
    open_data_key,
    open_stream,
    parse_header,
    seal,
    verify_header,
)
from wire.errors import (
    NotARecipient,
    SignatureInvalid,
    TamperedChunk,
    TruncatedBundle,
    WireError,
)
from wire.version import WIRE_VERSION


def _open_all(
    header_bytes: bytes, chunks: list[bytes], party: Party, signer: ec.EllipticCurvePublicKey
) -> bytes:
    header = parse_header(header_bytes)
    verify_header(header, signer)
    key = open_data_key(header, key_id=party.key_id, private_key=party.private_key)
    return b"".join(open_stream(header, key, chunks))


class OneByteReader(io.RawIOBase):
    """A source that returns at most one byte per read, to exercise short reads."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        return self._data.read(min(size, 1) if size >= 0 else 1)


@pytest.mark.parametrize(
    ("size", "chunks"),
    [(0, 1), (1, 1), (SMALL_CHUNK - 1, 1), (SMALL_CHUNK, 1), (3 * SMALL_CHUNK + 5, 4)],
)
def test_round_trip(
    size: int, chunks: int, alice: Party, signing_key: ec.EllipticCurvePrivateKey
) -> None:
    plaintext = random.Random(size).randbytes(size)
    sealed = do_seal(plaintext, [alice], signing_key)
    manifest = sealed.header.manifest
    assert len(sealed.chunks) == manifest.chunk_count == chunks
    assert manifest.payload_bytes == size
    assert manifest.chunk_size == SMALL_CHUNK
    assert manifest.wire_version == WIRE_VERSION
    opened = _open_all(sealed.header.to_bytes(), sealed.chunks, alice, signing_key.public_key())
    assert opened == plaintext


def test_round_trip_random_sizes_seeded(
    alice: Party, signing_key: ec.EllipticCurvePrivateKey
) -> None:
    rng = random.Random(20250101)
    for _ in range(25):
        chunk_size = rng.randint(1, 300)
        size = rng.randint(0, 5 * chunk_size)
        plaintext = rng.randbytes(size)
        sealed = do_seal(plaintext, [alice], signing_key, chunk_size=chunk_size)
        assert len(sealed.chunks) == max(1, -(-size // chunk_size))
        opened = _open_all(sealed.header.to_bytes(), sealed.chunks, alice, signing_key.public_key())
        assert opened == plaintext, (chunk_size, size)


def test_short_reads_from_source(alice: Party, signing_key: ec.EllipticCurvePrivateKey) -> None:
    plaintext = bytes(range(256)) * 10
    sink = ListSink()
    header = seal(
        OneByteReader(plaintext),  # type: ignore[arg-type]
        sink,
        draft=make_draft(),
        recipients=[alice.recipient],
        signing_key=signing_key,
        signer_key_id="s",
        chunk_size=1000,
    )
    assert header.manifest.chunk_count == 3
    assert [len(c) for c in sink.chunks] == [1016, 1016, 576]
    assert _open_all(header.to_bytes(), sink.chunks, alice, signing_key.public_key()) == plaintext


def test_two_recipients_open_third_cannot(
    alice: Party, bob: Party, signing_key: ec.EllipticCurvePrivateKey
) -> None:
    sealed = do_seal(b"x" * 3000, [alice, bob], signing_key)
    assert (
        _open_all(sealed.header.to_bytes(), sealed.chunks, alice, signing_key.public_key())
        == sealed.plaintext
    )
    assert (
        _open_all(sealed.header.to_bytes(), sealed.chunks, bob, signing_key.public_key())
        == sealed.plaintext
    )
    carol = make_party("carol-key")
    with pytest.raises(NotARecipient):
        open_data_key(sealed.header, key_id=carol.key_id, private_key=carol.private_key)
    # Carol claiming Alice's stanza still cannot open it.
    with pytest.raises(NotARecipient):
        open_data_key(sealed.header, key_id=alice.key_id, private_key=carol.private_key)


def test_flipped_byte_is_tampered(alice: Party, signing_key: ec.EllipticCurvePrivateKey) -> None:
    sealed = do_seal(b"a" * 2500, [alice], signing_key)
    key = open_data_key(sealed.header, key_id=alice.key_id, private_key=alice.private_key)
    chunks = list(sealed.chunks)
    broken = bytearray(chunks[1])
    broken[7] ^= 0x01
    chunks[1] = bytes(broken)
    with pytest.raises(TamperedChunk) as info:
        list(open_stream(sealed.header, key, chunks))
    assert info.value.index == 1
    with pytest.raises(TamperedChunk):
        check_chunk(sealed.header, 1, chunks[1])
    check_chunk(sealed.header, 1, sealed.chunks[1])


def test_truncated_bundle(alice: Party, signing_key: ec.EllipticCurvePrivateKey) -> None:
    sealed = do_seal(b"b" * 2500, [alice], signing_key)
    key = open_data_key(sealed.header, key_id=alice.key_id, private_key=alice.private_key)
    with pytest.raises(TruncatedBundle):
        list(open_stream(sealed.header, key, sealed.chunks[:-1]))


def test_reordered_chunks(alice: Party, signing_key: ec.EllipticCurvePrivateKey) -> None:
    sealed = do_seal(b"c" * 3500, [alice], signing_key)
    key = open_data_key(sealed.header, key_id=alice.key_id, private_key=alice.private_key)
    chunks = list(sealed.chunks)
    chunks[0], chunks[1] = chunks[1], chunks[0]
    with pytest.raises(TamperedChunk) as info:
        list(open_stream(sealed.header, key, chunks))
    assert info.value.index == 0


def test_extra_chunk(alice: Party, signing_key: ec.EllipticCurvePrivateKey) -> None:
    sealed = do_seal(b"d" * 1500, [alice], signing_key)
    key = open_data_key(sealed.header, key_id=alice.key_id, private_key=alice.private_key)
    with pytest.raises(WireError, match="more than"):
        list(open_stream(sealed.header, key, [*sealed.chunks, sealed.chunks[-1]]))
    with pytest.raises(TamperedChunk):
        check_chunk(sealed.header, len(sealed.chunks), sealed.chunks[-1])


def test_aad_binds_position_even_if_digests_are_bypassed(
    alice: Party, signing_key: ec.EllipticCurvePrivateKey
) -> None:
    # A chunk moved to another index fails authentication, not only the digest check:
    # forge a header whose digest list matches the swapped order.
    sealed = do_seal(b"e" * 2048, [alice], signing_key)  # two full chunks, same length
    key = open_data_key(sealed.header, key_id=alice.key_id, private_key=alice.private_key)
    swapped = sealed.header.model_copy(
        update={"chunk_digests": list(reversed(sealed.header.chunk_digests))}
    )
    with pytest.raises(TamperedChunk, match="authentication"):
        open_chunk(swapped, key, 0, sealed.chunks[1])


def test_wrong_signer_key(alice: Party, signing_key: ec.EllipticCurvePrivateKey) -> None:
    sealed = do_seal(b"f", [alice], signing_key)
    other = ec.generate_private_key(ec.SECP256R1())
    verify_header(sealed.header, signing_key.public_key())
    with pytest.raises(SignatureInvalid):
        verify_header(sealed.header, other.public_key())


def test_header_edited_after_signing(alice: Party, signing_key: ec.EllipticCurvePrivateKey) -> None:
    sealed = do_seal(b"g", [alice], signing_key)
    edited_manifest = sealed.header.manifest.model_copy(
        update={"recipients": ["hospital-b", "attacker-org"]}
    )
    edited = sealed.header.model_copy(update={"manifest": edited_manifest})
    reparsed = parse_header(edited.to_bytes())
    with pytest.raises(SignatureInvalid):
        verify_header(reparsed, signing_key.public_key())


def test_add_recipient(alice: Party, bob: Party, signing_key: ec.EllipticCurvePrivateKey) -> None:
    sealed = do_seal(b"h" * 2100, [alice], signing_key)
    with pytest.raises(NotARecipient):
        open_data_key(sealed.header, key_id=bob.key_id, private_key=bob.private_key)
    key = open_data_key(sealed.header, key_id=alice.key_id, private_key=alice.private_key)
    chunks_before = list(sealed.chunks)
    extended = add_recipient(
        sealed.header,
        data_key=key,
        recipient=bob.recipient,
        signing_key=signing_key,
        signer_key_id="serial-01",
        recipient_org="research-c",
    )
    assert sealed.chunks == chunks_before
    assert extended.chunk_digests == sealed.header.chunk_digests
    assert extended.manifest.recipients == ["hospital-b", "research-c"]
    assert len(extended.stanzas) == 2
    verify_header(extended, signing_key.public_key())
    # The old signature does not cover the new header.
    stale = extended.model_copy(update={"signature": sealed.header.signature})
    with pytest.raises(SignatureInvalid):
        verify_header(stale, signing_key.public_key())
    assert (
        _open_all(extended.to_bytes(), sealed.chunks, bob, signing_key.public_key())
        == sealed.plaintext
    )
    assert (
        _open_all(extended.to_bytes(), sealed.chunks, alice, signing_key.public_key())
        == sealed.plaintext
    )


def test_add_recipient_refuses_wrong_key_and_duplicates(
    alice: Party, bob: Party, signing_key: ec.EllipticCurvePrivateKey
) -> None:
    sealed = do_seal(b"i", [alice], signing_key)
    key = open_data_key(sealed.header, key_id=alice.key_id, private_key=alice.private_key)
    with pytest.raises(WireError, match="does not belong"):
        add_recipient(
            sealed.header,
            data_key=bytes(32),
            recipient=bob.recipient,
            signing_key=signing_key,
            signer_key_id="s",
        )
    with pytest.raises(WireError, match="already has a stanza"):
        add_recipient(
            sealed.header,
            data_key=key,
            recipient=alice.recipient,
            signing_key=signing_key,
            signer_key_id="s",
        )


def test_wrong_data_key_is_not_reported_as_tampering(
    alice: Party, signing_key: ec.EllipticCurvePrivateKey
) -> None:
    sealed = do_seal(b"j", [alice], signing_key)
    with pytest.raises(WireError, match="does not belong") as info:
        open_chunk(sealed.header, bytes(32), 0, sealed.chunks[0])
    assert not isinstance(info.value, TamperedChunk)


def test_each_seal_uses_a_fresh_data_key(
    alice: Party, signing_key: ec.EllipticCurvePrivateKey
) -> None:
    one = do_seal(b"same", [alice], signing_key)
    two = do_seal(b"same", [alice], signing_key)
    assert one.header.key_commitment != two.header.key_commitment
    assert one.chunks != two.chunks


def test_seal_rejects_duplicate_recipient_keys(
    alice: Party, signing_key: ec.EllipticCurvePrivateKey
) -> None:
    with pytest.raises(WireError):
        do_seal(b"k", [alice, alice], signing_key)
    with pytest.raises(WireError):
        do_seal(b"k", [], signing_key)


def test_aad_marks_the_last_chunk(alice: Party, signing_key: ec.EllipticCurvePrivateKey) -> None:
    # Drop the last chunk and forge a header that claims the bundle ended there: the chunk
    # sealed as "not last" refuses to open as the last one.
    sealed = do_seal(b"l" * (3 * SMALL_CHUNK), [alice], signing_key)
    key = open_data_key(sealed.header, key_id=alice.key_id, private_key=alice.private_key)
    manifest = sealed.header.manifest.model_copy(
        update={"payload_bytes": 2 * SMALL_CHUNK, "chunk_count": 2}
    )
    forged = sealed.header.model_copy(
        update={"manifest": manifest, "chunk_digests": sealed.header.chunk_digests[:2]}
    )
    with pytest.raises(TamperedChunk, match="authentication") as info:
        list(open_stream(forged, key, sealed.chunks[:2]))
    assert info.value.index == 1
