// CPU kernels: fill, cast, elementwise arithmetic, in-place updates, reductions, embedding.
// add / sub / mul and sumRows run on the worker pool (parallelFor) when large.

import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16, type HostArray } from '../../../tensor/dtype.js';
import { registerKernel } from '../../../tensor/engine.js';
import { arr } from '../backend.js';
import { parallelFor, releaseShareable, shareable } from '../pool.js';
import { f, i32, out, sameFloatType } from './util.js';

/** Elements per thread below which a cheap elementwise loop or reduction is not split. */
const ELEMENT_GRAIN = 32768;

registerKernel('fill', 'cpu', (_inputs, { shape, dtype, value }, be) => {
  const y = out(shape, dtype, be);
  const word = dtype === 'bf16' ? f32ToBf16(value) : dtype === 'f16' ? f32ToF16(value) : value;
  arr(y.storage).fill(word);
  return [y];
});

registerKernel('cast', 'cpu', ([x], { dtype }, be) => {
  const y = out(x!.shape, dtype, be);
  const src = arr(x!.storage);
  const dst = arr(y.storage);
  const n = x!.numel;
  const read: (v: number) => number = x!.dtype === 'bf16' ? bf16ToF32 : x!.dtype === 'f16' ? f16ToF32 : (v) => v;
  const write: (v: number) => number = dtype === 'bf16' ? f32ToBf16 : dtype === 'f16' ? f32ToF16 : dtype === 'i32' || dtype === 'u16' || dtype === 'u8' ? Math.trunc : (v) => v;
  for (let i = 0; i < n; i++) dst[i] = write(read(src[i]!));
  return [y];
});

/** a op b where b's shape equals a's or is a suffix of it (broadcast over a's leading dims). */
function binary(name: 'add' | 'sub' | 'mul', op: 0 | 1 | 2) {
  registerKernel(name, 'cpu', ([a, b], _attrs, be) => {
    sameFloatType(a!, b!, name);
    const A = f(a!, name);
    const B = f(b!, name);
    const y = out(a!.shape, a!.dtype, be);
    const Y = f(y, name);
    const n = A.length;
    const m = B.length;
    if (n % m !== 0) throw new Error(`${name}: cannot broadcast [${b!.shape}] to [${a!.shape}]`);
    // The loops live in ../tasks.ts (split by elements, or by rows of m when b is broadcast).
    if (m === n) parallelFor('binary', { op, A, B, Y, m, full: true }, n, ELEMENT_GRAIN);
    else {
      const Bs = shareable(B);
      parallelFor('binary', { op, A, B: Bs, Y, m, full: false }, n / m, Math.ceil(ELEMENT_GRAIN / Math.max(1, m)));
      releaseShareable();
    }
    return [y];
  });
}
binary('add', 0);
binary('sub', 1);
binary('mul', 2);

registerKernel('scale', 'cpu', ([x], { alpha }, be) => {
  const X = f(x!, 'scale');
  const y = out(x!.shape, x!.dtype, be);
  const Y = f(y, 'scale');
  for (let i = 0; i < X.length; i++) Y[i] = alpha * X[i]!;
  return [y];
});

registerKernel('addInPlace', 'cpu', ([a, b], { alpha }) => {
  sameFloatType(a!, b!, 'addInPlace');
  const A = f(a!, 'addInPlace');
  const B = f(b!, 'addInPlace');
  if (A.length !== B.length) throw new Error(`addInPlace: shapes differ ([${a!.shape}] and [${b!.shape}])`);
  for (let i = 0; i < A.length; i++) A[i] = A[i]! + alpha * B[i]!;
  return [];
});

registerKernel('scaleInPlace', 'cpu', ([a], { alpha }) => {
  const A = f(a!, 'scaleInPlace');
  for (let i = 0; i < A.length; i++) A[i] = alpha * A[i]!;
  return [];
});

registerKernel('sum', 'cpu', ([x], _attrs, be) => {
  const X = f(x!, 'sum');
  let s = 0;
  for (let i = 0; i < X.length; i++) s += X[i]!;
  const y = out([], x!.dtype, be);
  f(y, 'sum')[0] = s;
  return [y];
});

registerKernel('sumRows', 'cpu', ([x], _attrs, be) => {
  const X = f(x!, 'sumRows');
  const C = x!.dim(-1);
  const R = x!.numel / C;
  const y = out([C], x!.dtype, be);
  // By columns (../tasks.ts), each summed over the rows in order in f64, as on one thread.
  const Y = f(y, 'sumRows'), Ys = shareable(Y);
  parallelFor('sumRows', { X, Y: Ys, R, C }, C, Math.ceil(ELEMENT_GRAIN / Math.max(1, R)));
  if (Ys !== Y) Y.set(Ys);
  releaseShareable();
  return [y];
});

registerKernel('sumSquares', 'cpu', (xs, _attrs, be) => {
  let s = 0;
  for (const x of xs) {
    const X = f(x, 'sumSquares');
    for (let i = 0; i < X.length; i++) s += X[i]! * X[i]!;
  }
  const y = out([], 'f32', be);
  f(y, 'sumSquares')[0] = s;
  return [y];
});

registerKernel('embedding', 'cpu', ([ids, w], _attrs, be) => {
  const I = i32(ids!, 'embedding');
  const W = f(w!, 'embedding');
  const [V, C] = w!.shape as [number, number];
  const y = out([...ids!.shape, C], w!.dtype, be);
  const Y = f(y, 'embedding');
  for (let n = 0; n < I.length; n++) {
    const id = I[n]!;
    if (id < 0 || id >= V) throw new Error(`embedding: token id ${id} out of range [0, ${V})`);
    Y.set(W.subarray(id * C, id * C + C), n * C);
  }
  return [y];
});

registerKernel('embeddingBackward', 'cpu', ([ids, dy], { vocab }, be) => {
  const I = i32(ids!, 'embeddingBackward');
  const DY = f(dy!, 'embeddingBackward');
  const C = dy!.dim(-1);
  const dw = out([vocab, C], dy!.dtype, be);
  const DW = f(dw, 'embeddingBackward');
  DW.fill(0);
  for (let n = 0; n < I.length; n++) {
    const o = I[n]! * C;
    const s = n * C;
    for (let c = 0; c < C; c++) DW[o + c] += DY[s + c]!;
  }
  return [dw];
});

export type { HostArray };
