"""``carbon-jupyter serve`` and ``carbon-jupyter serve token ...`` as a user runs them."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from carbon_jupyter.cli.main import main
from carbon_jupyter.server.auth import CACHE_TTL_S
from tests.server_fixtures import server_env, start_server

pytestmark = pytest.mark.slow


def _serve(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "carbon_jupyter", "serve", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=server_env(),
    )


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_token_create_prints_the_token_once_and_keeps_only_its_hash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "server.db"
    args = ["serve", "token", "create", "--user", "alice", "--project", "vision", "--db", str(db)]
    assert main(args) == 0
    out, err = capsys.readouterr()
    token = out.strip()
    assert out == token + "\n" and token.startswith("cj_") and len(token) > 40
    assert "alice" in err and "vision" in err and "shown only now" in err and token not in err

    stored = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("server.db"))
    assert hashlib.sha256(token.encode()).hexdigest().encode() in stored
    assert token.encode() not in stored and token[12:].encode() not in stored

    assert main(["serve", "token", "list", "--db", str(db)]) == 0
    listing = capsys.readouterr().out
    assert "alice" in listing and "ingest" in listing and token[12:] not in listing

    with start_server(tmp_path, db=str(db)) as server:
        me = httpx.get(f"{server.url}/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert me.json()["user"] == "alice"
        assert main(["serve", "token", "revoke", "1", "--db", str(db)]) == 0
        assert "revoked token 1" in capsys.readouterr().out
        # A server trusts its token cache for CACHE_TTL_S; then the revoked token is refused.
        deadline = time.monotonic() + CACHE_TTL_S + 5
        while time.monotonic() < deadline:
            fresh = httpx.get(
                f"{server.url}/api/v1/me", headers={"Authorization": f"Bearer {token}"}
            )
            if fresh.status_code == 401:
                break
            time.sleep(0.2)
        assert fresh.status_code == 401

    assert main(["serve", "token", "revoke", "1", "--db", str(db)]) == 2
    assert "no active token 1" in capsys.readouterr().err


def test_tokens_go_to_the_default_database_beside_the_local_store(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert (
        main(["serve", "token", "create", "--user", "a", "--project", "p", "--scope", "admin"]) == 0
    )
    default = Path(os.environ["JUPYTER_DATA_DIR"]) / "carbon_jupyter" / "server.db"
    assert default.is_file()
    monkeypatch.setenv("CARBON_JUPYTER_SERVER_DB", str(tmp_path / "elsewhere.db"))
    assert main(["serve", "token", "create", "--user", "b", "--project", "p"]) == 0
    assert (tmp_path / "elsewhere.db").is_file()
    capsys.readouterr()


def test_listing_tokens_of_a_database_that_does_not_exist_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "token", "list", "--db", str(tmp_path / "none.db")]) == 2
    assert "no server database" in capsys.readouterr().err
    assert not (tmp_path / "none.db").exists()


def test_serve_refuses_a_public_address_without_tokens(tmp_path: Path) -> None:
    result = _serve("--host", "0.0.0.0", "--db", str(tmp_path / "server.db"))
    line = _one_line_error(result)
    assert "0.0.0.0" in line and "serve token create" in line


@pytest.mark.parametrize(
    ("db", "words"),
    [
        ("/proc/no-such-folder/server.db", "folder"),
        ("mysql://user@localhost/db", "postgresql://"),
        ("postgresql://postgres@127.0.0.1:1/nothing", "cannot open the database"),
        ("sqlite://", "SQLite file"),
    ],
)
def test_serve_with_a_database_it_cannot_use_says_so_in_one_line(db: str, words: str) -> None:
    assert words in _one_line_error(_serve("--db", db))


def test_serve_says_when_the_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        line = _one_line_error(_serve("--port", str(port), "--db", str(tmp_path / "s.db")))
    assert str(port) in line and "--port" in line


@pytest.mark.parametrize(
    "args",
    [["--workers", "0"], ["--port", "70000"], ["--max-body", "10"], ["--max-batch", "x"]],
)
def test_bad_serve_options_are_refused_naming_the_option(args: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "carbon_jupyter", "serve", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=server_env(),
    )
    assert args[0] in _one_line_error(result)
