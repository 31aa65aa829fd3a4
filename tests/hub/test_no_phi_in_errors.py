"""A value sent in a query never comes back in the error that refuses it: the error names the
attribute and the rule broken. (A researcher's search value may be a patient's name, birth
date or ID; the 400 body travels through proxies, browser consoles and client logs.)"""

from __future__ import annotations

from typing import Any

import pytest

from tests.factories.collections import make_collection
from tests.hub.conftest import Hub

COLLECTION = "phi-echo"
TOKEN = "Zqxwv9Ykjhg"


# one hub per test (the fixture's setup dominates): every case runs against it
REFUSED_VALUES = [
    ("studies", "StudyDate", f"19{TOKEN}"),  # a birth date typed in the wrong field
    ("studies", "StudyDate", f"20240101-{TOKEN}"),
    ("studies", "StudyTime", f"{TOKEN}"),
    ("studies", "limit", f"{TOKEN}"),
    ("studies", "offset", f"-{TOKEN}"),
    ("series", "SeriesNumber", f"{TOKEN}"),
    ("instances", "InstanceNumber", f"1,{TOKEN}"),
]
REFUSED_KEYS = [
    {f"PatientName:{TOKEN}": ""},  # a value typed where the key belongs
    {"includefield": f"PatientName,{TOKEN}"},
    {f"ReferencedStudySequence.{TOKEN}": "1"},
    {f"A.B.{TOKEN}": "1"},
]


@pytest.fixture
def researcher(hub: Hub) -> Any:
    admin = hub.person("netadmin", "network-admin")
    person = hub.person("rita", "researcher", "org-b")
    hub.person("olga", "org-admin", "org-a")  # the collection's organization
    with hub.session() as session:
        make_collection(session, hub.settings, COLLECTION, "org-a")
    response = admin.post(f"/api/v1/collections/{COLLECTION}/grants", json={"username": "rita"})
    assert response.status_code == 204, response.text
    return person


def test_a_refused_query_value_is_not_echoed(hub: Hub, researcher: Any) -> None:
    for level, key, value in REFUSED_VALUES:
        url = f"/dicomweb/collections/{COLLECTION}/{level}"
        response = researcher.get(url, params={key: value})
        assert response.status_code == 400, (key, value, response.text)
        body = response.text
        assert TOKEN.lower() not in body.lower(), (key, body)
        assert key in body, body  # the field is named, so the caller can fix the query


def test_a_refused_query_key_is_not_echoed(hub: Hub, researcher: Any) -> None:
    for params in REFUSED_KEYS:
        response = researcher.get(f"/dicomweb/collections/{COLLECTION}/studies", params=params)
        assert response.status_code == 400, (params, response.text)
        assert TOKEN.lower() not in response.text.lower(), (params, response.text)
