// CUDA kernel: fused AdamW (adamw.cu), one pass over p, grad, m, v and the optional low-precision
// copy of p, in the CPU kernel's order of operations. Bias corrections and the decay factor are
// computed here in f64, once per call.

import { registerKernel } from '../../../tensor/engine.js';
import { cuda, ptr } from './util.js';

registerKernel('adamw', 'cuda', ([p, g, m, v, lowp], { lr, beta1, beta2, eps, weightDecay, step, gradScale }, backend) => {
  const be = cuda(backend);
  for (const [t, what] of [[p, 'param'], [m, 'exp_avg'], [v, 'exp_avg_sq']] as const) {
    if (t!.dtype !== 'f32') throw new Error(`adamw: ${what} must be f32, got ${t!.dtype}`);
  }
  if (g!.dtype !== 'f32' && g!.dtype !== 'bf16') throw new Error(`adamw: grad must be f32 or bf16, got ${g!.dtype}`);
  if (lowp && lowp.dtype !== 'bf16' && lowp.dtype !== 'f16') throw new Error(`adamw: the low-precision copy must be bf16 or f16, got ${lowp.dtype}`);
  const n = p!.numel;
  for (const t of [g, m, v, lowp]) {
    if (t && t.numel !== n) throw new Error(`adamw: [${t.shape}] does not match the parameter [${p!.shape}]`);
  }
  if (!(step >= 1)) throw new Error(`adamw: step counts from 1, got ${step}`);
  const decay = 1 - lr * weightDecay;
  const stepSize = lr / (1 - beta1 ** step);
  const rsqrtBc2 = 1 / Math.sqrt(1 - beta2 ** step);
  const name = lowp ? `adamw_${g!.dtype}_${lowp.dtype}` : `adamw_${g!.dtype}`;
  const scalars = [n, decay, stepSize, beta1, beta2, eps, rsqrtBc2, gradScale];
  if (lowp) {
    be.kernel('adamw.cu', name, 'ppppplfffffff').launch(be.grid(n), 256, ptr(p!), ptr(g!), ptr(m!), ptr(v!), ptr(lowp), ...scalars);
  } else {
    be.kernel('adamw.cu', name, 'pppplfffffff').launch(be.grid(n), 256, ptr(p!), ptr(g!), ptr(m!), ptr(v!), ...scalars);
  }
  return [];
});
