/**
 * The "Carbon" panel in the right sidebar, for the notebook in focus.
 *
 * Stable hooks for tests and assistive technology: the panel's id is
 * `carbon-jupyter-panel`; the labelled parts are "Track every cell" (a
 * switch), "Kernel power", "Power by device", "Session energy",
 * "Session CO2", "Carbon intensity", "Latest runs" (a table),
 * "Machine power", and for forwarding to a team server "Team server",
 * "Requests waiting", "Last delivery" and "Last forwarding error".
 */
import { Widget } from '@lumino/widgets';
import { IRun } from './api';
import {
  ago,
  duration,
  forwardingShown,
  grams,
  runName,
  runTitle,
  statusMark,
  watts,
  wattHours
} from './format';
import { CarbonModel } from './model';
import { drawSparkline } from './sparkline';

type Attrs = Record<string, string>;

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  Object.entries(attrs).forEach(([k, v]) => node.setAttribute(k, v));
  node.append(...children);
  return node;
}

function value(label: string): HTMLOutputElement {
  return el('output', { 'aria-label': label, 'aria-live': 'off', class: 'cj-value' });
}

export class CarbonPanel extends Widget {
  private _notebook = el('div', { class: 'cj-notebook' });
  private _switch = el('input', {
    type: 'checkbox',
    role: 'switch',
    'aria-label': 'Track every cell'
  });
  private _switchNote = el('div', { class: 'cj-note' });
  private _power = value('Kernel power');
  private _runNote = el('div', { class: 'cj-note' });
  private _chart = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  private _legend = el('ul', { class: 'cj-legend' });
  private _energy = value('Session energy');
  private _co2 = value('Session CO2');
  private _intensity = value('Carbon intensity');
  private _runs = el('tbody');
  private _machine = value('Machine power');
  private _machineNote = el('div', { class: 'cj-note' });
  private _server = value('Team server');
  private _waiting = value('Requests waiting');
  private _delivered = value('Last delivery');
  private _forwardError = el('div', {
    class: 'cj-note cj-forward-error',
    'aria-label': 'Last forwarding error'
  });
  private _error = el('div', { class: 'cj-error', role: 'alert' });

  constructor(private _model: CarbonModel) {
    super();
    this.addClass('cj-panel');
    this.title.caption = 'Carbon';
    this._chart.setAttribute('role', 'img');
    this._chart.setAttribute('aria-label', 'Power by device');
    this._chart.classList.add('cj-chart');
    this._switch.addEventListener('change', () => {
      void this._model.toggleTracking(this._switch.checked);
    });
    const head = (text: string) => el('h3', {}, text);
    const row = (label: string, output: HTMLElement) =>
      el('div', { class: 'cj-row' }, el('span', {}, label), output);
    const table = el(
      'table',
      { 'aria-label': 'Latest runs', class: 'cj-runs' },
      el(
        'thead',
        {},
        el('tr', {}, ...['Run', 'Time', 'Wh', 'g CO₂', 'Status'].map(h => el('th', {}, h)))
      ),
      this._runs
    );
    this.node.append(
      el('h2', {}, 'Carbon'),
      this._notebook,
      el('label', { class: 'cj-switch' }, this._switch, ' Track every cell'),
      this._switchNote,
      head('Kernel power'),
      row('Now', this._power),
      this._chart,
      this._legend,
      this._runNote,
      head('Session'),
      row('Energy (Wh)', this._energy),
      row('CO₂ (g)', this._co2),
      row('Intensity', this._intensity),
      head('Latest runs'),
      el('div', { class: 'cj-table' }, table),
      head('Machine power'),
      row('Now', this._machine),
      this._machineNote,
      head('Team server'),
      row('Server', this._server),
      row('Waiting', this._waiting),
      row('Last delivery', this._delivered),
      this._forwardError,
      this._error
    );
    _model.changed.connect(this._render, this);
    this._render();
  }

  protected onAfterShow(): void {
    this._model.panelVisible = true;
    this._model.refresh();
  }

  protected onAfterHide(): void {
    this._model.panelVisible = false;
  }

  private _render(): void {
    const m = this._model;
    const kernel = m.kernel;
    this._notebook.textContent = m.notebook
      ? `${m.notebook.title.label} · ${kernel ? kernel.name : 'no kernel'}`
      : 'Open a notebook to see the energy its kernel uses.';
    const usable = !!kernel && !!m.tracking?.available && !m.trackingBusy;
    this._switch.disabled = !usable;
    this._switch.checked = m.trackingTarget ?? !!m.tracking?.auto;
    this._switchNote.textContent =
      kernel && m.tracking && !m.tracking.available
        ? 'carbon-jupyter is not importable in this kernel: pip install carbon-jupyter in its environment.'
        : m.trackingBusy
          ? 'Waiting for the kernel…'
          : 'Runs %load_ext carbon_jupyter and %carbon auto on|off in this kernel.';

    const latest = m.devicePower;
    this._power.textContent = m.powerW === null ? 'idle' : watts(m.powerW);
    const devices = drawSparkline(this._chart, m.samples);
    this._legend.replaceChildren(
      ...devices.map((d, i) =>
        el('li', { class: `cj-color-${i % 4}` }, `${d} ${watts(latest.get(d))}`)
      )
    );
    this._runNote.textContent = m.run
      ? `${m.live ? 'Running' : 'Last run'}: ${runName(m.run)}`
      : 'No run in this kernel yet: switch on “Track every cell”, or use %%carbon in a cell.';

    const t = m.totals;
    this._energy.textContent = wattHours(t?.energy_j);
    this._co2.textContent = grams(t?.co2_g) + (t?.estimated ? ' (estimate)' : '');
    const i = t?.intensity;
    this._intensity.textContent = i
      ? `${Math.round(i.intensity_g_per_kwh ?? 0)} g/kWh · ${i.key}, ${i.source}` +
        (i.year ? ` ${i.year}` : '') +
        (i.pue && i.pue !== 1 ? ` · PUE ${i.pue}` : '')
      : '–';

    const cells = (r: IRun) => [
      runName(r),
      duration(r.duration_s),
      wattHours(r.energy_j),
      grams(r.co2_g),
      statusMark(r)
    ];
    this._runs.replaceChildren(
      ...m.runs.map(r =>
        el(
          'tr',
          {
            'data-run-id': r.id,
            class: `cj-status-${r.status}` + (r.warnings?.length ? ' cj-warned' : ''),
            title: runTitle(r)
          },
          ...cells(r).map(text => el('td', {}, text))
        )
      )
    );
    const machine = m.machine;
    this._machine.textContent = machine ? watts(machine.power_w) : '–';
    this._machineNote.textContent = machine
      ? machine.devices.map(d => `${d.name}: ${watts(d.power_w)}`).join(' · ') +
        (machine.estimated ? ' (includes estimates)' : '')
      : '';
    this._renderForwarding();
    this._error.textContent = m.error ?? '';
  }

  private _renderForwarding(): void {
    const f = this._model.forwarding;
    const shown = f ? forwardingShown(f.server, f.servers) : null;
    this._server.textContent = f?.server ?? shown?.server ?? (f ? 'none configured' : '–');
    this._server.title = f?.server
      ? 'Runs are stored here and forwarded to this server.'
      : 'Set CARBON_JUPYTER_SERVER, or %carbon server URL in a notebook.';
    const waiting = shown ? shown.waiting : 0;
    this._waiting.textContent = f
      ? `${waiting}` + (shown?.rejected ? ` (${shown.rejected} refused)` : '')
      : '–';
    this._delivered.textContent = shown?.last_ok_at ? ago(shown.last_ok_at) : f ? 'none yet' : '–';
    const error = shown?.last_error;
    this._forwardError.textContent = error
      ? `Last error (${ago(shown?.last_error_at)}): ${error}`
      : (f?.problem ?? '');
  }
}
