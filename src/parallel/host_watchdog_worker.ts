// The HostWatchdog's thread (see host_watchdog.ts): looks at the shared state every pollMs and,
// when an operation has been in flight past the timeout while the main thread has not run for as
// long, reports it on stderr and ends the process.

import { writeSync } from 'node:fs';
import { workerData } from 'node:worker_threads';
import koffi from 'koffi';
import { HOST_WATCHDOG_EXIT_CODE, monotonicMs } from './host_watchdog.js';
import { CollectiveError } from './process_group.js';

interface Data {
  buffer: SharedArrayBuffer;
  rank: number;
  timeoutMs: number;
  pollMs: number;
  nccl: { lib: string; comm: bigint } | null;
  cuda: { lib: string; context: bigint } | null;
}


const { buffer, rank, timeoutMs, pollMs, nccl, cuda } = workerData as Data;
const times = new Float64Array(buffer, 0, 2);
const labelLength = new Int32Array(buffer, 16, 1);
const generation = new Int32Array(buffer, 20, 1);
const event = new BigInt64Array(buffer, 24, 1);
const label = new Uint8Array(buffer, 32);
// cuEventQuery in the main thread's context, bound now (not at the moment of a check, which would
// widen the window in which the main thread can wake up); null when there is no CUDA to ask.
const eventQuery = cuda ? bindEventQuery(cuda) : null;

setInterval(() => {
  const gen = Atomics.load(generation, 0);
  const issued = times[1]!;
  if (issued === 0) return;
  const t = monotonicMs();
  const blocked = t - times[0]!;
  if (t - issued <= timeoutMs || blocked <= timeoutMs) return; // the event loop's watchdog has this case
  const ev = event[0]!;
  if (ev !== 0n && completed(ev)) return; // done on the device; the main thread is busy, not stuck
  const op = new TextDecoder().decode(label.slice(0, Atomics.load(labelLength, 0)));
  // The main thread ran meanwhile (and may have retired the operation and reused its event): not stuck.
  if (Atomics.load(generation, 0) !== gen) return;
  const ncclError = nccl ? probeNccl(nccl) : null;
  const detail = `in flight for ${seconds(t - issued)} s (timeout ${timeoutMs / 1000} s) while this process's main thread ` +
    `has not run for ${seconds(blocked)} s (blocked, most likely waiting on the device behind it: a peer is stuck, has exited, ` +
    `or is not calling it)${ncclError ? `; NCCL reports ${ncclError}` : ''}; exiting`;
  writeSync(2, `neox: ${new CollectiveError(op || 'a collective', rank, detail).message}\n`);
  exitProcess(HOST_WATCHDOG_EXIT_CODE);
}, pollMs);

function seconds(ms: number): string {
  return (ms / 1000).toFixed(ms < 10_000 ? 1 : 0);
}

/** cuEventQuery with this thread's current context set to the main thread's; null when that fails. */
function bindEventQuery(c: { lib: string; context: bigint }): ((event: bigint) => number) | null {
  try {
    const lib = koffi.load(c.lib);
    const setCurrent = lib.func('int cuCtxSetCurrent(uint64_t ctx)');
    return setCurrent(c.context) === 0 ? lib.func('int cuEventQuery(uint64_t event)') : null;
  } catch {
    return null; // cannot ask: report on time alone
  }
}

/** Whether the event has fired; false when unknown. */
function completed(ev: bigint): boolean {
  if (!eventQuery) return false;
  return eventQuery(ev) === 0; // CUDA_ERROR_NOT_READY (or an error): not known to be done
}

/** ncclCommGetAsyncError and NCCL's last error text, or null when NCCL reports none (or cannot be asked). */
function probeNccl(n: { lib: string; comm: bigint }): string | null {
  try {
    const lib = koffi.load(n.lib);
    // ncclComm_t passed as its address (a pointer-sized integer).
    const getAsync = lib.func('int ncclCommGetAsyncError(uint64_t comm, _Out_ int *asyncError)');
    const errorString = lib.func('const char *ncclGetErrorString(int result)');
    const lastError = lib.func('const char *ncclGetLastError(uint64_t comm)');
    const code = [0];
    if (getAsync(n.comm, code) !== 0 || code[0] === 0) return null;
    const last = lastError(n.comm) as string | null;
    return `${errorString(code[0]) as string} (${code[0]})${last ? `: ${last}` : ''}`;
  } catch {
    return null;
  }
}

/** Ends the whole process (process.exit in a worker ends only the thread): libc's _exit, else SIGKILL. */
function exitProcess(code: number): never {
  try {
    const libc = koffi.load(process.platform === 'darwin' ? 'libSystem.dylib' : 'libc.so.6');
    libc.func('void _exit(int status)')(code);
  } catch {
    // no libc by that name: fall through
  }
  process.kill(process.pid, 'SIGKILL');
  throw new Error('unreachable');
}
