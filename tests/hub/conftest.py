"""Fixtures for the hub suite: a real hub (both listeners, real TLS) on SQLite and PostgreSQL.

Every test that uses `hub` runs twice: once on SQLite under the hub's data folder and once on
a fresh, randomly named database of the PostgreSQL server at 127.0.0.1:5432 (marked
`postgres`). An unreachable server FAILS the PostgreSQL runs unless HEXCHANGE_SKIP_POSTGRES=1.

Sites enroll through the real public endpoint exactly as the agent does
(`node_agent.enroll`): own P-256 key and CSR, own X25519 key signed by the site key.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import io
import os
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from psycopg import sql
from sqlalchemy.engine import Engine
from sqlmodel import Session

from certs.keys import build_csr, new_site_key, private_key_pem
from certs.registry import CADirectory
from certs.tls import client_ssl_context
from certs.tokens import issue_token
from hub import policy
from hub.bootstrap import init_hub
from hub.db import make_engine
from hub.server import serve
from hub.settings import HubSettings
from tests.ports import free_port
from wire.api import (
    EnrollRequest,
    EnrollResponse,
    OrgKeys,
    sign_encryption_key,
    verify_site_key,
)
from wire.envelope import RecipientKey, SealedHeader, seal
from wire.facts import StudyFacts
from wire.manifest import ManifestDraft, Mode, new_bundle_id
from wire.policy import PolicyRule
from wire.receipt import Receipt

PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"
SKIP_POSTGRES_ENV = "HEXCHANGE_SKIP_POSTGRES"
START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 15.0


# --- databases ------------------------------------------------------------------------


def _pg_admin() -> psycopg.Connection[Any]:
    """Autocommit connection to the `postgres` maintenance database (fails the test if down)."""
    try:
        return psycopg.connect(
            host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres",
            autocommit=True, connect_timeout=5,
        )  # fmt: skip
    except psycopg.OperationalError as exc:
        reason = str(exc).strip()
    pytest.fail(
        f"PostgreSQL is not reachable at {PG_HOST}:{PG_PORT} as user {PG_USER!r} ({reason}). "
        f"Start the server (CI starts it itself), or set {SKIP_POSTGRES_ENV}=1 to skip "
        "the PostgreSQL runs of the hub suite.",
        pytrace=False,
    )


# Not UTC on purpose: production servers often run in local time, and the hub must not care.
PG_SESSION_TIMEZONE = "America/New_York"


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh database with a random name; dropped (WITH FORCE) afterwards."""
    name = f"hexchange_test_{secrets.token_hex(6)}"
    with _pg_admin() as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        admin.execute(
            sql.SQL("ALTER DATABASE {} SET timezone TO {}").format(
                sql.Identifier(name), sql.Literal(PG_SESSION_TIMEZONE)
            )
        )
    try:
        yield f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        with _pg_admin() as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """SQLAlchemy URL of an empty database, on each backend in turn."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'hub-data' / 'hub.db'}"
        return
    if os.environ.get(SKIP_POSTGRES_ENV) == "1":
        pytest.skip(f"{SKIP_POSTGRES_ENV}=1")
    with postgres_database() as url:
        yield url


# --- a running hub --------------------------------------------------------------------


@contextmanager
def running_hub(settings: HubSettings) -> Iterator[None]:
    """`hub.server.serve` in a thread with its own event loop; stopped through `stop`."""
    started = threading.Event()
    failure: list[BaseException] = []
    control: dict[str, Callable[[], None]] = {}

    async def main() -> None:
        loop = asyncio.get_running_loop()
        ready, stop = asyncio.Event(), asyncio.Event()

        def request_stop() -> None:
            loop.call_soon_threadsafe(stop.set)

        control["stop"] = request_stop

        async def relay() -> None:
            await ready.wait()
            started.set()

        relay_task = asyncio.create_task(relay())
        try:
            await serve(settings, ready=ready, stop=stop)
        finally:
            relay_task.cancel()

    def target() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # reported to the test thread
            failure.append(exc)
        finally:
            started.set()

    thread = threading.Thread(target=target, name="hub-under-test", daemon=True)
    thread.start()
    try:
        if not started.wait(START_TIMEOUT_S):
            raise RuntimeError(f"hub did not start within {START_TIMEOUT_S} s")
        if failure or not thread.is_alive():
            raise RuntimeError(f"hub failed to start: {failure[:1]!r}")
        yield
    finally:
        if "stop" in control:
            control["stop"]()
        thread.join(STOP_TIMEOUT_S)
        if thread.is_alive():
            raise RuntimeError(f"hub did not stop within {STOP_TIMEOUT_S} s")


@dataclass
class EnrolledSite:
    """A site enrolled through /api/v1/enroll, with an mTLS client for the node API."""

    org: str
    site: str
    signing_key: ec.EllipticCurvePrivateKey
    encryption_key: X25519PrivateKey
    response: EnrollResponse
    cert_file: Path
    key_file: Path
    ca_file: Path
    client: httpx.Client

    @property
    def cert(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.response.certificate_pem.encode())

    @property
    def serial(self) -> int:
        return self.cert.serial_number

    @property
    def ca_cert(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.response.ca_pem.encode())

    @property
    def receipt_public_key(self) -> ec.EllipticCurvePublicKey:
        key = serialization.load_pem_public_key(self.response.hub_receipt_public_key_pem.encode())
        assert isinstance(key, ec.EllipticCurvePublicKey)
        return key

    def recipient_keys(self, org: str) -> list[RecipientKey]:
        """The org's published encryption keys, each checked as the agent checks them."""
        response = self.client.get(f"/node/v1/orgs/{org}/keys")
        assert response.status_code == 200, response.text
        published = OrgKeys.model_validate(response.json())
        now = dt.datetime.now(dt.UTC)
        return [verify_site_key(key, self.ca_cert, now=now) for key in published.keys]

    def own_key_id(self) -> str:
        """The key id under which the hub publishes this site's encryption key."""
        raw = raw_public(self.encryption_key)
        response = self.client.get(f"/node/v1/orgs/{self.org}/keys")
        assert response.status_code == 200, response.text
        for key in OrgKeys.model_validate(response.json()).keys:
            if key.site == self.site and base64.b64decode(key.public_key) == raw:
                return key.key_id
        raise AssertionError(f"{self.org}/{self.site} has no published encryption key")

    def seal(
        self,
        payload: bytes,
        recipient_orgs: list[str],
        *,
        chunk_size: int = 1024,
        mode: Mode = "identified",
        bundle_id: str | None = None,
        sender: tuple[str, str] | None = None,
        signing_key: ec.EllipticCurvePrivateKey | None = None,
        recipients: list[RecipientKey] | None = None,
        facts: StudyFacts | None = None,
    ) -> Sealed:
        """Seal `payload` to the published keys of `recipient_orgs` (overrides for attacks)."""
        if recipients is None:
            recipients = [key for org in recipient_orgs for key in self.recipient_keys(org)]
        sender_org, sender_site = sender or (self.org, self.site)
        draft = ManifestDraft(
            bundle_id=bundle_id or new_bundle_id(),
            sender_org=sender_org,
            sender_site=sender_site,
            recipients=recipient_orgs,
            mode=mode,
            instance_count=1,
            modalities=list(facts.modalities) if facts else ["CT"],
            created_at=dt.datetime.now(dt.UTC),
            facts=facts,
        )
        sink = DictSink()
        header = seal(
            io.BytesIO(payload),
            sink,
            draft=draft,
            recipients=recipients,
            signing_key=signing_key or self.signing_key,
            signer_key_id=f"{self.serial:x}",
            chunk_size=chunk_size,
        )
        return Sealed(header=header, chunks=sink.chunks)

    # -- node API calls ----------------------------------------------------------------
    def put_header(self, sealed: Sealed) -> httpx.Response:
        return self.client.put(
            f"/node/v1/bundles/{sealed.bundle_id}",
            content=sealed.header.to_bytes(),
            headers={"content-type": "application/octet-stream"},
        )

    def put_chunk(self, bundle_id: str, index: int, data: bytes) -> httpx.Response:
        return self.client.put(
            f"/node/v1/bundles/{bundle_id}/chunks/{index}",
            content=data,
            headers={"content-type": "application/octet-stream"},
        )

    def status(self, bundle_id: str) -> httpx.Response:
        return self.client.get(f"/node/v1/bundles/{bundle_id}")

    def complete(self, bundle_id: str) -> httpx.Response:
        return self.client.post(f"/node/v1/bundles/{bundle_id}/complete")

    def push(self, sealed: Sealed) -> Receipt:
        """Header, every chunk, complete; asserts each step succeeded."""
        response = self.put_header(sealed)
        assert response.status_code == 200, response.text
        for index, data in sorted(sealed.chunks.items()):
            response = self.put_chunk(sealed.bundle_id, index, data)
            assert response.status_code == 204, response.text
        response = self.complete(sealed.bundle_id)
        assert response.status_code == 200, response.text
        return Receipt.model_validate(response.json())

    def deliveries(self) -> list[dict[str, Any]]:
        response = self.client.get("/node/v1/deliveries")
        assert response.status_code == 200, response.text
        return list(response.json()["deliveries"])


def raw_public(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


class DictSink:
    def __init__(self) -> None:
        self.chunks: dict[int, bytes] = {}

    def write_chunk(self, index: int, data: bytes) -> None:
        self.chunks[index] = data


@dataclass(frozen=True)
class Sealed:
    header: SealedHeader
    chunks: dict[int, bytes]

    @property
    def bundle_id(self) -> str:
        return self.header.manifest.bundle_id


@dataclass(frozen=True)
class EnrollAttempt:
    """What an agent sends to /api/v1/enroll, and the keys it keeps."""

    request: EnrollRequest
    signing_key: ec.EllipticCurvePrivateKey
    encryption_key: X25519PrivateKey


def enroll_request(
    token: str,
    org: str,
    site: str,
    *,
    key_signer: ec.EllipticCurvePrivateKey | None = None,
) -> EnrollAttempt:
    """Build the request as `node_agent.enroll` does. `key_signer` overrides who signs the
    encryption key (to forge a bad signature)."""
    signing_key = new_site_key()
    encryption_key = X25519PrivateKey.generate()
    raw = raw_public(encryption_key)
    request = EnrollRequest(
        token=token,
        csr_pem=build_csr(signing_key, org=org, site=site).decode(),
        encryption_public_key=base64.b64encode(raw).decode(),
        encryption_key_signature=sign_encryption_key(key_signer or signing_key, raw),
    )
    return EnrollAttempt(request, signing_key, encryption_key)


@dataclass
class Hub:
    """A running hub plus helpers to act as its network admin and as agents."""

    settings: HubSettings
    backend: str
    workdir: Path
    _closers: list[Callable[[], None]] = field(default_factory=list)
    _engine: Engine | None = None

    @property
    def node_url(self) -> str:
        return f"https://127.0.0.1:{self.settings.node_port}"

    @property
    def public_url(self) -> str:
        return f"https://127.0.0.1:{self.settings.public_port}"

    @property
    def ca_file(self) -> Path:
        return self.settings.ca_cert_file

    def registry(self) -> CADirectory:
        """A CA directory object of its own, as another process (the admin CLI) has."""
        return CADirectory(self.settings.ca_dir)

    def token(
        self, org: str, site: str, *, ttl: dt.timedelta = dt.timedelta(minutes=10), **kw: Any
    ) -> str:
        return issue_token(self.registry().load(), org=org, site=site, ttl=ttl, **kw)

    def allow(self, org: str, site: str, to: str, mode: Mode = "identified") -> None:
        """As the network admin (`hexchange-hub policy add`): let org/site send to `to`."""
        rule = PolicyRule(destination_org=to, mode=mode)
        with self.session() as session:
            policy.add_rule(session, org, site, rule, actor="test:network-admin")

    def client(
        self, url: str, *, cert_file: Path | None = None, key_file: Path | None = None
    ) -> httpx.Client:
        context = client_ssl_context(self.ca_file, cert_file=cert_file, key_file=key_file)
        client = httpx.Client(base_url=url, verify=context, timeout=10.0)
        self._closers.append(client.close)
        return client

    def public_client(self) -> httpx.Client:
        return self.client(self.public_url)

    def post_enroll(self, request: EnrollRequest) -> httpx.Response:
        with httpx.Client(verify=client_ssl_context(self.ca_file), timeout=10.0) as client:
            return client.post(
                self.public_url + "/api/v1/enroll", json=request.model_dump(mode="json")
            )

    def enroll(self, org: str, site: str) -> EnrolledSite:
        """Issue a token for org/site and enroll a new agent with it."""
        attempt = enroll_request(self.token(org, site), org, site)
        response = self.post_enroll(attempt.request)
        assert response.status_code == 200, response.text
        return self.site_from(attempt, EnrollResponse.model_validate(response.json()))

    def site_from(self, attempt: EnrollAttempt, response: EnrollResponse) -> EnrolledSite:
        folder = (
            self.workdir / "agents" / f"{response.org}--{response.site}--{secrets.token_hex(3)}"
        )
        folder.mkdir(parents=True)
        cert_file, key_file, ca_file = folder / "site.pem", folder / "site.key", folder / "ca.pem"
        key_file.touch(mode=0o600)
        key_file.write_bytes(private_key_pem(attempt.signing_key))
        cert_file.write_text(response.certificate_pem)
        ca_file.write_text(response.ca_pem)
        context = client_ssl_context(ca_file, cert_file=cert_file, key_file=key_file)
        client = httpx.Client(base_url=self.node_url, verify=context, timeout=10.0)
        self._closers.append(client.close)
        return EnrolledSite(
            org=response.org,
            site=response.site,
            signing_key=attempt.signing_key,
            encryption_key=attempt.encryption_key,
            response=response,
            cert_file=cert_file,
            key_file=key_file,
            ca_file=ca_file,
            client=client,
        )

    @property
    def engine(self) -> Engine:
        """The test's own engine on the hub database (for inspection and tampering)."""
        if self._engine is None:
            self._engine = make_engine(self.settings.db_url)
        return self._engine

    def session(self) -> Session:
        return Session(self.engine)

    def signing_key(self) -> ec.EllipticCurvePrivateKey:
        from hub.bootstrap import load_receipt_key

        return load_receipt_key(self.settings.receipt_key_file)

    def person(
        self, username: str, role: str, org: str | None = None, *, password: str | None = None
    ) -> httpx.Client:
        """An account made as on the hub host (`hexchange-hub user add`), signed in over the
        public API with a personal API token (organizations are created as needed)."""
        from hub.models import Organization
        from hub.principals import Principal
        from hub.users import service as users
        from hub.users.passwords import PasswordHasher

        password = password or f"pw-{username}-{secrets.token_hex(8)}"
        with self.session() as session:
            if org is not None and session.get(Organization, org) is None:
                session.add(Organization(id=org, name=org))
                session.commit()
            users.create_user(
                session, Principal.cli(), PasswordHasher(), username=username, role=role,
                org=org, password=password,
            )  # fmt: skip
        client = self.public_client()
        login = client.post("/api/v1/auth/login", json={"username": username, "password": password})
        assert login.status_code == 200, login.text
        csrf = login.json()["csrf_token"]
        made = client.post(
            "/api/v1/me/tokens", json={"name": "tests"}, headers={"X-CSRF-Token": csrf}
        )
        assert made.status_code == 201, made.text
        client.cookies.clear()
        client.headers["Authorization"] = f"Bearer {made.json()['token']}"
        return client

    def close(self) -> None:
        for close in reversed(self._closers):
            close()
        self._closers.clear()
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


@pytest.fixture
def hub(database_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Hub]:
    settings = HubSettings(
        data_dir=tmp_path / "hub-data",
        database_url=database_url,
        node_port=free_port(),
        public_port=free_port(),
    )
    init_hub(settings)
    handle = Hub(settings=settings, backend=request.node.callspec.params["database_url"],
                 workdir=tmp_path / "work")  # fmt: skip
    with running_hub(settings):
        try:
            yield handle
        finally:
            handle.close()


@pytest.fixture
def sites(hub: Hub) -> tuple[EnrolledSite, EnrolledSite, EnrolledSite]:
    """org-a/site-a, org-b/site-b, org-c/site-c; each may send identified studies to the
    other two organizations (policy is deny by default)."""
    enrolled = (
        hub.enroll("org-a", "site-a"), hub.enroll("org-b", "site-b"), hub.enroll("org-c", "site-c")
    )  # fmt: skip
    for sender in enrolled:
        for receiver in enrolled:
            if receiver.org != sender.org:
                hub.allow(sender.org, sender.site, receiver.org)
    return enrolled


@pytest.fixture
def world(database_url: str, tmp_path: Path) -> Iterator[Any]:
    """The in-process hub with two organizations and one person per role (`api_world`)."""
    from tests.hub.api_world import api_world

    with api_world(tmp_path, database_url) as made:
        yield made
