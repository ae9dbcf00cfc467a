// A watchdog on its own thread, for the hang the event loop cannot see.
//
// defines: HostWatchdog, HOST_WATCHDOG_EXIT_CODE
//
// A process group's own watchdog (a timer on the event loop; CommWatchdog in the NCCL group) fails
// a collective that has not completed within the group's timeout. That timer never runs while the
// main thread is blocked in a synchronous call: a download's cuStreamSynchronize queued behind a
// collective that a dead or stuck peer will never join blocks it for good, and the rank hangs.
// This watchdog runs in a worker thread. The main thread reports, whenever its event loop runs, that
// it is alive (a heartbeat) and which operation is the oldest in flight. When both are older than
// the timeout (an operation has been in flight that long and the main thread has not run for that
// long), and, on CUDA, the operation's completion event has not fired (the main thread may only
// have been busy, say writing a large checkpoint, after the collective completed), the worker
// writes one line naming the operation, the rank and, for NCCL, NCCL's own asynchronous error, then
// ends the process with exit code 3. `neox launch` then stops the other ranks and prints that line
// as the reason.
//
// Shared state (SharedArrayBuffer; times in ms of process.hrtime, one monotonic clock for every thread):
//   f64[0] heartbeat   f64[1] oldest operation's issue time (0: none in flight)
//   i32[4] label length   i32[5] generation (Atomics; +1 on every update, so the worker can tell
//   that what it read changed under it)   i64[3] the oldest operation's CUDA event (0: none)
//   then the label's UTF-8 bytes (at most LABEL_BYTES)

import { Worker } from 'node:worker_threads';

export const HOST_WATCHDOG_EXIT_CODE = 3;
const LABEL_BYTES = 512;
const HEADER_BYTES = 32; // two f64, one i32 (padded), one i64

export interface HostWatchdogOptions {
  /** This process's global rank (named in the report). */
  rank: number;
  /** How long an operation may be in flight while the main thread is blocked. */
  timeoutMs: number;
  /** How often the worker looks (default: a tenth of the timeout, at most 1 s). */
  pollMs?: number;
  /** NCCL: the library and communicator whose ncclCommGetAsyncError the report includes. */
  nccl?: { lib: string; comm: bigint };
  /** CUDA: the driver library and the context in which operations' events are queried. */
  cuda?: { lib: string; context: bigint };
}

export class HostWatchdog {
  private readonly times: Float64Array; // [heartbeat, oldest issued]
  private readonly labelLength: Int32Array;
  private readonly generation: Int32Array;
  private readonly event: BigInt64Array;
  private readonly label: Uint8Array;
  private readonly worker: Worker;
  private lastLabel = '';

  constructor(opts: HostWatchdogOptions) {
    const buffer = new SharedArrayBuffer(HEADER_BYTES + LABEL_BYTES);
    this.times = new Float64Array(buffer, 0, 2);
    this.labelLength = new Int32Array(buffer, 16, 1);
    this.generation = new Int32Array(buffer, 20, 1);
    this.event = new BigInt64Array(buffer, 24, 1);
    this.label = new Uint8Array(buffer, HEADER_BYTES, LABEL_BYTES);
    this.times[0] = monotonicMs();
    const pollMs = opts.pollMs ?? Math.min(1000, Math.max(1, opts.timeoutMs / 10));
    this.worker = new Worker(new URL('./host_watchdog_worker.js', import.meta.url), {
      workerData: { buffer, rank: opts.rank, timeoutMs: opts.timeoutMs, pollMs, nccl: opts.nccl ?? null, cuda: opts.cuda ?? null },
      execArgv: [], // not the parent's flags (`--input-type`, `--test`, ...), which a worker may refuse
    });
    this.worker.unref(); // never keeps the process alive
  }

  /**
   * The main thread is running now; `oldest` is the operation in flight longest (its label, issue
   * time in performance.now() ms of this thread and, on CUDA, the event recorded after it), or null
   * when none is.
   */
  update(oldest: { label: string; issued: number; event?: bigint } | null): void {
    if (oldest && oldest.label !== this.lastLabel) {
      const bytes = new TextEncoder().encode(oldest.label).subarray(0, LABEL_BYTES);
      this.label.set(bytes);
      this.labelLength[0] = bytes.length;
      this.lastLabel = oldest.label;
    }
    this.event[0] = oldest?.event ?? 0n;
    const t = monotonicMs();
    this.times[1] = oldest ? t - (performance.now() - oldest.issued) : 0;
    this.times[0] = t;
    Atomics.add(this.generation, 0, 1);
  }

  /** Stops the worker thread. */
  async stop(): Promise<void> {
    this.times[1] = 0;
    Atomics.add(this.generation, 0, 1);
    await this.worker.terminate();
  }
}

/** ms on process.hrtime's monotonic clock, which every thread of the process shares. */
export function monotonicMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}
