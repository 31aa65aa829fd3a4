"""The hook ingest runs after a bundle completes: the completion has queued what the bundle
carries for collections (`hub.collections.queue.enqueue`, in its transaction); this wakes the
background worker of this process so it starts at once. The agent's request does not wait for
the instances to be opened, verified and indexed."""

from __future__ import annotations

from collections.abc import Callable

from sqlmodel import Session

from hub.collections.worker import wake_worker
from hub.services import Services


def collection_bundles(services: Services) -> Callable[[Session, str], None]:
    def after_complete(_session: Session, _bundle_id: str) -> None:
        wake_worker(services)

    return after_complete
