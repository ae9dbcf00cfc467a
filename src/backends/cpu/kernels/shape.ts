// CPU kernels: permute, split, concat. Copies over any dtype's host array (bf16/f16 as raw words).
//   permute  strided gather; dims that stay adjacent are merged first, rows copied as blocks
//            (split over the worker pool by output runs)
//   split    per output, one block copy per outer index
//   concat   per input, one block copy per outer index

import { permutePlan } from '../../../tensor/layout.js';
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

function normAxis(axis: number, ndim: number, kernel: string): number {
  const a = axis < 0 ? axis + ndim : axis;
  if (!Number.isInteger(a) || a < 0 || a >= ndim) throw new Error(`${kernel}: axis ${axis} out of range for ${ndim} dims`);
  return a;
}

function prod(xs: readonly number[], from = 0, to = xs.length): number {
  let p = 1;
  for (let i = from; i < to; i++) p *= xs[i]!;
  return p;
}

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
  const a = normAxis(axis, shape.length, 'split');
  const total = sizes.reduce((p, q) => p + q, 0);
  if (sizes.some((s) => !Number.isInteger(s) || s < 0) || total !== shape[a]) {
    throw new Error(`split: sizes [${sizes}] do not add up to dim ${a} (${shape[a]}) of [${shape}]`);
  }
  const outer = prod(shape, 0, a);
  const inner = prod(shape, a + 1);
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
  if (xs.length === 0) throw new Error('concat: no inputs');
  const first = xs[0]!;
  const a = normAxis(axis, first.ndim, 'concat');
  let total = 0;
  for (const x of xs) {
    if (x.dtype !== first.dtype) throw new Error(`concat: dtypes differ (${first.dtype} and ${x.dtype})`);
    if (x.ndim !== first.ndim || x.shape.some((d, i) => i !== a && d !== first.shape[i])) {
      throw new Error(`concat: shapes [${first.shape}] and [${x.shape}] differ outside axis ${a}`);
    }
    total += x.shape[a]!;
  }
  const outer = prod(first.shape, 0, a);
  const inner = prod(first.shape, a + 1);
  const rowOut = total * inner;
  const y = out(first.shape.map((d, i) => (i === a ? total : d)), first.dtype, be);
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
