"""Fuzzing the envelope's chunk parsing: any change to a sealed bundle's chunks (flipped, cut,
grown, swapped, dropped, foreign) is refused with a WireError, never another exception, and
never yields different plaintext."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.wire.conftest import do_seal, make_party
from wire.envelope import open_data_key, open_stream
from wire.errors import WireError
from wire.header import parse_header

SIGNER = ec.generate_private_key(ec.SECP256R1())
ALICE = make_party("alice")
PLAINTEXT = bytes(range(256)) * 12  # three chunks of 1024 bytes
SEALED = do_seal(PLAINTEXT, [ALICE], SIGNER)
HEADER = parse_header(SEALED.header.to_bytes())
KEY = open_data_key(HEADER, key_id=ALICE.key_id, private_key=ALICE.private_key)


def _open(chunks: list[bytes]) -> bytes | None:
    try:
        return b"".join(open_stream(HEADER, KEY, chunks))
    except WireError:
        return None


def test_the_untouched_bundle_opens() -> None:
    assert _open(list(SEALED.chunks)) == PLAINTEXT


@settings(max_examples=150, deadline=None, derandomize=True)
@given(
    index=st.integers(0, len(SEALED.chunks) - 1),
    edit=st.one_of(
        st.tuples(st.just("flip"), st.integers(0, 2000), st.integers(1, 255)),
        st.tuples(st.just("cut"), st.integers(0, 2000), st.just(0)),
        st.tuples(st.just("grow"), st.integers(1, 64), st.integers(0, 255)),
        st.tuples(st.just("drop"), st.just(0), st.just(0)),
        st.tuples(st.just("swap"), st.just(0), st.just(0)),
    ),
)
def test_any_edit_to_the_chunks_is_refused(index: int, edit: tuple[str, int, int]) -> None:
    chunks = list(SEALED.chunks)
    kind, a, b = edit
    data = chunks[index]
    if kind == "flip":
        position = a % len(data)
        chunks[index] = data[:position] + bytes([data[position] ^ b]) + data[position + 1 :]
    elif kind == "cut":
        chunks[index] = data[: a % len(data)]
    elif kind == "grow":
        chunks[index] = data + bytes([b]) * a
    elif kind == "drop":
        del chunks[index]
    else:
        other = (index + 1) % len(chunks)
        chunks[index], chunks[other] = chunks[other], chunks[index]
    assert _open(chunks) is None


@settings(max_examples=60, deadline=None, derandomize=True)
@given(garbage=st.lists(st.binary(max_size=1100), min_size=0, max_size=5))
def test_arbitrary_chunks_are_refused(garbage: list[bytes]) -> None:
    assert _open(garbage) is None
