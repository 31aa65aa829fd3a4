"""Keyed pseudonyms: UIDs and identifiers derived with HMAC-SHA256 under a network secret.

The same input and the same secret give the same output on every site and in every run, so
references between instances (and between studies of one patient) survive de-identification,
while nobody without the secret can link a pseudonym back to its input by guessing inputs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

WELL_KNOWN_UID_PREFIX = "1.2.840.10008."

_UID_DOMAIN = b"hexchange/deid/uid\x00"
_ID_DOMAIN = b"hexchange/deid/id\x00"


def is_well_known_uid(uid: str) -> bool:
    """UIDs defined by the DICOM standard (SOP classes, transfer syntaxes, ...): never remapped."""
    return uid.startswith(WELL_KNOWN_UID_PREFIX)


def keyed_uid(secret: bytes, uid: str) -> str:
    """`2.25.<int of the first 16 bytes of HMAC-SHA256(secret, uid)>` (at most 44 characters)."""
    digest = hmac.new(secret, _UID_DOMAIN + uid.strip().encode("ascii", "replace"), hashlib.sha256)
    return "2.25." + str(int.from_bytes(digest.digest()[:16], "big"))


def keyed_token(secret: bytes, domain: str, value: str, length: int = 16) -> str:
    """An upper-case base32 pseudonym of `value` (letters and digits 2-7), `length` characters.

    `domain` separates uses (patient id, accession number) so equal inputs in different roles
    give unrelated pseudonyms.
    """
    message = _ID_DOMAIN + domain.encode() + b"\x00" + value.strip().encode("utf-8")
    digest = hmac.new(secret, message, hashlib.sha256).digest()
    return base64.b32encode(digest).decode("ascii").rstrip("=")[:length]


def keyed_int(secret: bytes, domain: str, value: str) -> int:
    """A non-negative 64-bit integer derived from `value` under the secret (e.g. date offsets)."""
    message = _ID_DOMAIN + domain.encode() + b"\x00" + value.strip().encode("utf-8")
    return int.from_bytes(hmac.new(secret, message, hashlib.sha256).digest()[:8], "big")
