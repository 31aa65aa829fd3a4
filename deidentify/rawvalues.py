"""Decoding values of a raw header (`rawdicom`) as pydicom would, only where needed: the
fast header path (`fastpath`) and its identity collection (`rawidentity`) share these."""

from __future__ import annotations

import functools
from typing import Any

from pydicom.charset import convert_encodings, default_encoding
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement, convert_raw_data_element
from pydicom.tag import BaseTag

from deidentify.rawdicom import Fallback, RawElement

_CHARSET = 0x00080005

Charset = bytes | None  # the raw value of the governing (0008,0005), None: the default


@functools.lru_cache(maxsize=64)
def codecs_for(charset: Charset) -> Any:
    """Python codecs for reading values (pydicom's `Dataset._character_set`)."""
    if charset is None:
        return default_encoding
    return convert_encodings(charset_value(charset))


@functools.lru_cache(maxsize=64)
def charset_value(charset: Charset) -> Any:
    """The decoded Specific Character Set value (what `encode` is given for writing)."""
    if charset is None:
        return None
    raw = RawDataElement(BaseTag(_CHARSET), "CS", len(charset), charset, 0, False, True)
    return convert_raw_data_element(raw).value


@functools.lru_cache(maxsize=8192)
def decoded(tag: int, vr: str, value: bytes, implicit: bool, charset: Charset) -> DataElement:
    """The element as `Dataset.__getitem__` decodes it (public, unambiguous VRs only)."""
    raw = RawDataElement(
        BaseTag(tag), None if implicit else vr, len(value), value, 0, implicit, True
    )
    return convert_raw_data_element(raw, encoding=codecs_for(charset))


@functools.lru_cache(maxsize=8192)
def dictionary_vr_text(tag: int) -> str:
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return "UN"


def decodable(elem: RawElement, implicit: bool) -> bool:
    """Values pydicom decodes without its dataset (no private VR lookup, no UN, no ambiguity)."""
    if (elem.tag >> 16) % 2 or elem.vr == "UN":
        return False
    return not (implicit and " or " in dictionary_vr_text(elem.tag))


def value_of(elems: list[RawElement], tag: int, implicit: bool, charset: Charset) -> Any:
    for elem in elems:
        if elem.tag == tag:
            if not decodable(elem, implicit):
                raise Fallback("undecodable value")
            return decoded(tag, elem.vr, elem.value, implicit, charset).value
        if elem.tag > tag:
            break
    return None


def charset_of(elems: list[RawElement], parent: Charset) -> Charset:
    for elem in elems:
        if elem.tag == _CHARSET:
            return elem.value
        if elem.tag > _CHARSET:
            break
    return parent
