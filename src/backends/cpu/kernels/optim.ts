// CPU kernel: the fused AdamW step, in place; no outputs, no gradient.
//   adamw   (param, grad, m, v[, paramLowp]) with torch.optim.AdamW's order of operations:
//             g      = grad · gradScale                      (loss-scale unscaling / clip coefficient)
//             param *= 1 − lr · weightDecay                   (decoupled decay, before the update)
//             m      = β1 · m + (1 − β1) · g
//             v      = β2 · v + (1 − β2) · g²
//             param −= (lr / (1 − β1^step)) · m / (√v / √(1 − β2^step) + eps)
//           `step` is the 1-based number of this update. Arithmetic is f64; m, v and the decayed
//           param are stored (rounded to f32) before use, as torch's in-place f32 ops do. paramLowp (bf16 or f16, same length) is refreshed
//           from the new param with round-to-nearest-even. With `scaleInput`, the last input is a
//           [] f32 factor multiplied into gradScale; a non-finite factor leaves everything untouched.
//   adamwMulti  adamw over (p, grad, m, v) × n in one call (one weight decay)
//   clipFactor  Σg² [] → [] the clip factor of torch.nn.utils.clip_grad_norm_ (NaN for a non-finite norm)

import { f32ToBf16, f32ToF16 } from '../../../tensor/dtype.js';
import { registerKernel } from '../../../tensor/engine.js';
import { arr } from '../backend.js';
import type { Tensor } from '../../../tensor/tensor.js';
import { f, out } from './util.js';

registerKernel('adamw', 'cpu', (inputs, attrs) => {
  const { scaleInput } = attrs;
  const [param, grad, m, v] = inputs;
  const lowp = inputs.length > (scaleInput ? 5 : 4) ? inputs[4] : undefined;
  const gradScale = scaledBy(attrs.gradScale, scaleInput ? inputs.at(-1)! : null);
  if (gradScale === null) return []; // overflow or a non-finite norm: the step is skipped
  adamwStep(param!, grad!, m!, v!, lowp, { ...attrs, gradScale });
  return [];
});

registerKernel('adamwMulti', 'cpu', (inputs, attrs) => {
  const n = Math.floor(inputs.length / 4);
  if (inputs.length !== 4 * n + (attrs.scaleInput ? 1 : 0)) throw new Error(`adamwMulti: ${inputs.length} inputs are not (p, grad, m, v) × n${attrs.scaleInput ? ' + scale' : ''}`);
  const gradScale = scaledBy(attrs.gradScale, attrs.scaleInput ? inputs.at(-1)! : null);
  if (gradScale === null) return [];
  for (let k = 0; k < n; k++) adamwStep(inputs[4 * k]!, inputs[4 * k + 1]!, inputs[4 * k + 2]!, inputs[4 * k + 3]!, undefined, { ...attrs, gradScale });
  return [];
});

/** gradScale × the device factor (null: the factor is not finite, skip the step). */
function scaledBy(gradScale: number, factor: Tensor | null): number | null {
  if (!factor) return gradScale;
  const s = f(factor, 'adamw scale')[0]!;
  return Number.isFinite(s) ? gradScale * s : null;
}

interface StepAttrs { lr: number; beta1: number; beta2: number; eps: number; weightDecay: number; step: number; gradScale: number }

function adamwStep(param: Tensor, grad: Tensor, m: Tensor, v: Tensor, lowp: Tensor | undefined,
  { lr, beta1, beta2, eps, weightDecay, step, gradScale }: StepAttrs): void {
  const P = f(param, 'adamw'), G = f(grad, 'adamw'), M = f(m, 'adamw'), V = f(v, 'adamw');
  const n = P.length;
  for (const t of [grad, m, v]) {
    if (t.numel !== param.numel) throw new Error(`adamw: [${t.shape}] does not match param [${param.shape}]`);
  }
  if (!Number.isInteger(step) || step < 1) throw new Error(`adamw: step must be a positive integer, got ${step}`);
  const decay = 1 - lr * weightDecay;
  const stepSize = lr / (1 - beta1 ** step);
  const rsqrtBc2 = 1 / Math.sqrt(1 - beta2 ** step);
  const b1 = 1 - beta1, b2 = 1 - beta2;
  for (let i = 0; i < n; i++) {
    const g = G[i]! * gradScale;
    M[i] = beta1 * M[i]! + b1 * g;
    V[i] = beta2 * V[i]! + b2 * g * g;
    // Read the states back as stored, and round the decayed param, like torch's f32 tensors.
    P[i] = P[i]! * decay;
    P[i] = P[i]! - (stepSize * M[i]!) / (Math.sqrt(V[i]!) * rsqrtBc2 + eps);
  }
  if (lowp) {
    if (lowp.numel !== param.numel) throw new Error(`adamw: low-precision copy [${lowp.shape}] does not match param [${param.shape}]`);
    const L = arr(lowp.storage);
    if (lowp.dtype === 'bf16') for (let i = 0; i < n; i++) L[i] = f32ToBf16(P[i]!);
    else if (lowp.dtype === 'f16') for (let i = 0; i < n; i++) L[i] = f32ToF16(P[i]!);
    else throw new Error(`adamw: the low-precision copy must be bf16 or f16, got ${lowp.dtype}`);
  }
}

registerKernel('clipFactor', 'cpu', ([sumSq], { maxNorm, normScale }, be) => {
  if (sumSq!.numel !== 1) throw new Error(`clipFactor: expects one value (Σg²), got [${sumSq!.shape}]`);
  const norm = Math.sqrt(f(sumSq!, 'clipFactor')[0]!) * normScale;
  const y = out([], 'f32', be);
  f(y, 'clipFactor')[0] = !Number.isFinite(norm) ? NaN : maxNorm > 0 && norm > maxNorm ? maxNorm / (norm + 1e-6) : 1;
  return [y];
});
