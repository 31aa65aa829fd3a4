"""Encapsulated documents (PDF, CDA): sent as they are only when they hold no identity and the
policy allows documents; never rewritten, never sent as an invalid object.

Table E.1-1 replaces Encapsulated Document (0042,0011) with a dummy, which leaves an instance
without its document: an invalid object. Instead, `document_check` extracts the document's text
(PDF: `pypdf`, page text plus the document information and XMP metadata; CDA: the XML's text)
and looks for the study's identity (`clean.Scrubber.scrub` finds anything it would clean: the
study's names, IDs and dates in any written form, and any date, phone number, e-mail address,
street address, URL with an identifier or MRN-like number). The instance is then

* kept with its document unchanged when the profile allows documents
  (`Profile.send_documents`, a site recipe's ``[documents] policy = "send-if-clean"``) and
  nothing was found;
* held back (`DocumentHeldBack`, reason class ``document``) otherwise, with a reason that names
  the problem and never a value.

Documents of any other type (3D models, ...) are held back: nothing here can check them.
"""

from __future__ import annotations

import io
import re

from pydicom.dataset import Dataset

from deidentify.clean import Scrubber

ENCAPSULATED_DOCUMENT = 0x00420011
PDF_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.104.1"
CDA_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.104.2"
_MAX_PAGES = 500
_TAG = re.compile(r"<[^>]*>")


class DocumentHeldBack(Exception):
    """An instance whose encapsulated document may not be sent; the message is the reason
    (starts with "document:", names no value)."""


def document_check(ds: Dataset, scrubber: Scrubber, *, allowed: bool) -> None:
    """Raise `DocumentHeldBack` unless `ds`'s encapsulated document may be sent as it is."""
    if not allowed:
        raise DocumentHeldBack(
            "document: the policy does not send encapsulated documents "
            '(a site recipe allows clean ones with [documents] policy = "send-if-clean")'
        )
    raw = bytes(ds[ENCAPSULATED_DOCUMENT].value or b"")
    sop_class = str(ds.get("SOPClassUID", ""))
    if sop_class == PDF_SOP_CLASS:
        texts = _pdf_texts(raw)
    elif sop_class == CDA_SOP_CLASS:
        texts = [_TAG.sub(" ", raw.decode("utf-8", "replace"))]
    else:
        raise DocumentHeldBack(
            "document: an encapsulated document of this type cannot be checked for identity"
        )
    texts += [str(ds.get(k, "") or "") for k in ("DocumentTitle",)]
    for text in texts:
        if text and scrubber.scrub(text) != text:
            raise DocumentHeldBack(
                "document: the encapsulated document holds identifying text; documents are "
                "never rewritten"
            )


def _pdf_texts(raw: bytes) -> list[str]:
    from pypdf import PdfReader  # imported here: only document instances need it
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(raw.rstrip(b"\x00")), strict=False)
        if reader.is_encrypted:
            raise DocumentHeldBack("document: the PDF is encrypted and cannot be checked")
        if len(reader.pages) > _MAX_PAGES:
            raise DocumentHeldBack(f"document: the PDF has more than {_MAX_PAGES} pages")
        texts = [page.extract_text() or "" for page in reader.pages]
        info = reader.metadata
        if info is not None:
            texts += [str(v) for v in info.values()]
        xmp = reader.xmp_metadata
        if xmp is not None:
            texts.append(_TAG.sub(" ", xmp.stream.get_data().decode("utf-8", "replace")))
    except DocumentHeldBack:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as exc:
        raise DocumentHeldBack(
            f"document: the PDF cannot be read ({type(exc).__name__}); it is held back"
        ) from None
    if not any(t.strip() for t in texts[: len(reader.pages)]):
        raise DocumentHeldBack(
            "document: the PDF has no extractable text (scanned?); it cannot be checked"
        )
    return texts
