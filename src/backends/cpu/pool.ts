// The CPU worker pool: parallel GEMM (C's rows) and parallelFor (any task of tasks.ts over [0, n)),
// split between the main thread and worker threads.
//
// Kernels are synchronous, so the main thread takes the first share, then blocks on an Atomics
// counter until the workers finish theirs. Only SharedArrayBuffer-backed arrays can be shared;
// small or unshared problems run on the main thread alone. Work runs one level deep: a gemm called
// by a task (in a worker, or on the main thread during a parallelFor) runs inline.
// NEOX_CPU_THREADS sets the thread count (default: os.availableParallelism(), divided among the
// LOCAL_WORLD_SIZE ranks a launcher started on this host); setCpuThreads
// overrides it (tests).

import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { HostArray } from '../../tensor/dtype.js';
import { type GemmArgs, gemmRows } from './gemm.js';
import { TASKS, nested } from './tasks.js';

/** Below this many multiply-adds a GEMM is not worth splitting. */
const PARALLEL_MIN_FLOPS = 1 << 20;
/** The longest the main thread sleeps between checks of the workers' done counter. */
const JOIN_POLL_MS = 1;

let workers: Worker[] | null = null;
let done: Int32Array | null = null;
/** [0]: set when a worker's task threw; its message follows in errText. */
let errFlag: Int32Array | null = null;
let errText: Uint8Array | null = null;
let threadOverride: number | null = null;
/** True while a parallelFor is in progress on this (the main) thread. */
let busy = false;
/** parallelFor calls that went to the workers, by task (tests). */
const stats = new Map<string, number>();

function threadCount(): number {
  if (threadOverride !== null) return threadOverride;
  const env = Number(process.env.NEOX_CPU_THREADS);
  if (Number.isInteger(env) && env > 0) return env;
  // Several ranks on one host (neox launch, torchrun: LOCAL_WORLD_SIZE) share its cores.
  const local = Number(process.env.LOCAL_WORLD_SIZE);
  return Math.max(1, Math.floor(availableParallelism() / (Number.isInteger(local) && local > 1 ? local : 1)));
}

function pool(): Worker[] {
  if (workers) return workers;
  done = new Int32Array(new SharedArrayBuffer(4));
  errFlag = new Int32Array(new SharedArrayBuffer(4));
  errText = new Uint8Array(new SharedArrayBuffer(1024));
  workers = [];
  for (let i = 1; i < threadCount(); i++) {
    const w = new Worker(new URL('./pool_worker.js', import.meta.url), {
      workerData: { done: done.buffer, errFlag: errFlag.buffer, errText: errText.buffer },
    });
    w.unref();
    workers.push(w);
  }
  return workers;
}

function shared(a: { buffer: ArrayBufferLike }): boolean {
  return a.buffer instanceof SharedArrayBuffer;
}

/**
 * Blocks until `sent` workers have reported, then rethrows the first worker error, if any. The wait
 * re-checks the counter every millisecond: a worker's notify is occasionally not seen by the main
 * thread's Atomics.wait (observed on Node 20 as 1 s stalls with a 1 s timeout), and with hundreds of
 * joins per training step a long timeout turns each such miss into a stall.
 */
function join(sent: number): void {
  while (Atomics.load(done!, 0) < sent) Atomics.wait(done!, 0, Atomics.load(done!, 0), JOIN_POLL_MS);
  if (Atomics.load(errFlag!, 0) !== 0) {
    const text = new TextDecoder().decode(errText!.slice()).replace(/\0+$/, '');
    Atomics.store(errFlag!, 0, 0);
    errText!.fill(0);
    throw new Error(`CPU worker: ${text}`);
  }
}

/** C (+)= op(A) · op(B), parallel over rows of C when large and shared (inline inside a parallelFor). */
export function gemm(g: GemmArgs): void {
  const flops = g.M * g.N * g.K;
  const ws = !busy && flops >= PARALLEL_MIN_FLOPS && g.M >= 8 && shared(g.A) && shared(g.B) && shared(g.C) ? pool() : [];
  if (ws.length === 0) {
    gemmRows(g, 0, g.M);
    return;
  }
  const parts = ws.length + 1;
  const chunk = Math.ceil(g.M / parts);
  Atomics.store(done!, 0, 0);
  let sent = 0;
  for (let p = 1; p < parts; p++) {
    const r0 = Math.min(g.M, p * chunk);
    const r1 = Math.min(g.M, r0 + chunk);
    if (r0 >= r1) continue;
    ws[p - 1]!.postMessage({ g, r0, r1 });
    sent++;
  }
  gemmRows(g, 0, Math.min(g.M, chunk));
  join(sent);
}

// Tasks on the main thread call the pool's gemm (it runs inline during a parallelFor); workers keep
// tasks.ts's inline default.
nested.gemm = gemm;

/** True when every typed array among args' values is SharedArrayBuffer-backed. */
function allShared(args: Record<string, unknown>): boolean {
  for (const v of Object.values(args)) {
    if (ArrayBuffer.isView(v) && !shared(v)) return false;
  }
  return true;
}

/**
 * Runs tasks.ts's TASKS[task](args, start, end) over [0, n): the main thread takes the first share and
 * the workers the rest, each share at least `grain` items, and returns when all are done. Runs inline
 * (one call over [0, n)) with one thread, when n < 2 · grain, inside another parallelFor, or when a
 * typed array in args is not SharedArrayBuffer-backed (see shareable). Tasks write disjoint outputs
 * per item, so the result does not depend on the split.
 */
export function parallelFor(task: string, args: Record<string, unknown>, n: number, grain = 1): void {
  const fn = TASKS[task];
  if (!fn) throw new Error(`parallelFor: unknown task '${task}'`);
  const parts = busy ? 1 : Math.min(threadCount(), Math.floor(n / Math.max(1, grain)));
  if (parts <= 1 || !allShared(args)) {
    fn(args, 0, n);
    return;
  }
  const ws = pool();
  const used = Math.min(parts, ws.length + 1);
  Atomics.store(done!, 0, 0);
  let sent = 0;
  for (let p = 1; p < used; p++) {
    const start = Math.floor((p * n) / used), end = Math.floor(((p + 1) * n) / used);
    if (start >= end) continue;
    ws[p - 1]!.postMessage({ task, args, start, end });
    sent++;
  }
  stats.set(task, (stats.get(task) ?? 0) + 1);
  busy = true;
  try {
    fn(args, 0, Math.floor(n / used));
  } finally {
    busy = false;
    join(sent);
  }
}

// Small arrays (parameters, per-row statistics, labels) live in ordinary ArrayBuffers; shareable
// copies them into a reused SharedArrayBuffer arena so that a parallelFor can hand them to workers.
let arena = new SharedArrayBuffer(1 << 16);
let arenaUsed = 0;
/** Arrays larger than this are not copied (their kernel runs inline instead). */
const SHAREABLE_MAX_BYTES = 1 << 22;

/**
 * `a` itself when SharedArrayBuffer-backed (or one thread), else a copy of it in the shared arena.
 * A copy stays valid until the next call after `releaseShareable()`; outputs written into a copy are
 * copied back by the caller (`if (copy !== a) a.set(copy)`).
 */
export function shareable<T extends HostArray>(a: T): T {
  if (shared(a) || threadCount() <= 1 || a.byteLength > SHAREABLE_MAX_BYTES) return a;
  const bytes = (a.byteLength + 7) & ~7;
  if (arenaUsed + bytes > arena.byteLength) {
    arena = new SharedArrayBuffer(Math.max(2 * arena.byteLength, bytes));
    arenaUsed = 0;
  }
  const Ctor = a.constructor as new (b: SharedArrayBuffer, off: number, len: number) => T;
  const v = new Ctor(arena, arenaUsed, a.length);
  v.set(a as never);
  arenaUsed += bytes;
  return v;
}

/** Lets the arena's space be reused (call once the copies from shareable are no longer needed). */
export function releaseShareable(): void {
  arenaUsed = 0;
}

/** Sets the thread count (null: back to NEOX_CPU_THREADS / the core count); restarts the pool. */
export function setCpuThreads(n: number | null): void {
  if (n !== null && (!Number.isInteger(n) || n < 1)) throw new Error(`setCpuThreads: ${n} is not a positive integer`);
  shutdownPool();
  threadOverride = n;
  stats.clear();
}

/** parallelFor calls that went to the workers since the last setCpuThreads, by task name. */
export function poolStats(): Map<string, number> {
  return new Map(stats);
}

/** Stops the worker threads (they are unref'd, so this is only needed for tidy shutdown in tests). */
export function shutdownPool(): void {
  for (const w of workers ?? []) void w.terminate();
  workers = null;
}
