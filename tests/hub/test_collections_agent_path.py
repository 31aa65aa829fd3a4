"""The agent path to a research collection: a de-identified rule names `collection--NAME`;
the agent's recipient directory gets the collection key from the hub and checks the hub's
signature; the bundle sealed to it is opened at the hub, every instance verified again: clean
ones are served over DICOMweb, the others quarantined and shown to the sending org's admins.
Identified rules and bundles to a collection are refused."""

from __future__ import annotations

import io
import time
from collections.abc import Callable

import pytest
from pydantic import ValidationError
from sqlmodel import select

from hub.models import Delivery
from node_agent.hubclient import HubClient
from node_agent.identity import AgentIdentity
from node_agent.recipients import RecipientDirectory
from tests.factories.collections import deidentified_study, make_collection, part10
from tests.hub.conftest import EnrolledSite, Hub
from wire.collection_key import CollectionKey, collection_recipient, verify_collection_key
from wire.errors import SignatureInvalid
from wire.payload import write_payload
from wire.policy import PolicyRule

NAME = "lungs"
RECIPIENT = collection_recipient(NAME)


def _identity(site: EnrolledSite) -> AgentIdentity:
    return AgentIdentity(
        org=site.org, site=site.site, signing_key=site.signing_key, certificate=site.cert,
        ca_certificate=site.ca_cert, encryption_key=site.encryption_key,
        hub_receipt_key=site.receipt_public_key, folder=site.cert_file.parent,
    )  # fmt: skip


def _payload(files: list[bytes]) -> bytes:
    out = io.BytesIO()
    items = [(f"{i:06d}.dcm", io.BytesIO(data), len(data)) for i, data in enumerate(files)]
    write_payload(out, items)
    return out.getvalue()


def wait_for(done: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout_s} s for {what}")
        time.sleep(0.05)


def _delivery_state(hub: Hub) -> str:
    with hub.session() as session:
        return session.exec(select(Delivery.state).where(Delivery.recipient_org == RECIPIENT)).one()


def test_a_rule_to_a_collection_must_be_deidentified() -> None:
    with pytest.raises(ValidationError, match="de-identified studies only"):
        PolicyRule(destination_org=RECIPIENT, mode="identified")
    assert PolicyRule(destination_org=RECIPIENT, mode="deidentified").destination_org == RECIPIENT


def test_agent_seals_to_a_collection_and_the_hub_checks_again(hub: Hub) -> None:
    site = hub.enroll("org-a", "site-a")
    admin_a = hub.person("alice", "org-admin", "org-a")
    reader = hub.person("rita", "researcher", "org-b")
    with hub.session() as session:
        make_collection(session, hub.settings, NAME, "org-b")
    hub.allow("org-a", "site-a", RECIPIENT, mode="deidentified")
    netadmin = hub.person("netadmin", "network-admin")
    assert netadmin.post(f"/api/v1/collections/{NAME}/grants", json={"username": "rita"}).is_success

    # the agent's recipient directory: the key comes from the hub, signed by the hub
    client = HubClient(hub.node_url, _identity(site))
    directory = RecipientDirectory(client, _identity(site))
    keys = directory.keys_for(RECIPIENT)
    assert len(keys) == 1 and keys[0].key_id.startswith("col-")
    published = CollectionKey.model_validate(
        site.client.get(f"/node/v1/collections/{NAME}/key").json()
    )
    forged = published.model_copy(update={"name": "other"})
    with pytest.raises(SignatureInvalid):
        verify_collection_key(forged, site.receipt_public_key)

    made = deidentified_study(2)
    identified = part10(made.originals[0])  # slipped in: the hub must catch it
    sealed = site.seal(
        _payload([*made.files, identified]), [RECIPIENT], mode="deidentified", recipients=keys
    )
    site.push(sealed)  # the receipt comes first; the hub's worker ingests in the background

    wait_for(lambda: _delivery_state(hub) == "acked", "the worker to ingest the bundle")
    found = reader.get(f"/dicomweb/collections/{NAME}/instances")
    assert found.status_code == 200, found.text
    assert sorted(i["00080018"]["Value"][0] for i in found.json()) == sorted(made.sop_uids)
    with hub.session() as session:
        delivery = session.exec(select(Delivery).where(Delivery.recipient_org == RECIPIENT)).one()
        assert delivery.state == "acked"
    shown = admin_a.get("/api/v1/orgs/org-a/collection-quarantine")
    assert shown.status_code == 200, shown.text
    assert len(shown.json()) == 1 and shown.json()[0]["bundle_id"] == sealed.bundle_id
    assert "Quixote" not in shown.text and "MRN" not in shown.text
    codes = {f["code"] for f in shown.json()[0]["findings"]}
    assert "identity-not-marked" in codes
    assert admin_a.get("/api/v1/orgs/org-b/collection-quarantine").status_code == 404

    # an identified bundle to a collection is refused at the header
    refused = site.put_header(
        site.seal(_payload(made.files), [RECIPIENT], mode="identified", recipients=keys)
    )
    assert refused.status_code == 403 and "de-identified" in refused.json()["detail"]
    client.close()


def test_a_bundle_waits_when_the_operator_key_is_missing(hub: Hub) -> None:
    """The receipt stands (the ciphertext is durable); the collection ingest fails with an
    error saying what to do, the delivery stays queued, and the bundle is opened once the key
    file is back (`hexchange-hub collection ingest`, or the worker's next attempt)."""
    from hub.collections.blobs import InstanceFiles
    from hub.collections.bundles import ingest_pending
    from hub.collections.keys import FileKeyProvider
    from hub.collections.lease import IngestLeases
    from hub.collections.models import CollectionIngest, CollectionInstance
    from hub.storage import LocalBlobStore

    site = hub.enroll("org-a", "site-a")
    with hub.session() as session:
        make_collection(session, hub.settings, NAME, "org-a")
    hub.allow("org-a", "site-a", RECIPIENT, mode="deidentified")
    keys = RecipientDirectory(HubClient(hub.node_url, _identity(site)), _identity(site))
    made = deidentified_study(2)
    key_path = hub.settings.collection_key_path
    hidden = key_path.with_suffix(".away")
    key_path.rename(hidden)
    site.push(site.seal(_payload(made.files), [RECIPIENT], mode="deidentified",
                        recipients=keys.keys_for(RECIPIENT)))  # fmt: skip

    def job() -> CollectionIngest:
        with hub.session() as session:
            return session.exec(select(CollectionIngest)).one()

    wait_for(lambda: job().state == "failed", "the worker to record the failure")
    assert "key" in job().error and _delivery_state(hub) == "queued"
    hidden.rename(key_path)
    with hub.session() as session:
        ingest_pending(
            session, LocalBlobStore(hub.settings.blob_dir),
            InstanceFiles(hub.settings.data_dir / "collections"), lambda: FileKeyProvider(key_path),
            IngestLeases(hub.engine, hub.settings.data_dir / "locks"),
        )  # fmt: skip
    wait_for(lambda: _delivery_state(hub) == "acked", "the bundle to be ingested")
    assert job().state == "done"
    with hub.session() as session:
        assert len(session.exec(select(CollectionInstance)).all()) == 2
