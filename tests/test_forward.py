"""Forwarding to a real team server process: live runs, a server that was down, refusals, push.

Runs are tracked in this process (steady fake sensors) into a real SQLite store
and forwarded to ``carbon-jupyter serve`` on 127.0.0.1; what the server then
holds is read back over its API and compared with the local store.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from carbon_jupyter.cli.main import main
from carbon_jupyter.forward import registry, wire
from carbon_jupyter.forward.sender import Sender
from carbon_jupyter.forward.status import report
from carbon_jupyter.measure.tracker import Tracker
from carbon_jupyter.model import Run
from carbon_jupyter.store import open_store
from tests.server_fixtures import ServerHandle, bearer, free_port, make_token, start_server
from tests.test_forward_support import (  # noqa: F401
    _forwarding_ends_with_the_test,
    as_rows,
    local_samples,
    outbox_rows,
    server_run,
    server_runs,
    server_samples,
    wait_for,
)
from tests.test_store_support import make_run, make_samples
from tests.test_tracker import sensors

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


@dataclass
class Team:
    """A server with tokens: ingest for projects vision and nlp, read-only for vision."""

    server: ServerHandle
    vision: str
    nlp: str
    reader: str

    @property
    def url(self) -> str:
        return self.server.url


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Team]:
    folder = tmp_path_factory.mktemp("team")
    db = str(folder / "server.db")
    tokens = (
        make_token(db, "ada", "vision", "ingest"),
        make_token(db, "bob", "nlp", "ingest"),
        make_token(db, "eve", "vision", "read"),
    )
    with start_server(folder, db=db) as server:
        yield Team(server, *tokens)


def _forward_to(monkeypatch: pytest.MonkeyPatch, url: str, token: str | None, every: str) -> Path:
    monkeypatch.setenv("CARBON_JUPYTER_SERVER", url)
    if token:
        monkeypatch.setenv("CARBON_JUPYTER_TOKEN", token)
    monkeypatch.setenv("CARBON_JUPYTER_FORWARD_INTERVAL", every)
    return Path(os.environ["CARBON_JUPYTER_DB"])


def _track(label: str, seconds: float = 0.3) -> Run:
    import time

    with Tracker(label, interval=0.05, sensors=sensors()) as tracker:
        time.sleep(seconds)
    run = tracker.run
    assert run is not None
    return run


def _sender() -> Sender:
    (found,) = registry.senders()
    return found


def test_a_run_shows_on_the_server_while_it_runs_and_arrives_as_stored(
    team: Team, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = _forward_to(monkeypatch, team.url, team.vision, "0.2")
    tracker = Tracker("live-run", interval=0.05, sensors=sensors()).start()
    try:
        running = wait_for(
            lambda: server_run(team.url, tracker.id, team.vision), 15, "the live run on the server"
        )
        assert running["status"] == "running"
        first = wait_for(
            lambda: len(server_samples(team.url, tracker.id, team.vision)), 15, "live samples"
        )
        wait_for(
            lambda: len(server_samples(team.url, tracker.id, team.vision)) > first,
            15,
            "more live samples",
        )
    finally:
        run = tracker.stop()
    assert _sender().flush(15)
    found = server_run(team.url, run.id, team.vision)
    assert found is not None
    assert found["status"] == "ok" and found["label"] == "live-run"
    assert found["energy_j"] == pytest.approx(run.energy_j)
    assert found["co2_g"] == pytest.approx(run.co2_g)
    sent = as_rows(server_samples(team.url, run.id, team.vision))
    assert sent == local_samples(db, run.id)
    assert [s[0] for s in sent] == list(range(1, len(sent) + 1))
    assert outbox_rows(db) == []


def test_a_metric_logged_after_the_run_reaches_the_server_too(
    team: Team, monkeypatch: pytest.MonkeyPatch
) -> None:
    import carbon_jupyter as cj

    _forward_to(monkeypatch, team.url, team.vision, "0.2")
    run = _track("metric-after")
    cj.log_metric("accuracy", 0.93)  # after the block: the run just ended gets it
    assert _sender().flush(15)
    found = wait_for(
        lambda: (server_run(team.url, run.id, team.vision) or {}).get("metrics"), 15, "metrics"
    )
    assert found == {"accuracy": 0.93}
    assert server_run(team.url, run.id, team.vision)["status"] == "ok"


def test_runs_made_while_the_server_is_down_arrive_once_and_in_order_when_it_is_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    db = _forward_to(monkeypatch, url, None, "0.1")
    runs = [_track(f"offline-{n}") for n in range(3)]
    sender = _sender()
    assert not sender.flush(5)  # nothing answers
    rows = outbox_rows(db)
    assert list(dict.fromkeys(r["run_id"] for r in rows)) == [r.id for r in runs]
    assert rows[0]["attempts"] >= 1 and "cannot reach" in rows[0]["last_error"]
    text = "\n".join(report().lines())
    assert f"server: {url}" in text
    assert f"waiting: {len(rows)} requests" in text and "cannot reach" in text
    assert "last delivery: none yet" in text

    with start_server(tmp_path, port=port) as server:
        assert sender.flush(30)
        on_server = server_runs(server.url)
        assert sorted(r["id"] for r in on_server) == sorted(r.id for r in runs)
        for run in runs:
            found = server_run(server.url, run.id)
            assert found is not None and found["status"] == "ok"
            assert found["energy_j"] == pytest.approx(run.energy_j)
            assert as_rows(server_samples(server.url, run.id)) == local_samples(db, run.id)
        # Runs made now go straight to the server.
        later = _track("online")
        assert sender.flush(15)
        assert as_rows(server_samples(server.url, later.id)) == local_samples(db, later.id)
    assert outbox_rows(db) == []
    text = "\n".join(report().lines())
    assert "waiting: 0 requests" in text and "delivered since" in text


def test_a_refused_request_is_set_aside_and_does_not_hold_up_the_others(
    team: Team, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    taken = make_run(label="nlp-owned")
    put = httpx.put(f"{team.url}/api/v1/runs/{taken.id}", json=wire.run_body(taken),
                    headers=bearer(team.nlp))  # fmt: skip
    assert put.status_code == 200
    db = _forward_to(monkeypatch, team.url, team.vision, "0.1")
    store = open_store()
    from carbon_jupyter.forward import forwarding_sink
    from carbon_jupyter.forward.sink import BothSinks

    sink = BothSinks(store, forwarding_sink(db))  # type: ignore[arg-type]
    for run in (taken, make_run(label="vision-own")):
        sink.begin_run(make_run(run.id, status="running", label=run.label))
        sink.add_samples(run.id, make_samples(0, 5))
        sink.finish_run(run)
    assert _sender().flush(15)  # nothing left to send: the refused run is set aside

    own = [r for r in server_runs(team.url, team.vision) if r["label"] == "vision-own"]
    assert len(own) == 1
    assert len(server_samples(team.url, own[0]["id"], team.vision)) == 10
    nlp_copy = server_run(team.url, taken.id, team.nlp)
    assert nlp_copy is not None and nlp_copy["label"] == "nlp-owned"  # unchanged
    refused = [r for r in outbox_rows(db) if r["rejected_at"]]
    assert {r["run_id"] for r in refused} == {taken.id}
    assert all("409" in r["last_error"] for r in refused)

    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert "set aside: " in out and "409" in out
    assert "waiting: 0 requests" in out
    store.close()


def test_a_read_only_token_is_refused_and_status_says_so(
    team: Team, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _forward_to(monkeypatch, team.url, team.reader, "0.1")
    run = _track("read-only")
    _sender().flush(15)
    assert server_run(team.url, run.id, team.vision) is None
    assert open_store().get_run(run.id).status == "ok"  # stored here all the same
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert f"server: {team.url}" in out
    assert "403" in out and "set aside: " in out


def _push(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["push", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_push_sends_the_history_once_and_again_stores_nothing_twice(
    team: Team, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CARBON_JUPYTER_SERVER", team.url)
    monkeypatch.setenv("CARBON_JUPYTER_TOKEN", team.vision)
    store = open_store()
    history = [make_run(label=f"history-{n}", started_at=f"2024-03-0{n + 1}T10:00:00+00:00")
               for n in range(4)]  # fmt: skip
    for run in history:
        store.begin_run(make_run(run.id, status="running", label=run.label,
                                 started_at=run.started_at))  # fmt: skip
        store.add_samples(run.id, make_samples(0, 600))  # 1200 samples: three requests
        store.finish_run(run)
    store.finish_run(make_run(label="other-label"))

    code, out, _ = _push(capsys, "--label", "history-*")
    assert code == 0
    assert f"sent 4 runs and 4800 samples to {team.url} (4 runs and 4800 samples were new" in out
    code, out, _ = _push(capsys, "--label", "history-*")
    assert code == 0
    assert "sent 4 runs and 4800 samples" in out and "(0 runs and 0 samples were new" in out

    on_server = {r["id"]: r for r in server_runs(team.url, team.vision, label="history-*")}
    assert set(on_server) == {r.id for r in history}
    for run in history:
        assert on_server[run.id]["energy_j"] == pytest.approx(run.energy_j)
        assert on_server[run.id]["started_at"].startswith(run.started_at[:19])
        sent = as_rows(server_samples(team.url, run.id, team.vision))
        assert sent == local_samples(store.path, run.id)
    assert not server_runs(team.url, team.vision, label="other-label")
    store.close()


def test_push_refusals_are_one_line_naming_the_fix(
    team: Team, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    open_store().finish_run(make_run())
    cases: list[tuple[list[str], str]] = [
        ([], "no server configured: give --server URL, or set CARBON_JUPYTER_SERVER"),
        (["--server", f"http://127.0.0.1:{free_port()}"], "is `carbon-jupyter serve` running"),
        (["--server", team.url], "refused the token (401): give a token"),
        (["--server", team.url, "--token", "cj_not_a_token"], "unknown or revoked"),
        (["--server", team.url, "--token", team.reader], "(403): it may only read"),
        (["--server", "ftp://example.org"], "is not a server address"),
    ]
    for args, expected in cases:
        code, out, err = _push(capsys, *args)
        assert code == 2, (args, out, err)
        assert out == ""
        assert err.count("\n") == 1 and err.startswith("carbon-jupyter: error: "), err
        assert expected in err, err


def test_percent_carbon_server_says_whether_the_server_answered(
    team: Team, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from IPython.core.error import UsageError
    from IPython.core.interactiveshell import InteractiveShell

    monkeypatch.setenv("CARBON_JUPYTER_FORWARD_INTERVAL", "0.1")
    shell: Any = InteractiveShell.instance()
    try:
        shell.run_line_magic("load_ext", "carbon_jupyter")
        capsys.readouterr()
        shell.run_line_magic("carbon", "server")
        assert "no server configured" in capsys.readouterr().out
        shell.run_line_magic("carbon", f"server {team.url} --token {team.vision}")
        out = capsys.readouterr().out
        assert f"forwarding runs to {team.url}" in out
        assert "user ada, project vision, scope ingest" in out
        run = _track("from-the-magic")
        assert _sender().flush(15)
        assert server_run(team.url, run.id, team.vision) is not None
        shell.run_line_magic("carbon", "status")
        out = capsys.readouterr().out
        assert f"carbon: server: {team.url}" in out and "carbon: last delivery: 20" in out
        silent = f"http://127.0.0.1:{free_port()}"
        shell.run_line_magic("carbon", f"server {silent}")
        out = capsys.readouterr().out
        assert "not delivered yet" in out and "runs wait in the outbox" in out
        shell.run_line_magic("carbon", "server off")
        assert "forwarding is off" in capsys.readouterr().out
        quiet = _track("not-forwarded")
        assert server_run(team.url, quiet.id, team.vision) is None
        with pytest.raises(UsageError, match="is not a server address"):
            shell.run_line_magic("carbon", "server example.org")
    finally:
        shell.run_line_magic("unload_ext", "carbon_jupyter")
        InteractiveShell.clear_instance()
