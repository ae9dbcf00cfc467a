// CPU kernels: cross-entropy fused over the vocabulary (no softmax tensor is materialized).
//   crossEntropy          logits (N, V), labels (N) i32 → loss (N), lse (N)
//   crossEntropyBackward  logits, labels, lse, dloss (N) → dlogits (N, V) = (softmax − onehot) · dloss
// lse = max + log Σ exp(logit − max), accumulated in f64. loss = lse − logit[label], computed from
// the f64 lse (so small losses keep their precision). Labels < 0 are ignored: loss 0, gradient 0.
// loss and lse are f32, or f64 when the logits are f64 (gradient checks).

import { registerKernel } from '../../../tensor/engine.js';
import type { Tensor } from '../../../tensor/tensor.js';
import { f, i32, out, sameFloatType } from './util.js';

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
  for (let n = 0; n < N; n++) {
    const o = n * V;
    let m = -Infinity;
    for (let v = 0; v < V; v++) if (X[o + v]! > m) m = X[o + v]!;
    let s = 0;
    for (let v = 0; v < V; v++) s += Math.exp(X[o + v]! - m);
    const z = m + Math.log(s);
    LSE[n] = z;
    const label = L[n]!;
    LOSS[n] = label < 0 ? 0 : z - X[o + label]!;
  }
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
  for (let n = 0; n < N; n++) {
    const o = n * V;
    const label = L[n]!;
    const d = DL[n]!;
    if (label < 0 || d === 0) {
      DX.fill(0, o, o + V);
      continue;
    }
    const z = LSE[n]!;
    for (let v = 0; v < V; v++) DX[o + v] = Math.exp(X[o + v]! - z) * d;
    DX[o + label] = DX[o + label]! - d;
  }
  return [dx];
});
