// Parallel GEMM on the CPU: splits C's rows between the main thread and a pool of worker threads.
//
// Kernels are synchronous, so the main thread takes its share of rows, then blocks on an Atomics
// counter until the workers finish theirs. Only SharedArrayBuffer-backed arrays can be shared;
// small or unshared problems run on the main thread alone.

import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { type GemmArgs, gemmRows } from './gemm.js';

/** Below this many multiply-adds a GEMM is not worth splitting. */
const PARALLEL_MIN_FLOPS = 1 << 20;

let workers: Worker[] | null = null;
let done: Int32Array | null = null;

function threadCount(): number {
  const env = Number(process.env.NEOX_CPU_THREADS);
  return Number.isInteger(env) && env > 0 ? env : availableParallelism();
}

function pool(): Worker[] {
  if (workers) return workers;
  done = new Int32Array(new SharedArrayBuffer(4));
  workers = [];
  for (let i = 1; i < threadCount(); i++) {
    const w = new Worker(new URL('./pool_worker.js', import.meta.url), { workerData: { done: done.buffer } });
    w.unref();
    workers.push(w);
  }
  return workers;
}

function shared(a: Float32Array | Float64Array): boolean {
  return a.buffer instanceof SharedArrayBuffer;
}

/** C (+)= op(A) · op(B), parallel over rows of C when large and shared. */
export function gemm(g: GemmArgs): void {
  const flops = g.M * g.N * g.K;
  const ws = flops >= PARALLEL_MIN_FLOPS && g.M >= 8 && shared(g.A) && shared(g.B) && shared(g.C) ? pool() : [];
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
  while (Atomics.load(done!, 0) < sent) Atomics.wait(done!, 0, Atomics.load(done!, 0), 1000);
}

/** Stops the worker threads (they are unref'd, so this is only needed for tidy shutdown in tests). */
export function shutdownPool(): void {
  for (const w of workers ?? []) void w.terminate();
  workers = null;
}
