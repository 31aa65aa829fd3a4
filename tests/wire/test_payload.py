from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.wire.conftest import Party, do_seal
from wire.envelope import open_data_key, open_stream
from wire.errors import PayloadError, TruncatedBundle
from wire.payload import (
    CONTENTS_NAME,
    PayloadContents,
    PayloadEntry,
    instance_name,
    read_payload,
    write_payload,
)

INSTANCES = [b"DICM" + bytes([n]) * (1000 * n + 7) for n in range(3)]


def _items(blobs: list[bytes]) -> list[tuple[str, io.BytesIO, int]]:
    return [(instance_name(n), io.BytesIO(b), len(b)) for n, b in enumerate(blobs)]


def _entry(name: str, data: bytes) -> PayloadEntry:
    return PayloadEntry(name=name, sha256=hashlib.sha256(data).hexdigest(), size=len(data))


def _member(
    name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE
) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
        info.linkname = "instances/0.dcm"
    return info, data


def _craft(members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return out.getvalue()


def _contents(entries: list[PayloadEntry]) -> tuple[tarfile.TarInfo, bytes]:
    data = PayloadContents(entries=entries, study_count=1).to_bytes()
    info = tarfile.TarInfo(CONTENTS_NAME)
    info.size = len(data)
    return info, data


def test_round_trip_three_instances() -> None:
    out = io.BytesIO()
    contents = write_payload(out, _items(INSTANCES))
    assert [e.name for e in contents.entries] == [instance_name(n) for n in range(3)]
    assert contents.study_count == 1
    out.seek(0)
    with tarfile.open(fileobj=out, mode="r:") as tar:
        assert tar.getnames()[0] == CONTENTS_NAME
    out.seek(0)
    assert list(read_payload(out)) == [(instance_name(n), b) for n, b in enumerate(INSTANCES)]


def test_payload_through_the_envelope(
    alice: Party, signing_key: ec.EllipticCurvePrivateKey
) -> None:
    out = io.BytesIO()
    write_payload(out, _items(INSTANCES))
    sealed = do_seal(out.getvalue(), [alice], signing_key, chunk_size=700)
    key = open_data_key(sealed.header, key_id=alice.key_id, private_key=alice.private_key)
    plain = io.BytesIO(b"".join(open_stream(sealed.header, key, sealed.chunks)))
    assert [data for _, data in read_payload(plain)] == INSTANCES


def test_write_reads_streams_from_their_position_and_is_deterministic() -> None:
    blob = b"preamble" + INSTANCES[1]
    first, second = io.BytesIO(), io.BytesIO()
    for out in (first, second):
        stream = io.BytesIO(blob)
        stream.seek(8)
        write_payload(out, [(instance_name(0), stream, len(INSTANCES[1]))])
    assert first.getvalue() == second.getvalue()
    first.seek(0)
    assert list(read_payload(first)) == [(instance_name(0), INSTANCES[1])]


@pytest.mark.parametrize(
    "name", ["../evil", "/etc/passwd", "instances/../../x", "a//b", CONTENTS_NAME, ".hidden"]
)
def test_write_refuses_unsafe_names(name: str) -> None:
    with pytest.raises(PayloadError):
        write_payload(io.BytesIO(), [(name, io.BytesIO(b"x"), 1)])


def test_write_refuses_wrong_size_and_duplicates() -> None:
    with pytest.raises(PayloadError, match="declared"):
        write_payload(io.BytesIO(), [(instance_name(0), io.BytesIO(b"abc"), 4)])
    with pytest.raises(PayloadError):
        write_payload(io.BytesIO(), [(instance_name(0), io.BytesIO(b"a"), 1)] * 2)


class _ReadOnce(io.RawIOBase):
    """A stream that cannot seek: a known digest must spare the hashing read."""

    def __init__(self, data: bytes) -> None:
        super().__init__()
        self._data = io.BytesIO(data)
        self.reads = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        self.reads += 1
        return self._data.read(size)

    def tell(self) -> int:
        raise OSError("not seekable")


def _known(blobs: list[bytes]) -> dict[str, str]:
    return {instance_name(n): hashlib.sha256(b).hexdigest() for n, b in enumerate(blobs)}


def test_known_digests_read_each_stream_once_and_write_the_same_bytes() -> None:
    plain, known = io.BytesIO(), io.BytesIO()
    write_payload(plain, _items(INSTANCES))
    streams = [_ReadOnce(b) for b in INSTANCES]
    items = [
        (instance_name(n), s, len(b))
        for n, (s, b) in enumerate(zip(streams, INSTANCES, strict=True))
    ]
    write_payload(known, items, known_sha256=_known(INSTANCES))  # type: ignore[arg-type]
    assert known.getvalue() == plain.getvalue()
    known.seek(0)
    assert [data for _, data in read_payload(known)] == INSTANCES


def test_known_digests_are_checked_while_copying() -> None:
    wrong = {**_known(INSTANCES), instance_name(1): hashlib.sha256(b"other").hexdigest()}
    with pytest.raises(PayloadError, match="known sha256"):
        write_payload(io.BytesIO(), _items(INSTANCES), known_sha256=wrong)
    with pytest.raises(PayloadError, match="malformed"):
        write_payload(io.BytesIO(), _items(INSTANCES), known_sha256={instance_name(0): "xyz"})
    short = [(instance_name(0), io.BytesIO(b"abc"), 4)]
    with pytest.raises(PayloadError, match="ended early"):
        write_payload(io.BytesIO(), short, known_sha256=_known([b"abcd"]))


def test_evil_member_name() -> None:
    evil = b"owned"
    data = _craft([_contents([]), _member("../evil", evil)])
    with pytest.raises(PayloadError, match="unsafe"):
        list(read_payload(io.BytesIO(data)))


def test_evil_name_in_contents_listing() -> None:
    listing = (
        b'{"entries":[{"name":"../evil","sha256":"' + b"0" * 64 + b'","size":1}],"study_count":1}'
    )
    info = tarfile.TarInfo(CONTENTS_NAME)
    info.size = len(listing)
    with pytest.raises(PayloadError):
        list(read_payload(io.BytesIO(_craft([(info, listing)]))))


def test_member_not_in_contents() -> None:
    data = _craft(
        [
            _contents([_entry("instances/0.dcm", b"a")]),
            _member("instances/0.dcm", b"a"),
            _member("instances/9.dcm", b"b"),
        ]
    )
    reader = read_payload(io.BytesIO(data))
    assert next(reader) == ("instances/0.dcm", b"a")
    with pytest.raises(PayloadError, match="not listed"):
        next(reader)


def test_wrong_digest() -> None:
    data = _craft([_contents([_entry("instances/0.dcm", b"a")]), _member("instances/0.dcm", b"b")])
    with pytest.raises(PayloadError, match="sha256"):
        list(read_payload(io.BytesIO(data)))


def test_wrong_size() -> None:
    data = _craft([_contents([_entry("instances/0.dcm", b"a")]), _member("instances/0.dcm", b"ab")])
    with pytest.raises(PayloadError, match="size"):
        list(read_payload(io.BytesIO(data)))


def test_missing_member() -> None:
    entries = [_entry("instances/0.dcm", b"a"), _entry("instances/1.dcm", b"b")]
    data = _craft([_contents(entries), _member("instances/0.dcm", b"a")])
    with pytest.raises(PayloadError, match="missing"):
        list(read_payload(io.BytesIO(data)))


def test_duplicate_member() -> None:
    data = _craft(
        [
            _contents([_entry("instances/0.dcm", b"a")]),
            _member("instances/0.dcm", b"a"),
            _member("instances/0.dcm", b"a"),
        ]
    )
    with pytest.raises(PayloadError, match="twice"):
        list(read_payload(io.BytesIO(data)))


@pytest.mark.parametrize(
    "kind", [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE, tarfile.DIRTYPE, tarfile.FIFOTYPE]
)
def test_links_devices_and_directories(kind: bytes) -> None:
    data = _craft(
        [_contents([_entry("instances/1.dcm", b"")]), _member("instances/1.dcm", kind=kind)]
    )
    with pytest.raises(PayloadError, match="not allowed"):
        list(read_payload(io.BytesIO(data)))


def test_contents_must_come_first() -> None:
    data = _craft([_member("instances/0.dcm", b"a"), _contents([_entry("instances/0.dcm", b"a")])])
    with pytest.raises(PayloadError, match="start with"):
        list(read_payload(io.BytesIO(data)))


@pytest.mark.parametrize("data", [b"", b"garbage" * 200])
def test_not_a_tar(data: bytes) -> None:
    with pytest.raises(PayloadError):
        list(read_payload(io.BytesIO(data)))


def test_truncated_tar() -> None:
    out = io.BytesIO()
    write_payload(out, _items(INSTANCES))
    with pytest.raises(PayloadError):
        list(read_payload(io.BytesIO(out.getvalue()[:3000])))


def test_reader_drains_the_stream_so_the_envelope_checks_its_end(
    alice: Party, signing_key: ec.EllipticCurvePrivateKey
) -> None:
    out = io.BytesIO()
    write_payload(out, _items(INSTANCES))
    out.write(b"\0" * 5000)  # more than tarfile buffers
    out.seek(0)
    assert len(list(read_payload(out))) == 3
    assert out.read() == b""

    class Plain:
        def __init__(self, pieces: Iterator[bytes]) -> None:
            self._pieces, self._buffer = pieces, b""

        def read(self, size: int = -1) -> bytes:
            while size < 0 or len(self._buffer) < size:
                piece = next(self._pieces, None)
                if piece is None:
                    break
                self._buffer += piece
            data, self._buffer = (
                (self._buffer, b"") if size < 0 else (self._buffer[:size], self._buffer[size:])
            )
            return data

    sealed = do_seal(out.getvalue(), [alice], signing_key, chunk_size=1024)
    key = open_data_key(sealed.header, key_id=alice.key_id, private_key=alice.private_key)
    reader = read_payload(Plain(open_stream(sealed.header, key, sealed.chunks[:-1])))  # type: ignore[arg-type]
    with pytest.raises(TruncatedBundle):
        list(reader)
