"""The audit log is hash-chained: it verifies after real operations and breaks when edited."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import text
from sqlmodel import col, select

from hub import audit
from hub.models import AuditEvent
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
        assert audit.verify_chain(session) == len(events) == 12
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
        broken_id = event.id
    with busy_hub.session() as session, pytest.raises(ValueError, match=f"event {broken_id}"):
        audit.verify_chain(session)


def test_rewriting_a_row_with_a_fresh_hash_still_breaks_the_next_link(busy_hub: Hub) -> None:
    with busy_hub.session() as session:
        rows = session.exec(select(AuditEvent).order_by(col(AuditEvent.id))).all()
        victim, following = rows[-3], rows[-2]
        victim.actor = "site:org-c/site-c"
        victim.hash = audit._entry_hash(
            victim.prev_hash,
            victim.at.replace(tzinfo=victim.at.tzinfo or dt.UTC).isoformat(),
            victim.actor,
            victim.action,
            victim.subject,
            victim.detail,
        )
        session.add(victim)
        session.commit()
        following_id = following.id
    with busy_hub.session() as session, pytest.raises(ValueError, match=f"event {following_id}"):
        audit.verify_chain(session)


def test_deleting_a_row_breaks_the_chain(busy_hub: Hub) -> None:
    with busy_hub.session() as session:
        rows = session.exec(select(AuditEvent).order_by(col(AuditEvent.id))).all()
        session.delete(rows[1])
        session.commit()
        next_id = rows[2].id
    with busy_hub.session() as session, pytest.raises(ValueError, match=f"event {next_id}"):
        audit.verify_chain(session)
