"""`ssl.SSLContext` factories for the hub listener and for agents talking to the hub."""

from __future__ import annotations

import shutil
import ssl
import tempfile
from pathlib import Path

from certs.errors import CertsError

# TLS 1.2 suites: forward secret (ECDHE) AEAD only. TLS 1.3 suites are all AEAD and forward
# secret; OpenSSL's defaults are kept for them.
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


def _base_context(purpose: int) -> ssl.SSLContext:
    context = ssl.SSLContext(purpose)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    context.set_ciphers(TLS12_CIPHERS)
    return context


def _load_chain(context: ssl.SSLContext, cert_file: Path, key_file: Path) -> None:
    try:
        context.load_cert_chain(certfile=str(cert_file), keyfile=str(key_file))
    except (OSError, ssl.SSLError) as exc:
        raise CertsError(
            f"cannot load certificate {cert_file} with key {key_file}: {exc}"
        ) from None


def _load_ca(
    context: ssl.SSLContext, *, cafile: Path | None = None, cadata: str | None = None
) -> None:
    try:
        context.load_verify_locations(cafile=str(cafile) if cafile else None, cadata=cadata)
    except (OSError, ssl.SSLError) as exc:
        raise CertsError(f"cannot load the network CA certificate: {exc}") from None


def server_ssl_context(
    cert_file: Path,
    key_file: Path,
    *,
    client_ca_file: Path | None = None,
    require_client_cert: bool = False,
) -> ssl.SSLContext:
    """Hub listener context; with `require_client_cert` only certs from the CA file pass."""
    context = _base_context(ssl.PROTOCOL_TLS_SERVER)
    _load_chain(context, cert_file, key_file)
    if require_client_cert and client_ca_file is None:
        raise CertsError("require_client_cert needs client_ca_file (the network CA)")
    if client_ca_file is not None:
        _load_ca(context, cafile=client_ca_file)
        context.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    else:
        context.verify_mode = ssl.CERT_NONE
    return context


def client_ssl_context(
    ca_file: Path, *, cert_file: Path | None = None, key_file: Path | None = None
) -> ssl.SSLContext:
    """Agent context: trusts only the network CA, checks the hub hostname, TLS 1.2+."""
    if (cert_file is None) != (key_file is None):
        raise CertsError("give both cert_file and key_file, or neither")
    context = _base_context(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    _load_ca(context, cafile=ca_file)
    if cert_file is not None and key_file is not None:
        _load_chain(context, cert_file, key_file)
    return context


def client_ssl_context_from_pem(
    ca_pem: bytes, cert_pem: bytes | None = None, key_pem: bytes | None = None
) -> ssl.SSLContext:
    """As `client_ssl_context`, from PEM bytes. The client key passes through a private
    (0700) temporary directory that is removed as soon as the chain is loaded."""
    if (cert_pem is None) != (key_pem is None):
        raise CertsError("give both cert_pem and key_pem, or neither")
    context = _base_context(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    _load_ca(context, cadata=ca_pem.decode("ascii", errors="replace"))
    if cert_pem is not None and key_pem is not None:
        tmp = Path(tempfile.mkdtemp(prefix="hexchange-tls-"))  # created 0700
        try:
            cert_file, key_file = tmp / "cert.pem", tmp / "key.pem"
            cert_file.write_bytes(cert_pem)
            key_file.touch(mode=0o600)
            key_file.write_bytes(key_pem)
            _load_chain(context, cert_file, key_file)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return context
