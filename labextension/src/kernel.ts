/**
 * The "Track every cell" switch: silent executions in the notebook's kernel.
 *
 * The code sent is in kernel-code.json (the Python tests run the same file):
 * `%load_ext carbon_jupyter` then `%carbon auto on|off`. A silent execution
 * fires no pre_run_cell/post_run_cell events, keeps no history and shows no
 * output, so the switch itself is never tracked. The state is read back
 * from the kernel in the same request through user_expressions.
 */
import { Kernel, KernelMessage } from '@jupyterlab/services';
import kernelCode from './kernel-code.json';

export interface ITracking {
  /** carbon-jupyter can be imported in this kernel. */
  available: boolean;
  /** Per-cell tracking is on. */
  auto: boolean;
}

function isTrue(result: unknown): boolean {
  const value = result as { status?: string; data?: Record<string, string> };
  return value?.status === 'ok' && value.data?.['text/plain'] === 'True';
}

async function execute(kernel: Kernel.IKernelConnection, code: string): Promise<ITracking> {
  const future = kernel.requestExecute({
    code,
    silent: true,
    store_history: false,
    allow_stdin: false,
    stop_on_error: false,
    user_expressions: kernelCode.state
  });
  const reply = (await future.done) as KernelMessage.IExecuteReplyMsg;
  const content = reply.content;
  if (content.status === 'error') {
    throw new Error(`${content.ename}: ${content.evalue}`);
  }
  if (content.status !== 'ok') {
    throw new Error(`the kernel answered ${content.status}`);
  }
  const results = content.user_expressions;
  return { available: isTrue(results['available']), auto: isTrue(results['auto']) };
}

/** Ask the kernel whether per-cell tracking is on (queued behind a running cell). */
export function queryTracking(kernel: Kernel.IKernelConnection): Promise<ITracking> {
  return execute(kernel, '');
}

/** Turn per-cell tracking on or off in the kernel; resolves to the new state. */
export function setTracking(kernel: Kernel.IKernelConnection, on: boolean): Promise<ITracking> {
  return execute(kernel, on ? kernelCode.on : kernelCode.off);
}
