"""The hook ingest runs after a bundle completes: open what it carries for collections.

Errors do not undo the completion (the ciphertext is durable and the receipt stands): they are
logged, the collection delivery stays queued and is tried again later."""

from __future__ import annotations

from collections.abc import Callable

import structlog
from sqlmodel import Session

from hub.collections.bundles import ingest_bundle
from hub.collections.runtime import instance_files, key_provider
from hub.errors import HubError
from hub.services import Services
from wire.errors import WireError

log = structlog.get_logger("hexchange.hub.collections")


def collection_bundles(services: Services) -> Callable[[Session, str], None]:
    def after_complete(session: Session, bundle_id: str) -> None:
        try:
            ingest_bundle(
                session, services.blobs, instance_files(services),
                key_provider(services.settings), bundle_id,
            )  # fmt: skip
        except (HubError, WireError, OSError) as exc:
            session.rollback()
            log.error(
                "collection bundle not opened; it stays queued",
                bundle_id=bundle_id, error=type(exc).__name__, detail=str(exc)[:300],
            )  # fmt: skip

    return after_complete
