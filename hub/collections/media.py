"""Bytes for WADO-RS and STOW-RS: multipart/related bodies, frames, bulk data and rendered
images of stored instances (PS3.18 8.7 and 10.4). No HTTP framework here."""

from __future__ import annotations

import email.parser
import email.policy
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.pixels.processing import apply_voi_lut
from pydicom.tag import Tag

from hub.errors import HubError

# transfer syntax -> media type of its frames (PS3.18 Table 8.7.3-2)
FRAME_MEDIA = {
    "1.2.840.10008.1.2.4.50": "image/jpeg",
    "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg",
    "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls",
    "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2",
    "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.5": "image/x-dicom-rle",
}


class NotAcceptable(HubError):
    title = "Not acceptable"


class BadPayload(HubError):
    title = "Bad request"


@dataclass(frozen=True)
class Part:
    content_type: str
    data: bytes
    location: str = ""


def boundary_header(media: str, boundary: str, transfer_syntax: str | None = None) -> str:
    syntax = f"; transfer-syntax={transfer_syntax}" if transfer_syntax else ""
    return f'multipart/related; type="{media}"; boundary={boundary}{syntax}'


def encode_parts(parts: Iterable[Part], boundary: str) -> Iterator[bytes]:
    marker = f"--{boundary}".encode()
    for part in parts:
        head = f"Content-Type: {part.content_type}\r\n"
        if part.location:
            head += f"Content-Location: {part.location}\r\n"
        yield marker + b"\r\n" + head.encode() + b"\r\n"
        yield part.data
        yield b"\r\n"
    yield marker + b"--\r\n"


# a WADO-RS body reads stored files this many bytes at a time: memory per retrieve is bounded
# whatever the instance size, and a typical instance (a CT slice, 0.5 MiB) is one read
STREAM_CHUNK = 1 << 20


def file_parts(
    paths: Iterable[Path], content_type: str, boundary: str, chunk: int = STREAM_CHUNK
) -> Iterator[bytes]:
    """multipart/related parts holding files, as `encode_parts` writes them, read `chunk` bytes
    at a time (never a whole file in memory). A part's head and the previous part's end ride
    with its first piece, so a file of up to `chunk` bytes is one piece."""
    marker = f"--{boundary}".encode()
    head = marker + f"\r\nContent-Type: {content_type}\r\n\r\n".encode()
    pending = b""
    for path in paths:
        pending += head
        with path.open("rb") as handle:
            while piece := handle.read(chunk):
                yield pending + piece if pending else piece
                pending = b""
        pending += b"\r\n"
    yield pending + marker + b"--\r\n"


def decode_parts(content_type: str, body: bytes) -> list[Part]:
    """Split a multipart/related body (STOW-RS) into its parts."""
    if not content_type.lower().startswith("multipart/related"):
        raise BadPayload(
            'STOW-RS takes multipart/related; type="application/dicom" bodies, one DICOM file '
            "per part"
        )
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise BadPayload("the multipart body has no boundary or no parts")
    parts = []
    for sub in message.iter_parts():
        payload = sub.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        parts.append(Part(sub.get_content_type(), data))
    if not parts:
        raise BadPayload("the multipart body holds no parts")
    return parts


def accepts(accept: str | None, media: str) -> bool:
    """Whether an Accept header value allows `media` (a part type inside multipart/related
    or a plain type); no header or a wildcard allows everything."""
    if not accept:
        return True
    for item in accept.split(","):
        item = item.strip().lower()
        if not item or item.startswith("*/*"):
            return True
        if item.startswith("multipart/related"):
            kind = ""
            for param in item.split(";")[1:]:
                name, _, value = param.strip().partition("=")
                if name == "type":
                    kind = value.strip('"')
            wildcard = kind.endswith("/*") and media.startswith(kind[:-1])
            if not kind or kind in (media, "*/*") or wildcard:
                return True
        elif item.split(";")[0].strip() == media:
            return True
    return False


def requested_syntaxes(accept: str | None) -> set[str]:
    """The transfer-syntax parameters named in an Accept header ('*' for any)."""
    found: set[str] = set()
    for item in (accept or "").split(","):
        for param in item.split(";")[1:]:
            name, _, value = param.strip().partition("=")
            if name.lower() == "transfer-syntax":
                found.add(value.strip('"'))
    return found


def load(data: bytes) -> Dataset:
    return dcmread(io.BytesIO(data))


def frame_media(ds: Dataset) -> str:
    return FRAME_MEDIA.get(str(ds.file_meta.TransferSyntaxUID), "application/octet-stream")


def frames(ds: Dataset, numbers: list[int]) -> list[bytes]:
    """Frames 1..N as stored: native frames cut from Pixel Data, encapsulated ones as they are."""
    if "PixelData" not in ds:
        raise NotAcceptable("this instance has no pixel data, so no frames")
    count = int(ds.get("NumberOfFrames", 1) or 1)
    bad = [n for n in numbers if not 1 <= n <= count]
    if bad:
        from hub.errors import NotFound

        raise NotFound(f"frames {bad} are outside 1..{count} of this instance")
    if ds.file_meta.TransferSyntaxUID.is_encapsulated:
        stored = list(generate_frames(ds.PixelData, number_of_frames=count))
        return [stored[n - 1] for n in numbers]
    size = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1))
    size = size * int(ds.BitsAllocated) // 8
    pixel = bytes(ds.PixelData)
    return [pixel[(n - 1) * size : n * size] for n in numbers]


def bulk(ds: Dataset, tag_hex: str) -> bytes:
    from hub.errors import NotFound

    try:
        tag = Tag(int(tag_hex, 16))
    except ValueError:
        raise NotFound(f"{tag_hex!r} is not a tag") from None
    if tag not in ds:
        raise NotFound(f"this instance has no attribute {tag_hex}")
    value = ds[tag].value
    if not isinstance(value, bytes | bytearray):
        raise NotFound(f"attribute {tag_hex} is not bulk data")
    return bytes(value)


def render(ds: Dataset, media: str, *, size: int | None = None, frame: int = 1) -> bytes:
    """A frame as PNG or JPEG for a browser: VOI LUT or window applied, scaled to 8 bits."""
    if "PixelData" not in ds:
        raise NotAcceptable("this instance has no pixel data to render")
    count = int(ds.get("NumberOfFrames", 1) or 1)
    if not 1 <= frame <= count:
        from hub.errors import NotFound

        raise NotFound(f"frame {frame} is outside 1..{count}")
    array = ds.pixel_array
    if count > 1:
        array = array[frame - 1]
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    if photometric.startswith("MONOCHROME"):
        array = apply_voi_lut(array, ds).astype(np.float64)
        low, high = float(array.min()), float(array.max())
        scaled = (array - low) / (high - low or 1.0) * 255.0
        if photometric == "MONOCHROME1":
            scaled = 255.0 - scaled
        image = Image.fromarray(scaled.astype(np.uint8), mode="L")
    else:
        image = Image.fromarray(np.asarray(array).astype(np.uint8)).convert("RGB")
    if size:
        image.thumbnail((size, size))
    out = io.BytesIO()
    image.save(out, format="PNG" if media == "image/png" else "JPEG", quality=90)
    return out.getvalue()
