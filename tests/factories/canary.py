"""A canary study: a unique marker value in every attribute of PS3.15 Table E.1-1 that takes
a value (at the top level, and inside one item of each sequence), in a private block, and
burned into the pixels. Whatever de-identified output is searched must hold none of the
markers and none of the original UIDs."""

from __future__ import annotations

from dataclasses import dataclass, field

from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from deidentify.pixels.ocr import Box
from deidentify.tables import e1_1
from tests.factories.burned_text import Burn, anatomy, burn

BURNED = "CANARYBURN 4471"
_TEXT_VRS = {"PN", "LO", "SH", "LT", "ST", "UT", "UC", "AE", "CS", "UR"}
_SKIP_KEYWORDS = {  # the file's own structure: values the canary must keep valid
    "SOPClassUID", "SpecificCharacterSet", "TransferSyntaxUID",
    "EncapsulatedDocument",  # a document instance is held back whole (its own test)
}  # fmt: skip


@dataclass
class Canary:
    ds: Dataset
    markers: list[str] = field(default_factory=list)
    uids: list[str] = field(default_factory=list)
    burned_box: Box | None = None


def _marker(index: int, vr: str) -> str:
    if vr == "CS":
        return f"ZQK{index:05d}"  # CS: upper case, <= 16
    if vr == "AE":
        return f"ZQAE{index:05d}"
    return f"zqMarker{index:05d}qz"


def canary_instance() -> Canary:
    sample = burn(anatomy("ct_spine"), [Burn(BURNED, x=30, y=30, height=18)])
    ds = sample.ds
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = CTImageStorage
    ds.Modality = "CT"
    canary = Canary(ds, burned_box=sample.boxes[0].box)
    index = 0
    for tag in sorted(e1_1().exact):
        keyword = keyword_for_tag(tag)
        if not keyword or keyword in _SKIP_KEYWORDS or (tag >> 16) in (0x0000, 0x0002, 0x7FE0):
            continue
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            continue
        vr = vr.split(" or ")[0]
        index += 1
        if vr in _TEXT_VRS:
            value: object = _marker(index, vr)
            canary.markers.append(str(value))
        elif vr == "UI":
            value = generate_uid()
            canary.uids.append(str(value))
        elif vr == "DA":
            value = f"19{11 + index % 8:02d}{1 + index % 12:02d}{1 + index % 28:02d}"
        elif vr == "TM":
            value = "101112"
        elif vr == "DT":
            value = "19120304101112"
        elif vr == "AS":
            value = "077Y"
        elif vr in ("IS",):
            value = str(index)
        elif vr == "DS":
            value = "1.5"
        elif vr in ("US", "UL", "SS", "SL", "UV", "SV"):
            value = 7
        elif vr in ("FL", "FD"):
            value = 1.5
        elif vr in ("OB", "OW", "UN", "OD", "OF", "OL", "OV"):
            marker = _marker(index, "OB")
            canary.markers.append(marker)
            value = marker.encode()
        elif vr == "SQ":
            item = Dataset()
            item.InstitutionName = _marker(index, "LO")  # removed at any depth
            canary.markers.append(str(item.InstitutionName))
            item.PatientName = _marker(index + 10000, "PN")
            canary.markers.append(str(item.PatientName))
            value = Sequence([item])
        else:
            continue
        ds.add_new(tag, vr, value)
    private = ds.private_block(0x0009, "CANARY PRIVATE CREATOR", create=True)
    private.add_new(0x10, "LO", "zqPrivateMarkerqz")
    canary.markers.append("zqPrivateMarkerqz")
    canary.markers.append("CANARY PRIVATE CREATOR")
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        canary.uids.append(str(ds.get(keyword)))
    ds.BurnedInAnnotation = "YES"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return canary
