/**
 * The server extension's REST routes (carbon_jupyter/serverext), typed.
 * Units are the store's: joules, watts, seconds, grams, gCO2e/kWh.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

export interface IIntensity {
  intensity_g_per_kwh: number | null;
  source: string;
  year: number | null;
  key: string;
  pue: number | null;
}

export interface IRun {
  id: string;
  label: string | null;
  status: string;
  cell: string | null;
  duration_s: number | null;
  energy_j: number | null;
  co2_g: number | null;
  error: string | null;
  /** One-line findings that may make the run's figures wrong (absent from older servers). */
  warnings?: string[];
  tags: Record<string, string>;
}

export interface ISample {
  t_s: number;
  device_id: string;
  power_w: number | null;
}

export interface ILive {
  run: IRun | null;
  live: boolean;
  reset: boolean;
  samples: ISample[];
  cursor: number;
}

export interface ITotals {
  count: number;
  energy_j: number | null;
  co2_g: number | null;
  running: boolean;
  estimated: boolean;
  intensity: IIntensity | null;
}

export interface IMachine {
  running: boolean;
  power_w: number | null;
  estimated: boolean;
  devices: { device_id: string; name: string; power_w: number | null }[];
}

/** One team server the store's outbox knows (carbon_jupyter.forward.status). */
export interface IServerState {
  server: string;
  waiting: number;
  waiting_samples: number;
  rejected: number;
  last_ok_at: string | null;
  last_error: string | null;
  last_error_at: string | null;
  sent: number;
  sender_pid: number | null;
}

/** Forwarding to a team server: the one configured, and each one the outbox knows. */
export interface IForwarding {
  store: string;
  server: string | null;
  servers: IServerState[];
  problem: string | null;
}

/** GET <base>/carbon-jupyter/api/<path>?<params>, with the page's token. */
export async function requestAPI<T>(
  path: string,
  params: Record<string, string | number> = {}
): Promise<T> {
  const settings = ServerConnection.makeSettings();
  const query = URLExt.objectToQueryString(params);
  const url = URLExt.join(settings.baseUrl, 'carbon-jupyter/api', path) + query;
  const response = await ServerConnection.makeRequest(url, {}, settings);
  const data = await response.json().catch(() => ({}));
  if (response.status === 404 && !data.message) {
    throw new Error(
      'The carbon-jupyter server extension is not running: ' +
        'jupyter server extension enable carbon_jupyter, then restart Jupyter.'
    );
  }
  if (!response.ok) {
    throw new Error(data.message || `${response.status} ${response.statusText}`);
  }
  return data as T;
}
