"""The site's sharing policy, fetched from the hub and cached on disk for offline work.

Deny by default: with no policy (never fetched) nothing leaves; with a policy, a study goes
only where a rule that matches it says. Every policy is signed by the hub (the key the agent
received at enrollment): a fetched policy that does not verify is refused and the last
verified one stays in force; a cached file that does not verify is not used.
"""

from __future__ import annotations

from pathlib import Path

import structlog
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import ValidationError

from node_agent.config import Destination
from node_agent.files import durable_write
from node_agent.hubclient import HubClient
from wire.facts import StudyFacts
from wire.policy import SitePolicy

log = structlog.get_logger("hexchange.agent.policy")


class NoPolicy(Exception):
    """No policy was ever fetched from the hub: nothing may leave yet."""


class PolicyNotSigned(Exception):
    """The hub's answer is not signed by the hub's key: it is not used."""


class PolicyCache:
    def __init__(self, path: Path, hub_key: ec.EllipticCurvePublicKey) -> None:
        self.path = path
        self.hub_key = hub_key
        self._cached: SitePolicy | None = None

    def load(self) -> SitePolicy | None:
        if self._cached is None and self.path.exists():
            try:
                cached = SitePolicy.model_validate_json(self.path.read_bytes())
            except ValidationError:
                log.error("cached policy unreadable; waiting for the hub", path=str(self.path))
                return None
            if not cached.verify(self.hub_key):
                log.error(
                    "cached policy is not signed by the hub; waiting for the hub",
                    path=str(self.path),
                )
                return None
            self._cached = cached
        return self._cached

    def refresh(self, client: HubClient) -> SitePolicy:
        """Fetch and verify; a policy that does not verify leaves the last verified one."""
        fetched = client.policy()
        current = self.load()
        if not fetched.verify(self.hub_key):
            log.error(
                "policy from the hub does not verify; keeping the last verified version",
                offered_version=fetched.version,
                kept_version=current.version if current else None,
            )
            if current is None:
                raise PolicyNotSigned(
                    "the hub sent a policy that its key does not verify, and no earlier one "
                    "is cached: nothing is sent until a signed policy arrives"
                )
            return current
        if current is None or current.version != fetched.version:
            durable_write(self.path, fetched.model_dump_json(indent=2).encode())
            log.info("sharing policy updated", version=fetched.version, rules=len(fetched.rules))
        self._cached = fetched
        return fetched

    def destinations_for(self, facts: StudyFacts | set[str]) -> list[Destination]:
        """Where a study goes: every rule whose match holds for the study's facts (every
        criterion of a rule must hold; a set of modalities stands for facts with only those)."""
        policy = self.load()
        if policy is None:
            raise NoPolicy("no sharing policy from the hub yet")
        if not isinstance(facts, StudyFacts):
            facts = StudyFacts(modalities=sorted(facts))
        return [
            Destination(
                org=r.destination_org,
                mode=r.mode,
                priority=r.priority,
                deid_options=tuple(r.deid_options),
                recipe=r.recipe,
                pixel_policy=r.pixel_policy,
                station_names=tuple(r.match.station_names),
            )
            for r in policy.rules_matching(facts)
        ]
