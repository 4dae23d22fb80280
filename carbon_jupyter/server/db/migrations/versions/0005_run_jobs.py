"""``runs.job_id``: the ``job`` tag of a run that is a part of a distributed job, indexed.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("job_id", sa.String(64), nullable=True))
    op.create_index("ix_runs_job", "runs", ["job_id"])
    conn = op.get_bind()
    found = conn.execute(
        sa.text("SELECT id, tags FROM runs WHERE tags LIKE :pattern"), {"pattern": '%"job"%'}
    )
    for run_id, tags in found.fetchall():
        try:
            job = json.loads(tags or "{}").get("job")
        except (ValueError, AttributeError):
            continue
        if isinstance(job, str) and job:
            conn.execute(
                sa.text("UPDATE runs SET job_id = :job WHERE id = :id"),
                {"job": job[:64], "id": run_id},
            )


def downgrade() -> None:
    op.drop_index("ix_runs_job", table_name="runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("job_id")
