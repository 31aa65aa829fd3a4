"""The hub's services object: built once per process, by `create_app` and by every CLI command.

Domain functions take a `Session` and a `Principal` (and, where they need them, these services);
they never import FastAPI. HTTP routes, the CLI and the web UI are thin adapters over them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy.engine import Engine
from sqlmodel import Session

from certs.registry import CADirectory
from hub.audit.buffer import AuditBuffer
from hub.bootstrap import load_receipt_key
from hub.db import create_schema, make_engine
from hub.settings import HubSettings
from hub.storage import LocalBlobStore
from hub.users.passwords import PasswordHasher


def utc_clock() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class Services:
    """Everything a domain function may need, made from settings in one place."""

    settings: HubSettings
    engine: Engine
    blobs: LocalBlobStore
    ca: CADirectory
    signing_key: ec.EllipticCurvePrivateKey
    passwords: PasswordHasher
    clock: Callable[[], dt.datetime] = utc_clock
    extras: dict[str, object] = field(default_factory=dict)
    audit_buffer: AuditBuffer = field(init=False)

    def __post_init__(self) -> None:
        self.audit_buffer = AuditBuffer(self.engine, self.signing_key)

    @property
    def signing_public_pem(self) -> str:
        """The hub's signing key (receipts, policies, audit checkpoints) as PEM."""
        return (
            self.signing_key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )

    @contextmanager
    def session(self) -> Iterator[Session]:
        with Session(self.engine) as session:
            yield session

    def close(self) -> None:
        self.audit_buffer.close()
        self.engine.dispose()


def build_services(settings: HubSettings, *, migrate: bool = True) -> Services:
    """Open the database (bringing its schema up to date), blob store, CA and keys."""
    engine = make_engine(settings.db_url)
    if migrate:
        create_schema(engine)
    return Services(
        settings=settings,
        engine=engine,
        blobs=LocalBlobStore(settings.blob_dir),
        ca=CADirectory(settings.ca_dir),
        signing_key=load_receipt_key(settings.receipt_key_file),
        passwords=PasswordHasher(),
    )
