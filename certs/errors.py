"""Errors raised by the PKI package. Messages say what is wrong and what to do next."""

from __future__ import annotations


class CertsError(Exception):
    """Base class for every error raised by `certs`."""


class TokenError(CertsError):
    """An enrollment token is malformed, forged, expired or already used."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"enrollment token {reason}; ask the network admin for a new token")


class CSRError(CertsError):
    """A certificate signing request cannot be accepted."""


class CertificateIdentityError(CertsError):
    """A certificate does not carry a well-formed Hexchange site identity."""


class RevokedError(CertsError):
    """A certificate serial is revoked (or a revocation request names an unknown serial)."""
