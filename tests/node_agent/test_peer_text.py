"""A peer's free text never reaches our messages: a PACS's Error Comment is its own words and
often echoes the instance or the query (PACSes write "cannot store patient X" or "invalid
PatientID 'Y'"). The agent's errors, which go to logs, the ledger, the CLI and the hub's fleet
view, say the status code and what it means, never the comment."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
)

from node_agent.config import InboundSection
from node_agent.dicom.scu import DimseError, Peer, associate, c_find, find_identifier, new_ae
from node_agent.dicom.store import PacsStore, StoreError
from tests.node_agent.conftest import AGENT_AE, make_study
from tests.ports import free_port

TOKENS = ("Zqxwv", "Ykjhg", "ZQ-773311")
COMMENT = "cannot process patient Zqxwv^Ykjhg ZQ-773311"


def _refusal(code: int) -> Dataset:
    status = Dataset()
    status.Status = code
    status.ErrorComment = COMMENT
    return status


@pytest.fixture
def chatty_pacs() -> Iterator[int]:
    """A PACS that refuses every C-STORE and C-FIND with a comment quoting the patient."""

    def on_store(event: Any) -> Dataset:
        return _refusal(0xA700)

    def on_find(event: Any) -> Iterator[tuple[Dataset, None]]:
        yield _refusal(0xC000), None

    ae = AE(ae_title="CHATTY")
    for context in AllStoragePresentationContexts:
        ae.add_supported_context(context.abstract_syntax)
    ae.add_supported_context(StudyRootQueryRetrieveInformationModelFind)
    port = free_port()
    server = ae.start_server(
        ("127.0.0.1", port),
        block=False,
        evt_handlers=[(evt.EVT_C_STORE, on_store), (evt.EVT_C_FIND, on_find)],
    )
    assert server is not None
    try:
        yield port
    finally:
        server.shutdown()


def _clean(text: str) -> None:
    for token in TOKENS:
        assert token.lower() not in text.lower(), text


def test_a_refused_c_store_does_not_quote_the_pacs_comment(
    chatty_pacs: int, tmp_path: Path
) -> None:
    section = InboundSection(
        store="pacs", pacs_host="127.0.0.1", pacs_port=chatty_pacs, pacs_ae_title="CHATTY"
    )
    store = PacsStore(section, AGENT_AE, timeout=10)  # type: ignore[arg-type]
    study = make_study(tmp_path / "src", "20240301", "CT", 1)
    with pytest.raises(StoreError) as caught:
        store.store(study.files[0].read_bytes())
    store.close()
    assert "0xA700" in str(caught.value)  # the status is said
    _clean(str(caught.value))


def test_a_failed_c_find_does_not_quote_the_pacs_comment(chatty_pacs: int) -> None:
    ae = new_ae(AGENT_AE, 10)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    peer = Peer("127.0.0.1", chatty_pacs, "CHATTY")
    identifier = find_identifier("STUDY", PatientID="ZQ-773311", StudyInstanceUID="")
    with pytest.raises(DimseError) as caught, associate(ae, peer) as assoc:
        c_find(assoc, identifier, peer)
    assert "0xC000" in str(caught.value)
    _clean(str(caught.value))
