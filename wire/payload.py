"""The plaintext payload that gets sealed: an uncompressed POSIX (pax) tar stream.

Layout, in this order:
- `contents.json` FIRST: canonical JSON of `PayloadContents`, listing every other member's
  name, sha256 and size;
- one regular-file member per DICOM instance, conventionally `instances/<n>.dcm`
  (`instance_name(n)`), in the order listed.

Contents-first lets a reader check each instance the moment it arrives and hand on only
verified bytes. The price is paid by the writer: `write_payload` reads every instance stream
twice (hash, then copy), so the streams must be seekable — unless the caller already knows a
member's sha256 (e.g. recorded when the file was received): that stream is read once, and the
copy is checked against the given digest. Memory stays bounded by one copy buffer when writing
and by one instance when reading. `out` only needs `write` (a pipe will do).

Tar here is a format over caller-supplied streams; nothing is extracted to disk.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Iterable, Iterator, Mapping
from typing import Annotated, BinaryIO, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from wire.canonical import canonical_json
from wire.errors import PayloadError
from wire.header import Sha256Hex
from wire.version import MAX_CONTENTS_BYTES, MAX_PAYLOAD_MEMBERS

CONTENTS_NAME = "contents.json"
_COPY_BLOCK = 1024 * 1024
_MAX_NAME = 255
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
_REGULAR = (tarfile.REGTYPE, tarfile.AREGTYPE)


def instance_name(n: int) -> str:
    """Conventional member name for the n-th instance."""
    return f"instances/{n}.dcm"


def _safe_name_problem(name: str) -> str | None:
    """Why `name` is not a safe relative member name, or None if it is."""
    if not name or len(name) > _MAX_NAME:
        return "empty or too long"
    if name.startswith("/"):
        return "absolute path"
    parts = name.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            return "empty, '.' or '..' path component"
        if part.startswith("."):
            return "hidden path component"
        if not set(part) <= _NAME_CHARS:
            return "characters outside [A-Za-z0-9._-/]"
    if name == CONTENTS_NAME:
        return f"reserved name {CONTENTS_NAME}"
    return None


def _member_name(name: str) -> str:
    problem = _safe_name_problem(name)
    if problem is not None:
        raise ValueError(f"unsafe member name: {problem}")
    return name


MemberName = Annotated[str, AfterValidator(_member_name)]


class PayloadEntry(BaseModel):
    """One listed member: its name, sha256 hex and size in bytes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: MemberName
    sha256: Sha256Hex
    size: int = Field(ge=0)


class PayloadContents(BaseModel):
    """The payload's table of contents (`contents.json`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    entries: list[PayloadEntry] = Field(max_length=MAX_PAYLOAD_MEMBERS)
    study_count: int = Field(ge=0)

    @model_validator(mode="after")
    def _unique_names(self) -> Self:
        names = [e.name for e in self.entries]
        if len(set(names)) != len(names):
            raise ValueError("entry names must be unique")
        return self

    def to_bytes(self) -> bytes:
        return canonical_json(self.model_dump(mode="json"))


class _HashingReader:
    """Reads through to `stream`, hashing and counting what passes."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.hash = hashlib.sha256()
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self.hash.update(data)
        self.count += len(data)
        return data


def _hash_stream(stream: BinaryIO) -> tuple[str, int]:
    reader = _HashingReader(stream)
    while reader.read(_COPY_BLOCK):
        pass
    return reader.hash.hexdigest(), reader.count


class _CountingWriter:
    """`out` with the `tell` that tarfile's (non-stream) writer asks for; only counts.

    The stream writer ("w|") re-slices its buffer on every write, which is quadratic in the
    write size; the plain writer hands each 1 MiB copy block straight to `out`.
    """

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._offset = 0

    def write(self, data: bytes, /) -> int:
        self._out.write(data)
        self._offset += len(data)
        return len(data)

    def tell(self) -> int:
        return self._offset

    def read(self, size: int, /) -> bytes:
        raise io.UnsupportedOperation("write-only")

    def seek(self, pos: int, /) -> int:
        raise io.UnsupportedOperation("write-only")

    def close(self) -> None:
        """`out` belongs to the caller: tarfile does not close a given fileobj anyway."""


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.mtime = 0
    info.type = tarfile.REGTYPE
    return info


def write_payload(
    out: BinaryIO,
    items: Iterable[tuple[str, BinaryIO, int]],
    *,
    study_count: int = 1,
    known_sha256: Mapping[str, str] | None = None,
) -> PayloadContents:
    """Write the payload tar of `items` (member name, stream, size) to `out`.

    Each stream is read from its current position: once to hash, then rewound and copied
    (so it must be seekable). A member whose name is in `known_sha256` (name -> sha256 hex) is
    not hashed first: the given digest is listed, and the stream is read once while copying.
    Raises PayloadError for an unsafe or duplicate name, a malformed known digest, a stream
    whose length is not its declared size, or a stream that changes between the two reads or
    does not match its known digest. An error can come after part of `out` was written: the
    caller must then discard `out`.
    """
    known = known_sha256 or {}
    listed = list(items)
    if len(listed) > MAX_PAYLOAD_MEMBERS:
        raise PayloadError(f"{len(listed)} members, limit is {MAX_PAYLOAD_MEMBERS}")
    entries: list[PayloadEntry] = []
    for position, (name, stream, size) in enumerate(listed):
        problem = _safe_name_problem(name)
        if problem is not None:
            raise PayloadError(f"item {position}: unsafe member name ({problem})")
        digest = known.get(name)
        if digest is None:
            start = stream.tell()
            digest, actual = _hash_stream(stream)
            if actual != size:
                raise PayloadError(f"item {position} ({name}): {actual} bytes, declared {size}")
            stream.seek(start)
        try:
            entries.append(PayloadEntry(name=name, sha256=digest, size=size))
        except ValidationError:
            raise PayloadError(f"item {position} ({name}): malformed known sha256") from None
    try:
        contents = PayloadContents(entries=entries, study_count=study_count)
    except ValidationError:
        raise PayloadError("member names must be unique and study_count >= 0") from None
    listing = contents.to_bytes()
    with tarfile.TarFile(
        fileobj=_CountingWriter(out),
        mode="w",
        format=tarfile.PAX_FORMAT,
        copybufsize=_COPY_BLOCK,
    ) as tar:
        tar.addfile(_tarinfo(CONTENTS_NAME, len(listing)), io.BytesIO(listing))
        for (name, stream, size), entry in zip(listed, entries, strict=True):
            reader = _HashingReader(stream)
            try:
                tar.addfile(_tarinfo(name, size), reader)
            except OSError:
                raise PayloadError(f"{name}: stream ended early on the second read") from None
            if reader.hash.hexdigest() != entry.sha256:
                if name in known:
                    raise PayloadError(f"{name}: stream does not match its known sha256")
                raise PayloadError(f"{name}: stream changed between hashing and copying")
    return contents


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    handle = tar.extractfile(member)
    if handle is None:
        raise PayloadError(f"{member.name}: not a regular file")
    return handle.read()


def _check_member(member: tarfile.TarInfo) -> None:
    problem = _safe_name_problem(member.name)
    if problem is not None and member.name != CONTENTS_NAME:
        raise PayloadError(f"unsafe member name in payload ({problem})")
    if member.type not in _REGULAR:
        raise PayloadError(f"{member.name}: links, devices and directories are not allowed")


def _read_contents(tar: tarfile.TarFile) -> PayloadContents:
    first = tar.next()
    if first is None:
        raise PayloadError("payload is empty")
    _check_member(first)
    if first.name != CONTENTS_NAME:
        raise PayloadError(f"payload must start with {CONTENTS_NAME}")
    if first.size > MAX_CONTENTS_BYTES:
        raise PayloadError(f"{CONTENTS_NAME} is {first.size} bytes, limit {MAX_CONTENTS_BYTES}")
    try:
        return PayloadContents.model_validate_json(_read_member(tar, first), strict=True)
    except ValidationError as exc:
        raise PayloadError(f"{CONTENTS_NAME} is invalid ({exc.error_count()} errors)") from None


class PiecesReader:
    """A file-like view over plaintext pieces (e.g. `envelope.open_stream`'s), for
    `read_payload`: the agent's inbound path and the hub's collection ingest read a sealed
    bundle's payload through it, one piece in memory at a time."""

    def __init__(self, pieces: Iterator[bytes]) -> None:
        self._pieces = pieces
        self._buffer = bytearray()

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            try:
                self._buffer.extend(next(self._pieces))
            except StopIteration:
                break
        if size < 0:
            size = len(self._buffer)
        out = bytes(self._buffer[:size])
        del self._buffer[:size]
        return out


def read_payload(stream: BinaryIO) -> Iterator[tuple[str, bytes]]:
    """Yield (member name, bytes) for each instance, each checked before it is yielded.

    Checks: `contents.json` first and valid; every member a regular file with a safe relative
    name, listed, not repeated, of the listed size and sha256; and, when the archive ends, that
    no listed member is missing. Raises PayloadError otherwise. After the archive, `stream` is
    read to its end, so errors raised by the stream itself (e.g. TruncatedBundle from
    `open_stream`) surface from this iterator too. Memory: one instance at a time.
    """
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            contents = _read_contents(tar)
            expected = {entry.name: entry for entry in contents.entries}
            seen: set[str] = set()
            while (member := tar.next()) is not None:
                _check_member(member)
                entry = expected.get(member.name)
                if entry is None:
                    raise PayloadError(f"{member.name}: not listed in {CONTENTS_NAME}")
                if member.name in seen:
                    raise PayloadError(f"{member.name}: appears twice")
                if member.size != entry.size:
                    raise PayloadError(f"{member.name}: size {member.size}, listed {entry.size}")
                data = _read_member(tar, member)
                if len(data) != entry.size:
                    raise PayloadError(f"{member.name}: truncated")
                if hashlib.sha256(data).hexdigest() != entry.sha256:
                    raise PayloadError(f"{member.name}: sha256 does not match {CONTENTS_NAME}")
                seen.add(member.name)
                yield member.name, data
            missing = len(expected) - len(seen)
            if missing:
                raise PayloadError(f"payload ended with {missing} listed members missing")
        # Read the stream to its end (tar record padding), so that a decrypting stream
        # underneath runs its own end-of-bundle checks (truncation, extra chunks).
        while stream.read(_COPY_BLOCK):
            pass
    except (tarfile.TarError, EOFError) as exc:
        raise PayloadError(f"payload is not a valid tar stream ({type(exc).__name__})") from None
