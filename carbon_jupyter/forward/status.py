"""Where forwarding stands: the server, what is waiting, the last delivery and the last error.

One report for every front door: ``%carbon status``, ``carbon-jupyter status``
and the sidebar (:mod:`carbon_jupyter.serverext`). It reads the outbox tables
of the store file read-only (never creating the file), and adds what this
process's sender still holds in memory.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from carbon_jupyter.forward import outbox
from carbon_jupyter.forward.config import Destination
from carbon_jupyter.forward.outbox import State


@dataclass(frozen=True)
class Report:
    """Forwarding from one store file: the server configured here and every server it feeds."""

    store_path: Path
    #: The server this process forwards to, None when none is configured.
    destination: Destination | None
    #: Per server and token that the file's outbox knows, most recently active first.
    states: tuple[State, ...]
    #: Requests this process still holds in memory for ``destination``.
    in_memory: int = 0
    #: The last error this process's sender saw (also in ``states`` once written).
    error: str | None = None
    #: Why the file could not be read, if it could not.
    problem: str | None = None

    @property
    def current(self) -> State | None:
        """The state for ``destination`` (its server and token), if the file has one."""
        if self.destination is None:
            return None
        for state in self.states:
            if (state.server, state.token_id) == self.destination.key:
                return state
        return None

    def to_json(self) -> dict[str, Any]:
        """For the sidebar: the store, the server configured here and each server's state."""
        return {
            "store": str(self.store_path),
            "server": self.destination.url if self.destination else None,
            "in_memory": self.in_memory,
            "servers": [s.to_json() for s in self.states],
            "problem": self.problem,
        }

    def lines(self) -> list[str]:
        """The report as text, one finding per line."""
        found = [f"store: {self.store_path}"]
        if self.problem:
            found.append(f"outbox: {self.problem}")
        if self.destination is None:
            found.append("server: no server configured (set CARBON_JUPYTER_SERVER, or in a "
                         "notebook %carbon server URL)")  # fmt: skip
        else:
            every = f"{self.destination.interval_s:g} s"
            found.append(f"server: {self.destination.url} (forwarding on, every {every})")
            found.extend(_state_lines(self.current, self.in_memory, self.error))
        for state in self.states:
            if self.destination is not None and state is self.current:
                continue
            if state.waiting or state.rejected:
                found.append(f"also for {state.server}{_token_note(state)}:")
                found.extend("  " + line for line in _state_lines(state, 0, None))
        return found


def _token_note(state: State) -> str:
    return f" (token {state.token_id[:8]}…)" if state.token_id else " (no token)"


def _state_lines(state: State | None, in_memory: int, error: str | None) -> list[str]:
    waiting = (state.waiting if state else 0) + in_memory
    samples = state.waiting_samples if state else 0
    text = f"waiting: {waiting} request{'s' * (waiting != 1)}"
    if samples:
        text += f" ({samples} samples)"
    if in_memory:
        text += f", {in_memory} of them in memory"
    if state is not None and state.holder is not None:
        text += f"; being sent by {state.holder.describe()}"
    found = [text]
    if state is not None and state.rejected:
        found.append(
            f"set aside: {state.rejected} request{'s' * (state.rejected != 1)} the server "
            "refused (`carbon-jupyter push` tries them again)"
        )
    last_ok = state.last_ok_at if state else None
    found.append(f"last delivery: {_when(last_ok) if last_ok else 'none yet'}")
    last_error = state.last_error if state else None
    error_at = state.last_error_at if state else None
    if error and error != last_error:
        last_error, error_at = error, None
    if last_error:
        at = _when(error_at) if error_at else ""
        if error_at and last_ok and last_ok > error_at:
            at += "; delivered since"
        found.append(f"last error: {last_error}" + (f" ({at})" if at else ""))
    else:
        found.append("last error: none")
    return found


def _when(iso: str | None) -> str:
    """``2024-05-01 10:00:00 UTC, 12 s ago``."""
    if not iso:
        return "-"
    try:
        moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return iso
    ago_s = (datetime.now(timezone.utc) - moment).total_seconds()
    if ago_s < 120:
        ago = f"{max(ago_s, 0):.0f} s ago"
    elif ago_s < 7200:
        ago = f"{ago_s / 60:.0f} min ago"
    elif ago_s < 172800:
        ago = f"{ago_s / 3600:.0f} h ago"
    else:
        ago = f"{ago_s / 86400:.0f} days ago"
    return f"{moment.astimezone(timezone.utc):%Y-%m-%d %H:%M:%S} UTC, {ago}"


def read_states(store_path: Path) -> tuple[list[State], str | None]:
    """Every server's state in the file at ``store_path`` (read-only); and a problem, if any."""
    if not store_path.exists():
        return [], None
    try:
        conn = sqlite3.connect(f"{store_path.as_uri()}?mode=ro", uri=True, timeout=2.0)
    except sqlite3.Error as exc:
        return [], f"cannot read {store_path}: {exc}"
    try:
        return outbox.states(conn), None
    except sqlite3.Error as exc:
        return [], f"cannot read {store_path}: {exc}"
    finally:
        conn.close()


def report(store_path: Path | None = None, destination: Destination | None = None) -> Report:
    """Forwarding from ``store_path`` (default: the store) to ``destination`` (default: configured).

    Pass ``destination`` to report on a server other than the configured one.
    """
    from carbon_jupyter.forward.config import destination as configured
    from carbon_jupyter.forward.registry import senders
    from carbon_jupyter.store import default_db_path

    path = store_path or default_db_path()
    dest = destination if destination is not None else configured()
    states, problem = read_states(path)
    in_memory, error = 0, None
    for sender in senders():
        if sender.store_path == path and dest is not None and sender.key == dest.key:
            in_memory += sender.in_memory()
            error = sender.last_error or error
    return Report(path, dest, tuple(states), in_memory, error, problem)
