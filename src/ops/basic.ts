// Ops: creation, casts, elementwise arithmetic, reductions, matmul, linear, reshape, embedding.
// Each op validates its arguments and calls runKernel; each gradient is registered here, once,
// in terms of ops, so it runs on every backend.

import type { DType } from '../tensor/dtype.js';
import { noGrad, registerGradient, registerKernel, runKernel, view } from '../tensor/engine.js';
import type { Backend } from '../tensor/backend.js';
import type { Tensor } from '../tensor/tensor.js';

const one = (ts: Tensor[]): Tensor => ts[0]!;

export function fill(shape: readonly number[], value: number, dtype: DType, backend: Backend): Tensor {
  return one(runKernel('fill', [], { shape: [...shape], dtype, value }, backend));
}

export function cast(x: Tensor, dtype: DType): Tensor {
  return x.dtype === dtype ? x : one(runKernel('cast', [x], { dtype }));
}
registerGradient('cast', ([dy], [x]) => [dy ? cast(dy, x!.dtype) : null], {});

// --- elementwise: b has a's shape, or a suffix of it (broadcast over a's leading dims)

function checkBroadcast(name: string, a: Tensor, b: Tensor): void {
  const s = a.shape.slice(a.ndim - b.ndim);
  if (b.ndim > a.ndim || s.some((d, i) => d !== b.shape[i])) {
    throw new Error(`${name}: shape [${b.shape}] does not broadcast to [${a.shape}] (it must equal a suffix)`);
  }
}

/** Sums a gradient of a's shape down to b's (a suffix of it). */
function reduceTo(dy: Tensor, b: Tensor): Tensor {
  if (dy.numel === b.numel) return dy;
  return reshape(one(runKernel('sumRows', [reshape(dy, [dy.numel / b.numel, b.numel])], {})), b.shape);
}

export function add(a: Tensor, b: Tensor): Tensor {
  checkBroadcast('add', a, b);
  return one(runKernel('add', [a, b], {}));
}
registerGradient('add', ([dy], [, b]) => [dy, dy && reduceTo(dy, b!)], {});

export function sub(a: Tensor, b: Tensor): Tensor {
  checkBroadcast('sub', a, b);
  return one(runKernel('sub', [a, b], {}));
}
registerGradient('sub', ([dy], [, b]) => [dy, dy && reduceTo(scale(dy, -1), b!)], {});

export function mul(a: Tensor, b: Tensor): Tensor {
  checkBroadcast('mul', a, b);
  return one(runKernel('mul', [a, b], {}));
}
registerGradient('mul', ([dy], [a, b]) => [dy && mul(dy, b!), dy && reduceTo(mul(dy, a!), b!)], { inputs: [0, 1] });

export function scale(x: Tensor, alpha: number): Tensor {
  return one(runKernel('scale', [x], { alpha }));
}
registerGradient('scale', ([dy], _x, _y, { alpha }) => [dy && scale(dy, alpha)], {});

/** a += alpha · b (no gradient; for optimizers and accumulation). */
export function addInPlace(a: Tensor, b: Tensor, alpha = 1): void {
  runKernel('addInPlace', [a, b], { alpha });
}

export function scaleInPlace(a: Tensor, alpha: number): void {
  runKernel('scaleInPlace', [a], { alpha });
}

// --- reductions

export function sum(x: Tensor): Tensor {
  return one(runKernel('sum', [x], {}));
}
registerGradient('sum', ([dy], [x]) => {
  // d(sum)/dx = 1 everywhere: broadcast the scalar gradient.
  if (!dy) return [null];
  return [mul(fill(x!.shape, 1, x!.dtype, x!.backend), reshape(dy, []))];
}, {});

export function mean(x: Tensor): Tensor {
  return scale(sum(x), 1 / x.numel);
}

/** x [R, C] → [C]. */
export function sumRows(x: Tensor): Tensor {
  return one(runKernel('sumRows', [x], {}));
}

/** Σ x² as an f32 scalar (not differentiable). */
export function sumSquares(x: Tensor): Tensor {
  return one(runKernel('sumSquares', [x], {}));
}

// --- matmul and linear

export interface MatmulOptions {
  transA?: boolean;
  transB?: boolean;
}

/** a [.., M, K] · b [.., K, N] → [.., M, N]; either may be 2-D and shared across the other's batch. */
export function matmul(a: Tensor, b: Tensor, { transA = false, transB = false }: MatmulOptions = {}): Tensor {
  return one(runKernel('matmul', [a, b], { transA, transB }));
}
registerGradient('matmul', ([dy], [a, b], _y, { transA, transB }) => {
  if (!dy) return [null, null];
  // C = op(A)·op(B): d op(A) = dC·op(B)ᵀ and d op(B) = op(A)ᵀ·dC, then undo the transposes.
  const da = transA ? matmul(b!, dy, { transA: transB, transB: true }) : matmul(dy, b!, { transB: !transB });
  const db = transB ? matmul(dy, a!, { transA: true, transB: transA }) : matmul(a!, dy, { transA: !transA });
  return [sumBatch(da, a!), sumBatch(db, b!)];
}, { inputs: [0, 1] });

/** A gradient computed per batch for an operand that was shared across the batch: sum it. */
function sumBatch(g: Tensor, x: Tensor): Tensor {
  if (g.ndim === x.ndim) return g;
  return reshape(sumRows(reshape(g, [g.numel / x.numel, x.numel])), x.shape);
}

/** nn.Linear: x [.., K] · w[N, K]ᵀ + bias [N] → [.., N]. */
export function linear(x: Tensor, w: Tensor, bias: Tensor | null = null): Tensor {
  if (w.ndim !== 2) throw new Error(`linear: weight must be 2-D [out, in], got [${w.shape}]`);
  if (bias && (bias.ndim !== 1 || bias.dim(0) !== w.dim(0))) throw new Error(`linear: bias [${bias.shape}] does not match weight [${w.shape}]`);
  return one(runKernel('linear', bias ? [x, w, bias] : [x, w], {}));
}
registerGradient('linear', ([dy], [x, w, bias]) => {
  if (!dy) return [null, null, null];
  const K = x!.dim(-1);
  const N = w!.dim(0);
  const dy2 = reshape(dy, [dy.numel / N, N]); // (R, N)
  const x2 = reshape(x!, [x!.numel / K, K]); // (R, K)
  const dx = reshape(matmul(dy2, w!), x!.shape); // (R, N)·(N, K)
  const dw = matmul(dy2, x2, { transA: true }); // (N, R)·(R, K)
  return [dx, dw, bias ? sumRows(dy2) : null];
}, { inputs: [0, 1] });

/**
 * gelu_tanh(x [.., K] · w[N, K]ᵀ + bias [N]) → [.., N] in one kernel (on CUDA, cuBLASLt's GELU
 * epilogue); equal to activation(linear(x, w, bias), 'gelu_tanh').
 */
export function linearGelu(x: Tensor, w: Tensor, bias: Tensor | null = null): Tensor {
  if (w.ndim !== 2) throw new Error(`linearGelu: weight must be 2-D [out, in], got [${w.shape}]`);
  if (bias && (bias.ndim !== 1 || bias.dim(0) !== w.dim(0))) throw new Error(`linearGelu: bias [${bias.shape}] does not match weight [${w.shape}]`);
  return runKernel('linearGelu', bias ? [x, w, bias] : [x, w], {})[0]!;
}
// Elsewhere: linear, then the activation (the reference the fused kernel is checked against).
registerKernel('linearGelu', '*', (inputs) => noGrad(() => {
  const pre = runKernel('linear', inputs, {})[0]!;
  return [runKernel('activation', [pre], { kind: 'gelu_tanh' })[0]!, pre];
}));
registerGradient('linearGelu', ([dy, dpre], [x, w, bias], [, pre]) => {
  if (dpre) throw new Error('linearGelu: the pre-activation output is for the gradient; gradients through it are not supported');
  if (!dy) return [null, null, null];
  const dh = runKernel('activationBackward', [pre!, dy], { kind: 'gelu_tanh' })[0]!; // (.., N)
  const K = x!.dim(-1);
  const N = w!.dim(0);
  const dh2 = reshape(dh, [dh.numel / N, N]); // (R, N)
  const x2 = reshape(x!, [x!.numel / K, K]); // (R, K)
  const dx = reshape(matmul(dh2, w!), x!.shape); // (R, N)·(N, K)
  const dw = matmul(dh2, x2, { transA: true }); // (N, R)·(R, K)
  return [dx, dw, bias ? sumRows(dh2) : null];
}, { inputs: [0, 1], outputs: [1] });

// --- reshape: a view, backend-independent

export function reshape(x: Tensor, shape: readonly number[]): Tensor {
  const known = shape.filter((d) => d !== -1).reduce((a, b) => a * b, 1);
  const resolved = shape.map((d) => (d === -1 ? x.numel / known : d));
  const n = resolved.reduce((a, b) => a * b, 1);
  if (n !== x.numel || !resolved.every(Number.isInteger)) {
    throw new Error(`reshape: cannot view [${x.shape}] (${x.numel} elements) as [${shape}]`);
  }
  return one(runKernel('reshape', [x], { shape: resolved }));
}
registerKernel('reshape', '*', ([x], { shape }) => [view(x!, shape)]);
registerGradient('reshape', ([dy], [x]) => [dy && reshape(dy, x!.shape)], {});

// --- embedding

/** ids [..] i32, w [V, C] → [.., C]. */
export function embedding(ids: Tensor, w: Tensor): Tensor {
  if (ids.dtype !== 'i32') throw new Error(`embedding: ids must be i32, got ${ids.dtype}`);
  return one(runKernel('embedding', [ids, w], {}));
}
registerGradient('embedding', ([dy], [ids, w]) => [null, dy && one(runKernel('embeddingBackward', [ids!, dy], { vocab: w!.dim(0) }))], { inputs: [0] });
