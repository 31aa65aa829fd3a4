"""Recipient keys of an organization, fetched from the hub and checked against the network CA.

The hub relays keys but cannot substitute its own: every key must be signed by a site
certificate issued by the CA the agent got at enrollment.
"""

from __future__ import annotations

import datetime as dt
import time

import structlog

from node_agent.hubclient import HubClient
from node_agent.identity import AgentIdentity
from wire.api import verify_site_key
from wire.collection_key import collection_named, verify_collection_key
from wire.envelope import RecipientKey
from wire.errors import WireError

log = structlog.get_logger("hexchange.agent.recipients")


class RecipientDirectory:
    def __init__(self, client: HubClient, identity: AgentIdentity, ttl: float = 300.0) -> None:
        self.client = client
        self.identity = identity
        self.ttl = ttl
        self._cache: dict[str, tuple[float, list[RecipientKey]]] = {}

    def keys_for(self, org: str) -> list[RecipientKey]:
        cached = self._cache.get(org)
        if cached and time.monotonic() - cached[0] < self.ttl and cached[1]:
            return cached[1]
        collection = collection_named(org)
        if collection is not None:  # a research collection: its key is vouched for by the hub
            vouched = self._collection_keys(collection)
            self._cache[org] = (time.monotonic(), vouched)
            return vouched
        listing = self.client.org_keys(org)
        keys: list[RecipientKey] = []
        for site_key in listing.keys:
            if site_key.org != org:
                continue
            try:
                keys.append(
                    verify_site_key(
                        site_key, self.identity.ca_certificate, now=dt.datetime.now(dt.UTC)
                    )
                )
            except WireError as exc:
                log.warning("recipient key rejected", org=org, site=site_key.site, reason=str(exc))
        self._cache[org] = (time.monotonic(), keys)
        return keys

    def _collection_keys(self, name: str) -> list[RecipientKey]:
        published = self.client.collection_key(name)
        if published.name != name:
            log.warning("collection key rejected", collection=name, reason="another name")
            return []
        try:
            return [verify_collection_key(published, self.identity.hub_receipt_key)]
        except WireError as exc:
            log.warning("collection key rejected", collection=name, reason=str(exc))
            return []
