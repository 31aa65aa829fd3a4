"""No patient identity at the hub: an identified study passes through and leaves no trace."""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path

from sqlalchemy import MetaData, select

from tests.factories.dicom import make_ct_study
from tests.hub.conftest import EnrolledSite, Hub
from wire.envelope import open_data_key, open_stream, parse_header
from wire.payload import instance_name, write_payload


def _hits(blob: bytes, needles: Iterable[str]) -> list[str]:
    lowered = blob.lower()
    found = []
    for needle in needles:
        for encoding in ("utf-8", "utf-16-le", "utf-16-be"):
            if needle.lower().encode(encoding) in lowered:
                found.append(f"{needle!r} ({encoding})")
    return found


def _scan_files(root: Path, needles: list[str]) -> tuple[list[Path], dict[str, list[str]]]:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return files, {str(p): h for p in files if (h := _hits(p.read_bytes(), needles))}


def _dump_database(hub: Hub) -> str:
    """Every row of every table in the hub database, as text."""
    metadata = MetaData()
    metadata.reflect(hub.engine)
    lines = []
    with hub.engine.connect() as connection:
        for table in metadata.sorted_tables:
            for row in connection.execute(select(table)):
                lines.append(f"{table.name}: {tuple(row)!r}")
    return "\n".join(lines)


def test_an_identified_study_leaves_no_identity_at_the_hub(
    hub: Hub, sites: tuple[EnrolledSite, EnrolledSite, EnrolledSite], tmp_path: Path
) -> None:
    site_a, site_b, _ = sites
    study = make_ct_study(tmp_path / "study", instances=4)
    needles = study.identifying_strings
    assert len(needles) == 5

    payload_out = io.BytesIO()
    streams = [(instance_name(i), path.open("rb"), path.stat().st_size)
               for i, path in enumerate(study.files)]  # fmt: skip
    try:
        write_payload(payload_out, streams)
    finally:
        for _, stream, _ in streams:
            stream.close()
    payload = payload_out.getvalue()
    # Control: the plaintext is full of identity, so a leak would be found.
    assert len(_hits(payload, needles)) >= len(needles)
    _, in_study = _scan_files(study.files[0].parent, needles)
    assert len(in_study) == len(study.files)

    sealed = site_a.seal(payload, ["org-b"], chunk_size=16 * 1024, mode="identified")
    assert len(sealed.chunks) > 1
    site_a.push(sealed)
    bundle_id = sealed.bundle_id

    # The recipient gets the study back, whole, through the hub.
    header = parse_header(site_b.client.get(f"/node/v1/deliveries/{bundle_id}/header").content)
    chunks = [
        site_b.client.get(f"/node/v1/deliveries/{bundle_id}/chunks/{i}").content
        for i in range(header.manifest.chunk_count)
    ]
    key = open_data_key(header, key_id=site_b.own_key_id(), private_key=site_b.encryption_key)
    assert b"".join(open_stream(header, key, chunks)) == payload
    assert site_b.client.post(f"/node/v1/deliveries/{bundle_id}/ack").status_code == 204

    # Every file of the hub: database (and its WAL on SQLite), blobs, CA journals, keys.
    files, leaks = _scan_files(hub.settings.data_dir, needles)
    assert leaks == {}, f"patient identity found in hub files: {leaks}"
    names = {p.name for p in files}
    assert "header.bin" in names
    assert sum(1 for p in files if p.name.startswith("chunk-")) == len(sealed.chunks)
    if hub.backend == "sqlite":
        assert "hub.db" in names

    # Every row of every table, on either backend.
    dump = _dump_database(hub)
    assert bundle_id in dump and "delivery.ack" in dump  # control: the dump has the transfer
    assert _hits(dump.encode(), needles) == [], "patient identity found in hub database rows"
