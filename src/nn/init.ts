// GPT-NeoX's weight initialisation methods (megatron/model/init_functions.py), computed on the
// host from the Philox generator so that every backend and every run with the same seed gets the
// same weights.

import { normal, uniform } from '../tensor/philox.js';

export type InitMethod =
  | 'normal' | 'scaled_normal' | 'orthogonal' | 'scaled_orthogonal' | 'xavier_uniform' | 'xavier_normal'
  | 'wang_init' | 'small_init' | 'single_residual_scaled_normal';

export interface InitContext {
  seed: number;
  std: number; // init_method_std
  numLayers: number;
  hiddenSize: number;
}

/** Values for a [rows, cols] weight (nn.Linear layout [out, in]) drawn with `method`. `stream` separates parameters. */
export function initWeight(method: InitMethod, rows: number, cols: number, ctx: InitContext, stream: number): Float32Array {
  const n = rows * cols;
  const offset = stream * 2 ** 32; // each parameter draws from its own counter range
  const gaussian = (std: number): Float32Array => {
    const v = normal(ctx.seed, offset, n);
    for (let i = 0; i < n; i++) v[i]! *= std;
    return v;
  };
  switch (method) {
    case 'normal': return gaussian(ctx.std);
    case 'scaled_normal': return gaussian(ctx.std / Math.sqrt(2 * ctx.numLayers));
    case 'single_residual_scaled_normal': return gaussian(ctx.std / Math.sqrt(ctx.numLayers));
    case 'small_init': return gaussian(Math.sqrt(2 / (5 * ctx.hiddenSize)));
    case 'wang_init': return gaussian((2 / ctx.numLayers) / Math.sqrt(ctx.hiddenSize));
    case 'xavier_normal': return gaussian(Math.sqrt(2 / (rows + cols)));
    case 'xavier_uniform': {
      const a = Math.sqrt(6 / (rows + cols));
      const u = uniform(ctx.seed, offset, n);
      for (let i = 0; i < n; i++) u[i] = (2 * u[i]! - 1) * a;
      return u;
    }
    case 'orthogonal': return orthogonal(gaussian(1), rows, cols, 1);
    case 'scaled_orthogonal': return orthogonal(gaussian(1), rows, cols, 2 / Math.sqrt(2 * ctx.numLayers));
  }
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
