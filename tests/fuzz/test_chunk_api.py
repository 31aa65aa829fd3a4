"""Fuzzing the chunk upload API in-process (the ASGI app, with the TLS extension a verified
mutual-TLS connection would carry): any index, any body, never a 5xx, and a chunk is only
ever stored when it is byte for byte the one the signed header describes."""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.bootstrap import init_hub
from hub.main import create_app
from hub.settings import HubSettings
from tests.fuzz.as_site import as_site
from tests.hub.conftest import DictSink, enroll_request
from wire.api import EnrollResponse
from wire.envelope import RecipientKey, seal
from wire.manifest import ManifestDraft, new_bundle_id
from wire.policy import PolicyRule

with warnings.catch_warnings():  # starlette asks for httpx2, which the project does not use
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


@dataclass
class Uploading:
    client: TestClient
    bundle_id: str
    chunks: dict[int, bytes]
    blob_dir: Path


@pytest.fixture(scope="module")
def uploading(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Uploading]:
    import datetime as dt

    from sqlmodel import Session

    from certs.registry import CADirectory
    from certs.tokens import issue_token
    from hub import policy

    tmp: Path = tmp_path_factory.mktemp("chunk-fuzz")
    settings = HubSettings(data_dir=tmp / "hub")
    init_hub(settings)
    app = create_app(settings)
    ca = CADirectory(settings.ca_dir).load()
    with TestClient(app, base_url="https://hub") as public:
        enrolled = {}
        for org, site in (("org-a", "site-a"), ("org-b", "site-b")):
            attempt = enroll_request(issue_token(ca, org=org, site=site), org, site)
            response = public.post("/api/v1/enroll", json=attempt.request.model_dump(mode="json"))
            assert response.status_code == 200, response.text
            enrolled[org] = (attempt, EnrollResponse.model_validate(response.json()))
    with Session(app.state.engine) as session:
        policy.add_rule(
            session,
            "org-a",
            "site-a",
            PolicyRule(destination_org="org-b", mode="identified"),
            actor="test",
        )
    attempt_a, response_a = enrolled["org-a"]
    attempt_b, _ = enrolled["org-b"]
    from cryptography import x509

    serial = x509.load_pem_x509_certificate(response_a.certificate_pem.encode()).serial_number
    recipient = RecipientKey(key_id="k" * 32, public_key=attempt_b.encryption_key.public_key())
    sink = DictSink()
    header = seal(
        io.BytesIO(b"payload!" * 2000),
        sink,
        draft=ManifestDraft(
            bundle_id=new_bundle_id(),
            sender_org="org-a",
            sender_site="site-a",
            recipients=["org-b"],
            mode="identified",
            instance_count=1,
            modalities=["CT"],
            created_at=dt.datetime.now(dt.UTC),
        ),
        recipients=[recipient],
        signing_key=attempt_a.signing_key,
        signer_key_id=f"{serial:x}",
        chunk_size=4096,
    )
    node = TestClient(
        as_site(app.state.node_app, response_a.certificate_pem), base_url="https://hub"
    )
    bundle_id = header.manifest.bundle_id
    put = node.put(f"/node/v1/bundles/{bundle_id}", content=header.to_bytes())
    assert put.status_code == 200, put.text
    yield Uploading(node, bundle_id, sink.chunks, settings.blob_dir)
    node.close()
    app.state.services.close()


def _mutations(chunks: dict[int, bytes]) -> st.SearchStrategy[tuple[str, bytes]]:
    real = st.sampled_from(sorted(chunks))
    return st.one_of(
        st.tuples(st.integers(-5, 10).map(str) | st.text(max_size=24), st.binary(max_size=5000)),
        real.flatmap(
            lambda i: st.tuples(
                st.just(str(i)),
                st.binary(max_size=64).map(lambda junk: chunks[i][: len(chunks[i]) // 2] + junk),
            )
        ),
        real.flatmap(
            lambda i: st.tuples(
                st.just(str(i)),
                st.integers(0, len(chunks[i]) - 1).map(
                    lambda at: chunks[i][:at] + bytes([chunks[i][at] ^ 1]) + chunks[i][at + 1 :]
                ),
            )
        ),
        real.flatmap(lambda i: st.tuples(st.just(str((i + 1) % len(chunks))), st.just(chunks[i]))),
    )


def test_chunk_api_never_errors_and_stores_only_the_signed_bytes(uploading: Uploading) -> None:
    @given(_mutations(uploading.chunks))
    def attack(case: tuple[str, bytes]) -> None:
        index, body = case
        response = uploading.client.put(
            f"/node/v1/bundles/{uploading.bundle_id}/chunks/{quote(index, safe='')}", content=body
        )
        assert response.status_code < 500, response.text
        if response.status_code == 204:
            assert uploading.chunks.get(int(index)) == body
        else:
            assert response.headers["content-type"].startswith("application/problem+json") or (
                response.status_code in (404, 405)
            )

    attack()
    stored = sorted(p.name for p in uploading.blob_dir.rglob("*") if p.is_file())
    assert all(".part" not in name and ".tmp" not in name for name in stored)
