// GPT-NeoX's weight initialisation methods (megatron/model/init_functions.py), computed on the
// host from the Philox generator so that every backend and every run with the same seed gets the
// same weights.
//
// Each method but the orthogonal ones is one Philox draw (tensor/philox.ts `Distribution`): a
// normal scaled by the method's std, or xavier_uniform's (2u − 1) · a, generated and scaled in one
// pass. Large draws are filled on the CPU worker pool when the CPU backend is loaded (philox.ts's
// bulk-sampler hook; this module does not import a backend), bitwise the same as serially.
// withInitWeight lends the values to a callback (the model uploads them into a tensor) so that
// large ones never need an extra copy; initWeight returns an owned array.

import { type Distribution, withSample } from '../tensor/philox.js';

export type InitMethod =
  | 'normal' | 'scaled_normal' | 'orthogonal' | 'scaled_orthogonal' | 'xavier_uniform' | 'xavier_normal'
  | 'wang_init' | 'small_init' | 'single_residual_scaled_normal';

export interface InitContext {
  seed: number;
  std: number; // init_method_std
  numLayers: number;
  hiddenSize: number;
}

/** The draw behind `method` for a [rows, cols] weight, or the gain of an orthogonal one (over a unit Gaussian). */
function drawOf(method: InitMethod, rows: number, cols: number, ctx: InitContext): Distribution | { orthogonalGain: number } {
  const gaussian = (std: number): Distribution => ({ kind: 'normal', std });
  switch (method) {
    case 'normal': return gaussian(ctx.std);
    case 'scaled_normal': return gaussian(ctx.std / Math.sqrt(2 * ctx.numLayers));
    case 'single_residual_scaled_normal': return gaussian(ctx.std / Math.sqrt(ctx.numLayers));
    case 'small_init': return gaussian(Math.sqrt(2 / (5 * ctx.hiddenSize)));
    case 'wang_init': return gaussian((2 / ctx.numLayers) / Math.sqrt(ctx.hiddenSize));
    case 'xavier_normal': return gaussian(Math.sqrt(2 / (rows + cols)));
    case 'xavier_uniform': return { kind: 'uniform_symmetric', bound: Math.sqrt(6 / (rows + cols)) };
    case 'orthogonal': return { orthogonalGain: 1 };
    case 'scaled_orthogonal': return { orthogonalGain: 2 / Math.sqrt(2 * ctx.numLayers) };
  }
}

/**
 * Calls `use` with the values of a [rows, cols] weight (nn.Linear layout [out, in]) drawn with
 * `method` and returns its result. `stream` separates parameters. The array may be lent (`isLent`):
 * valid only during the call, so `use` copies out what it keeps (as uploading it into a tensor does).
 */
export function withInitWeight<T>(
  method: InitMethod, rows: number, cols: number, ctx: InitContext, stream: number,
  use: (values: Float32Array, isLent: boolean) => T,
): T {
  const n = rows * cols;
  const offset = stream * 2 ** 32; // each parameter draws from its own counter range
  const d = drawOf(method, rows, cols, ctx);
  if ('orthogonalGain' in d) {
    const q = withSample(ctx.seed, offset, n, { kind: 'normal', std: 1 }, (g) => orthogonal(g, rows, cols, d.orthogonalGain));
    return use(q, false);
  }
  return withSample(ctx.seed, offset, n, d, use);
}

/** Values for a [rows, cols] weight (nn.Linear layout [out, in]) drawn with `method`. `stream` separates parameters. */
export function initWeight(method: InitMethod, rows: number, cols: number, ctx: InitContext, stream: number): Float32Array {
  return withInitWeight(method, rows, cols, ctx, stream, (v, isLent) => (isLent ? v.slice() : v));
}

/** Orthonormalises the rows (or columns, whichever are fewer) of a Gaussian matrix, times `gain`. */
function orthogonal(g: Float32Array, rows: number, cols: number, gain: number): Float32Array {
  // Work on the shorter side as vectors: Gram–Schmidt (twice, for stability) in f64.
  const byRows = rows <= cols;
  const count = byRows ? rows : cols;
  const len = byRows ? cols : rows;
  const vecs: Float64Array[] = [];
  for (let i = 0; i < count; i++) {
    const v = new Float64Array(len);
    for (let j = 0; j < len; j++) v[j] = byRows ? g[i * cols + j]! : g[j * cols + i]!;
    for (let pass = 0; pass < 2; pass++) {
      for (const u of vecs) {
        let d = 0;
        for (let j = 0; j < len; j++) d += u[j]! * v[j]!;
        for (let j = 0; j < len; j++) v[j]! -= d * u[j]!;
      }
    }
    let norm = 0;
    for (let j = 0; j < len; j++) norm += v[j]! * v[j]!;
    norm = Math.sqrt(norm) || 1;
    for (let j = 0; j < len; j++) v[j]! /= norm;
    vecs.push(v);
  }
  const out = new Float32Array(rows * cols);
  vecs.forEach((v, i) => {
    for (let j = 0; j < len; j++) out[byRows ? i * cols + j : j * cols + i] = gain * v[j]!;
  });
  return out;
}
