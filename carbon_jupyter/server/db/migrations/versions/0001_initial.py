"""The first tables: users, projects, tokens, runs, devices and samples.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("created_at", sa.String(40), nullable=False),
    )
    op.create_table(
        "projects",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("created_at", sa.String(40), nullable=False),
    )
    op.create_table(
        "tokens",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("revoked_at", sa.String(40)),
    )
    op.create_table(
        "runs",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), nullable=False),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("client_user", sa.String(200)),
        sa.Column("label", sa.Text),
        sa.Column("phase", sa.String(40)),
        sa.Column("items", sa.BigInteger),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_at", sa.String(40), nullable=False),
        sa.Column("ended_at", sa.String(40)),
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("duration_s", sa.Float, nullable=False),
        sa.Column("attribution", sa.String(16), nullable=False),
        sa.Column("energy_j", sa.Float, nullable=False),
        sa.Column("cpu_energy_j", sa.Float, nullable=False),
        sa.Column("gpu_energy_j", sa.Float, nullable=False),
        sa.Column("ram_energy_j", sa.Float, nullable=False),
        sa.Column("co2_g", sa.Float, nullable=False),
        sa.Column("intensity_g_per_kwh", sa.Float),
        sa.Column("intensity_source", sa.Text),
        sa.Column("intensity_year", sa.Integer),
        sa.Column("intensity_key", sa.String(80)),
        sa.Column("intensity_chosen_by", sa.String(40)),
        sa.Column("pue", sa.Float),
        sa.Column("pue_source", sa.Text),
        sa.Column("notebook", sa.Text),
        sa.Column("cell", sa.Text),
        sa.Column("kernel", sa.String(200)),
        sa.Column("host", sa.String(255)),
        sa.Column("error", sa.Text),
        sa.Column("tags", sa.Text),
        sa.Column("warnings", sa.Text),
        sa.Column("hardware", sa.Text),
        sa.Column("versions", sa.Text),
        sa.Column("received_at", sa.String(40), nullable=False),
        sa.Column("updated_at", sa.String(40), nullable=False),
    )
    op.create_index("ix_runs_project_started", "runs", ["project_id", "started_at"])
    op.create_index("ix_runs_started", "runs", ["started_at"])
    op.create_index("ix_runs_status", "runs", ["status"])
    op.create_index("ix_runs_user", "runs", ["user_id"])
    op.create_index("ix_runs_label", "runs", ["label"])
    op.create_index("ix_runs_host", "runs", ["host"])
    op.create_index("ix_runs_day", "runs", ["day", "project_id"])
    op.create_table(
        "devices",
        sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.id"), primary_key=True),
        sa.Column("device_id", sa.String(64), primary_key=True),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("name", sa.Text),
        sa.Column("method", sa.String(32)),
        sa.Column("uuid", sa.String(128)),
        sa.Column("power_limit_w", sa.Float),
        sa.Column("detail", sa.Text),
        sa.Column("energy_j", sa.Float, nullable=False),
        sa.Column("process_energy_j", sa.Float),
        sa.Column("mean_power_w", sa.Float),
        sa.Column("error", sa.Text),
    )
    op.create_table(
        "samples",
        sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.id"), primary_key=True),
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
        sa.Column("t_s", sa.Float, nullable=False),
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("power_w", sa.Float),
        sa.Column("energy_j", sa.Float, nullable=False),
        sa.Column("process_energy_j", sa.Float),
        sa.Column("utilization_pct", sa.Float),
        sa.Column("memory_used_b", sa.BigInteger),
    )


def downgrade() -> None:
    for table in ("samples", "devices", "runs", "tokens", "projects", "users"):
        op.drop_table(table)
