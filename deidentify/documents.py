"""Encapsulated documents (PDF, CDA): sent as they are only when they hold no identity and the
policy allows documents; never rewritten, never sent as an invalid object.

Table E.1-1 replaces Encapsulated Document (0042,0011) with a dummy, which leaves an instance
without its document: an invalid object. Instead, `document_check` extracts the document's text
(PDF: `pypdf`, the pages' text; CDA: the XML's text)
and looks for the study's identity (`clean.Scrubber.scrub` finds anything it would clean: the
study's names, IDs and dates in any written form, and any date, phone number, e-mail address,
street address, URL with an identifier or MRN-like number). The instance is then

* kept when the profile allows documents (`Profile.send_documents`, a site recipe's
  ``[documents] policy = "send-if-clean"``) and nothing was found: a CDA as it is, a PDF with
  its pages unchanged and its document information and XMP metadata (author, creation dates,
  tools) removed (`pypdf`); a PDF with forms, annotations, attachments, outlines or actions is
  held back (their text is not checked);
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


def document_check(ds: Dataset, scrubber: Scrubber, *, allowed: bool) -> bytes | None:
    """Raise `DocumentHeldBack` unless `ds`'s encapsulated document may be sent; returns the
    document to send instead (a PDF without its metadata), or None to send it as it is."""
    if not allowed:
        raise DocumentHeldBack(
            "document: the policy does not send encapsulated documents "
            '(a site recipe allows clean ones with [documents] policy = "send-if-clean")'
        )
    raw = bytes(ds[ENCAPSULATED_DOCUMENT].value or b"")
    sop_class = str(ds.get("SOPClassUID", ""))
    replacement: bytes | None = None
    if sop_class == PDF_SOP_CLASS:
        texts, replacement = _pdf_texts(raw)
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
                "document: the encapsulated document holds identifying text; document text "
                "is never rewritten"
            )
    return replacement


# Parts of a PDF whose text `extract_text` does not return: held back rather than checked.
_UNCHECKED_ROOT_KEYS = ("/AcroForm", "/Names", "/Outlines", "/OpenAction", "/AA")


def _pdf_texts(raw: bytes) -> tuple[list[str], bytes]:
    """The page texts, and the PDF without its document information and XMP metadata (author,
    dates, tools: removed, not checked)."""
    from pypdf import PdfReader, PdfWriter  # imported here: only document instances need it
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(raw.rstrip(b"\x00")), strict=False)
        if reader.is_encrypted:
            raise DocumentHeldBack("document: the PDF is encrypted and cannot be checked")
        if len(reader.pages) > _MAX_PAGES:
            raise DocumentHeldBack(f"document: the PDF has more than {_MAX_PAGES} pages")
        root = reader.root_object
        unchecked = [k for k in _UNCHECKED_ROOT_KEYS if k in root]
        if unchecked or any("/Annots" in page for page in reader.pages):
            raise DocumentHeldBack(
                "document: the PDF has forms, annotations, attachments, outlines or actions, "
                "whose text cannot be checked"
            )
        texts = [page.extract_text() or "" for page in reader.pages]
        writer = PdfWriter(clone_from=reader)
        writer.metadata = None
        writer.xmp_metadata = None
        out = io.BytesIO()
        writer.write(out)
    except DocumentHeldBack:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, OSError, AttributeError) as exc:
        raise DocumentHeldBack(
            f"document: the PDF cannot be read ({type(exc).__name__}); it is held back"
        ) from None
    if not any(t.strip() for t in texts):
        raise DocumentHeldBack(
            "document: the PDF has no extractable text (scanned?); it cannot be checked"
        )
    data = out.getvalue()
    return texts, data + b"\x00" if len(data) % 2 else data
