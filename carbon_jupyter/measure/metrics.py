"""``log_metric``: the user's own results, stored with the run they belong to.

A run can carry metrics beside its energy (``accuracy``, ``loss``,
``tokens_per_s``), so that a comparison can ask whether the carbon was well
spent. Where a metric goes, first that applies:

1. the innermost run being tracked in this process (a ``%%carbon`` cell, a
   ``with track(...)`` block);
2. the run of a sweep that started this process (``CARBON_JUPYTER_METRICS_FILE``,
   set by the sweep: one JSON line per metric, read when the process ends);
3. the last run this process tracked, already stored (log accuracy in the cell
   after the one that trained).

Otherwise it is an error naming what to do. A metric is a name (at most 100
characters) and a finite number; logging a name again replaces its value.
"""

from __future__ import annotations

import json
import math
import os
import threading
from typing import Any, Protocol

from carbon_jupyter.errors import ConfigError

METRICS_FILE_VARIABLE = "CARBON_JUPYTER_METRICS_FILE"
MAX_NAME_LENGTH = 100


class MetricTarget(Protocol):
    def log_metric(self, name: str, value: float) -> None: ...


_lock = threading.Lock()
_active: list[MetricTarget] = []
_last_run_id: str | None = None
_last_store: str | None = None


def check_metric(name: object, value: object) -> tuple[str, float]:
    """``(name, value)`` checked: a short non-empty name and a finite number."""
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_LENGTH:
        raise ConfigError(
            f"metric name {name!r}: give a name of 1 to {MAX_NAME_LENGTH} characters, "
            "e.g. log_metric('accuracy', 0.91)"
        )
    if isinstance(value, bool):
        value = float(value)
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"metric {name}: {value!r} is not a number") from None
    if not math.isfinite(number):
        raise ConfigError(f"metric {name}: {value!r} is not a finite number")
    return name.strip(), number


def started(target: MetricTarget) -> None:
    """A tracker started: metrics logged from now go to it."""
    with _lock:
        _active.append(target)


def stopped(target: MetricTarget, run_id: str, store: str | None) -> None:
    """A tracker stopped; its run, stored in ``store``, is the one later metrics go to."""
    global _last_run_id, _last_store
    with _lock:
        if target in _active:
            _active.remove(target)
        _last_run_id, _last_store = run_id, store


def log_metric(name: str, value: float) -> None:
    """Store ``value`` as metric ``name`` of the current run; see the module docstring."""
    name, number = check_metric(name, value)
    with _lock:
        target = _active[-1] if _active else None
        last = (_last_run_id, _last_store)
    if target is not None:
        target.log_metric(name, number)
        return
    path = os.environ.get(METRICS_FILE_VARIABLE)
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"name": name, "value": number}) + "\n")
        return
    run_id, store_path = last
    if run_id is None:
        raise ConfigError(
            "no run to log a metric to: call log_metric inside a %%carbon cell or a "
            "track() block, or after one in the same kernel"
        )
    from carbon_jupyter.store import open_store

    store = open_store(store_path, create=False)
    store.set_metrics(run_id, {name: number})
    _forward_again(store, run_id)


def _forward_again(store: Any, run_id: str) -> None:
    """With a team server configured, send the run again with its metrics (the run's ``PUT``)."""
    from carbon_jupyter.forward import forwarding_sink
    from carbon_jupyter.notices import notice_once

    try:
        sink = forwarding_sink(store.path)
        if sink is not None:
            sink.finish_run(store.get_run(run_id))
    except Exception as exc:  # the metric is stored; forwarding it is a bonus
        notice_once(
            "metric-forward-failed",
            f"carbon-jupyter: the metric is stored, but not sent to the team server ({exc}); "
            "`carbon-jupyter push` sends it later",
        )


def forget() -> None:
    """Forget the active and last runs (tests)."""
    global _last_run_id, _last_store
    with _lock:
        _active.clear()
        _last_run_id = _last_store = None
