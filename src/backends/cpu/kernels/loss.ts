// CPU kernels: cross-entropy fused over the vocabulary (no softmax tensor is materialized).
//   crossEntropy          logits (N, V), labels (N) i32 → loss (N), lse (N)
//   crossEntropyBackward  logits, labels, lse, dloss (N) → dlogits (N, V) = (softmax − onehot) · dloss
// lse = max + log Σ exp(logit − max), accumulated in f64. loss = lse − logit[label], computed from
// the f64 lse (so small losses keep their precision). Labels < 0 are ignored: loss 0, gradient 0.
// loss and lse are f32, or f64 when the logits are f64 (gradient checks).

import { registerKernel } from '../../../tensor/engine.js';
import type { Tensor } from '../../../tensor/tensor.js';
import { parallelFor, releaseShareable, shareable } from '../pool.js';
import { f, i32, out, sameFloatType } from './util.js';

/** Logits per thread below which the loss is not split (the rows' loops live in ../tasks.ts). */
const CE_GRAIN = 8192;

function dims(logits: Tensor, labels: Tensor, kernel: string): [number, number] {
  if (logits.ndim !== 2) throw new Error(`${kernel}: logits must be [N, V], got [${logits.shape}]`);
  const [N, V] = logits.shape as [number, number];
  if (labels.numel !== N) throw new Error(`${kernel}: ${labels.numel} labels for ${N} rows of logits`);
  const L = i32(labels, kernel);
  for (let n = 0; n < N; n++) {
    if (L[n]! >= V) throw new Error(`${kernel}: label ${L[n]} at row ${n} out of range [0, ${V})`);
  }
  return [N, V];
}

registerKernel('crossEntropy', 'cpu', ([logits, labels], _attrs, be) => {
  const [N, V] = dims(logits!, labels!, 'crossEntropy');
  const X = f(logits!, 'crossEntropy');
  const L = i32(labels!, 'crossEntropy');
  const st = logits!.dtype === 'f64' ? 'f64' : 'f32';
  const loss = out([N], st, be);
  const lse = out([N], st, be);
  const LOSS = f(loss, 'crossEntropy'), LSE = f(lse, 'crossEntropy');
  const Ls = shareable(L), LOSSs = shareable(LOSS), LSEs = shareable(LSE);
  parallelFor('crossEntropy', { X, L: Ls, LOSS: LOSSs, LSE: LSEs, V }, N, Math.ceil(CE_GRAIN / Math.max(1, V)));
  if (LOSSs !== LOSS) LOSS.set(LOSSs);
  if (LSEs !== LSE) LSE.set(LSEs);
  releaseShareable();
  return [loss, lse];
});

registerKernel('crossEntropyBackward', 'cpu', ([logits, labels, lse, dloss], _attrs, be) => {
  const [N, V] = dims(logits!, labels!, 'crossEntropyBackward');
  sameFloatType(lse!, dloss!, 'crossEntropyBackward');
  const X = f(logits!, 'crossEntropyBackward');
  const L = i32(labels!, 'crossEntropyBackward');
  const LSE = f(lse!, 'crossEntropyBackward'), DL = f(dloss!, 'crossEntropyBackward');
  const dx = out([N, V], logits!.dtype, be);
  const DX = f(dx, 'crossEntropyBackward');
  parallelFor('crossEntropyBackward', { X, L: shareable(L), LSE: shareable(LSE), DL: shareable(DL), DX, V }, N, Math.ceil(CE_GRAIN / Math.max(1, V)));
  releaseShareable();
  return [dx];
});
