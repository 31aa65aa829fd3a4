"""HTTP contract between agents and the hub: request/response models and site-key helpers."""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from cryptography.x509.oid import NameOID
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from wire import signatures
from wire.envelope import RecipientKey
from wire.errors import SignatureInvalid
from wire.manifest import BundleId, Mode, Name, UtcDatetime
from wire.receipt import Receipt

_ENCRYPTION_KEY_PREFIX = b"hexchange/v1 encryption-key "
X25519_KEY_BYTES = 32


def _raw_x25519_b64(value: str) -> str:
    try:
        raw = signatures.b64decode(value)
    except ValueError:
        raise ValueError("not valid base64") from None
    if len(raw) != X25519_KEY_BYTES:
        raise ValueError(f"must decode to a raw {X25519_KEY_BYTES}-byte X25519 public key")
    return value


def _b64(value: str) -> str:
    signatures.b64decode(value)
    return value


X25519PublicKeyB64 = Annotated[str, AfterValidator(_raw_x25519_b64)]
SignatureB64 = Annotated[str, Field(max_length=512), AfterValidator(_b64)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class EnrollRequest(_Model):
    """Agent -> hub: one-time token, CSR for the site key, and the site's encryption key.

    `encryption_key_signature` is by the site (CSR) key over `encryption_key_message(raw)`.
    """

    token: str = Field(min_length=1, max_length=1024)
    csr_pem: str = Field(min_length=1, max_length=16384)
    encryption_public_key: X25519PublicKeyB64
    encryption_key_signature: SignatureB64


class EnrollResponse(_Model):
    certificate_pem: str
    ca_pem: str
    org: Name
    site: Name
    hub_receipt_public_key_pem: str


class RenewRequest(_Model):
    """Agent -> hub over mutual TLS, before its certificate expires: a CSR for a NEW site key,
    and the site's (unchanged) encryption key signed again by that new key."""

    csr_pem: str = Field(min_length=1, max_length=16384)
    encryption_key_signature: SignatureB64


class RenewResponse(_Model):
    certificate_pem: str


class SiteKey(_Model):
    """A site's published encryption key, signed by the site's certified signing key."""

    org: Name
    site: Name
    key_id: str = Field(min_length=1, max_length=256)
    public_key: X25519PublicKeyB64
    signature: SignatureB64
    certificate_pem: str


class OrgKeys(_Model):
    org: Name
    keys: list[SiteKey]


class BundleStatus(_Model):
    bundle_id: BundleId
    state: Literal["receiving", "complete"]
    chunk_count: int = Field(ge=1)
    received_chunks: list[int]
    receipt: Receipt | None = None


class Delivery(_Model):
    """A bundle waiting for the calling organization (from the manifest; no identity)."""

    bundle_id: BundleId
    sender_org: Name
    sender_site: Name
    mode: Mode
    instance_count: int = Field(ge=0)
    payload_bytes: int = Field(ge=0)
    chunk_count: int = Field(ge=1)
    created_at: UtcDatetime
    sender_certificate_pem: str


class DeliveryList(_Model):
    deliveries: list[Delivery]


_COUNT_MAX = 10**12  # far above any real queue; refuses absurd numbers before they are shown
_BYTES_MAX = 1 << 60
# No C0/C1 controls (terminal escapes), no line/paragraph separators, and none of the
# invisible format characters that reorder or hide text (bidi overrides and isolates,
# zero-width characters, the BOM).
_UNSAFE_CHARS = r"\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff"
_PRINTABLE_ONE_LINE = rf"^[^{_UNSAFE_CHARS}]*$"


def one_line(text: str, limit: int) -> str:
    """`text` as one printable line of at most `limit` characters (control characters dropped)."""
    cleaned = re.sub(rf"[{_UNSAFE_CHARS}]+", " ", text).strip()
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "\u2026"


class QuarantineReason(StrEnum):
    """Why an item waits in a site's quarantine: a fixed set of kinds, so the hub's view counts
    them without any of the item's own text (which could name a patient) leaving the site."""

    MALFORMED = "malformed"  # the file or one of its values does not parse
    PIXELS_UNREADABLE = "pixels-unreadable"  # the pixel data could not be decoded
    BURNED_IN_TEXT = "burned-in-text"  # text-like marks in the pixels the scrub may not clear
    DOCUMENT = "document"  # an encapsulated or scanned document held back
    VERIFICATION = "verification"  # identifying data found after de-identification
    CONFIGURATION = "configuration"  # the sharing rule, recipe or key file is unusable
    DELIVERY = "delivery"  # a delivery from another organization could not be stored
    OTHER = "other"


class Heartbeat(_Model):
    """What an agent reports about itself; every field bounded, since an admin's view shows it."""

    agent_version: str = Field(max_length=64, pattern=r"^[0-9A-Za-z.+_-]*$")
    queue_depth: int = Field(ge=0, le=_COUNT_MAX)
    oldest_item_age_s: float | None = Field(default=None, ge=0, le=1e10, allow_inf_nan=False)
    bytes_pending: int = Field(ge=0, le=_BYTES_MAX)
    disk_free_bytes: int = Field(ge=0, le=_BYTES_MAX)
    last_error: str | None = Field(default=None, max_length=2000, pattern=_PRINTABLE_ONE_LINE)
    policy_version: int | None = Field(default=None, ge=0, le=_COUNT_MAX)
    held_studies: int = Field(default=0, ge=0, le=_COUNT_MAX)
    partial_studies: int = Field(default=0, ge=0, le=_COUNT_MAX)
    quarantined_instances: int = Field(default=0, ge=0, le=_COUNT_MAX)
    inbound_waiting: int = Field(default=0, ge=0, le=_COUNT_MAX)
    interval_s: float | None = Field(
        default=None,
        ge=1,
        le=3600,
        allow_inf_nan=False,
        description="How often this agent reports: the hub calls it stale after six missed "
        "reports (three minutes when an agent does not say)",
    )
    quarantine_reasons: dict[QuarantineReason, Annotated[int, Field(ge=0, le=_COUNT_MAX)]] = Field(
        default_factory=dict,
        description="Items now in quarantine (instances and deliveries), by kind of reason",
    )


class Problem(_Model):
    """RFC 9457 problem details (served as application/problem+json)."""

    type: str = "about:blank"
    title: str
    status: int = Field(ge=100, le=599)
    detail: str | None = None
    instance: str | None = None


def encryption_key_message(raw_pub: bytes) -> bytes:
    """The bytes a site signs to vouch for its X25519 encryption key."""
    return _ENCRYPTION_KEY_PREFIX + raw_pub


def sign_encryption_key(site_key: ec.EllipticCurvePrivateKey, raw_pub: bytes) -> str:
    """base64 DER ECDSA signature by the site key over `encryption_key_message(raw_pub)`."""
    if len(raw_pub) != X25519_KEY_BYTES:
        raise ValueError(f"raw X25519 public key must be {X25519_KEY_BYTES} bytes")
    return signatures.sign(site_key, encryption_key_message(raw_pub))


def _subject_value(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> str | None:
    attrs = cert.subject.get_attributes_for_oid(oid)
    if len(attrs) != 1 or not isinstance(attrs[0].value, str):
        return None
    return attrs[0].value


def _check_certificate(
    site_key: SiteKey, ca_cert: x509.Certificate, now: datetime
) -> x509.Certificate:
    try:
        cert = x509.load_pem_x509_certificate(site_key.certificate_pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise SignatureInvalid("site key certificate is not a PEM certificate") from None
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        raise SignatureInvalid("site key certificate was not issued by the trusted CA") from None
    for which, c in (("site", cert), ("CA", ca_cert)):
        if not c.not_valid_before_utc <= now <= c.not_valid_after_utc:
            raise SignatureInvalid(f"{which} certificate is not valid at {now.isoformat()}")
    org = _subject_value(cert, NameOID.ORGANIZATION_NAME)
    site = _subject_value(cert, NameOID.COMMON_NAME)
    if (org, site) != (site_key.org, site_key.site):
        raise SignatureInvalid(
            f"certificate names O={org}, CN={site}, key claims {site_key.org}/{site_key.site}"
        )
    return cert


def verify_site_key(site_key: SiteKey, ca_cert: x509.Certificate, *, now: datetime) -> RecipientKey:
    """Check a published site key and return it as a RecipientKey.

    Checks that the certificate was directly issued (and signed) by `ca_cert`, that both are
    valid at `now` (timezone-aware), that the certificate subject (O=org, CN=site) matches the
    key's org and site, and that the certified EC key signed the encryption key. Raises
    SignatureInvalid otherwise.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    cert = _check_certificate(site_key, ca_cert, now)
    signer = cert.public_key()
    if not isinstance(signer, ec.EllipticCurvePublicKey):
        raise SignatureInvalid("site certificate does not carry an EC public key")
    raw_pub = signatures.b64decode(site_key.public_key)
    signatures.verify(
        signer,
        encryption_key_message(raw_pub),
        site_key.signature,
        f"encryption key {site_key.key_id!r} of {site_key.org}/{site_key.site}",
    )
    return RecipientKey(
        key_id=site_key.key_id, public_key=X25519PublicKey.from_public_bytes(raw_pub)
    )
