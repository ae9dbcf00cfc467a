// CUDA kernels: cross-entropy fused over the vocabulary, forward and backward (loss.cu).
// Contracts and the reference: backends/cpu/kernels/loss.ts. loss and lse are f32.

import { registerKernel } from '../../../tensor/engine.js';
import type { Tensor } from '../../../tensor/tensor.js';
import { cuda, floatSuffix, out, ptr } from './util.js';

function dims(logits: Tensor, labels: Tensor, kernel: string): [number, number] {
  if (logits.ndim !== 2) throw new Error(`${kernel}: logits must be [N, V], got [${logits.shape}]`);
  if (labels.dtype !== 'i32') throw new Error(`${kernel}: labels must be i32, got ${labels.dtype}`);
  const [N, V] = logits.shape as [number, number];
  if (labels.numel !== N) throw new Error(`${kernel}: ${labels.numel} labels for ${N} rows of logits`);
  // The kernels index within a row in 32 bits and launch one block per row.
  if (V > 0x7fffffff || N > 0x7fffffff) throw new Error(`${kernel}: [${N}, ${V}] logits exceed 2^31 - 1 rows or columns`);
  return [N, V];
}

/** Most threads per row; the kernels are compiled for this (CE_THREADS in loss.cu). */
const CE_THREADS = 256;
/** Logits a thread takes per step of its loop (CE_STEP in loss.cu). */
const CE_STEP = 16;

/**
 * Threads per row: CE_THREADS for a vocabulary (then many blocks fit on each SM, and 32768 rows
 * are plenty of them), fewer for narrow rows so that each thread gets at least a step of logits.
 */
function vocabBlock(V: number): number {
  return Math.min(CE_THREADS, Math.max(32, Math.ceil(V / CE_STEP / 32) * 32));
}

registerKernel('crossEntropy', 'cuda', ([logits, labels], _attrs, backend) => {
  const be = cuda(backend);
  const [N, V] = dims(logits!, labels!, 'crossEntropy');
  const t = floatSuffix(logits!.dtype, 'crossEntropy');
  const loss = out([N], 'f32', be);
  const lse = out([N], 'f32', be);
  if (N > 0) be.kernel('loss.cu', `cross_entropy_${t}`, 'pppplp').launch(N, vocabBlock(V), ptr(logits!), ptr(labels!), ptr(loss), ptr(lse), V, be.errorPtr);
  return [loss, lse];
});

registerKernel('crossEntropyBackward', 'cuda', ([logits, labels, lse, dloss], _attrs, backend) => {
  const be = cuda(backend);
  const [N, V] = dims(logits!, labels!, 'crossEntropyBackward');
  for (const [x, what] of [[lse!, 'lse'], [dloss!, 'dloss']] as const) {
    if (x.dtype !== 'f32' || x.numel !== N) throw new Error(`crossEntropyBackward: ${what} must be f32 [${N}], got ${x.dtype} [${x.shape}]`);
  }
  const t = floatSuffix(logits!.dtype, 'crossEntropyBackward');
  const dx = out([N, V], logits!.dtype, be);
  if (N > 0) be.kernel('loss.cu', `cross_entropy_backward_${t}`, 'pppppl').launch(N, vocabBlock(V), ptr(logits!), ptr(labels!), ptr(lse!), ptr(dloss!), ptr(dx), V);
  return [dx];
});
