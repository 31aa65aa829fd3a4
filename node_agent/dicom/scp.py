"""DICOM C-STORE / C-ECHO service class provider of the agent."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, _config, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from pynetdicom.transport import ThreadedAssociationServer

from node_agent.config import DicomSection
from node_agent.spool import Spool, SpoolError

log = structlog.get_logger("hexchange.agent.scp")

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC000


def receive_in_chunks() -> None:
    """Have pynetdicom write each received data set to a temporary file as it arrives, so a
    large instance is never held in memory (the handler moves the file into the spool)."""
    _config.STORE_RECV_CHUNKED_DATASET = True


def _received_path(event: Any) -> Path | None:
    try:
        path = event.dataset_path
    except AttributeError:
        return None
    return Path(path) if path else None


def make_store_handler(spool: Spool, quiet_for: Callable[[str], float] | None = None) -> Any:
    """The C-STORE handler: into the spool, durably, then success. `quiet_for` maps the
    calling AE title to its quiet period (`[pipeline] quiet_period_by_source`)."""

    def handle_store(event: Any) -> int:
        received = _received_path(event)
        calling_ae = str(event.assoc.requestor.ae_title).strip()
        quiet_s = None
        if quiet_for is not None:
            quiet_s = quiet_for(calling_ae)
        try:
            if received is not None:
                # the temporary file is deleted when this handler returns: take it now
                stored = spool.store_file(received, quiet_s, calling_ae)
            else:
                stored = spool.store(event.encoded_dataset(), quiet_s, calling_ae)
        except SpoolError as exc:
            log.warning("c-store refused", reason=str(exc))
            return CANNOT_UNDERSTAND
        except OSError as exc:
            log.error(
                "c-store failed: spool not writable",
                error=type(exc).__name__,
                errno=exc.errno,
                hint="check disk space and permissions of data_dir",
            )
            return OUT_OF_RESOURCES
        log.info("instance stored", duplicate=stored.duplicate)
        return SUCCESS

    return handle_store


def make_ae(config: DicomSection) -> AE:
    ae = AE(ae_title=config.ae_title)
    for context in AllStoragePresentationContexts:
        assert context.abstract_syntax is not None  # every storage context names its class
        ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
    ae.add_supported_context(Verification)
    if config.allowed_calling_aes:
        ae.require_calling_aet = list(config.allowed_calling_aes)
    ae.maximum_pdu_size = 0
    return ae


def dicom_tls_context(config: DicomSection) -> ssl.SSLContext | None:
    """The optional DICOM TLS context (PS3.15 Annex B style: TLS 1.2+, client certs optional)."""
    if config.tls_cert_file is None or config.tls_key_file is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(config.tls_cert_file, config.tls_key_file)
    if config.tls_client_ca_file is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(config.tls_client_ca_file)
    return context


def start_scp(
    config: DicomSection, spool: Spool, quiet_for: Callable[[str], float] | None = None
) -> ThreadedAssociationServer:
    receive_in_chunks()
    ae = make_ae(config)
    handlers: list[Any] = [(evt.EVT_C_STORE, make_store_handler(spool, quiet_for))]
    server = ae.start_server(
        (config.host, config.port),
        block=False,
        evt_handlers=handlers,
        ssl_context=dicom_tls_context(config),
    )
    assert server is not None
    return server
