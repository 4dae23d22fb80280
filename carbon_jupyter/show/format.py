"""Human-readable figures: the only place where joules become Wh and grams become kg.

Pure functions of :class:`~carbon_jupyter.model.Run` records, shared by the
``repr`` of a run, the CLI, the text summary in a terminal and the notebook
summary, so every view words the same numbers the same way.
"""

from __future__ import annotations

from carbon_jupyter.model import J_PER_KWH, Run, method_quality


def energy(energy_j: float) -> str:
    """``1234 J`` -> ``0.343 Wh``; picks mWh, Wh or kWh."""
    wh = energy_j / 3600.0
    if abs(wh) >= 1000:
        return f"{wh / 1000:.3g} kWh"
    if abs(wh) >= 1 or wh == 0:
        return f"{wh:.3g} Wh"
    return f"{wh * 1000:.3g} mWh"


def mass(co2_g: float) -> str:
    """Grams CO2e as mg, g or kg."""
    if abs(co2_g) >= 1000:
        return f"{co2_g / 1000:.3g} kg"
    if abs(co2_g) >= 1 or co2_g == 0:
        return f"{co2_g:.3g} g"
    return f"{co2_g * 1000:.3g} mg"


def power(power_w: float | None) -> str:
    if power_w is None:
        return "-"
    if abs(power_w) >= 1000:
        return f"{power_w / 1000:.3g} kW"
    return f"{power_w:.3g} W"


def duration(duration_s: float) -> str:
    if duration_s < 1:
        return f"{duration_s * 1000:.0f} ms"
    if duration_s < 60:
        return f"{duration_s:.2f} s"
    minutes, seconds = divmod(duration_s, 60)
    if minutes < 60:
        return f"{int(minutes)} min {seconds:.0f} s"
    hours, minutes = divmod(minutes, 60)
    return f"{int(hours)} h {int(minutes)} min"


def intensity_source(run: Run) -> str:
    """``472.9 gCO2e/kWh (World, ember 2024), PUE 1.0 (default)``."""
    i = run.intensity
    year = f" {i.year}" if i.year else ""
    return (
        f"{i.intensity_g_per_kwh:g} gCO2e/kWh ({i.key}, {i.source}{year}; {i.chosen_by}), "
        f"PUE {i.pue:g} ({i.pue_source})"
    )


def device_lines(run: Run) -> list[str]:
    """One line per device: name, energy, method and how it was obtained."""
    lines = []
    for d in run.devices:
        share = ""
        if d.process_energy_j is not None:
            share = f", this process {energy(d.process_energy_j)}"
        failed = f" [stopped: {d.error}]" if d.error else ""
        lines.append(
            f"{d.device.device_id:<10} {d.device.name[:40]:<40} {energy(d.energy_j):>10}"
            f"  {d.method} ({method_quality(d.method)}){share}{failed}"
        )
    return lines


def one_line(run: Run) -> str:
    """The compact summary used per cell: ``[carbon] 2.31 s  1.2 Wh  0.57 g CO2e``."""
    parts = [f"{duration(run.duration_s)}", energy(run.energy_j), f"{mass(run.co2_g)} CO2e"]
    marks = quality_marks(run)
    if marks:
        parts.append(f"({', '.join(marks)})")
    if run.status != "ok":
        parts.append(f"[{run.status}]")
    if run.warnings:
        parts.append(f"[{warning_count(run)}: {run.warnings[0]}]")
    return "  ".join(parts)


def quality_marks(run: Run) -> list[str]:
    """Words for figures that are not read from counters: ``estimate``, ``GPU sampled``."""
    marks = []
    if run.estimated:
        marks.append("estimate")
    sampled = sorted({d.device.kind.upper() for d in run.devices if d.method == "nvml-power"})
    if sampled:
        marks.append(f"{'/'.join(sampled)} sampled")
    return marks


def warning_count(run: Run) -> str:
    """``1 warning``, ``3 warnings``; "" for a clean run."""
    count = len(run.warnings)
    if not count:
        return ""
    return f"{count} warning" + ("s" if count > 1 else "")


def summary(run: Run) -> str:
    """A multi-line plain-text summary of a run."""
    title = run.label or run.cell or run.id[:8]
    head = f"carbon: {title}  {run.status}  {duration(run.duration_s)}"
    measured = {d.device.kind for d in run.devices}
    by_kind = {"cpu": run.cpu_energy_j, "gpu": run.gpu_energy_j, "ram": run.ram_energy_j}
    parts = [f"{kind} {energy(j)}" for kind, j in by_kind.items() if kind in measured]
    lines = [
        head,
        f"  energy  {energy(run.energy_j)} ({', '.join(parts)}; {run.attribution} attribution)"
        + "".join(f"  {mark}" for mark in quality_marks(run)),
        f"  CO2e    {mass(run.co2_g)}  at {intensity_source(run)}",
    ]
    if run.items:
        per_item_j = run.energy_per_item_j or 0.0
        per_item_g = run.co2_per_item_g or 0.0
        lines.append(
            f"  per item  {energy(per_item_j)}, {mass(per_item_g)} CO2e ({run.items} items)"
        )
    lines.extend("  " + line for line in device_lines(run))
    if run.error:
        lines.append(f"  error   {run.error}")
    lines.extend(f"  warning {w}" for w in run.warnings)
    return "\n".join(lines)


def run_repr(run: Run) -> str:
    est = ", estimate" if run.estimated else ""
    return (
        f"Run(id={run.id[:8]!r}, label={run.label!r}, status={run.status!r}, "
        f"duration_s={run.duration_s:.3f}, energy_j={run.energy_j:.1f} "
        f"({run.energy_j / J_PER_KWH * 1000:.4g} Wh{est}), co2_g={run.co2_g:.4g}, "
        f"intensity_g_per_kwh={run.intensity_g_per_kwh:g}, pue={run.pue:g}, "
        f"devices=[{', '.join(f'{d.device.device_id}:{d.method}' for d in run.devices)}]"
        + (f", warnings={len(run.warnings)}" if run.warnings else "")
        + ")"
    )


_TABLE_COLUMNS = ("started", "label / cell", "phase", "status", "duration", "energy", "CO2e")


def _table_row(run: Run) -> tuple[str, ...]:
    label = run.label or (f"cell {run.cell[:8]}" if run.cell else run.id[:8])
    started = run.started_at[:19].replace("T", " ")
    est = " (est.)" if run.estimated else ""
    if any(d.method == "nvml-power" for d in run.devices):
        est += " (sampled)"
    return (
        started,
        label,
        run.phase or "",
        run.status + (f" ({warning_count(run)})" if run.warnings else ""),
        duration(run.duration_s),
        energy(run.energy_j) + est,
        mass(run.co2_g),
    )


def runs_table_text(runs: list[Run]) -> str:
    """Stored runs as a fixed-width text table (terminal, CLI)."""
    if not runs:
        return "no runs stored yet"
    rows = [_TABLE_COLUMNS, *(_table_row(r) for r in runs)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_TABLE_COLUMNS))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows
    )


def runs_table_html(runs: list[Run]) -> str:
    """Stored runs as an HTML table (notebook); every value escaped."""
    from html import escape

    if not runs:
        return "<p>no runs stored yet</p>"
    head = "".join(f"<th>{escape(c)}</th>" for c in _TABLE_COLUMNS)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(c)}</td>" for c in _table_row(r)) + "</tr>" for r in runs
    )
    return f'<table class="carbon-runs"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
