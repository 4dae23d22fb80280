/**
 * What the panel and the status bar show, for the notebook in focus, kept
 * fresh by one Poll. The poll stands by while the page is hidden, and while
 * neither the panel nor the status bar is on screen; with the panel hidden
 * it fetches only what the status bar needs (live watts, session grams).
 */
import { NotebookPanel } from '@jupyterlab/notebook';
import { Kernel } from '@jupyterlab/services';
import { Poll } from '@lumino/polling';
import { Signal } from '@lumino/signaling';
import { IForwarding, IMachine, IRun, ISample, ITotals, ILive, requestAPI } from './api';
import { ITracking, queryTracking, setTracking } from './kernel';

const MAX_SAMPLES = 1200;
/** How often the panel asks how forwarding to a team server stands, in ms. */
const FORWARDING_EVERY_MS = 5000;

export class CarbonModel {
  readonly changed = new Signal<CarbonModel, void>(this);
  panelVisible = false;
  statusVisible = false;
  notebook: NotebookPanel | null = null;
  run: IRun | null = null;
  live = false;
  samples: ISample[] = [];
  totals: ITotals | null = null;
  runs: IRun[] = [];
  machine: IMachine | null = null;
  forwarding: IForwarding | null = null;
  tracking: ITracking | null = null;
  trackingBusy = false;
  /** The state asked for with the switch, until the kernel confirms it. */
  trackingTarget: boolean | null = null;
  error: string | null = null;
  private _cursor = 0;
  private _runsKey = '';
  private _forwardingAt = 0;
  private _poll: Poll;

  constructor() {
    this._poll = new Poll({
      factory: () => this._refresh(),
      frequency: { interval: 1000, backoff: true, max: 30000 },
      standby: () => document.hidden || (!this.panelVisible && !this.statusVisible),
      name: 'carbon-jupyter:poll'
    });
  }

  /** The latest power of each device in the current run. */
  get devicePower(): Map<string, number | null> {
    return new Map(this.samples.map(s => [s.device_id, s.power_w]));
  }

  /** The kernel's power now (sum over devices) while a run is live, else null. */
  get powerW(): number | null {
    const known = [...this.devicePower.values()].filter((w): w is number => w !== null);
    return this.live && known.length ? known.reduce((a, b) => a + b, 0) : null;
  }

  get kernel(): Kernel.IKernelConnection | null {
    return this.notebook?.sessionContext.session?.kernel ?? null;
  }

  /** Follow another notebook (or none). */
  setNotebook(notebook: NotebookPanel | null): void {
    Signal.disconnectReceiver(this); // from the previous notebook
    this.notebook = notebook;
    notebook?.sessionContext.kernelChanged.connect(this._kernelReset, this);
    notebook?.sessionContext.statusChanged.connect((_, status) => {
      if (status === 'restarting' || status === 'autorestarting') {
        this._kernelReset();
      }
    }, this);
    notebook?.disposed.connect(() => this.setNotebook(null), this);
    this._kernelReset();
  }

  /** Poll now (the panel was shown, a cell finished). */
  refresh(): void {
    void this._poll.refresh();
  }

  async toggleTracking(on: boolean): Promise<void> {
    const kernel = this.kernel;
    if (!kernel || this.trackingBusy) {
      return;
    }
    this.trackingBusy = true;
    this.trackingTarget = on;
    this.changed.emit();
    try {
      this.tracking = await setTracking(kernel, on);
      this.error = null;
    } catch (reason) {
      this.error = `Could not switch per-cell tracking: ${reason}`;
    } finally {
      this.trackingBusy = false;
      this.trackingTarget = null;
      this.changed.emit();
    }
  }

  private _kernelReset(): void {
    this.run = null;
    this.samples = [];
    this._cursor = 0;
    this.totals = null;
    this.runs = [];
    this._runsKey = '';
    this.tracking = null;
    this.changed.emit();
    this.refresh();
  }

  /** Read the switch's state from the kernel, once it is idle (a query would queue). */
  private _askTracking(): void {
    const kernel = this.kernel;
    if (!kernel || kernel.status !== 'idle' || this.trackingBusy || this.tracking) {
      return;
    }
    this.trackingBusy = true;
    queryTracking(kernel)
      .then(state => (this.tracking = state))
      .catch(() => (this.tracking = { available: false, auto: false }))
      .finally(() => {
        this.trackingBusy = false;
        this.changed.emit();
      });
  }

  private async _refresh(): Promise<void> {
    const kernelId = this.kernel?.id;
    this._askTracking();
    try {
      const [machine, forwarding] = await Promise.all([
        this.panelVisible ? requestAPI<IMachine>('machine') : this.machine,
        this._forwardingDue() ? requestAPI<IForwarding>('forwarding') : this.forwarding,
        kernelId ? this._refreshKernel(kernelId) : null
      ]);
      this.machine = machine;
      this.forwarding = forwarding;
      this.error = null;
    } catch (reason) {
      this.error = reason instanceof Error ? reason.message : String(reason);
      throw reason; // the poll backs off
    } finally {
      this.changed.emit();
    }
  }

  /** Forwarding is asked for while the panel shows, every few seconds. */
  private _forwardingDue(): boolean {
    const now = Date.now();
    if (!this.panelVisible || now - this._forwardingAt < FORWARDING_EVERY_MS) {
      return false;
    }
    this._forwardingAt = now;
    return true;
  }

  private async _refreshKernel(kernelId: string): Promise<void> {
    const base = `kernels/${encodeURIComponent(kernelId)}`;
    const [live, totals] = await Promise.all([
      requestAPI<ILive>(`${base}/live`, { run: this.run?.id ?? '', since: this._cursor }),
      requestAPI<ITotals>(`${base}/totals`)
    ]);
    if (kernelId !== this.kernel?.id) {
      return; // the notebook or kernel changed meanwhile
    }
    this.samples = (live.reset ? live.samples : this.samples.concat(live.samples)).slice(
      -MAX_SAMPLES
    );
    this._cursor = live.cursor;
    this.run = live.run;
    this.live = live.live;
    this.totals = totals;
    const runsKey = `${totals.count}:${live.run?.id}:${live.run?.status}`;
    if (this.panelVisible && (runsKey !== this._runsKey || totals.running)) {
      const found = await requestAPI<{ runs: IRun[] }>('runs', { kernel: kernelId, limit: 10 });
      this.runs = found.runs;
      this._runsKey = runsKey;
    }
  }
}
