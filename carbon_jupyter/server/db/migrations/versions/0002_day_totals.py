"""Totals kept per day, project, user and status; an index that covers totals over runs.

``day_totals`` is filled from the runs already stored; from then on every
run written keeps it up to date. ``ix_runs_day_totals`` replaces
``ix_runs_day``: it starts with the same columns and holds every column that
totals by day, project, user or label read.

Revision ID: 0002
Revises: 0001
Create Date: 2025-02-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SUMS = ("duration_s", "energy_j", "cpu_energy_j", "gpu_energy_j", "ram_energy_j", "co2_g")
_KEY = ("day", "user_id", "project_id", "status")


def upgrade() -> None:
    op.drop_index("ix_runs_day", table_name="runs")
    op.create_index(
        "ix_runs_day_totals",
        "runs",
        ["day", "project_id", "user_id", "label", "started_at", *_SUMS],
    )
    op.create_table(
        "day_totals",
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column(
            "user_id", sa.Integer, sa.ForeignKey("users.id"), primary_key=True, autoincrement=False
        ),
        sa.Column(
            "project_id",
            sa.Integer,
            sa.ForeignKey("projects.id"),
            primary_key=True,
            autoincrement=False,
        ),
        sa.Column("status", sa.String(16), primary_key=True),
        sa.Column("runs", sa.Integer, nullable=False),
        *(sa.Column(name, sa.Float, nullable=False) for name in _SUMS),
    )
    key = ", ".join(_KEY)
    op.execute(
        f"INSERT INTO day_totals ({key}, runs, {', '.join(_SUMS)}) "
        f"SELECT {key}, count(*), {', '.join(f'coalesce(sum({s}), 0)' for s in _SUMS)} "
        f"FROM runs GROUP BY {key}"
    )


def downgrade() -> None:
    op.drop_table("day_totals")
    op.drop_index("ix_runs_day_totals", table_name="runs")
    op.create_index("ix_runs_day", "runs", ["day", "project_id"])
