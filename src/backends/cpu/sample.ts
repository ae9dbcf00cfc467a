// Large Philox draws (random weight init) on the worker pool: the bulk sampler that tensor/philox.ts
// calls for draws of at least 1M values once this backend has registered it (index.ts, at load).
//
// The draw is cut into chunks of SAMPLE_CHUNK elements that the main thread and the workers claim
// from a shared counter (tasks.ts philoxSample → philox.ts sampleInto), rather than one fixed share
// each: a core slowed by other work then costs its share of the time, not the whole draw's. Each
// element depends only on its stream position, so the array is bitwise the one a single thread
// computes, for any thread count, chunk size and n. `out` is the SharedArrayBuffer philox.ts lends
// (withSample), written in place. With one thread, or a single chunk, it all runs here.

import type { Distribution } from '../../tensor/philox.js';
import { parallelFor } from './pool.js';

/** Elements per claim: 64K values, a few milliseconds of work. */
export const SAMPLE_CHUNK = 1 << 16;

/** Fills `out` with the draw of `dist` from (seed, offset) on the pool; `chunk` (elements per claim, any ≥ 1) for tests. */
export function parallelSample(seed: number, offset: number, dist: Distribution, out: Float32Array, chunk = SAMPLE_CHUNK): void {
  if (!Number.isInteger(chunk) || chunk < 1) throw new Error(`parallelSample: chunk must be a positive integer, got ${chunk}`);
  const chunks = Math.ceil(out.length / chunk);
  if (chunks === 0) return;
  const param = dist.kind === 'normal' ? dist.std : dist.kind === 'uniform_symmetric' ? dist.bound : 0;
  const next = new Int32Array(new SharedArrayBuffer(4)); // the next chunk to claim
  parallelFor('philoxSample', { out, seed, offset, kind: dist.kind, param, chunk, chunks, next }, chunks);
}
