"""`hexchange-hub collection`: create (with the operator's key file), grant, revoke, publish,
list; the key file is checked (missing, readable by others, another file: clear errors)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
from pathlib import Path

from pydicom import dcmread
from sqlmodel import Session, select
from typer.testing import CliRunner

from hub.bootstrap import init_hub
from hub.cli import app
from hub.collections.blobs import InstanceFiles
from hub.collections.keys import FileKeyProvider, open_private_key
from hub.collections.models import Collection
from hub.collections.store import Source, add_instance
from hub.db import make_engine
from hub.settings import HubSettings
from tests.factories.collections import deidentified_study


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_collection_commands(tmp_path: Path) -> None:
    settings = HubSettings(data_dir=tmp_path / "hub")
    init_hub(settings)
    data = str(settings.data_dir)
    code, _ = _run("site", "add", "--data-dir", data, "--org", "org-a", "--site", "clinic")
    assert code == 0
    code, out = _run("collection", "create", "lungs", "--data-dir", data, "--org", "org-a")
    assert code == 2 and "collection.key" in out and "head -c 32" in out  # says what to do

    key = settings.collection_key_path
    key.write_bytes(secrets.token_bytes(32))
    os.chmod(key, 0o644)
    code, out = _run("collection", "create", "lungs", "--data-dir", data, "--org", "org-a")
    assert code == 2 and "chmod 600" in out
    os.chmod(key, 0o600)
    code, out = _run(
        "collection", "create", "lungs", "--data-dir", data, "--org", "org-a",
        "--option", "retain-long-full-dates",
    )  # fmt: skip
    assert code == 0, out
    code, out = _run("collection", "list", "--data-dir", data, "--json")
    listed = json.loads(out)
    assert [c["name"] for c in listed] == ["lungs"]
    assert listed[0]["profile"] == ["retain-long-full-dates"]

    engine = make_engine(settings.db_url)
    with Session(engine) as session:
        row = session.exec(select(Collection)).one()
        # the private key is in the database only sealed; it opens with the operator's file
        assert len(row.sealed_private_key) > 60
        private = open_private_key(
            FileKeyProvider(key), row.name, row.key_id, row.sealed_private_key
        )
        assert private is not None
        made = deidentified_study(2)
        files = InstanceFiles(settings.data_dir / "collections")
        for data_bytes in made.files:
            assert add_instance(session, files, row, data_bytes, Source("test")).status == "stored"
        again = add_instance(session, files, row, made.files[0], Source("test"))
        assert again.status == "duplicate"  # idempotent
        stored = files.get(hashlib.sha256(made.files[0]).hexdigest())
        assert str(dcmread(io.BytesIO(stored)).SOPInstanceUID) == made.sop_uids[0]
    engine.dispose()

    code, out = _run("collection", "publish", "lungs", "--data-dir", data, "--json")
    assert code == 0, out
    assert json.loads(out)["instance_count"] == 2 and json.loads(out)["version"] == 1
    code, out = _run("collection", "grant", "lungs", "nobody", "--data-dir", data)
    assert code == 2 and "no user" in out

    other = tmp_path / "other.key"
    other.write_bytes(secrets.token_bytes(32))
    os.chmod(other, 0o600)
    try:
        open_private_key(FileKeyProvider(other), "lungs", listed[0]["key_id"],
                         row.sealed_private_key)  # fmt: skip
    except Exception as exc:
        assert "not the one the collection was created with" in str(exc)
    else:
        raise AssertionError("a different key file opened the collection key")
