"""Fixtures and helpers for tests that need the team server or PostgreSQL.

The fixtures are registered for every test module by ``tests/conftest.py``
(``pytest_plugins``); import the helpers with ``from tests.server_fixtures
import start_server, make_token``.

``postgres_url`` (fixture) -> str
    A fresh PostgreSQL database (``cj_test_<random>``) on the server named by
    ``CARBON_JUPYTER_TEST_POSTGRES``, dropped afterwards. Skips when the
    variable is unset, except on CI (``CI`` set), where it fails saying to run
    ``.ci/postgres.sh``.
``open_server`` (fixture, session) -> :class:`ServerHandle`
    One open server (no tokens) on SQLite shared by the tests that ask for it.
``start_server(tmp_path, db=None, workers=1, env=None, args=())`` -> :class:`ServerHandle`
    ``python -m carbon_jupyter serve`` as a real process on 127.0.0.1 at a free
    port, returned once ``/healthz`` answers. ``db`` defaults to
    ``tmp_path/server.db``. Stop it with ``handle.stop()`` (or use it as a
    context manager); its output is in ``handle.log``.
``make_token(db, user, project, scope="ingest")`` -> str
    A token created directly in database ``db`` (what ``serve token create``
    does).
``run_body(...)`` / ``samples_body(...)``
    Wire bodies for a made-up run, from :mod:`carbon_jupyter.forward.wire`.
"""

from __future__ import annotations

import functools
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from carbon_jupyter.forward import wire
from carbon_jupyter.model import DeviceEnergy, DeviceInfo, Intensity, Run, Sample

POSTGRES_ENV = "CARBON_JUPYTER_TEST_POSTGRES"
# Read when this module is imported: the shared conftest clears CARBON_JUPYTER_* for each test.
POSTGRES_BASE_URL = os.environ.get(POSTGRES_ENV, "").strip()
REPO = Path(__file__).resolve().parent.parent
#: How long a server may take to answer /healthz after it was started, in seconds.
START_TIMEOUT_S = 60.0


def _postgres_base() -> str:
    if not POSTGRES_BASE_URL:
        message = (
            f"{POSTGRES_ENV} is not set: run `.ci/postgres.sh` and export its address as "
            f"{POSTGRES_ENV}"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return POSTGRES_BASE_URL


def _with_database(url: str, name: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(database=name).render_as_string(hide_password=False)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for this test, dropped afterwards."""
    with postgres_database() as url:
        yield url


@pytest.fixture(scope="module")
def postgres_module_url() -> Iterator[str]:
    """Like ``postgres_url``, one for every test of a module."""
    with postgres_database() as url:
        yield url


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database (``cj_test_<random>``), dropped when the block ends."""
    import psycopg

    base = _postgres_base()
    name = f"cj_test_{secrets.token_hex(6)}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(base, name)
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    """One server without tokens (everyone is the local admin) on SQLite, for the session.

    Tests sharing it use their own run ids.
    """
    with start_server(tmp_path_factory.mktemp("open-server")) as handle:
        yield handle


def free_port() -> int:
    """A TCP port nothing listens on at 127.0.0.1 right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class ServerHandle:
    """A running ``carbon-jupyter serve`` process."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path
    db: str
    port: int
    _stopped: bool = field(default=False, repr=False)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 15 s); its workers go with it."""
        if self._stopped:
            return
        self._stopped = True
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def server_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a server process: this one's, without metrics or server settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k != "PROMETHEUS_MULTIPROC_DIR" and not k.startswith("CARBON_JUPYTER_SERVER")
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(extra or {})
    return env


def start_server(
    tmp_path: Path,
    db: str | None = None,
    workers: int = 1,
    env: dict[str, str] | None = None,
    args: Sequence[str] = (),
    port: int | None = None,
) -> ServerHandle:
    """Start ``python -m carbon_jupyter serve`` on 127.0.0.1 and wait until /healthz answers."""
    db = db or str(tmp_path / "server.db")
    port = port or free_port()
    log = tmp_path / f"server-{port}.log"
    command = [
        sys.executable, "-m", "carbon_jupyter", "serve",
        "--host", "127.0.0.1", "--port", str(port), "--db", db, "--workers", str(workers),
        *args,
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=server_env(env),
            cwd=tmp_path,
            start_new_session=True,
        )
    handle = ServerHandle(f"http://127.0.0.1:{port}", process, log, db, port)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}:\n{handle.output()}")
        try:
            if httpx.get(f"{handle.url}/healthz", timeout=2).status_code == 200:
                return handle
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    handle.stop()
    raise RuntimeError(
        f"the server did not answer /healthz in {START_TIMEOUT_S} s:\n{handle.output()}"
    )


def make_token(db: str, user: str, project: str, scope: str = "ingest") -> str:
    """A new token in database ``db`` (as ``carbon-jupyter serve token create`` makes one)."""
    from carbon_jupyter.server.auth import create_token
    from carbon_jupyter.server.db.engine import migrate, open_database

    engine = open_database(db)
    try:
        migrate(engine)
        return create_token(engine, user, project, scope)
    finally:
        engine.dispose()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


_INTENSITY = Intensity(
    intensity_g_per_kwh=400.0, source="test table", year=2023, pue=1.2, pue_source="test"
)
_DEVICES = (
    DeviceInfo("cpu:0", "cpu", "Test CPU", "rapl"),
    DeviceInfo("gpu:0", "gpu", "Test GPU", "nvml-energy", uuid="GPU-1", power_limit_w=300.0),
    DeviceInfo("ram", "ram", "Memory", "ram-model"),
)


def make_run(
    run_id: str | None = None,
    *,
    label: str | None = "train-model",
    phase: str | None = "train",
    host: str = "node-1",
    status: str = "ok",
    started_at: str = "2024-05-01T12:00:00.000+00:00",
    energy_j: tuple[float, float, float] = (100.0, 200.0, 10.0),
    duration_s: float = 60.0,
    tags: dict[str, str] | None = None,
) -> Run:
    """A finished (or, with ``status="running"``, just started) run with three devices."""
    running = status == "running"
    figures = (0.0, 0.0, 0.0) if running else energy_j
    total = sum(figures)
    return Run(
        id=run_id or str(uuid.uuid4()),
        label=label,
        phase=phase,
        items=10,
        status=status,  # type: ignore[arg-type]
        started_at=started_at,
        ended_at=None if running else started_at.replace("12:00:00", "12:01:00"),
        duration_s=0.0 if running else duration_s,
        attribution="device",
        devices=tuple(
            DeviceEnergy(info, e, mean_power_w=None if running else e / duration_s)
            for info, e in zip(_DEVICES, figures, strict=True)
        ),
        intensity=_INTENSITY,
        energy_j=total,
        cpu_energy_j=figures[0],
        gpu_energy_j=figures[1],
        ram_energy_j=figures[2],
        co2_g=total * 1.2 * 400.0 / 3.6e6,
        tags=tags if tags is not None else {"team": "ml"},
        host=host,
        user="someone",
    )


def run_body(run: Run | None = None, **changes: Any) -> dict[str, Any]:
    """The wire body of ``run`` (or of ``make_run(**changes)``)."""
    return wire.run_body(run or make_run(**changes))


def samples_body(first_seq: int, count: int, device_id: str = "cpu:0") -> dict[str, Any]:
    """``count`` samples of one device numbered from ``first_seq``, 0.5 s apart, 50 W."""
    samples = [
        Sample(t_s=0.5 * (first_seq + n), device_id=device_id, power_w=50.0,
               energy_j=25.0 * (first_seq + n))
        for n in range(count)
    ]  # fmt: skip
    return wire.samples_body(first_seq, samples)


TABLES = ("users", "projects", "tokens", "runs", "devices", "samples", "sweeps")


@functools.lru_cache(maxsize=16)
def _counting_engine(db: str) -> Any:
    from carbon_jupyter.server.db.engine import open_database

    return open_database(db, pool_size=1)


def row_counts(db: str) -> dict[str, int]:
    """How many rows each server table of database ``db`` holds."""
    from sqlalchemy import text

    with _counting_engine(db).connect() as conn:
        return {
            t: int(conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()) for t in TABLES
        }
