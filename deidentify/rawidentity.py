"""The identifying values of a raw header (`rawdicom`), for the fast header path: which
elements carry identity, the instance's own `StudyIdentity`, and the `clean.Scrubber` of it
plus the study's (memoised: every instance of a study shares it)."""

from __future__ import annotations

import functools
from typing import NamedTuple

from pydicom.datadict import keyword_for_tag, tag_for_keyword
from pydicom.multival import MultiValue

from deidentify.clean import Scrubber
from deidentify.engine import retained_out
from deidentify.identity import (
    ADDRESS_KEYWORDS,
    DATE_KEYWORDS,
    ID_KEYWORDS,
    OTHER_KEYWORDS,
    PHONE_KEYWORDS,
    StudyIdentity,
)
from deidentify.profile import Profile
from deidentify.rawdicom import Fallback, RawElement
from deidentify.rawvalues import Charset, charset_of, decodable, decoded


class Seen(NamedTuple):
    """What a study pass learns from one instance (never reported: it holds identity)."""

    study_uid: str  # the original's Study Instance UID
    identity: StudyIdentity  # the instance's own identifying values
    kept_text: str | None  # every text value kept as it was, NUL-joined (None: not known)


def raw_identity_elements(
    elems: list[RawElement],
    implicit: bool,
    charset: Charset,
    found: list[IdentityItem],
    depth: int,
) -> None:
    """The identity-bearing elements of a raw header, any depth, as they were read."""
    charset = charset_of(elems, charset)
    for elem in elems:
        if (elem.tag >> 16) % 2:
            continue  # private: no keyword to know what it holds (as `StudyIdentity.collect`)
        if elem.items is not None:
            if depth < 16:
                for item in elem.items:
                    raw_identity_elements(item.elements, implicit, charset, found, depth + 1)
            continue
        if elem.value and (elem.vr == "PN" or elem.tag in _IDENTITY_TAGS):
            if not decodable(elem, implicit):
                raise Fallback("undecodable identifying value")
            found.append((elem.tag, elem.vr, elem.value, charset))


IdentityItem = tuple[int, str, bytes, Charset]
_IDENTITY_TAGS = frozenset(
    tag
    for tag in (
        tag_for_keyword(k)
        for k in ID_KEYWORDS | ADDRESS_KEYWORDS | PHONE_KEYWORDS | DATE_KEYWORDS | OTHER_KEYWORDS
    )
    if tag is not None
)


@functools.lru_cache(maxsize=256)
def own_identity(items: tuple[IdentityItem, ...], implicit: bool) -> StudyIdentity:
    values: list[tuple[str, str, str]] = []
    for tag, vr, raw, charset in items:
        value = decoded(tag, vr, raw, implicit, charset).value
        texts = value if isinstance(value, MultiValue | list | tuple) else [value]
        keyword = _keyword(tag)
        values += [(keyword, vr, t) for t in (str(v or "").strip() for v in texts) if t]
    return StudyIdentity.from_values(values)


@functools.lru_cache(maxsize=256)
def identity_scrubber(
    items: tuple[IdentityItem, ...],
    implicit: bool,
    profile: Profile,
    identity: StudyIdentity | None,
) -> Scrubber:
    """The scrubber of an instance's identity (plus the study's): a study's instances share it."""
    own = own_identity(items, implicit)
    return Scrubber.for_identity(
        retained_out(own if identity is None else identity.merge(own), profile)
    )


@functools.lru_cache(maxsize=8192)
def _keyword(tag: int) -> str:
    return str(keyword_for_tag(tag) or "")
