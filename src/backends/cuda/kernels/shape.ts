// CUDA kernels: permute, split, concat (shape.cu). Copies over any dtype, by element size.
// Contracts and the reference: backends/cpu/kernels/shape.ts.

import { ITEM_SIZE } from '../../../tensor/dtype.js';
import { concatPlan, permutePlan, splitPlan } from '../../../tensor/layout.js';
import { registerKernel } from '../../../tensor/engine.js';
import type { Tensor } from '../../../tensor/tensor.js';
import { cuda, out, ptr } from './util.js';

const MAX_DIMS = 6;

registerKernel('permute', 'cuda', ([x], { perm }, backend) => {
  const be = cuda(backend);
  const shape = x!.shape;
  const { outShape, dims, strides } = permutePlan(shape, perm);
  const y = out(outShape, x!.dtype, be);
  const n = x!.numel;
  if (n === 0) return [y];
  if (dims.length <= 1) {
    be.copyAsync(ptr(y), ptr(x!), y.storage.bytes);
    return [y];
  }
  if (dims.length > MAX_DIMS) throw new Error(`permute on CUDA: [${perm}] of [${shape}] needs ${dims.length} dims after merging (at most ${MAX_DIMS})`);
  while (dims.length < MAX_DIMS) {
    dims.push(1);
    strides.push(0);
  }
  const used = dims.filter((d, i) => d !== 1 || strides[i] !== 0).length;
  be.kernel('shape.cu', `permute_${ITEM_SIZE[x!.dtype]}`, 'ppli' + 'l'.repeat(2 * MAX_DIMS))
    .launch(be.grid(n), 256, ptr(x!), ptr(y), n, used, ...dims, ...strides);
  return [y];
});

/** dst rows ← src rows: `rows` runs of `run` elements, with pitches in elements. */
function copyRows(t: Tensor, src: number, dst: number, rows: number, run: number, srcPitch: number, dstPitch: number): void {
  const be = cuda(t.backend);
  const es = ITEM_SIZE[t.dtype];
  if (rows === 0 || run === 0) return;
  if (rows === 1 || (srcPitch === run && dstPitch === run)) {
    be.copyAsync(dst, src, rows * run * es);
    return;
  }
  be.kernel('shape.cu', `copy2d_${es}`, 'ppllll').launch(be.grid(rows * run), 256, src, dst, rows, run, srcPitch, dstPitch);
}

registerKernel('split', 'cuda', ([x], { axis, sizes }, backend) => {
  const be = cuda(backend);
  const shape = x!.shape;
  const { axis: a, outer, inner, total } = splitPlan(shape, sizes, axis);
  const es = ITEM_SIZE[x!.dtype];
  const ys: Tensor[] = [];
  let start = 0;
  for (const size of sizes) {
    const y = out(shape.map((d, i) => (i === a ? size : d)), x!.dtype, be);
    copyRows(x!, ptr(x!) + start * inner * es, ptr(y), outer, size * inner, total * inner, size * inner);
    ys.push(y);
    start += size;
  }
  return ys;
});

registerKernel('concat', 'cuda', (xs, { axis }, backend) => {
  const be = cuda(backend);
  const { axis: a, outer, inner, total, outShape } = concatPlan(xs, axis);
  const first = xs[0]!;
  const es = ITEM_SIZE[first.dtype];
  const y = out(outShape, first.dtype, be);
  let start = 0;
  for (const x of xs) {
    const run = x.shape[a]! * inner;
    copyRows(x, ptr(x), ptr(y) + start * inner * es, outer, run, run, total * inner);
    start += x.shape[a]!;
  }
  return [y];
});
