"""Forwarding from a real Jupyter kernel through a server outage and a kernel restart.

The kernel (ipykernel, started as Jupyter Server starts one) tracks cells with
forwarding on while nothing listens at the server's address; the kernel is
then restarted (a new process), and only then is ``carbon-jupyter serve``
started at that address. The new kernel delivers what the old one left: every
run and every sample on the server exactly once, in order, as stored locally.
"""

from __future__ import annotations

import importlib.util
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

if importlib.util.find_spec("ipykernel") is None:
    pytest.skip("ipykernel is not installed (pip install ipykernel)", allow_module_level=True)

from jupyter_client.manager import KernelManager

from carbon_jupyter.store.sqlite import Store
from tests.server_fixtures import free_port, start_server
from tests.test_forward_support import (
    as_rows,
    local_samples,
    outbox_rows,
    server_runs,
    server_samples,
    wait_for,
)
from tests.test_kernel import install_test_kernel

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


@contextmanager
def kernel(
    tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[KernelManager, Any]]:
    """A started kernel named as Jupyter Server names one, and a blocking client."""
    jupyter_path = tmp_path / "jupyter-path"
    monkeypatch.setenv("JUPYTER_PATH", str(jupyter_path))
    name = install_test_kernel(jupyter_path)
    kernel_id = str(uuid.uuid4())
    runtime = tmp_path / "runtime"
    runtime.mkdir(exist_ok=True)
    km = KernelManager(
        kernel_name=name,
        kernel_id=kernel_id,
        connection_file=str(runtime / f"kernel-{kernel_id}.json"),
    )
    km.start_kernel(env={**env, "JUPYTER_PATH": str(jupyter_path)})
    client = km.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
        yield km, client
    finally:
        client.stop_channels()
        km.shutdown_kernel(now=False)


def run_cell(client: Any, code: str) -> str:
    """Run ``code`` in the kernel; its printed output (an error fails the test)."""
    out: list[str] = []

    def collect(message: dict[str, Any]) -> None:
        content = message["content"]
        if message["msg_type"] == "stream":
            out.append(content["text"])
        elif message["msg_type"] == "error":
            out.append("\n".join(content["traceback"]))

    reply = client.execute_interactive(code, timeout=60, output_hook=collect)
    assert reply["content"]["status"] == "ok", "".join(out)
    return "".join(out)


def test_runs_of_a_restarted_kernel_reach_a_server_started_later_exactly_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "kernel.db"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARBON_JUPYTER_")}
    env.update(
        CARBON_JUPYTER_DB=str(db),
        CARBON_JUPYTER_SERVER=url,
        CARBON_JUPYTER_FORWARD_INTERVAL="0.2",
        PYTHONPATH=os.pathsep.join(
            [str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH", "")]
        ),
    )
    with kernel(tmp_path, env, monkeypatch) as (km, client):
        run_cell(client, "%load_ext carbon_jupyter")
        for n in range(3):
            run_cell(client, f"%%carbon offline-{n} --quiet --interval 0.1\n"
                             "import time\ntime.sleep(0.6)\n")  # fmt: skip
        status = run_cell(client, "%carbon status")
        assert f"carbon: server: {url}" in status
        assert "cannot reach" in status
        first_pid = km.provisioner.pid  # type: ignore[union-attr]
        km.restart_kernel(now=False)  # as Jupyter's restart: the kernel exits, a new one starts
        client.wait_for_ready(timeout=60)
        assert km.provisioner.pid != first_pid  # type: ignore[union-attr]
        runs = Store(db).runs(limit=10)
        assert sorted(r.label or "" for r in runs) == ["offline-0", "offline-1", "offline-2"]
        waiting = outbox_rows(db)
        assert {r["run_id"] for r in waiting} == {r.id for r in runs}
        assert sum(r["samples"] for r in waiting) == sum(len(local_samples(db, r.id)) for r in runs)

        run_cell(client, "%load_ext carbon_jupyter")  # the new kernel; the server is still down
        with start_server(tmp_path, port=port) as server:

            def all_there() -> bool:
                return len(server_runs(server.url)) == 3 and not outbox_rows(db)

            wait_for(all_there, 90, "every run of the first kernel on the server")
            on_server = {r["id"]: r for r in server_runs(server.url)}
            for run in runs:
                assert on_server[run.id]["status"] == "ok"
                assert on_server[run.id]["label"] == run.label
                assert on_server[run.id]["energy_j"] == pytest.approx(run.energy_j)
                sent = as_rows(server_samples(server.url, run.id))
                stored = local_samples(db, run.id)
                assert sent == stored and len(stored) >= 3
                assert [s[0] for s in sent] == list(range(1, len(sent) + 1))
            status = run_cell(client, "%carbon status")
            assert "carbon: waiting: 0 requests" in status
            assert "carbon: last delivery: 20" in status
