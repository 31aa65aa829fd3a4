"""The agent's composition root: build every part from the config, run the loops."""

from __future__ import annotations

import shutil
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from node_agent.arrivals import ArrivalBoard, ArrivalTee
from node_agent.config import AgentConfig
from node_agent.dicom.scp import start_scp
from node_agent.dicom.store import make_store
from node_agent.hubclient import HubClient, HubRefused, HubUnavailable
from node_agent.identity import AgentIdentity, load_identity
from node_agent.inbound import Inbound
from node_agent.ledger import Ledger
from node_agent.pipeline import Pipeline
from node_agent.policy import PolicyCache
from node_agent.recipients import RecipientDirectory
from node_agent.requests import Requests
from node_agent.spool import Spool
from node_agent.state import AgentState
from node_agent.uploader import Uploader
from wire.api import Heartbeat, QuarantineReason, one_line

log = structlog.get_logger("hexchange.agent")

AGENT_VERSION = "0.1.0"


def build_heartbeat(
    state: AgentState,
    data_dir: Path,
    policy_version: int | None,
    interval_s: float | None = None,
) -> Heartbeat:
    """What the hub's admin view shows about this agent, read from the queue.

    `held_studies`: no sharing rule matches them. `partial_studies`: studies that went out
    without some of their instances, or not at all, because those are quarantined (ledger
    states `partial` and `quarantined`). `inbound_waiting`: deliveries not yet stored and
    acknowledged (downloading, stored awaiting the ack, or failed awaiting an operator).
    `last_error`: the latest error of an outbox bundle or an inbound delivery.
    """
    with state.connect() as conn:
        pending = conn.execute(
            "SELECT COUNT(*), MIN(created_at), COALESCE(SUM(sealed_bytes), 0) FROM outbox "
            "WHERE state IN ('sealed', 'uploading')"
        ).fetchone()
        last_error = conn.execute(
            "SELECT last_error FROM (SELECT last_error, updated_at FROM outbox "
            "UNION ALL SELECT last_error, updated_at FROM inbound) "
            "WHERE last_error IS NOT NULL ORDER BY updated_at DESC LIMIT 1"
        ).fetchone()
        studies = dict(conn.execute("SELECT state, COUNT(*) FROM studies GROUP BY state"))
        quarantined = conn.execute(
            "SELECT COUNT(*) FROM instances WHERE state = 'quarantined'"
        ).fetchone()[0]
        inbound_waiting = conn.execute(
            "SELECT COUNT(*) FROM inbound WHERE state IN ('downloading', 'stored', 'failed')"
        ).fetchone()[0]
        reasons = _quarantine_reasons(conn)
    oldest = time.time() - pending[1] if pending[1] else None
    return Heartbeat(
        agent_version=AGENT_VERSION,
        queue_depth=pending[0],
        oldest_item_age_s=oldest,
        bytes_pending=pending[2],
        disk_free_bytes=shutil.disk_usage(data_dir).free,
        last_error=one_line(last_error[0], 2000) if last_error else None,
        policy_version=policy_version,
        held_studies=studies.get("held", 0),
        partial_studies=studies.get("partial", 0) + studies.get("quarantined", 0),
        quarantined_instances=quarantined,
        inbound_waiting=inbound_waiting,
        quarantine_reasons=reasons,
        interval_s=interval_s,
    )


def _quarantine_reasons(conn: sqlite3.Connection) -> dict[QuarantineReason, int]:
    """Items still waiting for a decision (an instance not released, a delivery not retried),
    counted by kind of reason. A kind an older agent did not record counts as `other`."""
    counts: dict[QuarantineReason, int] = {}
    for category, count in conn.execute(
        "SELECT q.category, COUNT(*) FROM quarantine q "
        "LEFT JOIN instances i ON q.kind = 'instance' AND i.sop_uid = q.ref "
        "LEFT JOIN inbound d ON q.kind = 'delivery' AND d.bundle_id = q.ref "
        "WHERE i.state = 'quarantined' OR d.state = 'failed' GROUP BY q.category"
    ):
        try:
            reason = QuarantineReason(category)
        except ValueError:
            reason = QuarantineReason.OTHER
        counts[reason] = counts.get(reason, 0) + int(count)
    return counts


@dataclass
class Agent:
    config: AgentConfig
    state: AgentState
    identity: AgentIdentity
    client: HubClient
    spool: Spool
    pipeline: Pipeline
    uploader: Uploader
    inbound: Inbound
    policy: PolicyCache
    stop_event: threading.Event = field(default_factory=threading.Event)
    sealed: threading.Event = field(default_factory=threading.Event)  # wakes the upload loop
    received: threading.Event = field(default_factory=threading.Event)  # a part's worth spooled
    requests: Requests | None = None  # federated query/retrieve (node_agent/requests.py)
    arrivals: ArrivalBoard = field(default_factory=ArrivalBoard)

    def heartbeat(self) -> None:
        cached = self.policy.load()
        beat = build_heartbeat(
            self.state,
            self.config.agent.data_dir,
            cached.version if cached else None,
            self.config.agent.heartbeat_seconds,
        )
        self.client.heartbeat(beat)

    def _loop(
        self,
        name: str,
        interval: float,
        step: Callable[[], object],
        wake: threading.Event | None = None,
    ) -> None:
        """Run `step` every `interval` seconds (backing off after failures) until stopped; a
        `wake` event set by another loop starts the next step at once."""
        failures = 0
        while not self.stop_event.is_set():
            try:
                step()
                failures = 0
            except HubUnavailable as exc:  # the link: retried at the normal pace
                log.warning("hub unavailable", loop=name, reason=str(exc))
            except HubRefused as exc:  # e.g. revoked: say so plainly, and slow down
                failures += 1
                log.error("hub refused this agent", loop=name, status=exc.status, detail=exc.detail)
            except Exception as exc:  # a loop must survive one bad item; it is logged
                failures += 1
                log.exception("loop step failed", loop=name, error=type(exc).__name__)
            pause = min(interval * (2 ** min(failures, 8)), max(interval, 300.0))
            # after a failure the back-off holds even if another loop sets `wake`
            (wake if wake is not None and not failures else self.stop_event).wait(pause)
            if wake is not None:
                wake.clear()

    def _renew_if_due(self) -> None:
        from node_agent.renewal import needs_renewal, renew

        if needs_renewal(self.identity.certificate):
            renew(self.identity, self.client)

    def _refresh_policy(self) -> None:
        before = self.policy.load()
        after = self.policy.refresh(self.client)
        if before is None or before.version != after.version:
            # a new policy may now send what the old one held back
            Ledger(self.state).release_held()

    def _seal_step(self) -> None:
        """Seal parts of studies still arriving, then the studies that became stable; wake the
        upload loop for what was sealed (it runs on its own thread, so a large study's upload
        overlaps its receive and the sealing of its next part)."""
        sealed = sum(stage() for _name, stage in self.pipeline.stages())
        if sealed:
            self.sealed.set()

    def _upload_step(self) -> None:
        self.uploader.run_once()

    def run(self) -> None:
        recovered = self.spool.recover()  # before the SCP answers anyone, before the pipeline
        if recovered.registered or recovered.set_aside or recovered.partials_removed:
            log.warning(
                "spool files registered again after a restart",
                registered=recovered.registered,
                set_aside=recovered.set_aside,
                partials_removed=recovered.partials_removed,
            )
        self.pipeline.recover()
        self.uploader.recover_leases()
        server = start_scp(self.config.dicom, self.spool, self.config.pipeline.quiet_period_for)
        if self.config.metrics.enabled:
            from node_agent.metrics import serve_metrics

            serve_metrics(self.state, self.config.metrics.host, self.config.metrics.port)
        log.info(
            "agent running",
            org=self.identity.org,
            site=self.identity.site,
            dicom_port=self.config.dicom.port,
        )
        loops: list[tuple[str, float, Callable[[], object], threading.Event | None]] = [
            ("seal", self.config.pipeline.poll_seconds, self._seal_step, self.received),
            ("upload", self.config.pipeline.poll_seconds, self._upload_step, self.sealed),
            ("heartbeat", self.config.agent.heartbeat_seconds, self.heartbeat, None),
            ("policy", self.config.pipeline.policy_poll_seconds, self._refresh_policy, None),
            ("renewal", 600.0, self._renew_if_due, None),
        ]
        if self.config.inbound.enabled:
            loops.append(("inbound", self.config.inbound.poll_seconds, self.inbound.run_once, None))
        answering = self.config.answering
        if self.requests is not None and answering is not None and answering.enabled:
            loops.append(("requests", 0.05, self.requests.answer_step, None))
        qr_server = None
        qr = self.config.query_retrieve
        if self.requests is not None and qr is not None and qr.enabled:
            from node_agent.dicom.qr_scp import start_qr_scp

            qr_server = start_qr_scp(qr, self.requests, self.arrivals)
        if self.config.pacs and self.config.pacs.schedule:
            from node_agent.dicom.pull import pull_loop_step

            loops.append(
                (
                    "pacs-pull",
                    self.config.pacs.schedule,
                    lambda: pull_loop_step(self.config, self.state),
                    None,
                )
            )
        threads = [
            threading.Thread(target=self._loop, args=loop, name=loop[0], daemon=True)
            for loop in loops
        ]
        for thread in threads:
            thread.start()
        try:
            while not self.stop_event.is_set():
                self.stop_event.wait(0.5)
        finally:
            self.sealed.set()  # an upload loop waiting for work sees the stop at once
            self.received.set()
            server.shutdown()
            if qr_server is not None:
                qr_server.shutdown()
            for thread in threads:
                thread.join(timeout=10)
            self.client.close()


def build_agent(config: AgentConfig) -> Agent:
    state = AgentState(config.agent.data_dir / "state.db")
    identity = load_identity(config.agent.data_dir / "identity")
    client = HubClient(config.hub.node_url, identity, timeout=config.hub.timeout_seconds)
    directory = RecipientDirectory(client, identity)
    from node_agent.deid_step import make_deidentifier

    policy_cache = PolicyCache(config.agent.data_dir / "policy.json", identity.hub_receipt_key)
    pipeline = Pipeline(
        config,
        state,
        identity,
        directory.keys_for,
        policy_cache.destinations_for,
        make_deidentifier(config),
    )
    arrivals = ArrivalBoard()
    store = ArrivalTee(
        make_store(config.inbound, config.received_folder, config.dicom.ae_title), arrivals
    )
    received = threading.Event()
    spool = Spool(
        config.agent.data_dir / "spool",
        state,
        wake=received,
        wake_bytes=int(config.pipeline.part_mib * 1024 * 1024),
    )
    return Agent(
        config=config,
        state=state,
        identity=identity,
        client=client,
        spool=spool,
        received=received,
        pipeline=pipeline,
        uploader=Uploader(config, state, identity, client),
        policy=policy_cache,
        inbound=Inbound(config, state, identity, client, store),
        requests=Requests(
            config,
            identity,
            client,
            state,
            directory.keys_for,
            policy_cache.load,
            pull=lambda study_uid: pull_requested_study(config, state, spool, study_uid),
        ),
        arrivals=arrivals,
    )


def pull_requested_study(config: AgentConfig, state: AgentState, spool: Spool, uid: str) -> None:
    """Another organization retrieves a study: pull it from the PACS ahead of everything
    (priority 0); the sharing policy then sends it identified to that organization."""
    from node_agent.dicom.pull import Puller, PullError, PullQuery

    try:
        Puller.from_config(config, state, spool).run(
            PullQuery(study_uids=(uid,)), retry_now=True, priority=0
        )
    except PullError as exc:
        log.warning("requested study could not be pulled", reason=str(exc))
