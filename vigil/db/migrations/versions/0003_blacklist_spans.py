"""blacklist entries end instead of being deleted: several spans per (kind, value), who ended one

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("blacklist_entries", schema=None) as batch_op:
        batch_op.drop_constraint("uq_blacklist_kind_value", type_="unique")
        batch_op.add_column(sa.Column("removed_by", sa.String(length=64), nullable=True))
        batch_op.create_index("ix_blacklist_kind_value", ["kind", "value"], unique=False)


def downgrade() -> None:
    # Only possible while no (kind, value) has more than one span (the unique constraint returns).
    with op.batch_alter_table("blacklist_entries", schema=None) as batch_op:
        batch_op.drop_index("ix_blacklist_kind_value")
        batch_op.drop_column("removed_by")
        batch_op.create_unique_constraint("uq_blacklist_kind_value", ["kind", "value"])
