/**
 * The status-bar item: the kernel's live watts and the session's grams of CO2.
 * Its node has the aria-label "Carbon status"; a click opens the panel.
 */
import { Widget } from '@lumino/widgets';
import { grams, watts } from './format';
import { CarbonModel } from './model';

export class CarbonStatus extends Widget {
  constructor(
    private _model: CarbonModel,
    onClick: () => void
  ) {
    super();
    this.addClass('cj-status');
    this.node.setAttribute('aria-label', 'Carbon status');
    this.node.title = 'Energy and CO₂ of this kernel (carbon-jupyter)';
    this.node.addEventListener('click', onClick);
    _model.changed.connect(this._render, this);
    this._render();
  }

  protected onAfterAttach(): void {
    this._model.statusVisible = true;
    this._model.refresh();
  }

  protected onBeforeDetach(): void {
    this._model.statusVisible = false;
  }

  private _render(): void {
    const m = this._model;
    const power = m.powerW === null ? 'idle' : watts(m.powerW);
    this.node.textContent = m.kernel ? `⚡ ${power} · ${grams(m.totals?.co2_g)} g CO₂` : '';
  }
}
