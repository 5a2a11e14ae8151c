"""creator identity: who holds a pending reservation (PID, process start, scratch lock)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05

Three nullable columns of ``checkpoints``, set while a row is PENDING (cleared at
commit): ``owner_pid``, ``owner_start`` (``BOOT_ID/PIDNS/STARTTIME``: the boot, the PID
namespace and the start time of that PID, so a reused PID or another machine is told
apart) and ``owner_lock`` (the creator's flock-ed scratch folder). Rows written before
this revision have none: they are settled by their lease only, as before.
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
    with op.batch_alter_table("checkpoints") as batch:
        batch.add_column(sa.Column("owner_pid", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("owner_start", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("owner_lock", sa.String(length=1024), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("checkpoints") as batch:
        batch.drop_column("owner_lock")
        batch.drop_column("owner_start")
        batch.drop_column("owner_pid")
