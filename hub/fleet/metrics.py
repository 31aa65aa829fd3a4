"""Prometheus metrics per site, read from the database at scrape time (so every hub replica
answers the same). Labels are org and site ids only: never patient data, never free text."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from hub.fleet.service import fleet
from hub.principals import Principal, Role
from hub.services import Services

_SYSTEM = Principal(kind="cli", name="metrics", role=Role.NETWORK_ADMIN, org=None)

_GAUGES = (
    ("queue_depth", "hexchange_site_queue_depth", "Bundles waiting to upload at the site"),
    ("oldest_item_age_s", "hexchange_site_oldest_item_age_seconds", "Age of the oldest item"),
    ("bytes_pending", "hexchange_site_bytes_pending", "Sealed bytes waiting to upload"),
    ("disk_free_bytes", "hexchange_site_disk_free_bytes", "Free disk at the agent"),
    ("held_studies", "hexchange_site_held_studies", "Studies no rule allows to leave"),
    ("partial_studies", "hexchange_site_partial_studies", "Studies sent with instances held"),
    (
        "quarantined_instances",
        "hexchange_site_quarantined_instances",
        "Instances waiting for a human",
    ),
    ("inbound_waiting", "hexchange_site_inbound_waiting", "Deliveries waiting to be stored"),
    ("policy_version_reported", "hexchange_site_policy_version", "Policy version the agent uses"),
)


class FleetCollector(Collector):
    def __init__(self, services: Services) -> None:
        self.services = services

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self.services.session() as session:
            rows = fleet(session, self.services.ca, _SYSTEM, now=self.services.clock())
        labels = ["org", "site"]
        families = {
            attr: GaugeMetricFamily(name, doc, labels=labels) for attr, name, doc in _GAUGES
        }
        seen = GaugeMetricFamily(
            "hexchange_site_last_seen_timestamp_seconds",
            "Last heartbeat (Unix time)",
            labels=labels,
        )
        stale = GaugeMetricFamily("hexchange_site_stale", "1 if heartbeats stopped", labels=labels)
        expiry = GaugeMetricFamily(
            "hexchange_site_certificate_expiry_timestamp_seconds",
            "When the site's current certificate expires (Unix time)",
            labels=labels,
        )
        revoked = GaugeMetricFamily("hexchange_site_revoked", "1 if revoked", labels=labels)
        current = GaugeMetricFamily(
            "hexchange_site_policy_version_current",
            "Newest policy version at the hub",
            labels=labels,
        )
        for row in rows:
            key = [row.org, row.site]
            for attr, family in families.items():
                value = getattr(row, attr)
                if value is not None:
                    family.add_metric(key, float(value))
            if row.last_seen_at is not None:
                seen.add_metric(key, row.last_seen_at.timestamp())
            stale.add_metric(key, 1.0 if row.stale else 0.0)
            revoked.add_metric(key, 1.0 if row.revoked else 0.0)
            current.add_metric(key, float(row.policy_version_current))
            if row.certificate_expires_at is not None:
                expiry.add_metric(key, row.certificate_expires_at.timestamp())
        yield from families.values()
        yield from (seen, stale, expiry, revoked, current)


def registry_for(services: Services) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector(services))
    return registry
