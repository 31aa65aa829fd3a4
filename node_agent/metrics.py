"""Prometheus metrics, read from the agent's durable state at scrape time.

Counts come from the SQLite state rather than in-memory counters, so they survive restarts
and kill -9. Labels are states and organization ids only: never patient data.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from node_agent.state import AgentState


class StateCollector(Collector):
    def __init__(self, state: AgentState) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        with self.state.connect() as conn:
            instances = conn.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM instances")
            count, size = instances.fetchone()
            outbox = conn.execute(
                "SELECT state, dest_org, COUNT(*), COALESCE(SUM(sealed_bytes), 0) FROM outbox "
                "GROUP BY state, dest_org"
            ).fetchall()
            oldest = conn.execute(
                "SELECT MIN(created_at) FROM outbox WHERE state IN ('sealed', 'uploading')"
            ).fetchone()[0]
            inbound = conn.execute("SELECT state, COUNT(*) FROM inbound GROUP BY state").fetchall()
            studies = conn.execute("SELECT state, COUNT(*) FROM studies GROUP BY state").fetchall()
            quarantine = conn.execute(
                "SELECT kind, COUNT(*) FROM quarantine GROUP BY kind"
            ).fetchall()
        yield GaugeMetricFamily(
            "hexchange_agent_spooled_instances", "Instances in the spool", count
        )
        yield GaugeMetricFamily("hexchange_agent_spooled_bytes", "Bytes in the spool", size)
        bundles = GaugeMetricFamily(
            "hexchange_agent_outbox_bundles", "Outbox bundles", labels=["state", "destination_org"]
        )
        sealed = GaugeMetricFamily(
            "hexchange_agent_outbox_bytes",
            "Sealed bytes in the outbox",
            labels=["state", "destination_org"],
        )
        for row in outbox:
            bundles.add_metric([row[0], row[1]], row[2])
            sealed.add_metric([row[0], row[1]], row[3])
        yield bundles
        yield sealed
        yield GaugeMetricFamily(
            "hexchange_agent_oldest_pending_seconds",
            "Age of the oldest bundle not yet uploaded",
            time.time() - oldest if oldest else 0.0,
        )
        for name, rows, help_text in (
            ("hexchange_agent_inbound_deliveries", inbound, "Inbound deliveries by state"),
            ("hexchange_agent_studies", studies, "Studies by pipeline state"),
        ):
            family = GaugeMetricFamily(name, help_text, labels=["state"])
            for state_name, n in rows:
                family.add_metric([state_name], n)
            yield family
        family = GaugeMetricFamily(
            "hexchange_agent_quarantined", "Quarantined items", labels=["kind"]
        )
        for kind, n in quarantine:
            family.add_metric([kind], n)
        yield family


def make_registry(state: AgentState) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(StateCollector(state))
    return registry


def serve_metrics(state: AgentState, host: str, port: int) -> None:
    start_http_server(port, addr=host, registry=make_registry(state))
