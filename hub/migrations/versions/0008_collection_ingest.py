"""collection ingest queue: complete bundles waiting for the hub's background ingest worker
(issue 11); collection deliveries still queued are queued for the worker

Revision ID: 0008_collection_ingest
Revises: 0007_collection_sequences
Create Date: 2026-12-04 14:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0008_collection_ingest"
down_revision: str | None = "0007_collection_sequences"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_S = sqlmodel.sql.sqltypes.AutoString
_T = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "collection_ingest",
        sa.Column("bundle_id", _S(length=32), nullable=False),
        sa.Column("recipient", _S(length=63), nullable=False),
        sa.Column("sender_org", _S(length=63), nullable=False),
        sa.Column("sender_site", _S(length=63), nullable=False),
        sa.Column("state", _S(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", _S(length=300), nullable=False),
        sa.Column("counts", _S(length=200), nullable=False),
        sa.Column("queued_at", _T(), nullable=False),
        sa.Column("not_before", _T(), nullable=False),
        sa.Column("finished_at", _T(), nullable=True),
        sa.ForeignKeyConstraint(["bundle_id"], ["bundle.bundle_id"]),
        sa.PrimaryKeyConstraint("bundle_id", "recipient"),
    )
    with op.batch_alter_table("collection_ingest", schema=None) as batch_op:
        batch_op.create_index("ix_cingest_due", ["state", "not_before"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_collection_ingest_sender_org"), ["sender_org"], unique=False
        )
    # what the completion hook had left queued (e.g. the operator's key file was missing)
    op.execute(
        """
        INSERT INTO collection_ingest (bundle_id, recipient, sender_org, sender_site, state,
                                       attempts, error, counts, queued_at, not_before)
        SELECT d.bundle_id, d.recipient_org, b.sender_org, b.sender_site, 'pending',
               0, '', '', d.created_at, d.created_at
        FROM delivery d JOIN bundle b ON b.bundle_id = d.bundle_id
        WHERE d.state = 'queued' AND d.recipient_org LIKE 'collection--%'
          AND b.state = 'complete'
        """
    )


def downgrade() -> None:
    with op.batch_alter_table("collection_ingest", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_collection_ingest_sender_org"))
        batch_op.drop_index("ix_cingest_due")
    op.drop_table("collection_ingest")
