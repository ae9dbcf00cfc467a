// CPU kernels: matmul (batched, with transposes) and linear (x · wᵀ + b).

import { registerKernel } from '../../../tensor/engine.js';
import type { Tensor } from '../../../tensor/tensor.js';
import { gemm } from '../pool.js';
import { f, out, sameFloatType } from './util.js';

/** Shapes of a batched matmul: batch dims, M, N, K, and whether b is shared across the batch. */
export function matmulShape(a: Tensor, b: Tensor, transA: boolean, transB: boolean) {
  if (a.ndim < 2 || b.ndim < 2) throw new Error(`matmul: operands need at least 2 dims, got [${a.shape}] and [${b.shape}]`);
  const M = transA ? a.dim(-1) : a.dim(-2);
  const K = transA ? a.dim(-2) : a.dim(-1);
  const Kb = transB ? b.dim(-1) : b.dim(-2);
  const N = transB ? b.dim(-2) : b.dim(-1);
  if (K !== Kb) throw new Error(`matmul: inner dims differ: [${a.shape}]${transA ? 'ᵀ' : ''} · [${b.shape}]${transB ? 'ᵀ' : ''}`);
  const batchA = a.shape.slice(0, -2);
  const batchB = b.shape.slice(0, -2);
  const sharedA = batchA.length === 0 && batchB.length > 0;
  const sharedB = batchB.length === 0;
  if (!sharedA && !sharedB && batchA.join(',') !== batchB.join(',')) {
    throw new Error(`matmul: batch dims differ: [${a.shape}] and [${b.shape}]`);
  }
  const batchDims = sharedA ? batchB : batchA;
  const batch = batchDims.reduce((x, y) => x * y, 1);
  return { batchDims, batch, M, N, K, sharedA, sharedB };
}

registerKernel('matmul', 'cpu', ([a, b], { transA, transB }, be) => {
  sameFloatType(a!, b!, 'matmul');
  const { batchDims, batch, M, N, K, sharedA, sharedB } = matmulShape(a!, b!, transA, transB);
  const y = out([...batchDims, M, N], a!.dtype, be);
  const A = f(a!, 'matmul'), B = f(b!, 'matmul'), C = f(y, 'matmul');
  if (sharedB && !transA) {
    // One big GEMM: the batch folds into M.
    gemm({ A, aOff: 0, B, bOff: 0, C, cOff: 0, M: batch * M, N, K, transA, transB, accumulate: false });
  } else {
    for (let i = 0; i < batch; i++) {
      gemm({ A, aOff: sharedA ? 0 : i * M * K, B, bOff: sharedB ? 0 : i * K * N, C, cOff: i * M * N, M, N, K, transA, transB, accumulate: false });
    }
  }
  return [y];
});

registerKernel('linear', 'cpu', ([x, w, bias], _attrs, be) => {
  sameFloatType(x!, w!, 'linear');
  const K = x!.dim(-1);
  const [N, Kw] = w!.shape as [number, number];
  if (K !== Kw) throw new Error(`linear: input has ${K} features, weight [${w!.shape}] expects ${Kw}`);
  const rows = x!.numel / K;
  const y = out([...x!.shape.slice(0, -1), N], x!.dtype, be);
  const Y = f(y, 'linear');
  if (bias) {
    // Start every row at the bias and let the GEMM accumulate onto it (one pass over Y, not two).
    const Bv = f(bias, 'linear');
    for (let r = 0; r < rows; r++) Y.set(Bv, r * N);
  }
  gemm({ A: f(x!, 'linear'), aOff: 0, B: f(w!, 'linear'), bOff: 0, C: Y, cOff: 0, M: rows, N, K, transA: false, transB: true, accumulate: bias !== undefined });
  return [y];
});
