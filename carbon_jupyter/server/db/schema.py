"""The team server's tables, one schema for SQLite and PostgreSQL (SQLAlchemy Core).

The tables are changed only through Alembic migrations
(``carbon_jupyter/server/db/migrations``); this module is what the newest
migration builds, and what the code reads and writes.

``users`` / ``projects``
    Who measured, and the group their runs belong to. A token belongs to one
    user and one project.
``tokens``
    Only the SHA-256 of each token is kept (``token_hash``), with its first
    characters (``prefix``) to tell tokens apart in listings, its ``scope``
    (``read``, ``ingest`` or ``admin``) and when it was revoked, if it was.
``runs``
    One row per run, as the client measured it (see
    :mod:`carbon_jupyter.forward.wire`), with the project and user of the token
    that sent it, ``client_user`` (the account name on the measuring machine),
    ``day`` (the UTC date the run started, for totals by day) and
    ``received_at`` / ``updated_at`` (server time).
``devices``
    One row per device per run, with the ``method`` that produced its figure.
``samples``
    The live readings; ``(run_id, seq)`` is the key, so a batch sent twice is
    stored once.
``sweeps``
    Sweeps submitted to the server (:mod:`carbon_jupyter.server.sweeps`): the
    sweep's document (``spec``, JSON), who submitted it, the ``executor`` that
    runs it, its ``status`` (``queued``, ``running``, ``done``, ``cancelled``,
    ``failed``), and which server process holds it (``claimed_by``, renewed in
    ``heartbeat_at``). Its runs are the runs whose ``sweep_id`` is its id.
``day_totals``
    The runs' count and sums per ``(day, user_id, project_id, status)``, kept
    up to date in the same transaction as every run written (see
    :mod:`carbon_jupyter.server.rollup`), so totals by day, user or project
    read a few rows per day instead of every run.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

#: The figures summed by totals, in ``runs`` and ``day_totals`` alike.
SUM_COLUMNS = ("duration_s", "energy_j", "cpu_energy_j", "gpu_energy_j", "ram_energy_j", "co2_g")
#: What ``day_totals`` is kept per.
DAY_TOTALS_KEY = ("day", "user_id", "project_id", "status")
TOTALS_INDEX_COLUMNS = ("day", "project_id", "user_id", "label", "started_at", *SUM_COLUMNS)

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("created_at", String(40), nullable=False),
)

projects = Table(
    "projects",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("created_at", String(40), nullable=False),
)

tokens = Table(
    "tokens",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(16), nullable=False),
    Column("user_id", Integer, ForeignKey("users.id"), nullable=False),
    Column("project_id", Integer, ForeignKey("projects.id"), nullable=False),
    Column("scope", String(16), nullable=False),
    Column("created_at", String(40), nullable=False),
    Column("revoked_at", String(40)),
)

runs = Table(
    "runs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("project_id", Integer, ForeignKey("projects.id"), nullable=False),
    Column("user_id", Integer, ForeignKey("users.id"), nullable=False),
    Column("client_user", String(200)),
    Column("label", Text),
    Column("phase", String(40)),
    Column("items", BigInteger),
    Column("status", String(16), nullable=False),
    Column("started_at", String(40), nullable=False),
    Column("ended_at", String(40)),
    Column("day", String(10), nullable=False),
    Column("duration_s", Float, nullable=False, default=0.0),
    Column("attribution", String(16), nullable=False),
    Column("energy_j", Float, nullable=False, default=0.0),
    Column("cpu_energy_j", Float, nullable=False, default=0.0),
    Column("gpu_energy_j", Float, nullable=False, default=0.0),
    Column("ram_energy_j", Float, nullable=False, default=0.0),
    Column("co2_g", Float, nullable=False, default=0.0),
    Column("intensity_g_per_kwh", Float),
    Column("intensity_source", Text),
    Column("intensity_year", Integer),
    Column("intensity_key", String(80)),
    Column("intensity_chosen_by", String(40)),
    Column("pue", Float),
    Column("pue_source", Text),
    Column("notebook", Text),
    Column("cell", Text),
    Column("kernel", String(200)),
    Column("host", String(255)),
    Column("error", Text),
    Column("tags", Text),
    Column("warnings", Text),
    Column("metrics", Text),
    Column("hardware", Text),
    Column("versions", Text),
    #: The run's ``sweep`` tag, when it is a run of a sweep.
    Column("sweep_id", String(64)),
    #: The run's ``job`` tag, when it is a part of a distributed job.
    Column("job_id", String(64)),
    Column("received_at", String(40), nullable=False),
    Column("updated_at", String(40), nullable=False),
    Index("ix_runs_project_started", "project_id", "started_at"),
    Index("ix_runs_started", "started_at"),
    Index("ix_runs_status", "status"),
    Index("ix_runs_user", "user_id"),
    Index("ix_runs_label", "label"),
    Index("ix_runs_host", "host"),
    Index("ix_runs_sweep", "sweep_id"),
    Index("ix_runs_job", "job_id"),
    #: Holds every column totals by day, project, user or label read, so they come
    #: from the index alone.
    Index("ix_runs_day_totals", *TOTALS_INDEX_COLUMNS),
)

devices = Table(
    "devices",
    metadata,
    Column("run_id", String(64), ForeignKey("runs.id"), primary_key=True),
    Column("device_id", String(64), primary_key=True),
    Column("position", Integer, nullable=False, default=0),
    Column("kind", String(8), nullable=False),
    Column("name", Text),
    Column("method", String(32)),
    Column("uuid", String(128)),
    Column("power_limit_w", Float),
    Column("detail", Text),
    Column("energy_j", Float, nullable=False, default=0.0),
    Column("process_energy_j", Float),
    Column("mean_power_w", Float),
    Column("error", Text),
)

samples = Table(
    "samples",
    metadata,
    Column("run_id", String(64), ForeignKey("runs.id"), primary_key=True),
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("t_s", Float, nullable=False),
    Column("device_id", String(64), nullable=False),
    Column("power_w", Float),
    Column("energy_j", Float, nullable=False),
    Column("process_energy_j", Float),
    Column("utilization_pct", Float),
    Column("memory_used_b", BigInteger),
)

day_totals = Table(
    "day_totals",
    metadata,
    Column("day", String(10), primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id"), primary_key=True, autoincrement=False),
    Column("project_id", Integer, ForeignKey("projects.id"), primary_key=True, autoincrement=False),
    Column("status", String(16), primary_key=True),
    Column("runs", Integer, nullable=False),
    *(Column(name, Float, nullable=False) for name in SUM_COLUMNS),
)

sweeps = Table(
    "sweeps",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("project_id", Integer, ForeignKey("projects.id"), nullable=False),
    Column("user_id", Integer, ForeignKey("users.id"), nullable=False),
    Column("status", String(16), nullable=False),
    Column("executor", String(300), nullable=False),
    Column("spec", Text, nullable=False),
    Column("total", Integer, nullable=False),
    Column("cancel_requested", Integer, nullable=False, server_default="0"),
    Column("claimed_by", Text),
    Column("heartbeat_at", String(40)),
    Column("token_id", Integer),
    Column("error", Text),
    Column("created_at", String(40), nullable=False),
    Column("started_at", String(40)),
    Column("ended_at", String(40)),
    Column("updated_at", String(40), nullable=False),
    Index("ix_sweeps_project_created", "project_id", "created_at"),
    Index("ix_sweeps_status", "status"),
)
