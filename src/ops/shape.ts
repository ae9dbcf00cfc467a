// Ops: permute, split, concat (copies), with their gradients.
//   permute(x, perm)        gradient: permute by the inverse permutation
//   split(x, sizes, axis)   gradient: concat of the output gradients (zeros where one got none)
//   concat(xs, axis)        gradient: split of the output gradient

import { registerGradient, runKernel } from '../tensor/engine.js';
import type { Tensor } from '../tensor/tensor.js';
import { fill } from './basic.js';

function normAxis(name: string, axis: number, ndim: number): number {
  const a = axis < 0 ? axis + ndim : axis;
  if (!Number.isInteger(a) || a < 0 || a >= ndim) throw new Error(`${name}: axis ${axis} out of range for a ${ndim}-dim tensor`);
  return a;
}

/** x permuted so that output dim i is input dim perm[i] (a copy). */
export function permute(x: Tensor, perm: readonly number[]): Tensor {
  const p = perm.map((d) => (d < 0 ? d + x.ndim : d));
  if (p.length !== x.ndim || [...p].sort((a, b) => a - b).some((d, i) => d !== i)) {
    throw new Error(`permute: [${perm}] is not a permutation of the dims of [${x.shape}]`);
  }
  return runKernel('permute', [x], { perm: p })[0]!;
}
registerGradient('permute', ([dy], _x, _y, { perm }) => {
  if (!dy) return [null];
  const inv = new Array<number>(perm.length);
  perm.forEach((p, i) => (inv[p] = i));
  return [runKernel('permute', [dy], { perm: inv })[0]!];
}, {});

/** x split along `axis` into pieces of `sizes` (which must add up to that dim). */
export function split(x: Tensor, sizes: readonly number[], axis = -1): Tensor[] {
  const a = normAxis('split', axis, x.ndim);
  const total = sizes.reduce((p, q) => p + q, 0);
  if (sizes.length === 0 || sizes.some((s) => !Number.isInteger(s) || s < 0) || total !== x.shape[a]) {
    throw new Error(`split: sizes [${sizes}] do not add up to dim ${a} (${x.shape[a]}) of [${x.shape}]`);
  }
  return runKernel('split', [x], { axis: a, sizes: [...sizes] });
}
registerGradient('split', (dys, [x], ys, { axis }) => {
  if (dys.every((d) => d === null)) return [null];
  const parts = dys.map((d, i) => d ?? fill(ys[i]!.shape, 0, x!.dtype, x!.backend));
  return [runKernel('concat', parts, { axis })[0]!];
}, {});

/** xs concatenated along `axis` (all other dims equal). */
export function concat(xs: readonly Tensor[], axis = -1): Tensor {
  if (xs.length === 0) throw new Error('concat: no inputs');
  const first = xs[0]!;
  const a = normAxis('concat', axis, first.ndim);
  for (const x of xs) {
    if (x.dtype !== first.dtype) throw new Error(`concat: dtypes differ (${first.dtype} and ${x.dtype})`);
    if (x.ndim !== first.ndim || x.shape.some((d, i) => i !== a && d !== first.shape[i])) {
      throw new Error(`concat: shapes [${first.shape}] and [${x.shape}] differ outside axis ${a}`);
    }
  }
  return runKernel('concat', [...xs], { axis: a })[0]!;
}
registerGradient('concat', ([dy], xs, _y, { axis }) => {
  if (!dy) return xs.map(() => null);
  return runKernel('split', [dy], { axis, sizes: xs.map((x) => x.shape[axis]!) });
}, {});
