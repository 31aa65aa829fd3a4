"""The site's sharing policy, fetched from the hub and cached on disk for offline work.

Deny by default: with no policy (never fetched) nothing leaves; with a policy, a study goes
only where a rule that matches it says.
"""

from __future__ import annotations

from pathlib import Path

import structlog
from pydantic import ValidationError

from node_agent.config import Destination
from node_agent.files import durable_write
from node_agent.hubclient import HubClient
from wire.policy import SitePolicy

log = structlog.get_logger("hexchange.agent.policy")


class NoPolicy(Exception):
    """No policy was ever fetched from the hub: nothing may leave yet."""


class PolicyCache:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._cached: SitePolicy | None = None

    def load(self) -> SitePolicy | None:
        if self._cached is None and self.path.exists():
            try:
                self._cached = SitePolicy.model_validate_json(self.path.read_bytes())
            except ValidationError:
                log.error("cached policy unreadable; waiting for the hub", path=str(self.path))
                return None
        return self._cached

    def refresh(self, client: HubClient) -> SitePolicy:
        fetched = client.policy()
        current = self.load()
        if current is None or current.version != fetched.version:
            durable_write(self.path, fetched.model_dump_json(indent=2).encode())
            log.info("sharing policy updated", version=fetched.version, rules=len(fetched.rules))
        self._cached = fetched
        return fetched

    def destinations_for(self, modalities: set[str]) -> list[Destination]:
        policy = self.load()
        if policy is None:
            raise NoPolicy("no sharing policy from the hub yet")
        return [
            Destination(
                org=r.destination_org,
                mode=r.mode,
                priority=r.priority,
                deid_options=tuple(r.deid_options),
            )
            for r in policy.rules_for(modalities)
        ]
