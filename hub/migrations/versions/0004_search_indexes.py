"""indexes for the user API's searches at fleet scale (bundles by organization and time,
deliveries by recipient, audit by organization newest first)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 22:25:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("bundle", schema=None) as batch_op:
        batch_op.create_index("ix_bundle_org_created", ["sender_org", "created_at"], unique=False)
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.create_index(
            "ix_delivery_recipient", ["recipient_org", "created_at"], unique=False
        )
    with op.batch_alter_table("auditevent", schema=None) as batch_op:
        batch_op.drop_index("ix_auditevent_org")
        batch_op.create_index("ix_auditevent_org_seq", ["org", "seq"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("auditevent", schema=None) as batch_op:
        batch_op.drop_index("ix_auditevent_org_seq")
        batch_op.create_index("ix_auditevent_org", ["org"], unique=False)
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.drop_index("ix_delivery_recipient")
    with op.batch_alter_table("bundle", schema=None) as batch_op:
        batch_op.drop_index("ix_bundle_org_created")
