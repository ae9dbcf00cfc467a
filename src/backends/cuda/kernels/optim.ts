// CUDA kernel: fused AdamW (adamw.cu), one pass over p, grad, m, v and the optional low-precision
// copy of p, in the CPU kernel's order of operations. Bias corrections and the decay factor are
// computed here in f64, once per call. clipFactor turns Σg² into the clip factor on the device;
// adamwMulti updates many parameters in one launch (a block per chunk of a chunk table).

import { registerKernel } from '../../../tensor/engine.js';
import { chunkTable, cuda, out, ptr } from './util.js';

registerKernel('adamw', 'cuda', (inputs, { lr, beta1, beta2, eps, weightDecay, step, gradScale, scaleInput }, backend) => {
  const be = cuda(backend);
  const [p, g, m, v] = inputs;
  const lowp = inputs.length > (scaleInput ? 5 : 4) ? inputs[4] : undefined;
  const scaleIn = scaleInput ? inputs.at(-1)! : null;
  if (scaleIn && (scaleIn.dtype !== 'f32' || scaleIn.numel !== 1)) throw new Error(`adamw: the scale input must be one f32, got [${scaleIn.shape}] ${scaleIn.dtype}`);
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
  const scalars = [n, decay, stepSize, beta1, beta2, eps, rsqrtBc2, gradScale, scaleIn ? ptr(scaleIn) : 0];
  if (lowp) {
    be.kernel('adamw.cu', name, 'ppppplfffffffp').launch(be.grid(n), 256, ptr(p!), ptr(g!), ptr(m!), ptr(v!), ptr(lowp), ...scalars);
  } else {
    be.kernel('adamw.cu', name, 'pppplfffffffp').launch(be.grid(n), 256, ptr(p!), ptr(g!), ptr(m!), ptr(v!), ...scalars);
  }
  return [];
});

registerKernel('clipFactor', 'cuda', ([sumSq], { maxNorm, normScale }, backend) => {
  const be = cuda(backend);
  if (sumSq!.numel !== 1 || sumSq!.dtype !== 'f32') throw new Error(`clipFactor: expects one f32 (Σg²), got [${sumSq!.shape}] ${sumSq!.dtype}`);
  const y = out([], 'f32', be);
  be.kernel('adamw.cu', 'clip_factor', 'ppff').launch(1, 32, ptr(sumSq!), ptr(y), maxNorm, normScale);
  return [y];
});

registerKernel('adamwMulti', 'cuda', (inputs, { lr, beta1, beta2, eps, weightDecay, step, gradScale, scaleInput }, backend) => {
  const be = cuda(backend);
  const n = Math.floor(inputs.length / 4);
  if (inputs.length !== 4 * n + (scaleInput ? 1 : 0)) throw new Error(`adamwMulti: ${inputs.length} inputs are not (p, grad, m, v) × n${scaleInput ? ' + scale' : ''}`);
  const scaleIn = scaleInput ? inputs.at(-1)! : null;
  if (scaleIn && (scaleIn.dtype !== 'f32' || scaleIn.numel !== 1)) throw new Error(`adamwMulti: the scale input must be one f32, got [${scaleIn.shape}] ${scaleIn.dtype}`);
  if (!(step >= 1)) throw new Error(`adamwMulti: step counts from 1, got ${step}`);
  const quads = Array.from({ length: n }, (_, k) => inputs.slice(4 * k, 4 * k + 4)).filter((q) => q[0]!.numel > 0);
  if (quads.length === 0) return [];
  const gradType = quads[0]![1]!.dtype;
  for (const [p, g, m, v] of quads) {
    for (const [t, what] of [[p, 'param'], [m, 'exp_avg'], [v, 'exp_avg_sq']] as const) {
      if (t!.dtype !== 'f32') throw new Error(`adamwMulti: ${what} must be f32, got ${t!.dtype}`);
    }
    if (g!.dtype !== gradType || (gradType !== 'f32' && gradType !== 'bf16')) throw new Error(`adamwMulti: grads must all be f32 or all bf16, got ${g!.dtype} and ${gradType}`);
    for (const t of [g, m, v]) if (t!.numel !== p!.numel) throw new Error(`adamwMulti: [${t!.shape}] does not match the parameter [${p!.shape}]`);
  }
  const decay = 1 - lr * weightDecay;
  const stepSize = lr / (1 - beta1 ** step);
  const rsqrtBc2 = 1 / Math.sqrt(1 - beta2 ** step);
  const { table, chunks } = chunkTable(be, quads);
  be.kernel('adamw.cu', `adamw_chunks_${gradType}`, 'pfffffffp')
    .launch(chunks, 256, table.ptr, decay, stepSize, beta1, beta2, eps, rsqrtBc2, gradScale, scaleIn ? ptr(scaleIn) : 0);
  be.releaseScratch(table);
  return [];
});
