"""One-time enrollment tokens, signed by the CA key and verifiable without a database.

Format: ``hxe1.<base64url(JSON payload)>.<base64url(DER ECDSA P-256/SHA-256 signature)>``
(no padding). The signature covers the ASCII bytes ``hxe1.<payload>``. Payload fields:
``v`` (1), ``org``, ``site``, ``jti`` (32 hex digits), ``exp`` (Unix seconds). Single use is
enforced by `certs.registry.CADirectory.consume_token`.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from certs.ca import CertificateAuthority
from certs.errors import TokenError
from certs.identity import is_valid_name

TOKEN_PREFIX = "hxe1"  # noqa: S105 - format tag, not a secret
TOKEN_VERSION = 1
MAX_TOKEN_LENGTH = 2048
DEFAULT_TTL = timedelta(hours=1)

_B64URL = re.compile(r"[A-Za-z0-9_-]+")
_JTI = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class TokenClaims:
    org: str
    site: str
    token_id: str
    expires_at: datetime


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    if not _B64URL.fullmatch(text):
        raise TokenError("is malformed (bad base64)")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise TokenError("is malformed (bad base64)") from None


def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError("`now` must be timezone-aware")
    return now


def issue_token(
    ca: CertificateAuthority,
    *,
    org: str,
    site: str,
    ttl: timedelta = DEFAULT_TTL,
    now: datetime | None = None,
) -> str:
    """A signed one-time token that lets whoever holds it enroll as org/site until it expires."""
    if not is_valid_name(org) or not is_valid_name(site):
        raise ValueError(f"invalid org/site name {org!r}/{site!r}: use [a-z0-9-], 1-63 chars")
    if ttl <= timedelta(0):
        raise ValueError("token ttl must be positive")
    exp = int((_now(now) + ttl).timestamp())
    payload = {
        "v": TOKEN_VERSION,
        "org": org,
        "site": site,
        "jti": secrets.token_hex(16),
        "exp": exp,
    }
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode("utf-8")
    signed = f"{TOKEN_PREFIX}.{_b64encode(body)}"
    signature = ca.sign(signed.encode("ascii"))
    return f"{signed}.{_b64encode(signature)}"


def _parse_claims(body: bytes) -> TokenClaims:
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise TokenError("is malformed (payload is not JSON)") from None
    if not isinstance(payload, dict):
        raise TokenError("is malformed (payload is not an object)")
    if payload.get("v") != TOKEN_VERSION:
        raise TokenError("has an unsupported version")
    org, site, jti, exp = (payload.get(k) for k in ("org", "site", "jti", "exp"))
    if not (isinstance(org, str) and is_valid_name(org)):
        raise TokenError("is malformed (bad org)")
    if not (isinstance(site, str) and is_valid_name(site)):
        raise TokenError("is malformed (bad site)")
    if not (isinstance(jti, str) and _JTI.fullmatch(jti)):
        raise TokenError("is malformed (bad token id)")
    if not isinstance(exp, int) or isinstance(exp, bool) or not 0 < exp < 2**40:
        raise TokenError("is malformed (bad expiry)")
    return TokenClaims(
        org=org, site=site, token_id=jti, expires_at=datetime.fromtimestamp(exp, tz=UTC)
    )


def verify_token(
    token: str, ca_public_key: ec.EllipticCurvePublicKey, *, now: datetime | None = None
) -> TokenClaims:
    """Check format, CA signature and expiry; return the claims or raise TokenError."""
    token = token.strip()
    if len(token) > MAX_TOKEN_LENGTH:
        raise TokenError("is malformed (too long)")
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX:
        raise TokenError("is malformed (not an hxe1 token)")
    body = _b64decode(parts[1])
    signature = _b64decode(parts[2])
    try:
        ca_public_key.verify(
            signature, f"{parts[0]}.{parts[1]}".encode("ascii"), ec.ECDSA(hashes.SHA256())
        )
    except InvalidSignature:
        raise TokenError("has a bad signature (not issued by this network's CA)") from None
    claims = _parse_claims(body)
    if _now(now) >= claims.expires_at:
        raise TokenError(f"expired at {claims.expires_at.isoformat()}")
    return claims
