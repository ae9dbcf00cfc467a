// CPU kernels: permute, split, concat. Copies over any dtype's host array (bf16/f16 as raw words).
//   permute  strided gather; dims that stay adjacent are merged first, rows copied as blocks
//            (split over the worker pool by output runs)
//   split    per output, one block copy per outer index
//   concat   per input, one block copy per outer index

import { concatPlan, permutePlan, splitPlan } from '../../../tensor/layout.js';
import { registerKernel } from '../../../tensor/engine.js';
import type { HostArray } from '../../../tensor/dtype.js';
import type { Tensor } from '../../../tensor/tensor.js';
import { arr } from '../backend.js';
import { parallelFor } from '../pool.js';
import { out } from './util.js';

/** Elements per thread below which a permute is not split. */
const PERMUTE_GRAIN = 32768;

/** Below this many elements a contiguous run is copied by a loop rather than subarray + set. */
const BLOCK_COPY_MIN = 16;

function copyRun(dst: HostArray, dOff: number, src: HostArray, sOff: number, len: number): void {
  if (len >= BLOCK_COPY_MIN) dst.set(src.subarray(sOff, sOff + len), dOff);
  else for (let i = 0; i < len; i++) dst[dOff + i] = src[sOff + i]!;
}

registerKernel('permute', 'cpu', ([x], { perm }, be) => {
  const { outShape, dims, strides } = permutePlan(x!.shape, perm);
  const y = out(outShape, x!.dtype, be);
  const X = arr(x!.storage);
  const Y = arr(y.storage);
  if (x!.numel === 0) return [y];
  if (dims.length <= 1) {
    Y.set(X.subarray(0, x!.numel));
    return [y];
  }

  // Odometer over all output dims but the last; the last is a run of dims[m] elements at stride
  // strides[m]. The runs are split over the worker pool (../tasks.ts).
  const len = dims[dims.length - 1]!;
  parallelFor('permute', { X, Y, dims, strides }, x!.numel / len, Math.ceil(PERMUTE_GRAIN / len));
  return [y];
});

registerKernel('split', 'cpu', ([x], { axis, sizes }, be) => {
  const shape = x!.shape;
  const { axis: a, outer, inner, total } = splitPlan(shape, sizes, axis);
  const rowIn = total * inner;
  const X = arr(x!.storage);
  const ys: Tensor[] = [];
  let start = 0;
  for (const size of sizes) {
    const y = out(shape.map((d, i) => (i === a ? size : d)), x!.dtype, be);
    const Y = arr(y.storage);
    const run = size * inner;
    if (run > 0) for (let o = 0; o < outer; o++) copyRun(Y, o * run, X, o * rowIn + start * inner, run);
    ys.push(y);
    start += size;
  }
  return ys;
});

registerKernel('concat', 'cpu', (xs, { axis }, be) => {
  const { axis: a, outer, inner, total, outShape } = concatPlan(xs, axis);
  const first = xs[0]!;
  const rowOut = total * inner;
  const y = out(outShape, first.dtype, be);
  const Y = arr(y.storage);
  let start = 0;
  for (const x of xs) {
    const X = arr(x.storage);
    const run = x.shape[a]! * inner;
    if (run > 0) for (let o = 0; o < outer; o++) copyRun(Y, o * rowOut + start * inner, X, o * run, run);
    start += x.shape[a]!;
  }
  return [y];
});
