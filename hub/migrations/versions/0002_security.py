"""security: the last quota refusal of each site (issue 14)

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "quota_refusal",
        sa.Column("org", sqlmodel.sql.sqltypes.AutoString(length=63), nullable=False),
        sa.Column("site", sqlmodel.sql.sqltypes.AutoString(length=63), nullable=False),
        sa.Column("limit_name", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("detail", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.Column("refusals", sa.Integer(), nullable=False),
        sa.Column("at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("org", "site"),
    )


def downgrade() -> None:
    op.drop_table("quota_refusal")
