// The NCCL process group: ProcessGroup (src/parallel/process_group.ts) over CUDA tensors.
//
// defines: NcclProcessGroup, createNcclGroup (registered as the 'nccl' process-group backend),
//          shareUniqueId, decodeUniqueId, CommWatchdog, InFlightOp
//
// Recipe: shared/NCCL.md (measured on 2×H200, NCCL 2.28.3). Per rank:
//   1. The CUDA backend has made the device's primary context current on this (the main) thread.
//   2. Group rank 0 calls ncclGetUniqueId and `set`s the 128 bytes under `nccl/uid` in the TCP store;
//      the others `get` them; then everyone passes a store barrier. The barrier matters: rank 0 hosts
//      the store on its event loop, and ncclCommInitRank blocks that loop until every rank joins, so
//      every rank must hold the id before anyone enters the blocking init.
//   3. ncclCommInitRank(size, id by value, rank).
// Streams and events, per collective:
//   record `ready` on the compute stream → comm stream waits on it → NCCL call(s) on the comm stream
//   → record `done` on the comm stream. Work.wait() makes the compute stream wait on `done` (the host
//   does not block); barrier()'s Work waits on the host (polling, the event loop stays free).
//   Work.streamWait() is that stream wait, synchronously (for callers that cannot await, as
//   ZeRO-2's gradient-ready hook): device work queued after it, a free to the allocator (which is
//   stream-ordered on the compute stream) and the reuse of that memory included, follows the
//   collective.
// Tensors must be left alone (inputs not written, outputs not read, neither disposed) until wait().
// Watchdog: while operations are in flight, a timer (unref'd) polls each `done` event and
// ncclCommGetAsyncError; an NCCL error, or an operation older than the timeout, aborts the
// communicator (ncclCommAbort) and fails the group with a CollectiveError naming the operation, its
// sequence number and this rank. The timer runs on the event loop, so a host blocked in
// cuStreamSynchronize (a download) behind a hung collective would never see it: a HostWatchdog
// (src/parallel/host_watchdog.ts, a worker thread) covers that case, reporting the oldest operation
// and NCCL's async error and ending the process.
//
// Run on one H200 through a one-rank communicator (tests/nccl.test.ts, tests/cuda_zero.test.ts).
// Not in the measured recipe and not yet run across GPUs: broadcast, send/recv, ncclCommSplit
// (newGroup), ncclCommAbort/ncclCommGetAsyncError (the watchdog).

import { CollectiveError, PromiseWork, registerProcessGroupBackend } from '../../parallel/process_group.js';
import type { GroupInit, ProcessGroup, ReduceOp, SyncCollectives, Work } from '../../parallel/process_group.js';
import { HostWatchdog } from '../../parallel/host_watchdog.js';
import type { Store } from '../../parallel/store.js';
import { getBackend } from '../../tensor/engine.js';
import type { Tensor } from '../../tensor/tensor.js';
import { type CudaBackend, ptr } from './backend.js';
import { CU_STREAM_NON_BLOCKING, type Handle, driverPath, driverStatus } from './ffi/driver.js';
import { CudaError, devicePointer } from './ffi/lib.js';
import {
  NCCL_SPLIT_NOCOLOR, NCCL_UNIQUE_ID_BYTES, type Nccl, type NcclComm, formatNcclError, nccl, ncclCommInitRank, ncclDataTypeOf,
  ncclPath, ncclRedOpOf, ncclUniqueId,
} from './ffi/nccl.js';

const CUDA_ERROR_NOT_READY = 600;
const CU_EVENT_DISABLE_TIMING = 2;

// ---------------------------------------------------------------------------------------------
// The unique id through the store

/** Checks a unique id read from the store: exactly 128 bytes (NULs included). */
export function decodeUniqueId(bytes: Uint8Array, key: string): Uint8Array {
  if (bytes.length !== NCCL_UNIQUE_ID_BYTES) {
    throw new Error(`the NCCL unique id under '${key}' in the store has ${bytes.length} bytes, expected ${NCCL_UNIQUE_ID_BYTES}`);
  }
  return new Uint8Array(bytes);
}

/**
 * Group rank 0 makes the id (`make`, ncclGetUniqueId) and publishes it under `key`; the others read
 * it. Returns once every rank of the group holds it (a store barrier), so that the blocking
 * ncclCommInitRank never starts on rank 0 while another rank still needs rank 0's store.
 */
export async function shareUniqueId(store: Store, rank: number, size: number, key: string, timeoutMs: number,
  make: () => Uint8Array): Promise<Uint8Array> {
  let id: Uint8Array;
  if (rank === 0) {
    id = decodeUniqueId(make(), key);
    await store.set(key, id);
  } else {
    id = decodeUniqueId(await store.get(key, timeoutMs), key);
  }
  await store.barrier(`${key}/read`, rank, size, timeoutMs);
  return id;
}

// ---------------------------------------------------------------------------------------------
// The watchdog (pure bookkeeping; the group plugs in the CUDA and NCCL calls)

export interface InFlightOp {
  /** `allReduce #12` (plus the group's ranks for a subgroup). */
  readonly label: string;
  /** The operation's name, for the error message (`not calling allReduce`). */
  readonly name: string;
  /** When it was issued (hooks.now() units, ms). */
  readonly issued: number;
  /** The `done` event on the comm stream. */
  readonly done: Handle;
  state: 'pending' | 'done' | 'failed';
  error: CollectiveError | null;
}

export interface WatchdogHooks {
  /** Whether the op's `done` event has completed (cuEventQuery). */
  isDone(op: InFlightOp): boolean;
  /** ncclCommGetAsyncError's result (0: none). */
  asyncError(): number;
  /** NCCL's description of a result code. */
  describe(code: number): { name: string; text: string };
  /** ncclCommAbort. */
  abort(): void;
  /** Gives the op's event back once it is no longer needed. */
  release(op: InFlightOp): void;
  now(): number;
}

/** Tracks a communicator's operations in issue order; fails them all on an NCCL error or a timeout. */
export class CommWatchdog {
  private readonly ops: InFlightOp[] = [];
  private readonly hostWaiters = new Map<InFlightOp, { resolve: () => void; reject: (e: Error) => void }[]>();
  failure: CollectiveError | null = null;

  constructor(readonly rank: number, readonly timeoutMs: number, private readonly hooks: WatchdogHooks) {}

  get pending(): number {
    return this.ops.length;
  }

  track(op: InFlightOp): void {
    this.ops.push(op);
  }

  /** The operation in flight longest, if any. */
  get oldest(): InFlightOp | undefined {
    return this.ops[0];
  }

  /** Resolves when `op` has completed on the GPU (host-side wait; needs poll() to be called). */
  waitHost(op: InFlightOp): Promise<void> {
    if (op.state === 'done') return Promise.resolve();
    if (op.state === 'failed') return Promise.reject(op.error!);
    return new Promise((resolve, reject) => {
      const list = this.hostWaiters.get(op) ?? [];
      list.push({ resolve, reject });
      this.hostWaiters.set(op, list);
    });
  }

  /** One look: retire completed ops (in order), then check NCCL's async error and the oldest op's age. */
  poll(): void {
    if (this.failure) return;
    while (this.ops.length && this.hooks.isDone(this.ops[0]!)) this.finish(this.ops.shift()!, null);
    if (!this.ops.length) return;
    const code = this.hooks.asyncError();
    const oldest = this.ops[0]!;
    if (code !== 0) {
      const d = this.hooks.describe(code);
      this.fail(oldest, `NCCL reported ${d.name}: ${d.text}; the communicator was aborted`);
    } else if (this.hooks.now() - oldest.issued > this.timeoutMs) {
      this.fail(oldest, `did not complete within ${this.timeoutMs / 1000} s (a peer is stuck, has exited, or is not calling ` +
        `${oldest.name}); the communicator was aborted`);
    }
  }

  private fail(first: InFlightOp, detail: string): void {
    const error = new CollectiveError(first.label, this.rank, detail);
    this.failure = error;
    try {
      this.hooks.abort();
    } catch {
      // the communicator is already unusable; the error above is the one to report
    }
    for (const op of this.ops.splice(0)) {
      this.finish(op, op === first ? error : new CollectiveError(op.label, this.rank, `the group failed earlier: ${error.message}`));
    }
  }

  private finish(op: InFlightOp, error: CollectiveError | null): void {
    op.state = error ? 'failed' : 'done';
    op.error = error;
    this.hooks.release(op);
    const waiters = this.hostWaiters.get(op) ?? [];
    this.hostWaiters.delete(op);
    for (const w of waiters) error ? w.reject(error) : w.resolve();
  }
}

// ---------------------------------------------------------------------------------------------
// The group

const POLL_MS = 50;

/** A Work over an NCCL operation: wait() orders the compute stream after it (or, for host waits, polls). */
class NcclWork implements Work {
  constructor(private readonly group: NcclProcessGroup, private readonly op: InFlightOp, private readonly host: boolean) {}

  get completed(): boolean {
    this.group.poll();
    return this.op.state !== 'pending';
  }

  wait(): Promise<void> {
    return this.host ? this.group.waitHost(this.op) : this.group.waitStream(this.op);
  }

  /** The compute stream waits for the operation now (throws if it failed); not for host-waited ones. */
  streamWait(): void {
    if (this.host) throw new Error(`internal: streamWait() on ${this.op.label}, which is waited for on the host`);
    this.group.orderAfter(this.op);
  }

  then<A = void, B = never>(onOk?: ((v: void) => A | PromiseLike<A>) | null, onErr?: ((e: unknown) => B | PromiseLike<B>) | null): PromiseLike<A | B> {
    return this.wait().then(onOk, onErr);
  }
}

export class NcclProcessGroup implements ProcessGroup, SyncCollectives {
  readonly backend = 'nccl';
  readonly size: number;
  private readonly api: Nccl;
  /** The communication stream: NCCL work of this group, in issue order. */
  readonly commStream: Handle;
  private readonly ready: Handle;
  private readonly freeEvents: Handle[] = [];
  private readonly barrierBuf: number; // (1) f32 on the device
  private readonly watchdog: CommWatchdog;
  /** The same watch from a worker thread, for when this thread is blocked in a device wait. */
  private readonly hostWatchdog: HostWatchdog;
  private timer: ReturnType<typeof setInterval> | null = null;
  private seq = 0;
  private broken: CollectiveError | null = null;
  private destroyed = false;
  /** Whether the watchdog's failure was written to stderr (once). */
  private reported = false;

  constructor(readonly be: CudaBackend, private readonly comm: NcclComm, readonly rank: number, readonly ranks: readonly number[],
    readonly timeoutMs: number, private readonly worldSize: number) {
    this.size = ranks.length;
    this.api = nccl();
    const drv = be.drv;
    const s: [Handle | null] = [null];
    drv.cuStreamCreate(s, CU_STREAM_NON_BLOCKING);
    this.commStream = s[0]!;
    this.ready = this.newEvent();
    const p: [number | bigint] = [0];
    drv.cuMemAlloc_v2(p, 4);
    this.barrierBuf = devicePointer(p[0]);
    drv.cuMemsetD32_v2(this.barrierBuf, 0, 1);
    this.watchdog = new CommWatchdog(ranks[rank]!, timeoutMs, {
      isDone: (op) => this.eventDone(op.done),
      asyncError: () => {
        const e: [number] = [0];
        this.api.ncclCommGetAsyncError(this.comm, e);
        return e[0];
      },
      describe: (code) => formatNcclError(code, this.api.ncclGetErrorString(code), this.api.ncclGetLastError(this.comm)),
      abort: () => this.api.ncclCommAbort(this.comm),
      release: (op) => this.freeEvents.push(op.done),
      now: () => performance.now(),
    });
    const ncclLib = ncclPath(), cudaLib = driverPath();
    this.hostWatchdog = new HostWatchdog({
      rank: ranks[rank]!, timeoutMs,
      nccl: ncclLib ? { lib: ncclLib, comm } : undefined,
      cuda: cudaLib ? { lib: cudaLib, context: be.context } : undefined,
    });
  }

  allReduce(t: Tensor, op: ReduceOp = 'sum'): Work {
    return this.allReduceCoalesced([t], op, 'allReduce');
  }

  allReduceCoalesced(ts: Tensor[], op: ReduceOp = 'sum', name = 'allReduceCoalesced'): Work {
    return this.issue(name, ts, false, (fail) => {
      if (ts.length === 0) return;
      const dtype = ts[0]!.dtype;
      for (const t of ts) if (t.dtype !== dtype) throw fail(`mixed dtypes ${dtype} and ${t.dtype} in one coalesced all-reduce`);
      const { type } = ncclDataTypeOf(dtype, true);
      const redOp = ncclRedOpOf(op);
      this.grouped(ts.length > 1, () => {
        for (const t of ts) if (t.numel > 0) this.api.ncclAllReduce(ptr(t), ptr(t), t.numel, type, redOp, this.comm, this.commStream);
      });
    });
  }

  reduceScatter(output: Tensor, input: Tensor, op: ReduceOp = 'sum'): Work {
    return this.issue('reduceScatter', [output, input], false, (fail) => {
      const n = output.numel;
      if (input.numel !== n * this.size || input.dtype !== output.dtype) {
        throw fail(`input ${input} must hold size × output = ${this.size} × ${n} elements of ${output.dtype}`);
      }
      const { type } = ncclDataTypeOf(output.dtype, true);
      if (n > 0) this.api.ncclReduceScatter(ptr(input), ptr(output), n, type, ncclRedOpOf(op), this.comm, this.commStream);
    });
  }

  allGather(output: Tensor, input: Tensor): Work {
    return this.issue('allGather', [output, input], false, (fail) => {
      const n = input.numel;
      if (output.numel !== n * this.size || input.dtype !== output.dtype) {
        throw fail(`output ${output} must hold size × input = ${this.size} × ${n} elements of ${input.dtype}`);
      }
      const { type, scale } = ncclDataTypeOf(input.dtype, false);
      if (n > 0) this.api.ncclAllGather(ptr(input), ptr(output), n * scale, type, this.comm, this.commStream);
    });
  }

  /** SyncCollectives: the all-gather issued and the compute stream ordered after it (the host does not wait). */
  allGatherNow(output: Tensor, input: Tensor): void {
    this.allGather(output, input).streamWait!();
  }

  /** SyncCollectives: the reduce-scatter issued and the compute stream ordered after it. */
  reduceScatterNow(output: Tensor, input: Tensor, op: ReduceOp = 'sum'): void {
    this.reduceScatter(output, input, op).streamWait!();
  }

  broadcast(t: Tensor, root: number): Work {
    return this.issue('broadcast', [t], false, (fail) => {
      this.checkPeer(root, true, fail);
      const { type, scale } = ncclDataTypeOf(t.dtype, false);
      if (t.numel > 0) this.api.ncclBroadcast(ptr(t), ptr(t), t.numel * scale, type, root, this.comm, this.commStream);
    });
  }

  send(t: Tensor, dst: number): Work {
    return this.issue('send', [t], false, (fail) => {
      this.checkPeer(dst, false, fail);
      const { type, scale } = ncclDataTypeOf(t.dtype, false);
      if (t.numel > 0) this.api.ncclSend(ptr(t), t.numel * scale, type, dst, this.comm, this.commStream);
    });
  }

  recv(t: Tensor, src: number): Work {
    return this.issue('recv', [t], false, (fail) => {
      this.checkPeer(src, false, fail);
      const { type, scale } = ncclDataTypeOf(t.dtype, false);
      if (t.numel > 0) this.api.ncclRecv(ptr(t), t.numel * scale, type, src, this.comm, this.commStream);
    });
  }

  /** NCCL has no barrier: a 1-element all-reduce, waited for on the host. */
  barrier(): Work {
    return this.issue('barrier', [], true, () => {
      this.api.ncclAllReduce(this.barrierBuf, this.barrierBuf, 1, ncclDataTypeOf('f32', true).type, ncclRedOpOf('sum'), this.comm, this.commStream);
    });
  }

  /**
   * A communicator of some of this group's ranks, by ncclCommSplit (every rank of this group calls
   * it, in the same order; non-members pass NCCL_SPLIT_NOCOLOR and get null). Blocks the host until
   * all ranks of this group have called it. Not in the measured recipe: awaits a GPU run.
   */
  newGroup(ranks: number[]): ProcessGroup | null {
    for (const r of ranks) {
      if (!Number.isInteger(r) || r < 0 || r >= this.size) throw new CollectiveError('newGroup', this.rank, `rank ${r} is not in this group of ${this.size}`);
    }
    if (new Set(ranks).size !== ranks.length) throw new CollectiveError('newGroup', this.rank, `ranks [${ranks}] repeat a rank`);
    this.throwIfBroken('newGroup');
    const key = ranks.indexOf(this.rank);
    const out: [NcclComm | null] = [null];
    try {
      this.api.ncclCommSplit(this.comm, key >= 0 ? 0 : NCCL_SPLIT_NOCOLOR, Math.max(key, 0), out, null);
    } catch (e) {
      throw new CollectiveError('newGroup (ncclCommSplit)', this.ranks[this.rank]!, (e as Error).message);
    }
    if (key < 0) return null;
    if (out[0] === null) throw new CollectiveError('newGroup (ncclCommSplit)', this.ranks[this.rank]!, 'NCCL returned no communicator for a member');
    return new NcclProcessGroup(this.be, out[0], key, ranks.map((r) => this.ranks[r]!), this.timeoutMs, this.worldSize);
  }

  /** Waits (up to the timeout) for the operations in flight, then frees the communicator and the stream. */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    const start = performance.now();
    while (this.watchdog.pending && !this.watchdog.failure && performance.now() - start < this.timeoutMs) {
      this.watchdog.poll();
      if (this.watchdog.pending) await new Promise((r) => setTimeout(r, 5));
    }
    this.stopTimer();
    await this.hostWatchdog.stop();
    const aborted = this.watchdog.failure !== null;
    try {
      if (!aborted) {
        // Still pending after the timeout: abort rather than hang in destroy.
        if (this.watchdog.pending) this.api.ncclCommAbort(this.comm);
        else this.api.ncclCommDestroy(this.comm);
      }
    } finally {
      this.broken ??= new CollectiveError('destroy', this.ranks[this.rank]!, 'the process group was destroyed');
      const drv = this.be.drv;
      drv.cuStreamSynchronize(this.commStream);
      drv.cuStreamDestroy_v2(this.commStream);
      for (const e of [this.ready, ...this.freeEvents.splice(0)]) drv.cuEventDestroy_v2(e);
      drv.cuMemFree_v2(this.barrierBuf);
    }
  }

  // --- used by NcclWork

  poll(): void {
    this.watchdog.poll();
    if (this.watchdog.failure) this.broken ??= this.watchdog.failure;
    if (!this.watchdog.pending) this.stopTimer();
    this.reportToHostWatchdog();
  }

  /** Tells the worker-thread watchdog this thread is running, and what is in flight. */
  private reportToHostWatchdog(): void {
    const o = this.watchdog.oldest;
    this.hostWatchdog.update(o ? { label: o.label, issued: o.issued, event: o.done } : null);
  }

  /** The compute stream waits for `op` (no host wait). */
  waitStream(op: InFlightOp): Promise<void> {
    try {
      this.orderAfter(op);
    } catch (e) {
      return Promise.reject(e);
    }
    return Promise.resolve();
  }

  /** waitStream, synchronously: the compute stream waits on `op`'s event now; throws its error if it failed. */
  orderAfter(op: InFlightOp): void {
    if (op.state === 'failed') throw op.error!;
    if (op.state === 'pending') {
      try {
        this.be.drv.cuStreamWaitEvent(this.be.stream, op.done, 0);
      } catch (e) {
        throw new CollectiveError(op.label, this.ranks[this.rank]!, (e as Error).message);
      }
    }
  }

  waitHost(op: InFlightOp): Promise<void> {
    const p = this.watchdog.waitHost(op);
    this.poll();
    return p;
  }

  // --- internals

  /**
   * Issues one operation: validate, order the comm stream after the compute stream, enqueue the
   * NCCL call(s), record `done`. Any failure breaks the group (the peers are now out of step).
   */
  private issue(name: string, tensors: Tensor[], host: boolean, enqueue: (fail: (detail: string) => CollectiveError) => void): Work {
    const seq = ++this.seq;
    const label = this.label(name, seq);
    const me = this.ranks[this.rank]!;
    const fail = (detail: string) => new CollectiveError(label, me, detail);
    try {
      this.throwIfBroken(label);
      for (const t of tensors) {
        if (t.backend !== this.be) throw fail(`the NCCL process group needs tensors on its CUDA device, got ${t}`);
      }
      const drv = this.be.drv;
      drv.cuEventRecord(this.ready, this.be.stream);
      this.be.drv.cuStreamWaitEvent(this.commStream, this.ready, 0);
      enqueue(fail);
      const done = this.takeEvent();
      drv.cuEventRecord(done, this.commStream);
      const op: InFlightOp = { label, name, issued: performance.now(), done, state: 'pending', error: null };
      this.watchdog.track(op);
      this.reportToHostWatchdog();
      this.startTimer();
      return new NcclWork(this, op, host);
    } catch (e) {
      const err = e instanceof CollectiveError ? e : fail(e instanceof CudaError ? e.message : `${(e as Error).message}`);
      this.broken ??= err;
      return new PromiseWork(Promise.reject(err));
    }
  }

  /** ncclGroupStart/End around `body` when `on` (a coalesced bucket is one NCCL launch). */
  private grouped(on: boolean, body: () => void): void {
    if (!on) return body();
    this.api.ncclGroupStart();
    try {
      body();
    } catch (e) {
      try {
        this.api.ncclGroupEnd();
      } catch {
        // report the first failure
      }
      throw e;
    }
    this.api.ncclGroupEnd();
  }

  private checkPeer(r: number, selfOk: boolean, fail: (d: string) => CollectiveError): void {
    if (!Number.isInteger(r) || r < 0 || r >= this.size || (r === this.rank && !selfOk)) {
      throw fail(`peer ${r} is not ${selfOk ? 'a' : 'another'} rank of this group of ${this.size}`);
    }
  }

  private throwIfBroken(label: string): void {
    if (this.watchdog.failure) this.broken ??= this.watchdog.failure;
    if (!this.broken) return;
    if (this.broken.op === 'destroy') throw this.broken;
    throw new CollectiveError(label, this.ranks[this.rank]!, `the group failed earlier: ${this.broken.message}`);
  }

  private label(name: string, seq: number): string {
    const where = this.size === this.worldSize ? '' : ` (group of ranks ${this.ranks.join(',')})`;
    return `${name} #${seq}${where}`;
  }

  private eventDone(e: Handle): boolean {
    const code = this.be.drv.cuEventQuery(e);
    if (code === 0) return true;
    if (code === CUDA_ERROR_NOT_READY) return false;
    throw new CudaError('CUDA driver', 'cuEventQuery', code, driverStatus.describe(code).name, driverStatus.describe(code).text);
  }

  private newEvent(): Handle {
    const e: [Handle | null] = [null];
    this.be.drv.cuEventCreate(e, CU_EVENT_DISABLE_TIMING);
    return e[0]!;
  }

  private takeEvent(): Handle {
    return this.freeEvents.pop() ?? this.newEvent();
  }

  private startTimer(): void {
    if (this.timer) return;
    this.timer = setInterval(() => {
      try {
        this.poll();
      } catch (e) {
        // cuEventQuery itself failed (a sticky CUDA error): nothing more can run on this device.
        this.broken ??= new CollectiveError('watchdog', this.ranks[this.rank]!, (e as Error).message);
        this.stopTimer();
      }
      if (this.watchdog.failure && !this.reported) {
        this.reported = true;
        process.stderr.write(`neox: ${this.watchdog.failure.message}\n`);
      }
    }, Math.min(POLL_MS, Math.max(1, this.timeoutMs / 10)));
    this.timer.unref();
  }

  private stopTimer(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}

// ---------------------------------------------------------------------------------------------
// The factory

/**
 * The world NCCL group (every rank calls it): the CUDA backend must be initialised on this rank's
 * GPU (initCuda(localRank), or ordinal 0 under CUDA_VISIBLE_DEVICES=localRank) before this.
 */
export async function createNcclGroup(init: GroupInit): Promise<NcclProcessGroup> {
  const fail = (detail: string) => new CollectiveError('init (nccl)', init.rank, detail);
  let be: CudaBackend;
  try {
    be = getBackend('cuda') as CudaBackend;
  } catch {
    throw fail('the NCCL process group needs the CUDA backend; it is not initialised (no GPU, or initCuda() not called before initDistributed)');
  }
  try {
    nccl();
  } catch (e) {
    throw fail(`NCCL is not available: ${(e as Error).message}`);
  }
  const id = await shareUniqueId(init.store, init.rank, init.size, 'nccl/uid', init.timeoutMs, ncclUniqueId);
  let comm: NcclComm;
  try {
    comm = ncclCommInitRank(init.size, id, init.rank);
  } catch (e) {
    throw fail((e as Error).message);
  }
  const ranks = Array.from({ length: init.size }, (_, r) => r);
  return new NcclProcessGroup(be, comm, init.rank, ranks, init.timeoutMs, init.size);
}

registerProcessGroupBackend('nccl', createNcclGroup);
