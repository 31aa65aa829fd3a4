"""One compressed frame without its metadata: comments, application segments and JP2 boxes
are removed, the decoded pixels stay bit-identical, and a frame the parser does not understand
is refused with what was wrong, never sent as it was."""

from __future__ import annotations

import contextlib
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deidentify.codestream import CodestreamError, strip
from tests.deidentify.codestreams import (
    J2K,
    JPEG_BASELINE,
    JPEG_LS,
    decoded,
    encoded,
    image,
    insert,
    j2k_with_tile_comment,
    jp2,
    jpeg,
    jpeg_boundaries,
    segment,
)

NAME = b"QUIGLEY^ROSALIND"
EXIF = b"Exif\x00\x00MM\x00*" + b"2026:12:05 Dr. " + NAME


@pytest.mark.parametrize(
    "options",
    [{}, {"progressive": True}, {"restart_marker_blocks": 1}, {"subsampling": 0}],
    ids=["baseline", "progressive", "restarts", "444"],
)
@pytest.mark.parametrize("photometric", ["YBR_FULL_422", "RGB"])
def test_jpeg_comments_and_app_segments_go_and_the_pixels_stay(
    options: dict[str, object], photometric: str
) -> None:
    """COM and APP1 (EXIF) with a name and a date go; JFIF keeps its fixed fields, since
    pydicom takes a JFIF frame labelled RGB for YCbCr (a common vendor mislabelling): the
    decoded pixels are the same with either label."""
    pixels = image(colour=True)
    frame = jpeg(pixels, comment=b"Patient " + NAME, exif=EXIF, **options)
    stripped = strip(frame, JPEG_BASELINE)
    assert NAME not in stripped.data and b"2026" not in stripped.data
    assert stripped.removed == {"COM": 1, "APP1": 1}
    before = decoded([frame], JPEG_BASELINE, pixels.shape, photometric=photometric)
    after = decoded([stripped.data], JPEG_BASELINE, pixels.shape, photometric=photometric)
    assert np.array_equal(before, after)
    assert strip(stripped.data, JPEG_BASELINE).removed == {}  # nothing left to remove


def test_segments_between_scans_and_after_the_end_go() -> None:
    """A comment before the second scan of a progressive frame, and bytes after EOI."""
    pixels = image()
    frame = jpeg(pixels, progressive=True)
    second_scan = frame.index(b"\xff\xda", frame.index(b"\xff\xda") + 2)
    dirty = insert(frame, second_scan, segment(0xFE, NAME)) + b"\x00" + NAME
    stripped = strip(dirty, JPEG_BASELINE)
    assert NAME not in stripped.data
    assert stripped.removed == {"COM": 1, "bytes after the end of image": 1}
    assert stripped.data.endswith(b"\xff\xd9")
    before = decoded([frame], JPEG_BASELINE, pixels.shape)
    assert np.array_equal(decoded([stripped.data], JPEG_BASELINE, pixels.shape), before)


def test_adobe_keeps_its_fixed_fields_only() -> None:
    pixels = image()
    frame = jpeg(pixels)
    adobe = b"Adobe\x00\x64\x00\x00\x00\x00\x01"
    at = jpeg_boundaries(frame)[-1]
    dirty = insert(frame, at, segment(0xEE, adobe + NAME))
    stripped = strip(dirty, JPEG_BASELINE)
    assert segment(0xEE, adobe) in stripped.data and NAME not in stripped.data
    assert stripped.removed == {"APP14 extra bytes": 1}


def test_jpeg_ls_comments_go_and_the_pixels_stay() -> None:
    pixels = image().astype(np.uint16) * 16
    frame = encoded(JPEG_LS, pixels)
    dirty = insert(frame, 2, segment(0xFE, NAME) + segment(0xE8, b"SPIFF\x00" + NAME))
    stripped = strip(dirty, JPEG_LS)
    assert NAME not in stripped.data and stripped.data == frame
    assert stripped.removed == {"COM": 1, "APP8": 1}
    assert np.array_equal(decoded([stripped.data], JPEG_LS, pixels.shape, 12), pixels)


def test_j2k_comments_go_from_main_and_tile_part_headers() -> None:
    """OpenJPEG's own COM, one with a name in the main header, one in a tile-part header
    (its Psot rewritten): all go, and the pixels decode the same."""
    pixels = image().astype(np.uint16) * 16
    frame = encoded(J2K, pixels)
    assert b"\xff\x64" in frame  # "Created by OpenJPEG"
    siz_end = 4 + struct.unpack_from(">H", frame, 4)[0]
    dirty = insert(frame, siz_end, segment(0xFF64, b"\x00\x01" + NAME))
    dirty = j2k_with_tile_comment(dirty, b"operator " + NAME)
    assert np.array_equal(decoded([dirty], J2K, pixels.shape, 12), pixels)
    stripped = strip(dirty, J2K)
    assert NAME not in stripped.data and b"OpenJPEG" not in stripped.data
    assert stripped.removed == {"COM": 3}
    assert np.array_equal(decoded([stripped.data], J2K, pixels.shape, 12), pixels)


def test_a_jp2_wrapper_is_unwrapped_to_its_codestream() -> None:
    pixels = image().astype(np.uint16) * 16
    codestream = encoded(J2K, pixels)
    stripped = strip(jp2(codestream, b"<name>" + NAME + b"</name>"), J2K)
    assert NAME not in stripped.data and stripped.data.startswith(b"\xff\x4f\xff\x51")
    assert stripped.removed == {"JP2 boxes": 3, "COM": 1}
    assert np.array_equal(decoded([stripped.data], J2K, pixels.shape, 12), pixels)


def test_a_tile_part_comment_with_tlm_is_refused() -> None:
    frame = encoded(J2K, image().astype(np.uint16))
    siz_end = 4 + struct.unpack_from(">H", frame, 4)[0]
    tlm = segment(0xFF55, b"\x00\x50" + b"\x00" * 5)  # Ztlm 0, ST=1 SP=1: one 5-byte entry
    dirty = j2k_with_tile_comment(insert(frame, siz_end, tlm), NAME)
    with pytest.raises(CodestreamError, match="TLM"):
        strip(dirty, J2K)


def _malformed() -> list[tuple[str, bytes, str]]:
    frame = jpeg(image())
    sos = frame.index(b"\xff\xda")
    j2k = encoded(J2K, image().astype(np.uint16))
    return [
        (JPEG_BASELINE, b"\x00" + frame, "start-of-image"),
        (JPEG_BASELINE, frame[:40], "marker segment runs past|ends inside"),
        (JPEG_BASELINE, frame[:sos], "ends before its end-of-image"),
        (JPEG_BASELINE, frame[:20] + b"\x12\x34" + frame[20:], "data where a marker must be"),
        (J2K, j2k[:30], "JPEG 2000"),
        (J2K, j2k[:-10], "Psot"),
        (J2K, j2k[: j2k.index(b"\xff\x90")], "before its first tile-part"),
        (J2K, b"\x00\x00\x00\x0cjP  \r\n\x87\n" + b"\x00" * 20, "contiguous codestream"),
    ]


@pytest.mark.parametrize(("syntax", "frame", "what"), _malformed())
def test_a_frame_not_understood_is_refused_with_what_was_wrong(
    syntax: str, frame: bytes, what: str
) -> None:
    with pytest.raises(CodestreamError, match=what) as refused:
        strip(frame, syntax)
    assert "not sent" in str(refused.value)


def test_a_frame_without_its_end_marker_ends_where_decoders_end_it() -> None:
    """Some encoders omit EOI / EOC: the frame is kept as it is (its comments removed),
    nothing added; the JPEG decodes the same as with its EOI."""
    pixels = image()
    whole = jpeg(pixels)
    frame = whole[:-2]
    stripped = strip(insert(frame, 2, segment(0xFE, NAME)), JPEG_BASELINE)
    assert stripped.data == frame and stripped.removed == {"COM": 1}
    after = decoded([stripped.data], JPEG_BASELINE, pixels.shape)
    assert np.array_equal(after, decoded([whole], JPEG_BASELINE, pixels.shape))
    codestream = encoded(J2K, pixels.astype(np.uint16))[:-2]
    assert strip(codestream, J2K).data == strip(codestream + b"\xff\xd9", J2K).data[:-2]


def test_other_syntaxes_are_left_as_they_are() -> None:
    frame = b"RLE segments " + NAME
    assert strip(frame, "1.2.840.10008.1.2.5").data == frame


_BASE = jpeg(image(24, 32))
_CLEAN = strip(_BASE, JPEG_BASELINE).data
_SEGMENT = st.tuples(
    st.sampled_from([0xFE, *range(0xE1, 0xF0)]),  # COM, APP1-APP15 (not Adobe's)
    st.binary(max_size=40).map(lambda noise: b"\xff\xd9\xff" + noise + NAME),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 100), _SEGMENT), min_size=1, max_size=6))
def test_any_segments_inserted_anywhere_before_the_scan_all_go(
    insertions: list[tuple[int, tuple[int, bytes]]],
) -> None:
    """Whatever comments and application segments are inserted at segment boundaries (their
    payloads holding marker bytes), the stripped frame is the clean one."""
    frame = _BASE
    for where, (code, payload) in insertions:
        spots = jpeg_boundaries(frame)
        payload = b"Adobe" + payload if code == 0xEE else payload  # Adobe's kept: tested above
        frame = insert(frame, spots[where % len(spots)], segment(code, payload))
    stripped = strip(frame, JPEG_BASELINE)
    if not any(code == 0xEE for _, (code, _) in insertions):
        assert stripped.data == _CLEAN
    assert sum(stripped.removed.values()) >= len(insertions)
    assert NAME not in stripped.data


_J2K_BASE = encoded(J2K, image().astype(np.uint16))


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from([(JPEG_BASELINE, _BASE), (J2K, _J2K_BASE), (J2K, jp2(_J2K_BASE, NAME))]),
    st.integers(0, 10_000),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=4),
)
def test_a_damaged_frame_is_stripped_or_refused_never_a_crash(
    base: tuple[str, bytes], cut: int, flips: list[tuple[int, int]]
) -> None:
    """Truncated anywhere, bytes changed anywhere: `strip` returns a frame or raises
    `CodestreamError` (which the writer turns into a refusal), nothing else."""
    syntax, frame = base
    damaged = bytearray(frame[: len(frame) - cut % len(frame)])
    for where, value in flips:
        if damaged:
            damaged[where % len(damaged)] = value
    with contextlib.suppress(CodestreamError):
        strip(bytes(damaged), syntax)
