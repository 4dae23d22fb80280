"""Shared fixtures: no sampler thread may outlive its test, no test reaches the real store."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from carbon_jupyter import notices
from carbon_jupyter.measure import device_health
from carbon_jupyter.sensors.process import reset_shared_tree
from carbon_jupyter.store import pending

pytest_plugins = ["tests.server_fixtures"]


@pytest.fixture(autouse=True)
def _no_leaked_sampler_threads() -> Iterator[None]:
    before = {t.ident for t in threading.enumerate()}
    yield
    deadline = time.monotonic() + 2.0
    while True:
        leaked = [
            t
            for t in threading.enumerate()
            if t.ident not in before and t.name.startswith("carbon-") and t.is_alive()
        ]
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert not leaked, f"threads outlived the test: {[t.name for t in leaked]}"


@pytest.fixture(autouse=True)
def _isolated_environment(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keep tests off the user's store, sensors and location settings."""
    import os

    for name in list(os.environ):
        if name.startswith("CARBON_JUPYTER_"):
            monkeypatch.delenv(name)
    for name in (
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "GOOGLE_CLOUD_REGION",
        "REGION_NAME",
        "CLOUD_ML_REGION",
        "CUDA_VISIBLE_DEVICES",
    ):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("CARBON_JUPYTER_DB", str(home / "carbon.db"))
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(home / "jupyter-data"))
    notices.reset()
    reset_shared_tree()
    device_health.forget()
    pending.forget()
