/**
 * Numbers for display. Stored figures are SI (J, W, s, g); energy is shown in Wh.
 */

const J_PER_WH = 3600;

/** Three significant figures; exponent notation only below 0.001. */
export function sig(value: number): string {
  const size = Math.abs(value);
  if (size === 0) {
    return '0';
  }
  if (size < 0.001) {
    return value.toExponential(1);
  }
  if (size >= 100) {
    return Math.round(value).toString();
  }
  return value.toFixed(Math.max(0, 2 - Math.floor(Math.log10(size))));
}

export function watts(powerW: number | null | undefined): string {
  return powerW === null || powerW === undefined ? '–' : `${sig(powerW)} W`;
}

export function wattHours(energyJ: number | null | undefined): string {
  return energyJ === null || energyJ === undefined ? '–' : sig(energyJ / J_PER_WH);
}

export function grams(co2G: number | null | undefined): string {
  return co2G === null || co2G === undefined ? '–' : sig(co2G);
}

export function duration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined) {
    return '–';
  }
  if (seconds < 60) {
    return `${sig(seconds)} s`;
  }
  const m = Math.floor(seconds / 60);
  if (m < 60) {
    return `${m} min ${Math.round(seconds % 60)} s`;
  }
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

/** What a run is called in the table: its label, else its cell's execution count. */
export function runName(run: {
  label: string | null;
  cell: string | null;
  tags: Record<string, string>;
}): string {
  if (run.label) {
    return run.label;
  }
  const count = run.tags['execution_count'];
  if (count) {
    return `In [${count}]`;
  }
  return run.cell ? `cell ${run.cell.slice(0, 8)}` : 'run';
}

/** A run's status cell: the status, marked when the run carries warnings. */
export function statusMark(run: { status: string; warnings?: string[] }): string {
  const count = run.warnings?.length ?? 0;
  return count ? `${run.status} ⚠${count}` : run.status;
}

/** A run row's tooltip: its error and every warning, one per line. */
export function runTitle(run: { error: string | null; warnings?: string[] }): string {
  return [run.error ?? '', ...(run.warnings ?? []).map(w => `⚠ ${w}`)]
    .filter(line => line)
    .join('\n');
}

/** `12 s ago`, `5 min ago`, `3 h ago`, `2 days ago` for an ISO time; a dash when missing. */
export function ago(iso: string | null | undefined, now: number = Date.now()): string {
  if (!iso) {
    return '–';
  }
  const seconds = Math.max(0, (now - Date.parse(iso)) / 1000);
  if (Number.isNaN(seconds)) {
    return iso;
  }
  if (seconds < 120) {
    return `${Math.round(seconds)} s ago`;
  }
  if (seconds < 7200) {
    return `${Math.round(seconds / 60)} min ago`;
  }
  if (seconds < 172800) {
    return `${Math.round(seconds / 3600)} h ago`;
  }
  return `${Math.round(seconds / 86400)} days ago`;
}

/** The state shown for forwarding: the configured server's, else the most recent one's. */
export function forwardingShown<T extends { server: string }>(
  configured: string | null,
  servers: T[]
): T | null {
  return servers.find(s => s.server === configured) ?? (configured ? null : (servers[0] ?? null));
}
