"""Fuzzing the wire parsers (sealed header), the sharing policy and the de-identification
recipe: every input is either parsed or refused with the parser's own error, never a crash."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from deidentify.recipe import RecipeError, parse_recipe
from wire.api import Heartbeat
from wire.errors import WireError
from wire.header import parse_header
from wire.policy import SitePolicy

JSON_LEAVES = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40)
JSON = st.recursive(
    JSON_LEAVES,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=30,
)
HEADER_KEYS = [
    "wire_version",
    "manifest",
    "stanzas",
    "chunk_digests",
    "signer_key_id",
    "signature",
    "key_commitment",
    "bundle_id",
    "recipients",
    "chunk_count",
]


def _header_like() -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.sampled_from(HEADER_KEYS) | st.text(max_size=8), JSON, max_size=8)


@given(st.binary(max_size=4096))
def test_header_parser_refuses_arbitrary_bytes_cleanly(data: bytes) -> None:
    with contextlib.suppress(WireError):
        parse_header(data)


@given(_header_like())
def test_header_parser_refuses_header_shaped_json_cleanly(value: dict[str, Any]) -> None:
    with contextlib.suppress(WireError):
        parse_header(json.dumps(value).encode())


@given(st.integers(min_value=1, max_value=200_000))
def test_header_parser_refuses_deep_nesting_cleanly(depth: int) -> None:
    with contextlib.suppress(WireError):
        parse_header(b"[" * depth + b"]" * depth)


@given(JSON)
def test_policy_parser_accepts_or_refuses_cleanly(value: object) -> None:
    with contextlib.suppress(ValidationError):
        SitePolicy.model_validate(value)


@given(st.text(max_size=2000))
def test_policy_json_parser_accepts_or_refuses_cleanly(text: str) -> None:
    with contextlib.suppress(ValidationError):
        SitePolicy.model_validate_json(text)


@given(JSON)
def test_heartbeat_values_are_either_bounded_or_refused(value: object) -> None:
    try:
        beat = Heartbeat.model_validate(value)
    except ValidationError:
        return
    assert 0 <= beat.queue_depth <= 10**12
    assert beat.last_error is None or "\x1b" not in beat.last_error


RECIPE_LINES = st.sampled_from(
    [
        "[attributes]",
        "[private]",
        "[dates]",
        "[keep]",
        "PatientName = remove",
        "(0010,0010) = keep",
        'StudyDescription = "x"',
        "shift = 5",
        "keep = true",
        "= =",
        "[",
        "]]",
        "\x00",
        "a.b.c = 1",
        'PatientID = replace ""',
        "'''",
        '"""',
    ]
)


@given(st.lists(RECIPE_LINES | st.text(max_size=40), max_size=12))
def test_recipe_parser_accepts_or_refuses_cleanly(lines: list[str]) -> None:
    try:
        parse_recipe("\n".join(lines))
    except RecipeError as exc:
        assert str(exc)  # says what was wrong
