"""The VR of an element without decoding it (raw elements of implicit VR files have none)."""

from __future__ import annotations

import functools

from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement


@functools.lru_cache(maxsize=8192)
def dictionary_vr(tag: int) -> str:
    """The data dictionary VR of a public tag ("UN" for private or unknown tags); ambiguous
    entries ("US or SS", "OB or OW") give the first choice, which is what matters here
    (nothing in the profile depends on the choice)."""
    if (tag >> 16) % 2:
        return "UN"
    try:
        vr = str(dictionary_VR(tag))
    except KeyError:
        return "UN"
    return vr.split(" or ")[0]


def element_vr(elem: DataElement | RawDataElement) -> str:
    vr = elem.VR
    if vr is None or " or " in vr:
        return dictionary_vr(int(elem.tag))
    return str(vr)
