"""Heartbeat history is bounded: one row per site per interval, nothing older than the window."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func
from sqlmodel import select

from hub.fleet import service as fleet
from hub.fleet.models import SiteHeartbeat
from hub.principals import Principal
from tests.hub.api_world import World
from wire.api import Heartbeat


def test_history_keeps_one_beat_per_interval_and_forgets_past_the_window(world: World) -> None:
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    beat = Heartbeat(agent_version="1", queue_depth=0, bytes_pending=0, disk_free_bytes=1)
    with world.services.session() as session:
        for step in range(0, 2 * 24 * 120):  # two days of beats every 30 s
            now = start + dt.timedelta(seconds=30 * step)
            fleet.record_heartbeat(
                session, "org-a", "clinic", beat.model_copy(update={"queue_depth": step}),
                now=now, keep=dt.timedelta(days=1), every=dt.timedelta(minutes=10),
            )  # fmt: skip
        count = session.exec(select(func.count()).select_from(SiteHeartbeat)).one()
        oldest = session.exec(select(func.min(SiteHeartbeat.at))).one()
        assert 144 <= count <= 146  # one day at one row per 10 minutes
        window = dt.timedelta(days=1, minutes=10)  # pruning runs when a history row is added
        assert oldest is not None and oldest.replace(tzinfo=dt.UTC) >= now - window
        rows = fleet.fleet(session, world.services.ca, Principal.cli(), "org-a", now=now)
        clinic = next(r for r in rows if r.site == "clinic")
        assert clinic.queue_depth == step and not clinic.stale  # the newest beat, always
        later = fleet.fleet(
            session, world.services.ca, Principal.cli(), "org-a", now=now + dt.timedelta(hours=1)
        )
        assert next(r for r in later if r.site == "clinic").stale
