"""The sidebar's view of forwarding: ``GET carbon-jupyter/api/forwarding`` on a real Jupyter server.

What waits is written to the outbox of a real store file by a real sender whose
server does not answer; the route reads it back with the server's token.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from pytest_jupyter.jupyter_server import *  # noqa: F403  (fixtures for this module only)
from traitlets.config import Config

from carbon_jupyter.forward import outbox
from carbon_jupyter.forward.config import Destination, token_id
from carbon_jupyter.forward.outbox import Message
from carbon_jupyter.forward.registry import sender_for
from carbon_jupyter.forward.sink import ForwardSink
from carbon_jupyter.store import open_store
from tests.server_fixtures import free_port
from tests.test_forward_support import _forwarding_ends_with_the_test  # noqa: F401
from tests.test_store_support import make_run, make_samples

API = "carbon-jupyter/api"


@pytest.fixture
def jp_server_config() -> Config:
    return Config({"ServerApp": {"jpserver_extensions": {"carbon_jupyter": True}}})


def _get(jp_fetch: Any, loop: Any) -> dict[str, Any]:
    response = loop.run_until_complete(jp_fetch(API, "forwarding"))
    found: dict[str, Any] = json.loads(response.body)
    return found


def test_the_sidebar_shows_the_server_what_waits_and_the_last_error(
    jp_fetch: Any, jp_asyncio_loop: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _get(jp_fetch, jp_asyncio_loop)
    assert before["server"] is None and before["servers"] == []  # no store, nothing configured

    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("CARBON_JUPYTER_SERVER", url)
    db = Path(os.environ["CARBON_JUPYTER_DB"])
    store = open_store()
    sender = sender_for(db, Destination(url, "secret", 0.05))
    sink = ForwardSink(sender)
    run = make_run(status="running")
    sink.begin_run(run)
    sink.add_samples(run.id, make_samples(0, 4))
    assert not sender.flush(5)
    # And one request another server refused earlier, from another token.
    other = ("http://127.0.0.1:9", token_id("other"))
    conn = outbox.connect(db)
    with outbox.write(conn):
        outbox.add_rejected(conn, other, [Message("PUT", "/api/v1/runs/x", "{}", "x")],
                            "403 on PUT /api/v1/runs/x: this token may only read")  # fmt: skip
        outbox.record(conn, other, error="403 on PUT /api/v1/runs/x: this token may only read")
    conn.close()

    found = _get(jp_fetch, jp_asyncio_loop)
    assert found["store"] == str(db)
    assert found["server"] == url
    by_server = {s["server"]: s for s in found["servers"]}
    mine = by_server[url]
    assert mine["waiting"] == 2 and mine["waiting_samples"] == 8 and mine["rejected"] == 0
    assert mine["last_ok_at"] is None
    assert mine["last_error"].startswith(f"cannot reach {url}")
    refused = by_server["http://127.0.0.1:9"]
    assert refused["rejected"] == 1 and "may only read" in refused["last_error"]
    assert "secret" not in json.dumps(found)  # the token never leaves the kernel
    store.close()
