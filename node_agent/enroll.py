"""Enrollment: make keys here, send a CSR with the one-time token, keep the certificate."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from certs.keys import build_csr, new_site_key, private_key_pem
from certs.tls import client_ssl_context
from certs.tokens import TokenClaims  # noqa: F401  (documented token format)
from node_agent.config import AgentConfig
from node_agent.files import durable_write
from node_agent.identity import AgentIdentity, load_identity, write_private
from wire.api import EnrollRequest, EnrollResponse, sign_encryption_key


class EnrollmentFailed(Exception):
    pass


def _token_site(token: str) -> tuple[str, str]:
    """Read org and site from the token's payload (the hub checks the signature)."""
    try:
        payload = token.split(".")[1]
        data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return str(data["org"]), str(data["site"])
    except (IndexError, ValueError, KeyError) as exc:
        raise EnrollmentFailed(
            "the token is malformed; copy it again from the network admin"
        ) from exc


def enroll(config: AgentConfig, token: str) -> AgentIdentity:
    folder = config.agent.data_dir / "identity"
    if (folder / "identity.json").exists():
        raise EnrollmentFailed(
            f"this agent is already enrolled ({folder}); remove that folder to enroll it again"
        )
    org, site = _token_site(token.strip())
    signing_key = new_site_key()
    encryption_key = X25519PrivateKey.generate()
    raw_public = encryption_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    request = EnrollRequest(
        token=token.strip(),
        csr_pem=build_csr(signing_key, org=org, site=site).decode(),
        encryption_public_key=base64.b64encode(raw_public).decode(),
        encryption_key_signature=sign_encryption_key(signing_key, raw_public),
    )
    context = client_ssl_context(config.hub.ca_file)
    try:
        response = httpx.post(
            config.hub.public_url.rstrip("/") + "/api/v1/enroll",
            json=request.model_dump(mode="json"),
            verify=context,
            timeout=config.hub.timeout_seconds,
        )
    except httpx.HTTPError as exc:
        raise EnrollmentFailed(
            f"could not reach the hub at {config.hub.public_url}: {type(exc).__name__}; "
            "check hub.public_url and that the hub is running"
        ) from exc
    if response.status_code != 200:
        detail = response.json().get("detail", response.text) if response.content else ""
        raise EnrollmentFailed(f"the hub refused enrollment ({response.status_code}): {detail}")
    body = EnrollResponse.model_validate(response.json())
    write_private(folder / "site.key", private_key_pem(signing_key))
    write_private(
        folder / "encryption.key",
        encryption_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    durable_write(folder / "site.pem", body.certificate_pem.encode())
    durable_write(folder / "ca.pem", body.ca_pem.encode())
    durable_write(
        folder / "identity.json",
        json.dumps(
            {
                "org": body.org,
                "site": body.site,
                "hub_receipt_public_key_pem": body.hub_receipt_public_key_pem,
            },
            indent=2,
        ).encode(),
    )
    return load_identity(folder)


def identity_folder(data_dir: Path) -> Path:
    return data_dir / "identity"
