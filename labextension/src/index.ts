/**
 * carbon-jupyter's sidebar: a "Carbon" panel in the right area and a
 * status-bar item, both for the notebook in focus. Works in JupyterLab 4 and
 * in Notebook 7 (which has no status bar; its right sidebar is under View).
 */
import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { INotebookTracker, NotebookActions } from '@jupyterlab/notebook';
import { IStatusBar } from '@jupyterlab/statusbar';
import { LabIcon } from '@jupyterlab/ui-components';
import { CarbonModel } from './model';
import { CarbonPanel } from './panel';
import { CarbonStatus } from './statusbar';

const leaf = new LabIcon({
  name: 'carbon-jupyter:leaf',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24"><path class="jp-icon3" fill="#616161" ' +
    'd="M17 8C8 10 5.9 16.2 3.8 21.3l1.9.7 1-2.3c.5.2 1 .3 1.3.3C19 20 22 3 22 3c-1 2-8 2.3-13 3.3S2 11.5 2 13.5s1.8 3.8 1.8 3.8C7 8 17 8 17 8z"/></svg>'
});

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'carbon-jupyter:sidebar',
  description: 'Live power, session energy and CO2, and a per-cell tracking switch.',
  autoStart: true,
  requires: [INotebookTracker],
  optional: [IStatusBar],
  activate: (app: JupyterFrontEnd, notebooks: INotebookTracker, statusBar: IStatusBar | null) => {
    const model = new CarbonModel();
    const panel = new CarbonPanel(model);
    panel.id = 'carbon-jupyter-panel';
    panel.title.icon = leaf;
    app.shell.add(panel, 'right', { rank: 600 });

    notebooks.currentChanged.connect((_, current) => model.setNotebook(current));
    model.setNotebook(notebooks.currentWidget);
    // A cell finished: show the new run without waiting for the next tick.
    NotebookActions.executed.connect(() => model.refresh());

    const open = () => app.shell.activateById(panel.id);
    app.commands.addCommand('carbon-jupyter:open', {
      label: 'Show the Carbon panel',
      execute: open
    });
    if (statusBar) {
      statusBar.registerStatusItem('carbon-jupyter:status', {
        item: new CarbonStatus(model, open),
        align: 'left',
        rank: 50,
        isActive: () => model.kernel !== null,
        activeStateChanged: model.changed
      });
    }
  }
};

export default plugin;
