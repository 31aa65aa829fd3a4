"""Certificate renewal: a new site key and certificate at about two thirds of the lifetime.

The new key and certificate are written next to the current ones, then renamed into place
(key first, then certificate); `complete_pending` finishes a renewal cut short by a crash.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import structlog
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certs.keys import build_csr, new_site_key, private_key_pem
from node_agent.files import durable_write, fsync_dir
from node_agent.hubclient import HubClient
from node_agent.identity import AgentIdentity, write_private
from wire.api import RenewRequest, sign_encryption_key

log = structlog.get_logger("hexchange.agent.renewal")


def needs_renewal(cert: x509.Certificate, now: dt.datetime | None = None) -> bool:
    now = now or dt.datetime.now(dt.UTC)
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    return now >= start + (end - start) * 2 / 3


def complete_pending(folder: Path) -> None:
    """Finish, or drop, a renewal that a crash interrupted.

    The new certificate is written last, so: with `next-site.pem` present the renewal is whole
    (rename the key if it is still pending, then the certificate); with only `next-site.key`
    the certificate was lost, so the new key is dropped and the old pair stays (the agent
    renews again; the hub allows that while the site is not revoked).
    """
    next_key, next_cert = folder / "next-site.key", folder / "next-site.pem"
    if next_cert.exists():
        if next_key.exists():
            os.replace(next_key, folder / "site.key")
        os.replace(next_cert, folder / "site.pem")
    elif next_key.exists():
        next_key.unlink()
    if folder.exists():
        fsync_dir(folder)


def renew(identity: AgentIdentity, client: HubClient) -> AgentIdentity:
    """Renew now; updates `identity` in place (everyone holding it signs with the new key)."""
    key = new_site_key()
    raw = identity.encryption_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    request = RenewRequest(
        csr_pem=build_csr(key, org=identity.org, site=identity.site).decode(),
        encryption_key_signature=sign_encryption_key(key, raw),
    )
    response = client.renew(request)
    cert = x509.load_pem_x509_certificate(response.certificate_pem.encode())
    folder = identity.folder
    write_private(folder / "next-site.key", private_key_pem(key))
    durable_write(folder / "next-site.pem", response.certificate_pem.encode())
    complete_pending(folder)
    identity.signing_key = key
    identity.certificate = cert
    client.reload(identity)
    log.info(
        "certificate renewed",
        serial=identity.serial_hex,
        not_after=cert.not_valid_after_utc.isoformat(),
    )
    return identity
