"""QIDO-RS sequence matching in research collections (issue 11): the values of the items of
matchable sequences (`collection_sequence_value`), indexed for the collections already stored

The backfill reads the DICOM JSON every instance row already holds (no instance file is
opened), in id order, so the study's and the series' sequences come from the instance that
created the study and series rows, as at ingest; the study and series rows also get their
sequence in the attributes they return. The rows are built by the very function ingest uses
(`hub.collections.sequences.item_values`).

Revision ID: 0007_collection_sequences
Revises: 0006_requests
Create Date: 2026-12-04 14:20:00
"""

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
import sqlmodel
from alembic import op

from hub.collections import sequences

revision: str = "0007_collection_sequences"
down_revision: str | None = "0006_requests"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_S = sqlmodel.sql.sqltypes.AutoString
_PAGE = 500

_values = sa.table(
    "collection_sequence_value",
    sa.column("collection_id", sa.Integer()),
    sa.column("owner", _S()),
    sa.column("sequence", _S()),
    sa.column("item", sa.Integer()),
    sa.column("item_key", _S()),
    sa.column("value", _S()),
)
_instance = sa.table(
    "collection_instance",
    sa.column("id", sa.Integer()),
    sa.column("collection_id", sa.Integer()),
    sa.column("study_uid", _S()),
    sa.column("series_uid", _S()),
    sa.column("sop_uid", _S()),
    sa.column("attributes", sa.Text()),
)
_study = sa.table(
    "collection_study",
    sa.column("collection_id", sa.Integer()),
    sa.column("study_uid", _S()),
    sa.column("attributes", sa.Text()),
)
_series = sa.table(
    "collection_series",
    sa.column("collection_id", sa.Integer()),
    sa.column("series_uid", _S()),
    sa.column("attributes", sa.Text()),
)


def upgrade() -> None:
    op.create_table(
        "collection_sequence_value",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("collection_id", sa.Integer(), nullable=False),
        sa.Column("owner", _S(length=64), nullable=False),
        sa.Column("sequence", _S(length=8), nullable=False),
        sa.Column("item", sa.Integer(), nullable=False),
        sa.Column("item_key", _S(length=8), nullable=False),
        sa.Column("value", _S(length=200), nullable=False),
        sa.ForeignKeyConstraint(["collection_id"], ["research_collection.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("collection_sequence_value", schema=None) as batch_op:
        batch_op.create_index(
            "ix_cseqvalue_match", ["collection_id", "sequence", "item_key", "value"], unique=False
        )
        batch_op.create_index(
            "ix_cseqvalue_owner", ["collection_id", "owner", "sequence", "item"], unique=False
        )
    _backfill(op.get_bind())


def _returned(conn: sa.Connection, level: str, cid: int, uid: str, attributes: Any) -> None:
    """Add the level's sequences to the attributes its study or series row returns."""
    tags = [sequences.tag_of(k) for k, own in sequences.SEQUENCES.items() if own == level]
    found = {tag: attributes[tag] for tag in tags if tag in attributes}
    if not found:
        return
    rows = _study if level == "study" else _series
    key = _study.c.study_uid if level == "study" else _series.c.series_uid
    where = sa.and_(rows.c.collection_id == cid, key == uid)
    stored = conn.execute(sa.select(rows.c.attributes).where(where)).scalar_one_or_none()
    if stored is not None:
        merged = {**json.loads(stored), **found}
        conn.execute(
            rows.update().where(where).values(attributes=json.dumps(dict(sorted(merged.items()))))
        )


def _backfill(conn: sa.Connection) -> None:
    seen_studies: set[tuple[int, str]] = set()
    seen_series: set[tuple[int, str]] = set()
    last = 0
    while True:
        page = conn.execute(
            sa.select(
                _instance.c.id, _instance.c.collection_id, _instance.c.study_uid,
                _instance.c.series_uid, _instance.c.sop_uid, _instance.c.attributes,
            )
            .where(_instance.c.id > last)
            .order_by(_instance.c.id)
            .limit(_PAGE)
        ).all()  # fmt: skip
        if not page:
            return
        batch: list[dict[str, Any]] = []
        for row_id, cid, study_uid, series_uid, sop_uid, text in page:
            last = row_id
            attributes = json.loads(text or "{}")
            owners: dict[sequences.Level, str] = {"instance": sop_uid}
            if (cid, study_uid) not in seen_studies:
                seen_studies.add((cid, study_uid))
                owners["study"] = study_uid
                _returned(conn, "study", cid, study_uid, attributes)
            if (cid, series_uid) not in seen_series:
                seen_series.add((cid, series_uid))
                owners["series"] = series_uid
                _returned(conn, "series", cid, series_uid, attributes)
            for level, owner in owners.items():
                batch += [
                    {"collection_id": cid, "owner": owner, "sequence": v.sequence,
                     "item": v.item, "item_key": v.item_key, "value": v.value}
                    for v in sequences.item_values(attributes, level)
                ]  # fmt: skip
        if batch:
            conn.execute(_values.insert(), batch)


def downgrade() -> None:
    with op.batch_alter_table("collection_sequence_value", schema=None) as batch_op:
        batch_op.drop_index("ix_cseqvalue_owner")
        batch_op.drop_index("ix_cseqvalue_match")
    op.drop_table("collection_sequence_value")
