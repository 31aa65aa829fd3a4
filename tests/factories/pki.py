"""A real PKI made in code for tests: a CA directory, a hub server certificate, and site
credentials obtained by the same token + CSR enrollment that agents use.

    network = make_network(tmp_path)
    clinic = network.site("acme", "clinic-a")      # clinic.cert_file, .key_file, .ca_file
    stranger = foreign_ca_site(tmp_path, "acme", "clinic-a")  # same names, unrelated CA
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import ClassVar

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from certs.ca import CertificateAuthority
from certs.keys import build_csr, certificate_pem, new_site_key, private_key_pem
from certs.registry import CADirectory
from certs.tokens import issue_token


@dataclass(frozen=True)
class SiteCredentials:
    org: str
    site: str
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    cert_file: Path
    key_file: Path
    ca_file: Path

    @property
    def cert_pem(self) -> bytes:
        return certificate_pem(self.cert)

    @property
    def key_pem(self) -> bytes:
        return private_key_pem(self.key)

    @property
    def ca_pem(self) -> bytes:
        return self.ca_file.read_bytes()


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _enroll_site(
    directory: CADirectory, out_dir: Path, org: str, site: str, lifetime: timedelta
) -> SiteCredentials:
    ca = directory.load()
    key = new_site_key()
    token = issue_token(ca, org=org, site=site)
    cert = directory.enroll(token, build_csr(key, org=org, site=site), lifetime=lifetime)
    site_dir = out_dir / org / site
    cert_file, key_file = site_dir / "site.pem", site_dir / "site.key"
    _write_private(key_file, private_key_pem(key))
    cert_file.write_bytes(certificate_pem(cert))
    return SiteCredentials(
        org=org,
        site=site,
        key=key,
        cert=cert,
        cert_file=cert_file,
        key_file=key_file,
        ca_file=directory.cert_file,
    )


@dataclass
class TestNetwork:
    """A CA directory plus a hub certificate for 127.0.0.1 / localhost."""

    __test__: ClassVar[bool] = False  # not a pytest test class

    root: Path
    ca_dir: CADirectory
    hub_cert_file: Path
    hub_key_file: Path
    sites: dict[tuple[str, str], SiteCredentials] = field(default_factory=dict)

    @property
    def ca(self) -> CertificateAuthority:
        return self.ca_dir.load()

    @property
    def ca_file(self) -> Path:
        return self.ca_dir.cert_file

    def site(
        self, org: str, site: str, *, lifetime: timedelta = timedelta(days=7)
    ) -> SiteCredentials:
        """Enroll org/site through a real token and CSR (a new certificate on every call)."""
        creds = _enroll_site(self.ca_dir, self.root / "sites", org, site, lifetime)
        self.sites[(org, site)] = creds
        return creds


def make_network(tmp_path: Path, *, name: str = "Test Network CA") -> TestNetwork:
    root = tmp_path / "pki"
    directory = CADirectory(root / "ca")
    directory.init(name)
    cert_pem, key_pem = directory.server_certificate(["localhost"], ["127.0.0.1"])
    hub_cert_file, hub_key_file = root / "hub" / "hub.pem", root / "hub" / "hub.key"
    _write_private(hub_key_file, key_pem)
    hub_cert_file.write_bytes(cert_pem)
    return TestNetwork(
        root=root, ca_dir=directory, hub_cert_file=hub_cert_file, hub_key_file=hub_key_file
    )


def foreign_ca_site(tmp_path: Path, org: str, site: str) -> SiteCredentials:
    """Site credentials for org/site from a separate, unrelated CA (to test refusals)."""
    root = tmp_path / "foreign-pki"
    directory = CADirectory(root / "ca")
    if not directory.exists():
        directory.init("Foreign CA")
    return _enroll_site(directory, root / "sites", org, site, timedelta(days=7))
