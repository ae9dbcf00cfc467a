// Ops: losses.
//   crossEntropy(logits, labels)   fused over the vocabulary → { loss [N], lse [N] }; labels < 0 ignored
//   maskedMeanLoss(loss, mask, Σmask?)  Σ(loss · mask) / Σ mask   (GPT-NeoX's loss-mask average)
//   hostSum(t)                     Σ t on the host

import { registerGradient, runKernel } from '../tensor/engine.js';
import type { Tensor } from '../tensor/tensor.js';
import { cast, mul, scale, sum } from './basic.js';

/**
 * Per-row cross-entropy of logits [N, V] against labels [N] (i32; < 0 means "ignore": loss 0 and
 * no gradient). Returns the loss and the row log-sum-exp (a statistic: no gradient flows through it).
 */
export function crossEntropy(logits: Tensor, labels: Tensor): { loss: Tensor; lse: Tensor } {
  if (logits.ndim !== 2) throw new Error(`crossEntropy: logits must be [N, V], got [${logits.shape}]`);
  if (labels.dtype !== 'i32') throw new Error(`crossEntropy: labels must be i32, got ${labels.dtype}`);
  if (labels.ndim !== 1 || labels.dim(0) !== logits.dim(0)) {
    throw new Error(`crossEntropy: labels [${labels.shape}] do not match logits [${logits.shape}]`);
  }
  const [loss, lse] = runKernel('crossEntropy', [logits, labels], {}); // (N), (N)
  return { loss: loss!, lse: lse! };
}
registerGradient('crossEntropy', ([dloss, dlse], [logits, labels], [, lse]) => {
  if (dlse) throw new Error('crossEntropy: lse is a statistic; gradients through it are not supported');
  if (!dloss) return [null, null];
  return [runKernel('crossEntropyBackward', [logits!, labels!, lse!, dloss], {})[0]!, null];
}, { inputs: [0, 1], outputs: [1] });

/**
 * Σ(loss · mask) / Σ mask over all elements (0 when the mask is all zero). Σ mask is a host number:
 * pass `maskSum` when the caller has it (the trainer counts its host copy), else the mask is read back.
 */
export function maskedMeanLoss(loss: Tensor, mask: Tensor, maskSum?: number): Tensor {
  if (mask.shape.length !== loss.shape.length || mask.shape.some((d, i) => d !== loss.shape[i])) {
    throw new Error(`maskedMeanLoss: mask [${mask.shape}] does not match loss [${loss.shape}]`);
  }
  const total = maskSum ?? hostSum(mask);
  return scale(sum(mul(loss, cast(mask, loss.dtype))), total === 0 ? 0 : 1 / total);
}

/** Σ of a tensor's values, read back to the host (waits for the device). */
export function hostSum(t: Tensor): number {
  const host = t.dtype === 'f64' ? t.toArray() : t.toFloat32();
  let total = 0;
  for (let i = 0; i < host.length; i++) total += host[i]!;
  return total;
}
