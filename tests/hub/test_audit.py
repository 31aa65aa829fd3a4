"""The audit log is hash-chained: it verifies after real operations and breaks when edited."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlmodel import Session, col, select

from hub import audit
from hub.audit.chain import AuditBroken, checkpoint, entry_hash
from hub.models import AuditEvent, AuditHead
from tests.hub.conftest import PG_SESSION_TIMEZONE, EnrolledSite, Hub


def _events(hub: Hub) -> list[tuple[str, str, str]]:
    with hub.session() as session:
        rows = session.exec(select(AuditEvent).order_by(col(AuditEvent.id))).all()
        return [(row.actor, row.action, row.subject) for row in rows]


@pytest.fixture
def busy_hub(hub: Hub, sites: tuple[EnrolledSite, EnrolledSite, EnrolledSite]) -> Hub:
    """Three enrollments, one bundle sent A -> B, delivered and acked."""
    site_a, site_b, _ = sites
    sealed = site_a.seal(b"audit me" * 400, ["org-b"])
    site_a.push(sealed)
    site_a.push(sealed)  # a replay adds no events
    assert site_b.client.post(f"/node/v1/deliveries/{sealed.bundle_id}/ack").status_code == 204
    return hub


def test_operations_are_audited_and_the_chain_verifies(busy_hub: Hub) -> None:
    events = _events(busy_hub)
    admin = "test:network-admin"
    assert [(actor, action) for actor, action, _ in events] == [
        ("site:org-a/site-a", "site.enroll"),
        ("site:org-b/site-b", "site.enroll"),
        ("site:org-c/site-c", "site.enroll"),
        *[(admin, "policy.set")] * 6,  # the `sites` fixture: 3 sites x 2 destinations
        ("site:org-a/site-a", "bundle.header"),
        ("site:org-a/site-a", "bundle.complete"),
        ("site:org-b/site-b", "delivery.ack"),
    ]
    with busy_hub.session() as session:
        assert audit.verify_chain(session).events == len(events) == 12
        if busy_hub.backend == "postgresql":  # timestamps survive a non-UTC server session
            timezone = session.connection().execute(text("SHOW timezone")).scalar()
            assert timezone == PG_SESSION_TIMEZONE


def test_editing_a_detail_breaks_the_chain(busy_hub: Hub) -> None:
    with busy_hub.session() as session:
        event = session.exec(select(AuditEvent).where(AuditEvent.action == "bundle.complete")).one()
        assert "org-b" in event.detail
        event.detail = event.detail.replace("org-b", "org-c")
        session.add(event)
        session.commit()
        broken_seq = event.seq
    with busy_hub.session() as session, pytest.raises(ValueError, match=f"event {broken_seq}"):
        audit.verify_chain(session)


def test_rewriting_a_row_with_a_fresh_hash_still_breaks_the_next_link(busy_hub: Hub) -> None:
    with busy_hub.session() as session:
        rows = session.exec(select(AuditEvent).order_by(col(AuditEvent.seq))).all()
        victim, following = rows[-3], rows[-2]
        victim.actor = "site:org-c/site-c"
        victim.hash = entry_hash(victim.prev_hash, victim)
        session.add(victim)
        session.commit()
        following_seq = following.seq
    with busy_hub.session() as session, pytest.raises(ValueError, match=f"event {following_seq}"):
        audit.verify_chain(session)


def test_deleting_a_row_breaks_the_chain(busy_hub: Hub) -> None:
    with busy_hub.session() as session:
        rows = session.exec(select(AuditEvent).order_by(col(AuditEvent.seq))).all()
        session.delete(rows[1])
        session.commit()
        missing = rows[1].seq
    with busy_hub.session() as session, pytest.raises(ValueError, match=f"event {missing}"):
        audit.verify_chain(session)


def test_swapping_two_rows_breaks_the_chain(busy_hub: Hub) -> None:
    with busy_hub.session() as session:
        rows = session.exec(select(AuditEvent).order_by(col(AuditEvent.seq))).all()
        first, second = rows[3], rows[4]
        first.seq, second.seq = -1, -2  # free the unique seqs, then swap
        session.add_all([first, second])
        session.flush()
        first.seq, second.seq = 5, 4
        session.add_all([first, second])
        session.commit()
    with busy_hub.session() as session, pytest.raises(AuditBroken, match="event 4"):
        audit.verify_chain(session)


def test_truncating_the_newest_events_is_detected(busy_hub: Hub) -> None:
    key = busy_hub.signing_key()
    with busy_hub.session() as session:
        assert checkpoint(session, key) is not None  # signs event 12
        for row in session.exec(select(AuditEvent).where(col(AuditEvent.seq) > 9)):
            session.delete(row)
        # a careful attacker also rewinds the head row to the new last event
        last = session.exec(select(AuditEvent).where(AuditEvent.seq == 9)).one()
        head = session.get(AuditHead, 1)
        assert head is not None
        head.seq, head.hash = 9, last.hash
        session.add(head)
        session.commit()
    with busy_hub.session() as session, pytest.raises(AuditBroken, match="truncated"):
        audit.verify_chain(session, key.public_key())


def test_a_forged_checkpoint_is_refused(busy_hub: Hub) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    with busy_hub.session() as session:
        checkpoint(session, ec.generate_private_key(ec.SECP256R1()))  # not the hub's key
    with busy_hub.session() as session, pytest.raises(AuditBroken, match="not signed by this hub"):
        audit.verify_chain(session, busy_hub.signing_key().public_key())


def _append_many(url: str, who: str, count: int) -> None:
    from hub.db import make_engine

    engine = make_engine(url)
    try:
        for i in range(count):
            with Session(engine) as session:
                audit.record(session, actor=who, action="test.append", subject=str(i))
                session.commit()
    finally:
        engine.dispose()


def test_two_hub_processes_appending_at_once_never_fork_the_chain(database_url: str) -> None:
    import multiprocessing
    from pathlib import Path

    from hub.db import create_schema, make_engine

    if database_url.startswith("sqlite:///"):
        Path(database_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = make_engine(database_url)
    create_schema(engine)
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_append_many, args=(database_url, f"replica-{n}", 60))
        for n in range(2)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    with Session(engine) as session:
        report = audit.verify_chain(session)
        actors = {row.actor for row in session.exec(select(AuditEvent))}
    engine.dispose()
    assert report.events == 120 and actors == {"replica-0", "replica-1"}


def test_batched_appends_extend_the_same_chain_as_single_ones(database_url: str) -> None:
    """The access-event writer appends a batch with one head lock and one insert
    (`record_many`); interleaved with single appends the chain still verifies, seq stays
    gap-free, and a batch that crosses a multiple of 100 gets a signed checkpoint."""
    from pathlib import Path

    from cryptography.hazmat.primitives.asymmetric import ec

    from hub.audit.buffer import AccessEvent, AuditBuffer
    from hub.audit.chain import record_many
    from hub.db import create_schema, make_engine
    from hub.models import AuditCheckpoint

    if database_url.startswith("sqlite:///"):
        Path(database_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = make_engine(database_url)
    create_schema(engine)
    key = ec.generate_private_key(ec.SECP256R1())
    with Session(engine) as session:
        audit.record(session, actor="user:a", action="one")
        first, last = record_many(
            session, [{"actor": "user:b", "action": "batch", "subject": str(n)} for n in range(3)]
        )
        audit.record(session, actor="user:c", action="two")
        session.commit()
    assert (first, last) == (2, 4)
    buffer = AuditBuffer(engine, key)
    for n in range(120):
        buffer.put(AccessEvent("user:d", "GET /x", f"/x/{n}", "status 200", "org-a", "", "success"))
    assert buffer.flush() == 120
    with Session(engine) as session:
        report = audit.verify_chain(session, key.public_key())
        head = session.get(AuditHead, 1)
        rows = session.exec(select(AuditEvent).order_by(col(AuditEvent.seq))).all()
        checkpoints = session.exec(select(AuditCheckpoint.seq)).all()
    engine.dispose()
    assert report.events == 125 and head is not None and head.seq == 125
    assert [r.seq for r in rows] == list(range(1, 126))
    assert [r.action for r in rows[:5]] == ["one", "batch", "batch", "batch", "two"]
    assert rows[-1].subject == "/x/119" and head.hash == rows[-1].hash
    assert list(checkpoints) == [125]
