"""The collections' parts made from the hub's settings, once per process (kept in
`Services.extras`)."""

from __future__ import annotations

from hub.collections.blobs import InstanceFiles
from hub.collections.keys import FileKeyProvider, KeyProvider
from hub.services import Services
from hub.settings import HubSettings


def instance_files(services: Services) -> InstanceFiles:
    files = services.extras.get("collection_files")
    if not isinstance(files, InstanceFiles):
        files = InstanceFiles(services.settings.data_dir / "collections")
        services.extras["collection_files"] = files
    return files


def key_provider(settings: HubSettings) -> KeyProvider:
    """The operator's key file (read when needed: a missing file fails with what to do)."""
    return FileKeyProvider(settings.collection_key_path)
