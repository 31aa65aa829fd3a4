"""Inbound deliveries: download, verify the sender, open, store locally, then acknowledge."""

from __future__ import annotations

import time
from pathlib import Path

import structlog
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from certs.errors import CertsError
from certs.identity import site_identity_from_certificate
from certs.keys import verify_issued_by
from node_agent.backoff import schedule_retry
from node_agent.config import AgentConfig
from node_agent.dicom.store import InstanceInvalid, InstanceStore, StoreError
from node_agent.files import durable_write
from node_agent.hubclient import HubClient, HubRefused, HubUnavailable
from node_agent.identity import AgentIdentity
from node_agent.ledger import Ledger
from node_agent.state import AgentState
from wire.api import Delivery
from wire.envelope import (
    SealedHeader,
    check_chunk,
    open_data_key,
    open_stream,
    parse_header,
    verify_header,
)
from wire.errors import WireError
from wire.payload import PiecesReader, read_payload

log = structlog.get_logger("hexchange.agent.inbound")


class Inbound:
    def __init__(
        self,
        config: AgentConfig,
        state: AgentState,
        identity: AgentIdentity,
        client: HubClient,
        store: InstanceStore,
    ) -> None:
        self.config = config
        self.state = state
        self.identity = identity
        self.client = client
        self.store = store
        self.ledger = Ledger(state)
        self.folder = config.agent.data_dir / "inbound"

    def run_once(self) -> int:
        try:
            listing = self.client.deliveries()
        except HubUnavailable as exc:
            log.warning("cannot list deliveries", reason=str(exc))
            return 0
        done = 0
        now = time.time()
        for delivery in listing.deliveries:
            with self.state.connect() as conn:
                row = conn.execute(
                    "SELECT state, next_attempt_at FROM inbound WHERE bundle_id = ?",
                    (delivery.bundle_id,),
                ).fetchone()
            if row is not None and (
                row["state"] in ("failed", "discarded") or row["next_attempt_at"] > now
            ):
                continue
            if self.receive(delivery):
                done += 1
        self._finish_stored({d.bundle_id for d in listing.deliveries})
        return done

    def _finish_stored(self, listed: set[str]) -> None:
        """Ack bundles stored here whose ack was lost (crash, or the hub died after it
        committed): the hub no longer lists them, so `receive` never sees them again."""
        with self.state.connect() as conn:
            rows = conn.execute("SELECT bundle_id FROM inbound WHERE state = 'stored'").fetchall()
        for bundle_id in {r["bundle_id"] for r in rows} - listed:
            try:
                self.client.ack(bundle_id)  # idempotent at the hub
            except (HubUnavailable, HubRefused) as exc:
                log.warning(
                    "stored delivery not acknowledged yet", bundle_id=bundle_id, reason=str(exc)
                )
                continue
            self.ledger.delivery_acked(bundle_id)
            self._cleanup(self.folder / bundle_id)

    def _verify_sender(self, delivery: Delivery, header: SealedHeader) -> None:
        try:
            cert = x509.load_pem_x509_certificate(delivery.sender_certificate_pem.encode())
            # valid when it signed (a bundle may wait longer than a certificate lives)
            verify_issued_by(cert, self.identity.ca_certificate, now=header.manifest.created_at)
            sender = site_identity_from_certificate(cert)
        except (CertsError, ValueError) as exc:
            raise WireError(f"sender certificate not issued by the network CA: {exc}") from exc
        manifest = header.manifest
        if (sender.org, sender.site) != (manifest.sender_org, manifest.sender_site):
            raise WireError("the manifest's sender is not the certificate's site")
        if self.identity.org not in manifest.recipients:
            raise WireError("this organization is not a recipient of the bundle")
        public_key = cert.public_key()
        if not isinstance(public_key, ec.EllipticCurvePublicKey):
            raise WireError("sender certificate holds no EC key")
        verify_header(header, public_key)

    def receive(self, delivery: Delivery) -> bool:
        bundle_id = delivery.bundle_id
        folder = self.folder / bundle_id
        self.ledger.delivery_downloading(bundle_id, f"{delivery.sender_org}/{delivery.sender_site}")
        try:
            header_path = folder / "header.bin"
            if not header_path.exists():
                durable_write(header_path, self.client.delivery_header(bundle_id))
            header = parse_header(header_path.read_bytes())
            self._verify_sender(delivery, header)
            data_key = open_data_key(
                header, key_id=self.identity.key_id, private_key=self.identity.encryption_key
            )
            for index in range(header.manifest.chunk_count):
                path = folder / f"chunk-{index:07d}.bin"
                if path.exists():
                    continue
                data = self.client.delivery_chunk(bundle_id, index)
                check_chunk(header, index, data)
                durable_write(path, data)
            chunks = (
                (folder / f"chunk-{i:07d}.bin").read_bytes()
                for i in range(header.manifest.chunk_count)
            )
            stream = PiecesReader(open_stream(header, data_key, chunks))
            sop_uids: list[str] = []
            for _name, data in read_payload(stream):  # type: ignore[arg-type]
                sop_uids.append(self.store.store(data))
            self.store.confirm(sop_uids)
            count = len(sop_uids)
            held_back = dict(header.manifest.held_back or {})
            self.ledger.delivery_stored(bundle_id, count)
            self.client.ack(bundle_id)
        except (HubUnavailable, StoreError, OSError) as exc:
            self._retry(bundle_id, f"{type(exc).__name__}: {exc}")
            return False
        except (WireError, HubRefused, InstanceInvalid) as exc:
            self._fail(bundle_id, str(exc))
            return False
        self.ledger.delivery_acked(bundle_id)
        self._cleanup(folder)
        log.info("delivery stored", bundle_id=bundle_id, instances=count)
        if held_back:  # the study is incomplete: say how many are missing and why (classes only)
            log.warning(
                "delivery is partial: the sender held instances back",
                bundle_id=bundle_id,
                held_back=held_back,
                missing=sum(held_back.values()),
            )
        return True

    @staticmethod
    def _cleanup(folder: Path) -> None:
        for chunk in folder.glob("chunk-*.bin"):
            chunk.unlink(missing_ok=True)

    def _retry(self, bundle_id: str, reason: str) -> None:
        schedule_retry(
            self.state,
            "inbound",
            bundle_id,
            reason,
            base=self.config.upload.retry_base_seconds,
            cap=self.config.upload.retry_max_seconds,
        )
        log.warning("delivery will be retried", bundle_id=bundle_id, reason=reason)

    def _fail(self, bundle_id: str, reason: str) -> None:
        self.ledger.delivery_failed(bundle_id, reason)
        log.error("delivery refused and quarantined", bundle_id=bundle_id, reason=reason)
