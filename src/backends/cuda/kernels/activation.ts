// CUDA kernels: activations, gated activations and softmax, forward and backward (activation.cu).
// Contracts and the reference: backends/cpu/kernels/activation.ts.

import type { ActivationKind } from '../../../tensor/kernels.js';
import { registerKernel } from '../../../tensor/engine.js';
import { cuda, floatSuffix, out, ptr, rowBlock, sameDtype } from './util.js';

const KINDS = new Set<ActivationKind>(['gelu', 'gelu_tanh', 'relu', 'silu']);

function kindName(kind: ActivationKind, kernel: string): string {
  if (!KINDS.has(kind)) throw new Error(`${kernel}: unknown kind '${kind as string}'`);
  return kind;
}

registerKernel('activation', 'cuda', ([x], { kind }, backend) => {
  const be = cuda(backend);
  const t = floatSuffix(x!.dtype, 'activation');
  const y = out(x!.shape, x!.dtype, be);
  const n = x!.numel;
  be.kernel('activation.cu', `act_${kindName(kind, 'activation')}_${t}`, 'ppl').launch(be.grid(n), 256, ptr(x!), ptr(y), n);
  return [y];
});

registerKernel('activationBackward', 'cuda', ([x, dy], { kind }, backend) => {
  const be = cuda(backend);
  sameDtype(x!, dy!, 'activationBackward');
  if (dy!.numel !== x!.numel) throw new Error(`activationBackward: dy [${dy!.shape}] does not match x [${x!.shape}]`);
  const t = floatSuffix(x!.dtype, 'activationBackward');
  const dx = out(x!.shape, x!.dtype, be);
  const n = x!.numel;
  be.kernel('activation.cu', `act_backward_${kindName(kind, 'activationBackward')}_${t}`, 'pppl').launch(be.grid(n), 256, ptr(x!), ptr(dy!), ptr(dx), n);
  return [dx];
});

function halves(shape: readonly number[], numel: number, kernel: string): [number, number] {
  const C = shape[shape.length - 1];
  if (C === undefined || C % 2 !== 0) throw new Error(`${kernel}: last dim of [${shape}] must be even (up ‖ gate)`);
  return [C === 0 ? 0 : numel / C, C / 2];
}

registerKernel('gatedActivation', 'cuda', ([x], { kind }, backend) => {
  const be = cuda(backend);
  const [R, F] = halves(x!.shape, x!.numel, 'gatedActivation');
  const t = floatSuffix(x!.dtype, 'gatedActivation');
  const y = out([...x!.shape.slice(0, -1), F], x!.dtype, be);
  const n = R * F;
  be.kernel('activation.cu', `gated_${kindName(kind, 'gatedActivation')}_${t}`, 'ppll').launch(be.grid(n), 256, ptr(x!), ptr(y), n, F);
  return [y];
});

registerKernel('gatedActivationBackward', 'cuda', ([x, dy], { kind }, backend) => {
  const be = cuda(backend);
  sameDtype(x!, dy!, 'gatedActivationBackward');
  const [R, F] = halves(x!.shape, x!.numel, 'gatedActivationBackward');
  if (dy!.numel !== R * F) throw new Error(`gatedActivationBackward: dy [${dy!.shape}] does not match x [${x!.shape}]`);
  const t = floatSuffix(x!.dtype, 'gatedActivationBackward');
  const dx = out(x!.shape, x!.dtype, be);
  const n = R * F;
  be.kernel('activation.cu', `gated_backward_${kindName(kind, 'gatedActivationBackward')}_${t}`, 'pppll')
    .launch(be.grid(n), 256, ptr(x!), ptr(dy!), ptr(dx), n, F);
  return [dx];
});

registerKernel('softmax', 'cuda', ([x], _attrs, backend) => {
  const be = cuda(backend);
  const t = floatSuffix(x!.dtype, 'softmax');
  const C = x!.dim(-1);
  const R = C === 0 ? 0 : x!.numel / C;
  const y = out(x!.shape, x!.dtype, be);
  be.kernel('activation.cu', `softmax_${t}`, 'ppl').launch(R, rowBlock(C), ptr(x!), ptr(y), C);
  return [y];
});

registerKernel('softmaxBackward', 'cuda', ([y, dy], _attrs, backend) => {
  const be = cuda(backend);
  sameDtype(y!, dy!, 'softmaxBackward');
  const t = floatSuffix(y!.dtype, 'softmaxBackward');
  const C = y!.dim(-1);
  const R = C === 0 ? 0 : y!.numel / C;
  const dx = out(y!.shape, y!.dtype, be);
  be.kernel('activation.cu', `softmax_backward_${t}`, 'pppl').launch(R, rowBlock(C), ptr(y!), ptr(dy!), ptr(dx), C);
  return [dx];
});
