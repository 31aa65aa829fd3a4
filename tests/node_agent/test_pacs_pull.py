"""PACS pull against a real Orthanc: C-FIND by date and modality, then C-MOVE or C-GET into
the agent's spool; remembered so nothing is fetched twice; a grown study is fetched again."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)
from typer.testing import CliRunner

from node_agent.config import AgentConfig
from node_agent.dicom.pacs_config import PacsSection
from node_agent.dicom.pull import Puller, PullError, PullQuery, pull_loop_step
from tests.factories.dicom import pixel_bytes
from tests.node_agent.conftest import AGENT_AE, AgentScp, Orthanc, Study, make_study
from tests.ports import free_port

D = dt.date


def _puller(
    orthanc_or_port: Orthanc | int, agent_scp: AgentScp, retrieve: str, **kw: Any
) -> Puller:
    port = orthanc_or_port if isinstance(orthanc_or_port, int) else orthanc_or_port.dicom_port
    section = PacsSection(
        host="127.0.0.1",
        port=port,
        ae_title="ORTHANC",
        retrieve=retrieve,
        timeout_seconds=10,
        **kw,
    )
    return Puller(section, AGENT_AE, agent_scp.state, agent_scp.spool)


def _outcomes(results: list[Any]) -> dict[str, str]:
    return {r.study.study_uid: r.outcome for r in results}


@pytest.mark.parametrize("retrieve", ["move", "get"])
def test_pull_by_date_and_modality_once_and_again_when_grown(
    orthanc: Orthanc, agent_scp: AgentScp, tmp_path: Path, retrieve: str
) -> None:
    old_ct = make_study(tmp_path / "src", "20240110", "CT", 3)
    new_ct = make_study(tmp_path / "src", "20240220", "CT", 2)
    new_mr = make_study(tmp_path / "src", "20240225", "MR", 2)
    orthanc.load(old_ct.files + new_ct.files + new_mr.files)
    puller = _puller(orthanc, agent_scp, retrieve)

    february_ct = PullQuery(since=D(2024, 2, 1), until=D(2024, 2, 29), modalities=("CT",))
    results = puller.run(february_ct)
    assert _outcomes(results) == {new_ct.study_uid: "fetched"}
    assert agent_scp.sop_uids(new_ct.study_uid) == set(new_ct.sop_uids)
    assert agent_scp.sop_uids(old_ct.study_uid) == set()
    assert agent_scp.sop_uids(new_mr.study_uid) == set()
    assert pixel_bytes(agent_scp.paths(new_ct.study_uid)) == pixel_bytes(new_ct.files)
    # every instance the PACS listed came: stable at once, no quiet period to wait out
    assert _study_state(agent_scp, new_ct.study_uid) == "stable"

    everything = PullQuery(since=D(2024, 1, 1), modalities=("CT", "MR"))
    results = puller.run(everything)
    assert _outcomes(results) == {
        old_ct.study_uid: "fetched",
        new_ct.study_uid: "skipped",
        new_mr.study_uid: "fetched",
    }
    assert agent_scp.sop_uids(old_ct.study_uid) == set(old_ct.sop_uids)
    assert agent_scp.sop_uids(new_mr.study_uid) == set(new_mr.sop_uids)

    # Nothing new on the PACS: nothing is fetched.
    assert set(_outcomes(puller.run(everything)).values()) == {"skipped"}

    # The PACS's study grows: it is fetched again, and only that one.
    orthanc.load(new_ct.add(2))
    todo, _done = puller.plan(everything)
    assert [(s.study_uid, why) for s, why in todo] == [
        (new_ct.study_uid, "grew from 2 to 4 instances")
    ]
    results = puller.run(everything)
    assert _outcomes(results)[new_ct.study_uid] == "fetched"
    assert agent_scp.sop_uids(new_ct.study_uid) == set(new_ct.sop_uids)
    assert set(_outcomes(puller.run(everything)).values()) == {"skipped"}


def _study_state(agent_scp: AgentScp, study_uid: str) -> str | None:
    with agent_scp.state.connect() as conn:
        row = conn.execute("SELECT state FROM studies WHERE study_uid = ?", (study_uid,)).fetchone()
    return None if row is None else str(row["state"])


def test_pull_by_study_uid(orthanc: Orthanc, agent_scp: AgentScp, tmp_path: Path) -> None:
    one = make_study(tmp_path / "src", "20240301", "CT", 2)
    other = make_study(tmp_path / "src", "20240301", "CT", 2)
    orthanc.load(one.files + other.files)
    results = _puller(orthanc, agent_scp, "get").run(PullQuery(study_uids=(one.study_uid,)))
    assert _outcomes(results) == {one.study_uid: "fetched"}
    assert agent_scp.sop_uids(other.study_uid) == set()


def test_large_study_is_moved_over_several_associations_at_once(
    orthanc: Orthanc, agent_scp: AgentScp, tmp_path: Path
) -> None:
    study = make_study(tmp_path / "src", "20240305", "CT", 41)
    orthanc.load(study.files)
    accepted: list[str] = []
    agent_scp.server.bind(
        evt.EVT_ACCEPTED, lambda event: accepted.append(event.assoc.requestor.ae_title)
    )
    puller = _puller(orthanc, agent_scp, "move", move_associations=3)
    groups = puller._instance_groups(puller.find(PullQuery(study_uids=(study.study_uid,)))[0], 3)
    assert groups is not None and len(groups) == 3
    dealt = [sop for batches in groups for _series, sops in batches for sop in sops]
    assert sorted(dealt) == sorted(study.sop_uids)  # each instance in one group

    results = puller.run(PullQuery(study_uids=(study.study_uid,)))
    assert _outcomes(results) == {study.study_uid: "fetched"}
    assert agent_scp.sop_uids(study.study_uid) == set(study.sop_uids)
    assert pixel_bytes(agent_scp.paths(study.study_uid)) == pixel_bytes(study.files)
    assert accepted == ["ORTHANC"] * 3  # one C-STORE association per share of the study
    assert _study_state(agent_scp, study.study_uid) == "stable"

    # one association when asked for one
    accepted.clear()
    again = make_study(tmp_path / "src", "20240306", "CT", 33)
    orthanc.load(again.files)
    single = _puller(orthanc, agent_scp, "move", move_associations=1)
    assert _outcomes(single.run(PullQuery(study_uids=(again.study_uid,)))) == {
        again.study_uid: "fetched"
    }
    assert accepted == ["ORTHANC"] and agent_scp.sop_uids(again.study_uid) == set(again.sop_uids)


def test_move_destination_unknown_to_the_pacs_says_what_to_do(
    orthanc: Orthanc, agent_scp: AgentScp, tmp_path: Path
) -> None:
    study = make_study(tmp_path / "src", "20240301", "CT", 1)
    orthanc.load(study.files)
    puller = _puller(orthanc, agent_scp, "move", move_destination="NOBODY")
    [result] = puller.run(PullQuery(study_uids=(study.study_uid,)))
    assert result.outcome == "failed"
    assert "NOBODY" in result.reason
    assert "register" in result.reason or "retrieve" in result.reason
    # A failed fetch is tried again after a backoff, or at once when an operator asks.
    query = PullQuery(study_uids=(study.study_uid,))
    assert puller.plan(query)[0] == []
    todo, _ = puller.plan(query, retry_now=True)
    assert [why for _, why in todo] == ["the last fetch was failed"]


def test_unreachable_pacs_is_a_clear_error(agent_scp: AgentScp) -> None:
    puller = _puller(free_port(), agent_scp, "move")
    with pytest.raises(PullError, match="did not answer; check host and port"):
        puller.run(PullQuery(since=D(2024, 1, 1)))


def test_scheduled_step_and_cli(
    orthanc: Orthanc, agent_scp: AgentScp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    today = dt.date.today().strftime("%Y%m%d")
    recent = make_study(tmp_path / "src", today, "CT", 2)
    old = make_study(tmp_path / "src", "20200101", "CT", 1)
    orthanc.load(recent.files + old.files)
    config = AgentConfig.model_validate(
        {
            "agent": {"data_dir": str(tmp_path / "agent")},
            "hub": {"public_url": "https://h", "node_url": "https://h", "ca_file": "ca.pem"},
            "dicom": agent_scp.dicom.model_dump(),
            "pacs": {
                "host": "127.0.0.1",
                "port": orthanc.dicom_port,
                "ae_title": orthanc.ae_title,
                "retrieve": "get",
                "schedule": 60,
                "lookback_days": 3,
                "query": {"modalities": ["CT"]},
            },
        }
    )
    pull_loop_step(config, agent_scp.state)
    assert agent_scp.sop_uids(recent.study_uid) == set(recent.sop_uids)
    assert agent_scp.sop_uids(old.study_uid) == set()

    # On demand from the CLI, with C-MOVE; the agent is not running, so the command receives.
    agent_scp.stop()
    from node_agent.cli import app

    toml = tmp_path / "agent.toml"
    toml.write_text(
        f"""
[agent]
data_dir = "{tmp_path / "agent"}"
[hub]
public_url = "https://h"
node_url = "https://h"
ca_file = "ca.pem"
[dicom]
ae_title = "{AGENT_AE}"
port = {agent_scp.dicom.port}
[pacs]
host = "127.0.0.1"
port = {orthanc.dicom_port}
ae_title = "{orthanc.ae_title}"
retrieve = "move"
schedule = "off"
"""
    )
    monkeypatch.setenv("COLUMNS", "200")
    runner = CliRunner()
    result = runner.invoke(app, ["pull", "--config", str(toml), "--since", "20200101"])
    assert result.exit_code == 0, result.output
    assert "fetched" in result.output and "skipped" in result.output
    assert agent_scp.sop_uids(old.study_uid) == set(old.sop_uids)
    # asked for on demand: a clinician's request, before bulk sharing (the scheduled pull
    # asked for nothing); the study fetched before is asked for too
    with agent_scp.state.connect() as conn:
        asked = dict(conn.execute("SELECT study_uid, priority FROM study_priority").fetchall())
    assert asked == {old.study_uid: 10, recent.study_uid: 10}
    again = runner.invoke(app, ["pull", "-c", str(toml), "--since", "20200101", "--dry-run"])
    assert again.exit_code == 0, again.output
    assert "fetched" not in again.output and "would fetch" not in again.output
    bad = runner.invoke(app, ["pull", "-c", str(toml), "--since", "2020-01-01"])
    assert bad.exit_code == 2 and "YYYYMMDD" in bad.output


# -- a PACS that answers with the minimum the standard allows ------------------------------


class MinimalPacs:
    """Answers STUDY-level C-FIND with StudyInstanceUID only (no date, modalities or counts),
    refuses matching on ModalitiesInStudy, answers SERIES level with Modality only, and serves
    C-GET / C-MOVE by StudyInstanceUID."""

    def __init__(
        self, studies: list[Study], agent_port: int, *, lists_instances: bool = False
    ) -> None:
        self.datasets = [dcmread(p) for s in studies for p in s.files]
        self.agent_port = agent_port
        self.lists_instances = lists_instances  # IMAGE-level C-FIND, but no IMAGE-level C-MOVE
        self.ae = AE(ae_title="MINIPACS")
        self.ae.add_supported_context(StudyRootQueryRetrieveInformationModelFind)
        self.ae.add_supported_context(StudyRootQueryRetrieveInformationModelGet)
        self.ae.add_supported_context(StudyRootQueryRetrieveInformationModelMove)
        for context in AllStoragePresentationContexts:
            self.ae.add_supported_context(context.abstract_syntax, scp_role=True, scu_role=False)
        for context in AllStoragePresentationContexts[:100]:
            self.ae.add_requested_context(context.abstract_syntax)
        self.port = free_port()
        self.server = self.ae.start_server(
            ("127.0.0.1", self.port),
            block=False,
            evt_handlers=[
                (evt.EVT_C_FIND, self.on_find),
                (evt.EVT_C_GET, self.on_get),
                (evt.EVT_C_MOVE, self.on_move),
            ],
        )

    def _study(self, uid: str) -> list[Dataset]:
        return [d for d in self.datasets if not uid or d.StudyInstanceUID == uid]

    def on_find(self, event: Any) -> Iterator[Any]:
        query = event.identifier
        uid = str(query.get("StudyInstanceUID", "") or "")
        if query.QueryRetrieveLevel == "STUDY":
            if query.get("ModalitiesInStudy"):
                yield 0xC000, None  # "unable to process": no matching on that key
                return
            for study_uid in dict.fromkeys(d.StudyInstanceUID for d in self._study(uid)):
                answer = Dataset()
                answer.QueryRetrieveLevel = "STUDY"
                answer.StudyInstanceUID = study_uid
                yield 0xFF00, answer
        elif query.QueryRetrieveLevel == "SERIES":
            for d in {d.SeriesInstanceUID: d for d in self._study(uid)}.values():
                answer = Dataset()
                answer.QueryRetrieveLevel = "SERIES"
                answer.SeriesInstanceUID = d.SeriesInstanceUID
                answer.Modality = d.Modality
                yield 0xFF00, answer
        elif query.QueryRetrieveLevel == "IMAGE" and self.lists_instances:
            for d in self._study(uid):
                answer = Dataset()
                answer.QueryRetrieveLevel = "IMAGE"
                answer.SeriesInstanceUID = d.SeriesInstanceUID
                answer.SOPInstanceUID = d.SOPInstanceUID
                yield 0xFF00, answer

    def on_get(self, event: Any) -> Iterator[Any]:
        matches = self._study(str(event.identifier.StudyInstanceUID))
        yield len(matches)
        for ds in matches:
            yield 0xFF00, ds

    def on_move(self, event: Any) -> Iterator[Any]:
        if event.move_destination.strip() != AGENT_AE:
            yield None, None
            return
        if event.identifier.QueryRetrieveLevel != "STUDY":
            yield "127.0.0.1", self.agent_port
            yield 0xC000, None  # unable to process: whole studies only
            return
        matches = self._study(str(event.identifier.StudyInstanceUID))
        yield "127.0.0.1", self.agent_port
        yield len(matches)
        for ds in matches:
            yield 0xFF00, ds


@pytest.mark.parametrize("retrieve", ["get", "move"])
def test_pacs_with_minimal_answers(agent_scp: AgentScp, tmp_path: Path, retrieve: str) -> None:
    ct = make_study(tmp_path / "src", "20240110", "CT", 2)
    mr = make_study(tmp_path / "src", "20240111", "MR", 1)
    pacs = MinimalPacs([ct, mr], agent_scp.dicom.port)
    try:
        section = PacsSection(
            host="127.0.0.1",
            port=pacs.port,
            ae_title="MINIPACS",
            retrieve=retrieve,
            timeout_seconds=10,
        )
        puller = Puller(section, AGENT_AE, agent_scp.state, agent_scp.spool)
        query = PullQuery(since=D(2024, 1, 1), modalities=("CT",))
        results = puller.run(query)
        assert _outcomes(results) == {ct.study_uid: "fetched"}
        assert agent_scp.sop_uids(ct.study_uid) == set(ct.sop_uids)
        assert agent_scp.sop_uids(mr.study_uid) == set()
        assert set(_outcomes(puller.run(query)).values()) == {"skipped"}
    finally:
        pacs.server.shutdown()


def test_pacs_that_moves_whole_studies_only_gets_one_study_level_move(
    agent_scp: AgentScp, tmp_path: Path
) -> None:
    big = make_study(tmp_path / "src", "20240112", "CT", 40)
    pacs = MinimalPacs([big], agent_scp.dicom.port, lists_instances=True)
    try:
        section = PacsSection(
            host="127.0.0.1", port=pacs.port, ae_title="MINIPACS", timeout_seconds=10
        )
        puller = Puller(section, AGENT_AE, agent_scp.state, agent_scp.spool)
        results = puller.run(PullQuery(study_uids=(big.study_uid,)))
        assert _outcomes(results) == {big.study_uid: "fetched"}
        assert agent_scp.sop_uids(big.study_uid) == set(big.sop_uids)
    finally:
        pacs.server.shutdown()


def test_pacs_config_errors_name_the_key(tmp_path: Path) -> None:
    from node_agent.config import ConfigError, load_config

    base = '[agent]\ndata_dir = "d"\n[hub]\npublic_url = "u"\nnode_url = "u"\nca_file = "c"\n'
    path = tmp_path / "agent.toml"
    path.write_text(
        base + '[pacs]\nhost = "pacs"\nae_title = "PACS"\nschedule = "off"\n'
        '[pacs.query]\nmodalities = ["ct"]\nkeys = { StudyDescription = "CHEST*" }\n'
    )
    pacs = load_config(path).pacs
    assert pacs is not None and pacs.schedule is None and pacs.query.modalities == ["CT"]
    for bad, key in (
        ('schedule = "hourly"', "pacs.schedule"),
        ('retrieve = "push"', "pacs.retrieve"),
        ("[pacs.query]\nkeys = { PatientNam = 'X' }", "pacs.query.keys"),
    ):
        path.write_text(base + f'[pacs]\nhost = "pacs"\nae_title = "PACS"\n{bad}\n')
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            load_config(path)
