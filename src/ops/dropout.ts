// Ops: dropout with a counter-based Philox mask, identical on every backend.
//   dropout(x, p, seed, offset)   y = x · keep / (1 − p); element i draws stream position offset + i
// The caller owns the (seed, offset) bookkeeping: give each dropout site in a step a distinct
// range of positions (e.g. advance offset by x.numel). The gradient re-runs the same kernel on dy
// with the same seed and offset, so the mask is regenerated rather than stored.

import { registerGradient, runKernel } from '../tensor/engine.js';
import { PHILOX_MAX_SEED } from '../tensor/philox.js';
import type { Tensor } from '../tensor/tensor.js';

export function dropout(x: Tensor, p: number, seed: number, offset: number): Tensor {
  if (!(p >= 0 && p <= 1)) throw new Error(`dropout: p must be in [0, 1], got ${p}`);
  if (p === 0) return x;
  for (const [what, v] of [['seed', seed], ['offset', offset]] as const) {
    if (!Number.isInteger(v) || v < 0 || v > PHILOX_MAX_SEED) throw new Error(`dropout: ${what} must be an integer in [0, 2^53), got ${v}`);
  }
  if (offset + x.numel - 1 > PHILOX_MAX_SEED) throw new Error(`dropout: offset ${offset} + ${x.numel} elements passes 2^53`);
  return runKernel('dropout', [x], { p, seed, offset })[0]!;
}
registerGradient('dropout', ([dy], _x, _y, attrs) => [dy && runKernel('dropout', [dy], attrs)[0]!], {});
