"""File-backed CA state shared by `hexchange-certs` and the hub on one host.

Layout of the CA directory (0700):
  ca.pem            CA certificate
  ca.key            CA private key (0600)
  issued.jsonl      one line per issued site certificate
  revoked.jsonl     one line per revocation
  used-tokens.jsonl one line per consumed enrollment token
  .lock             flock target serialising writers across processes
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509

from certs.ca import SERVER_CERT_LIFETIME, SITE_CERT_LIFETIME, CertificateAuthority
from certs.errors import CertsError, RevokedError, TokenError
from certs.identity import site_identity_from_certificate
from certs.journal import (
    append_record,
    exclusive_lock,
    read_records,
    rewrite_records,
    write_file_atomic,
)
from certs.keys import certificate_pem, private_key_pem, verify_issued_by
from certs.tokens import TokenClaims, verify_token

CA_CERT_FILE = "ca.pem"
CA_KEY_FILE = "ca.key"
ISSUED_FILE = "issued.jsonl"
REVOKED_FILE = "revoked.jsonl"
USED_TOKENS_FILE = "used-tokens.jsonl"
LOCK_FILE = ".lock"
# Consumed-token entries this far past their expiry are pruned (the token is refused anyway).
USED_TOKEN_RETENTION = timedelta(days=1)
USED_TOKEN_PRUNE_THRESHOLD = 1000


@dataclass(frozen=True)
class IssuedRecord:
    serial: int
    org: str
    site: str
    not_before: datetime
    not_after: datetime
    revoked: bool
    revoked_at: datetime | None
    revocation_reason: str | None = None


def _now(now: datetime | None) -> datetime:
    return now if now is not None else datetime.now(UTC)


def _serial_hex(serial: int) -> str:
    return format(serial, "x")


def _serial_of(record: dict[str, Any]) -> int | None:
    value = record.get("serial")
    if not isinstance(value, str):
        return None
    try:
        return int(value, 16)
    except ValueError:
        return None


class CADirectory:
    """The CA key, certificate and issuance/revocation/token journals in one directory."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._ca: CertificateAuthority | None = None
        self._revoked_key: tuple[int, int, int] | None = None
        self._revoked: frozenset[int] = frozenset()

    # -- files -----------------------------------------------------------------------------
    @property
    def cert_file(self) -> Path:
        return self.path / CA_CERT_FILE

    @property
    def key_file(self) -> Path:
        return self.path / CA_KEY_FILE

    def _file(self, name: str) -> Path:
        return self.path / name

    def _lock(self) -> AbstractContextManager[None]:
        return exclusive_lock(self._file(LOCK_FILE))

    # -- CA --------------------------------------------------------------------------------
    def exists(self) -> bool:
        return self.cert_file.is_file() and self.key_file.is_file()

    def init(self, name: str) -> CertificateAuthority:
        """Create the directory (0700) and a new CA; refuse if a CA is already there."""
        if self.path.exists() and not self.path.is_dir():
            raise CertsError(f"{self.path} exists and is not a directory")
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.path, 0o700)
        with self._lock():
            if self.cert_file.exists() or self.key_file.exists():
                raise CertsError(
                    f"a CA already exists in {self.path}; refusing to overwrite it "
                    "(use another --ca-dir or remove the directory deliberately)"
                )
            ca = CertificateAuthority.create(name)
            # Key first: a directory with ca.pem but no key is never observed as "exists".
            write_file_atomic(
                self._file(CA_KEY_FILE + ".tmp"), self.key_file, ca.key_pem, mode=0o600
            )
            write_file_atomic(
                self._file(CA_CERT_FILE + ".tmp"), self.cert_file, ca.cert_pem, mode=0o644
            )
        self._ca = ca
        return ca

    def load(self) -> CertificateAuthority:
        if self._ca is None:
            if not self.exists():
                raise CertsError(
                    f"no CA found in {self.path} (expected {CA_CERT_FILE} and {CA_KEY_FILE}); "
                    "run `hexchange-certs init --ca-dir PATH --name NAME` first"
                )
            try:
                self._ca = CertificateAuthority.load(
                    self.cert_file.read_bytes(), self.key_file.read_bytes()
                )
            except PermissionError:
                raise CertsError(
                    f"cannot read the CA files in {self.path}: permission denied"
                ) from None
        return self._ca

    # -- issuance and revocation -----------------------------------------------------------
    def record_issued(self, cert: x509.Certificate) -> None:
        identity = site_identity_from_certificate(cert)
        record = {
            "serial": _serial_hex(cert.serial_number),
            "org": identity.org,
            "site": identity.site,
            "not_before": cert.not_valid_before_utc.isoformat(),
            "not_after": cert.not_valid_after_utc.isoformat(),
            "issued_at": datetime.now(UTC).isoformat(),
        }
        with self._lock():
            append_record(self._file(ISSUED_FILE), record)

    def _revocations(self) -> dict[int, dict[str, Any]]:
        revocations: dict[int, dict[str, Any]] = {}
        for record in read_records(self._file(REVOKED_FILE)):
            serial = _serial_of(record)
            if serial is not None and serial not in revocations:
                revocations[serial] = record
        return revocations

    def list_issued(self) -> list[IssuedRecord]:
        revocations = self._revocations()
        result: list[IssuedRecord] = []
        for record in read_records(self._file(ISSUED_FILE)):
            serial = _serial_of(record)
            if serial is None:
                continue
            revocation = revocations.get(serial)
            revoked_at = revocation.get("revoked_at") if revocation else None
            result.append(
                IssuedRecord(
                    serial=serial,
                    org=str(record.get("org", "")),
                    site=str(record.get("site", "")),
                    not_before=datetime.fromisoformat(str(record["not_before"])),
                    not_after=datetime.fromisoformat(str(record["not_after"])),
                    revoked=revocation is not None,
                    revoked_at=datetime.fromisoformat(revoked_at)
                    if isinstance(revoked_at, str)
                    else None,
                    revocation_reason=str(revocation.get("reason")) if revocation else None,
                )
            )
        return result

    def _issued_serials(self) -> set[int]:
        serials = (_serial_of(r) for r in read_records(self._file(ISSUED_FILE)))
        return {s for s in serials if s is not None}

    def revoke(self, serial: int, reason: str = "unspecified") -> None:
        """Revoke an issued serial (idempotent). RevokedError if this CA never issued it."""
        with self._lock():
            if serial not in self._issued_serials():
                raise RevokedError(
                    f"no certificate with serial {_serial_hex(serial)} was issued by this CA"
                )
            if serial in self._revocations():
                return
            append_record(
                self._file(REVOKED_FILE),
                {
                    "serial": _serial_hex(serial),
                    "reason": reason,
                    "revoked_at": datetime.now(UTC).isoformat(),
                },
            )

    def is_revoked(self, serial: int) -> bool:
        """Cheap check; sees revocations written by other processes immediately."""
        try:
            st = os.stat(self._file(REVOKED_FILE))
        except FileNotFoundError:
            return False
        key = (st.st_ino, st.st_size, st.st_mtime_ns)
        if key != self._revoked_key:
            self._revoked = frozenset(self._revocations())
            self._revoked_key = key
        return serial in self._revoked

    # -- tokens and enrollment -------------------------------------------------------------
    def consume_token(self, claims: TokenClaims) -> None:
        """Mark a token used, durably; TokenError if it was used before (by any process)."""
        path = self._file(USED_TOKENS_FILE)
        with self._lock():
            records = read_records(path)
            if any(r.get("jti") == claims.token_id for r in records):
                raise TokenError("was already used")
            if len(records) >= USED_TOKEN_PRUNE_THRESHOLD:
                cutoff = (datetime.now(UTC) - USED_TOKEN_RETENTION).timestamp()
                kept = [r for r in records if float(r.get("exp", cutoff + 1)) > cutoff]
                if len(kept) < len(records):
                    rewrite_records(path, kept)
            append_record(
                path,
                {
                    "jti": claims.token_id,
                    "org": claims.org,
                    "site": claims.site,
                    "exp": int(claims.expires_at.timestamp()),
                    "used_at": datetime.now(UTC).isoformat(),
                },
            )

    def used_token_ids(self) -> set[str]:
        """Ids (jti) of every token used or cancelled so far (as long as they are kept)."""
        return {str(r["jti"]) for r in read_records(self._file(USED_TOKENS_FILE)) if "jti" in r}

    def enroll(
        self,
        token: str,
        csr_pem: bytes,
        *,
        lifetime: timedelta = SITE_CERT_LIFETIME,
        now: datetime | None = None,
    ) -> x509.Certificate:
        """Verify the token and CSR, then burn the token and issue the site certificate."""
        ca = self.load()
        claims = verify_token(token, ca.public_key, now=now)
        # Signing validates the CSR; the certificate is only released after the token is burnt.
        cert = ca.sign_site_csr(
            csr_pem, org=claims.org, site=claims.site, lifetime=lifetime, now=now
        )
        self.consume_token(claims)
        self.record_issued(cert)
        return cert

    def renew(
        self,
        current: x509.Certificate,
        csr_pem: bytes,
        *,
        lifetime: timedelta = SITE_CERT_LIFETIME,
        now: datetime | None = None,
    ) -> x509.Certificate:
        """Issue a fresh certificate for the same org/site as a valid, unrevoked `current`."""
        ca = self.load()
        moment = _now(now)
        verify_issued_by(current, ca.certificate, now=moment)
        identity = site_identity_from_certificate(current)
        if self.is_revoked(current.serial_number):
            raise RevokedError(
                f"certificate {_serial_hex(current.serial_number)} for "
                f"{identity.org}/{identity.site} is revoked; re-enroll with a new token"
            )
        if current.serial_number not in self._issued_serials():
            raise CertsError("certificate is not in this CA's issuance records; re-enroll")
        cert = ca.sign_site_csr(
            csr_pem, org=identity.org, site=identity.site, lifetime=lifetime, now=moment
        )
        self.record_issued(cert)
        return cert

    def server_certificate(
        self,
        hostnames: Sequence[str],
        ips: Sequence[str] = ("127.0.0.1",),
        *,
        lifetime: timedelta = SERVER_CERT_LIFETIME,
    ) -> tuple[bytes, bytes]:
        """(cert_pem, key_pem) for the hub's TLS listener."""
        cert, key = self.load().issue_server_certificate(hostnames, ips, lifetime=lifetime)
        return certificate_pem(cert), private_key_pem(key)
