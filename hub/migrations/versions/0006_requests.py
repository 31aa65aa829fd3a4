"""federated query/retrieve requests: opaque routing of sealed requests and answers

Revision ID: 0006_requests
Revises: 0005_collections
Create Date: 2026-12-04 00:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0006_requests"
down_revision: str | None = "0005_collections"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_S = sqlmodel.sql.sqltypes.AutoString
_T = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "federated_request",
        sa.Column("request_id", _S(length=32), nullable=False),
        sa.Column("kind", _S(length=16), nullable=False),
        sa.Column("requester_org", _S(length=63), nullable=False),
        sa.Column("requester_site", _S(length=63), nullable=False),
        sa.Column("hold", sa.Boolean(), nullable=False),
        sa.Column("sealed_query", _S(), nullable=False),
        sa.Column("created_at", _T(), nullable=False),
        sa.Column("expires_at", _T(), nullable=False),
        sa.PrimaryKeyConstraint("request_id"),
    )
    with op.batch_alter_table("federated_request", schema=None) as batch_op:
        batch_op.create_index(
            "ix_federated_request_requester", ["requester_org", "created_at"], unique=False
        )
    op.create_table(
        "request_target",
        sa.Column("request_id", _S(length=32), nullable=False),
        sa.Column("target_org", _S(length=63), nullable=False),
        sa.Column("state", _S(length=16), nullable=False),
        sa.Column("last_contact_at", _T(), nullable=True),
        sa.Column("delivered_at", _T(), nullable=True),
        sa.Column("delivered_to_site", _S(length=63), nullable=True),
        sa.Column("answered_at", _T(), nullable=True),
        sa.Column("answered_by_site", _S(length=63), nullable=True),
        sa.Column("outcome", _S(length=32), nullable=True),
        sa.Column("match_count", sa.Integer(), nullable=True),
        sa.Column("instances_done", sa.Integer(), nullable=True),
        sa.Column("sealed_answer", _S(), nullable=True),
        sa.ForeignKeyConstraint(["request_id"], ["federated_request.request_id"]),
        sa.PrimaryKeyConstraint("request_id", "target_org"),
    )
    with op.batch_alter_table("request_target", schema=None) as batch_op:
        batch_op.create_index("ix_request_target_inbox", ["target_org", "state"], unique=False)
    op.create_table(
        "request_listener",
        sa.Column("org", _S(length=63), nullable=False),
        sa.Column("site", _S(length=63), nullable=False),
        sa.Column("last_poll_at", _T(), nullable=False),
        sa.PrimaryKeyConstraint("org", "site"),
    )


def downgrade() -> None:
    op.drop_table("request_listener")
    with op.batch_alter_table("request_target", schema=None) as batch_op:
        batch_op.drop_index("ix_request_target_inbox")
    op.drop_table("request_target")
    with op.batch_alter_table("federated_request", schema=None) as batch_op:
        batch_op.drop_index("ix_federated_request_requester")
    op.drop_table("federated_request")
