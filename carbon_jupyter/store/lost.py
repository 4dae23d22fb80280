"""Live totals and lost runs: a run's figures recomputed from what was flushed.

While a run is live, each batch of samples moves its devices' energy to their
latest cumulative reading and the run's totals and CO2 follow
(:func:`refresh_totals`), so every view shows the energy so far.

A run whose process died (a killed kernel, a crashed machine) stays
``running`` in the file. :func:`process_alive` tells a dead writer from a live
one (a zombie or a reused pid counts as dead), and :func:`mark_lost` closes
the run with the energy of its last flushed samples: duration = last sample
time, ``ended_at`` = start + duration, CO2 from the run's own factor and PUE.
Its ``error`` says why a run may end up so: the process ended before the run
did, or before the store could be written again (a process that finished runs
while the disk was full, and ended before space came back).
"""

from __future__ import annotations

import sqlite3

from carbon_jupyter.store.rows import add_seconds, now_iso, totals_from_devices


def process_started(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch), or None if it cannot be read."""
    import psutil

    try:
        return float(psutil.Process(pid).create_time())
    except psutil.Error:
        return None


def process_alive(pid: int, started: float | None) -> bool:
    """True while ``pid`` runs and is the same process (not a zombie, not a reused pid).

    When it cannot be told, the process is taken as alive: a live run is never marked lost.
    """
    import psutil

    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        now_started = process.create_time()
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True
    return started is None or abs(now_started - started) < 1.0


def refresh_totals(
    conn: sqlite3.Connection, run_id: str, duration_s: float | None, status: str
) -> float | None:
    """Recompute a run's totals and CO2 from its device rows (only while in ``status``).

    The duration becomes the longer of the stored one and ``duration_s``; it is returned.
    """
    run = conn.execute(
        "SELECT attribution, intensity_g_per_kwh, pue, duration_s FROM runs "
        "WHERE id = ? AND status = ?",
        (run_id, status),
    ).fetchone()
    if run is None:
        return None
    attribution, intensity, pue, stored_duration_s = run
    duration = max(stored_duration_s or 0.0, duration_s or 0.0)
    devices = conn.execute(
        "SELECT kind, energy_j, process_energy_j FROM devices WHERE run_id = ?", (run_id,)
    ).fetchall()
    totals = totals_from_devices(devices, attribution, intensity or 0.0, pue or 1.0)
    if duration > 0:
        conn.execute(
            "UPDATE devices SET mean_power_w = energy_j / ? WHERE run_id = ?", (duration, run_id)
        )
    conn.execute(
        "UPDATE runs SET energy_j = :energy_j, cpu_energy_j = :cpu_energy_j, "
        "gpu_energy_j = :gpu_energy_j, ram_energy_j = :ram_energy_j, co2_g = :co2_g, "
        "duration_s = :duration_s, updated_at = :updated_at WHERE id = :id",
        {**totals, "duration_s": duration, "updated_at": now_iso(), "id": run_id},
    )
    return duration


def mark_lost(conn: sqlite3.Connection, run_id: str) -> None:
    """Close a dead run with what its last flushed samples say."""
    row = conn.execute(
        "SELECT started_at, pid, pid_host FROM runs WHERE id = ? AND status = 'running'",
        (run_id,),
    ).fetchone()
    if row is None:
        return
    started_at, pid, host = row
    conn.execute(
        "UPDATE devices SET "
        "energy_j = COALESCE((SELECT s.energy_j FROM samples s WHERE s.run_id = devices.run_id "
        "  AND s.device_id = devices.device_id ORDER BY s.seq DESC LIMIT 1), energy_j), "
        "process_energy_j = COALESCE((SELECT s.process_energy_j FROM samples s "
        "  WHERE s.run_id = devices.run_id AND s.device_id = devices.device_id "
        "  ORDER BY s.seq DESC LIMIT 1), process_energy_j) "
        "WHERE run_id = ?",
        (run_id,),
    )
    last_t_s = conn.execute("SELECT MAX(t_s) FROM samples WHERE run_id = ?", (run_id,)).fetchone()
    duration_s = refresh_totals(conn, run_id, float(last_t_s[0] or 0.0), status="running") or 0.0
    try:
        ended_at = add_seconds(started_at, duration_s) if started_at else None
    except ValueError:  # a start time that is not ISO-8601 text
        ended_at = None
    conn.execute(
        "UPDATE runs SET status = 'lost', ended_at = ?, duration_s = ?, error = COALESCE(error, ?) "
        "WHERE id = ?",
        (
            ended_at,
            duration_s,
            f"the process that measured this run (pid {pid} on {host}) ended before the run "
            f"finished, or before the run store could be written again (a full disk); figures "
            f"are those saved up to {duration_s:.1f} s",
            run_id,
        ),
    )
