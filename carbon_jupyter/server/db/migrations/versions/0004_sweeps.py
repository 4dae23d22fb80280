"""Sweeps submitted to the server, and ``runs.sweep_id`` to find a sweep's runs at once.

``sweeps`` holds each submitted sweep (its document, who submitted it, its
executor and where it stands); ``runs.sweep_id`` is the ``sweep`` tag of a
run, filled in for the runs stored before.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sweeps",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), nullable=False),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("executor", sa.String(300), nullable=False),
        sa.Column("spec", sa.Text, nullable=False),
        sa.Column("total", sa.Integer, nullable=False),
        sa.Column("cancel_requested", sa.Integer, nullable=False, server_default="0"),
        sa.Column("claimed_by", sa.Text),
        sa.Column("heartbeat_at", sa.String(40)),
        sa.Column("token_id", sa.Integer),
        sa.Column("error", sa.Text),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("started_at", sa.String(40)),
        sa.Column("ended_at", sa.String(40)),
        sa.Column("updated_at", sa.String(40), nullable=False),
    )
    op.create_index("ix_sweeps_project_created", "sweeps", ["project_id", "created_at"])
    op.create_index("ix_sweeps_status", "sweeps", ["status"])
    op.add_column("runs", sa.Column("sweep_id", sa.String(64), nullable=True))
    op.create_index("ix_runs_sweep", "runs", ["sweep_id"])
    conn = op.get_bind()
    found = conn.execute(
        sa.text("SELECT id, tags FROM runs WHERE tags LIKE :pattern"), {"pattern": '%"sweep"%'}
    )
    for run_id, tags in found.fetchall():
        try:
            sweep = json.loads(tags or "{}").get("sweep")
        except (ValueError, AttributeError):
            continue
        if isinstance(sweep, str) and sweep:
            conn.execute(
                sa.text("UPDATE runs SET sweep_id = :sweep WHERE id = :id"),
                {"sweep": sweep[:64], "id": run_id},
            )


def downgrade() -> None:
    op.drop_index("ix_runs_sweep", table_name="runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("sweep_id")
    op.drop_index("ix_sweeps_status", table_name="sweeps")
    op.drop_index("ix_sweeps_project_created", table_name="sweeps")
    op.drop_table("sweeps")
