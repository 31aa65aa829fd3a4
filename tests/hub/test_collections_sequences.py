"""QIDO-RS sequence matching in a research collection (PS3.4 C.2.2.2.6), with the real
`dicomweb-client` against one running hub per backend (SQLite, PostgreSQL): a sequence's item
keys match when one item matches them all; wildcards, lists and UIDs inside items; sequences
this server does not match are refused naming those it does; the sequence comes back as stored
(de-identified); the migration indexes collections stored before it."""

from __future__ import annotations

import io
import json
import os
import secrets
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from alembic import command
from dicomweb_client.api import DICOMwebClient
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid
from sqlalchemy import text
from sqlmodel import select

from deidentify import Profile, PseudonymKeys, apply
from hub.bootstrap import init_hub
from hub.collections.models import CollectionSequenceValue
from hub.db import alembic_config
from hub.models import Organization
from hub.settings import HubSettings
from tests.factories.collections import make_collection, part10
from tests.factories.dicom import FakePatient, ct_slice
from tests.hub.conftest import SKIP_POSTGRES_ENV, Hub, postgres_database, running_hub
from tests.ports import free_port

COLLECTION = "sequences"
PROFILE = ["retain-long-full-dates", "clean-descriptors"]  # keeps Request Attributes Sequence


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = value, scheme, meaning
    return code


def _request(description: str, step: str, procedure_id: str, when: str) -> Dataset:
    item = Dataset()
    item.RequestedProcedureID = procedure_id  # removed by every de-identification profile
    item.RequestedProcedureDescription = description
    item.ScheduledProcedureStepDescription = step
    item.ScheduledProcedureStepStartDate, item.ScheduledProcedureStepStartTime = when.split()
    return item


@dataclass
class Study:
    study_uid: str
    series_uid: str
    sop_uids: list[str]
    files: list[bytes]
    accession: str


def _study(
    instances: int,
    procedures: list[Dataset],
    requests_: list[Dataset],
    region: Dataset,
    *,
    uid_item: str | None = None,
) -> Study:
    """A synthetic study with the three sequences, de-identified with PROFILE."""
    patient = FakePatient()
    keys = PseudonymKeys(secrets.token_bytes(32))
    study_uid, series_uid, accession = generate_uid(), generate_uid(), "ACC-" + secrets.token_hex(4)
    made = Study("", "", [], [], accession)
    for index in range(instances):
        ds = ct_slice(
            patient, study_uid=study_uid, series_uid=series_uid, sop_uid=generate_uid(),
            accession=accession, index=index,
        )  # fmt: skip
        ds.ProcedureCodeSequence = Sequence(procedures)
        items = []
        for item in requests_:
            copy = Dataset()
            copy.update(item)
            copy.AccessionNumber = accession
            if uid_item is not None:
                copy.StudyInstanceUID = uid_item
            items.append(copy)
        ds.RequestAttributesSequence = Sequence(items)
        ds.AnatomicRegionSequence = Sequence([region])
        out = apply(ds, Profile.from_names(PROFILE), keys).dataset
        made.files.append(part10(out))
        made.study_uid, made.series_uid = str(out.StudyInstanceUID), str(out.SeriesInstanceUID)
        made.sop_uids.append(str(out.SOPInstanceUID))
    return made


@dataclass
class World:
    hub: Hub
    web: DICOMwebClient
    http: requests.Session
    base: str
    chest: Study
    head: Study


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    """One hub per backend for the module, a collection, two studies stored over STOW-RS."""
    tmp = tmp_path_factory.mktemp(f"seq-{request.param}")
    with ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{tmp / 'hub-data' / 'hub.db'}"
        else:
            if os.environ.get(SKIP_POSTGRES_ENV) == "1":
                pytest.skip(f"{SKIP_POSTGRES_ENV}=1")
            url = stack.enter_context(postgres_database())
        settings = HubSettings(
            data_dir=tmp / "hub-data", database_url=url, node_port=free_port(),
            public_port=free_port(),
        )  # fmt: skip
        init_hub(settings)
        hub = Hub(settings=settings, backend=request.param, workdir=tmp / "work")
        stack.enter_context(running_hub(settings))
        stack.callback(hub.close)
        admin = hub.person("netadmin", "network-admin")
        researcher = hub.person("rita", "researcher", "org-b")
        with hub.session() as session:
            session.add(Organization(id="org-a", name="org-a"))
            session.commit()
            make_collection(session, hub.settings, COLLECTION, "org-a", profile=PROFILE)
        granted = admin.post(f"/api/v1/collections/{COLLECTION}/grants", json={"username": "rita"})
        assert granted.status_code == 204, granted.text

        def dicomweb(person: Any) -> tuple[DICOMwebClient, requests.Session]:
            http = requests.Session()
            http.trust_env = False
            http.verify = str(hub.ca_file)
            http.headers["Authorization"] = person.headers["Authorization"]
            stack.callback(http.close)
            base = f"{hub.public_url}/dicomweb/collections/{COLLECTION}"
            return DICOMwebClient(url=base, session=http), http

        chest = _study(
            2,
            [_code("24627-2", "LN", "CT Chest"), _code("X-1", "99LOCAL", "Thorax survey")],
            [_request("CT CHEST", "CHEST WITHOUT CONTRAST", "RP-4711", "20240105 101500")],
            _code("T-D3000", "SRT", "Chest"),
        )
        head = _study(
            1,
            [_code("24590-2", "LN", "MR Brain")],
            [_request("MR BRAIN", "HEAD WITH CONTRAST", "RP-4712", "20250310 083000"),
             _request("MR SPINE", "SPINE WITHOUT CONTRAST", "RP-4713", "20250311 140000")],
            _code("T-A0100", "SRT", "Brain"),
            uid_item="1.2.3.4.5.6",
        )  # fmt: skip
        stored = dicomweb(admin)[0].store_instances(
            [dcmread(io.BytesIO(f)) for f in chest.files + head.files]
        )
        assert "FailedSOPSequence" not in stored
        web, http = dicomweb(researcher)
        yield World(hub, web, http, f"{hub.public_url}/dicomweb/collections/{COLLECTION}", chest,
                    head)  # fmt: skip


def _studies(world: World, **filters: str) -> list[str]:
    return [s["0020000D"]["Value"][0] for s in world.web.search_for_studies(search_filters=filters)]


def _series(world: World, **filters: str) -> list[str]:
    return [s["0020000E"]["Value"][0] for s in world.web.search_for_series(search_filters=filters)]


def test_an_item_matches_and_the_sequence_comes_back_as_stored(world: World) -> None:
    chest, head = world.chest, world.head
    found = world.web.search_for_studies(
        search_filters={"ProcedureCodeSequence.CodeValue": "24627-2"}
    )
    assert [s["0020000D"]["Value"][0] for s in found] == [chest.study_uid]
    codes = found[0]["00081032"]["Value"]  # returned with every item, as stored
    assert [c["00080100"]["Value"] for c in codes] == [["24627-2"], ["X-1"]]
    # tags instead of keywords, at the series and instance levels too (a study's sequence)
    assert _studies(world, **{"00081032.00080100": "24590-2"}) == [head.study_uid]
    assert _series(world, **{"00081032.00080100": "24590-2"}) == [head.series_uid]
    instances = world.web.search_for_instances(
        search_filters={"AnatomicRegionSequence.CodeMeaning": "Chest"}
    )
    assert sorted(i["00080018"]["Value"][0] for i in instances) == sorted(chest.sop_uids)
    # no item matches: no entity
    assert _studies(world, **{"ProcedureCodeSequence.CodeValue": "99999-9"}) == []
    assert (
        _series(world, **{"RequestAttributesSequence.RequestedProcedureDescription": "US*"}) == []
    )


def test_keys_of_one_sequence_must_match_in_the_same_item(world: World) -> None:
    chest, head = world.chest, world.head
    same = {"ProcedureCodeSequence.CodeValue": "24627-2",
            "ProcedureCodeSequence.CodingSchemeDesignator": "LN"}  # fmt: skip
    assert _studies(world, **same) == [chest.study_uid]
    # the chest study has 24627-2 and 99LOCAL, but in different items: no match
    split = {"ProcedureCodeSequence.CodeValue": "24627-2",
             "ProcedureCodeSequence.CodingSchemeDesignator": "99LOCAL"}  # fmt: skip
    assert _studies(world, **split) == []
    key = "RequestAttributesSequence."
    one = {key + "RequestedProcedureDescription": "MR BRAIN",
           key + "ScheduledProcedureStepDescription": "HEAD*"}  # fmt: skip
    assert _series(world, **one) == [head.series_uid]
    two = {key + "RequestedProcedureDescription": "MR BRAIN",
           key + "ScheduledProcedureStepDescription": "SPINE*"}  # fmt: skip
    assert _series(world, **two) == []
    # keys of two different sequences: each matched on its own
    both = {
        "ProcedureCodeSequence.CodeValue": "24590-2",
        key + "ScheduledProcedureStepDescription": "SPINE*",
    }
    assert _series(world, **both) == [head.series_uid]


def test_wildcards_lists_and_uids_inside_items(world: World) -> None:
    chest, head = world.chest, world.head
    key = "RequestAttributesSequence.RequestedProcedureDescription"
    assert _series(world, **{key: "CT*"}) == [chest.series_uid]
    assert _series(world, **{key: "?R SPI?E"}) == [head.series_uid]
    assert sorted(_series(world, **{key: "CT CHEST,MR SPINE"})) == sorted(
        [chest.series_uid, head.series_uid]
    )
    uid = "RequestAttributesSequence.StudyInstanceUID"
    remapped = str(dcmread(io.BytesIO(head.files[0])).RequestAttributesSequence[1].StudyInstanceUID)
    assert remapped != "1.2.3.4.5.6"  # the de-identified UID is indexed, not the original
    assert _series(world, **{uid: f"1.2.3,{remapped}"}) == [head.series_uid]
    assert _series(world, **{uid: "1.2.3.4.5.6"}) == []
    # date and time ranges, alone and with another key of the same item
    day = "RequestAttributesSequence.ScheduledProcedureStepStartDate"
    hour = "RequestAttributesSequence.ScheduledProcedureStepStartTime"
    assert _series(world, **{day: "20250101-20251231"}) == [head.series_uid]
    assert _series(world, **{day: "-20241231"}) == [chest.series_uid]
    assert _series(world, **{hour: "0800-0900"}) == [head.series_uid]
    assert _series(world, **{day: "20250311-", key: "MR SPINE"}) == [head.series_uid]
    assert _series(world, **{day: "20250311-", key: "MR BRAIN"}) == []  # other item's date
    # an empty item key matches everything and returns the sequence
    everything = world.web.search_for_series(search_filters={key: ""})
    assert len(everything) == 2 and all("00400275" in s for s in everything)


def test_returned_sequences_hold_only_de_identified_values(world: World) -> None:
    series = world.http.get(
        world.base + "/series", params={"includefield": "RequestAttributesSequence"}
    ).json()
    studies = world.http.get(world.base + "/studies", params={"includefield": "all"}).json()
    assert all("00400275" in s for s in series) and all("00081032" in s for s in studies)
    answer = json.dumps(series) + json.dumps(studies)
    for secret in ("RP-4711", "RP-4712", "RP-4713", world.chest.accession, world.head.accession):
        assert secret not in answer
    with world.hub.session() as session:
        indexed = session.exec(select(CollectionSequenceValue.value)).all()
    assert "MR SPINE" in indexed and "RP-4711" not in indexed
    assert world.chest.accession not in indexed and world.head.accession not in indexed


@pytest.mark.parametrize(
    ("level", "params", "says"),
    [
        ("studies", {"ReferencedImageSequence.ReferencedSOPInstanceUID": "1.2"},
         "sequences matched at this level: ProcedureCodeSequence"),
        ("studies", {"AnatomicRegionSequence.CodeValue": "T-D3000"},
         "cannot be matched at the study level"),
        ("series", {"RequestAttributesSequence.RequestedProcedureCodeSequence.CodeValue": "1"},
         "one level of sequence matching"),
        ("series", {"RequestAttributesSequence.RequestedProcedureCodeSequence": "1"},
         "cannot be matched inside RequestAttributesSequence"),
        ("studies", {"ProcedureCodeSequence": "24627-2"}, "match on the attributes of its items"),
        ("studies", {"ProcedureCodeSequence.NoSuchThing": "1"}, "is not a DICOM attribute"),
    ],
)  # fmt: skip
def test_other_sequences_are_refused_naming_those_matched(
    world: World, level: str, params: dict[str, str], says: str
) -> None:
    refused = world.http.get(f"{world.base}/{level}", params=params)
    assert refused.status_code == 400, refused.text
    assert says in refused.json()["detail"]


def test_the_migration_indexes_collections_stored_before_it(world: World) -> None:
    """Back to 0006 (the table goes, the study and series rows lose their sequences, as rows
    made before), then up again: the same answers."""
    queries = [
        ("studies", {"ProcedureCodeSequence.CodeValue": "24627-2",
                     "ProcedureCodeSequence.CodingSchemeDesignator": "LN"}),
        ("series", {"RequestAttributesSequence.RequestedProcedureDescription": "MR*",
                    "includefield": "RequestAttributesSequence"}),
        ("instances", {"AnatomicRegionSequence.CodeValue": "T-D3000"}),
        ("studies", {"includefield": "all"}),
    ]  # fmt: skip

    def answers() -> list[Any]:
        got = [world.http.get(f"{world.base}/{level}", params=p) for level, p in queries]
        assert all(r.status_code == 200 for r in got), [r.text for r in got]
        return [r.json() for r in got]

    before = answers()
    engine = world.hub.engine
    config = alembic_config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0006_requests")
        for table in ("collection_study", "collection_series"):
            rows = connection.execute(text(f"SELECT id, attributes FROM {table}")).all()
            for row_id, attributes in rows:
                stripped = {k: v for k, v in json.loads(attributes).items()
                            if k not in ("00081032", "00400275")}  # fmt: skip
                connection.execute(
                    text(f"UPDATE {table} SET attributes = :a WHERE id = :i"),
                    {"a": json.dumps(stripped), "i": row_id},
                )
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    assert answers() == before
    assert before[0] and before[1] and before[2] and "00081032" in before[3][0]


def test_a_path_in_includefield_returns_the_whole_sequence(world: World) -> None:
    found = world.http.get(
        world.base + "/studies",
        params={"includefield": "ProcedureCodeSequence.CodeMeaning",
                "StudyInstanceUID": world.head.study_uid},
    ).json()  # fmt: skip
    assert found[0]["00081032"]["Value"][0]["00080104"]["Value"] == ["MR Brain"]
