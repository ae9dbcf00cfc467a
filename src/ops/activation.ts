// Ops: activations, gated activations (GPT-NeoX GeGLU/SwiGLU: x = [up ‖ gate]), softmax.
//   activation(x, kind)        gelu (exact erf), gelu_tanh, relu, silu
//   gatedActivation(x, kind)   x [.., 2F] → act(x[.., F:]) · x[.., :F]   [.., F]
//   softmax(x)                 over the last dim
// Gradients run the *Backward kernels (softmax's from its output y).

import type { ActivationKind } from '../tensor/kernels.js';
import { registerGradient, runKernel } from '../tensor/engine.js';
import type { Tensor } from '../tensor/tensor.js';

const KINDS: readonly ActivationKind[] = ['gelu', 'gelu_tanh', 'relu', 'silu'];

function checkKind(name: string, kind: ActivationKind): void {
  if (!KINDS.includes(kind)) throw new Error(`${name}: unknown activation '${kind}' (have: ${KINDS.join(', ')})`);
}

export function activation(x: Tensor, kind: ActivationKind): Tensor {
  checkKind('activation', kind);
  return runKernel('activation', [x], { kind })[0]!;
}
registerGradient('activation', ([dy], [x], _y, { kind }) => [dy && runKernel('activationBackward', [x!, dy], { kind })[0]!], { inputs: [0] });

/** x [.., 2F] = [up ‖ gate] → act(gate) · up  [.., F]. */
export function gatedActivation(x: Tensor, kind: ActivationKind): Tensor {
  checkKind('gatedActivation', kind);
  if (x.ndim < 1 || x.dim(-1) % 2 !== 0) throw new Error(`gatedActivation: last dim of [${x.shape}] must be even`);
  return runKernel('gatedActivation', [x], { kind })[0]!;
}
registerGradient('gatedActivation', ([dy], [x], _y, { kind }) => [dy && runKernel('gatedActivationBackward', [x!, dy], { kind })[0]!], { inputs: [0] });

/** Softmax over the last dim. */
export function softmax(x: Tensor): Tensor {
  if (x.ndim < 1) throw new Error('softmax: x must have at least one dim');
  return runKernel('softmax', [x], {})[0]!;
}
registerGradient('softmax', ([dy], _x, [y]) => [dy && runKernel('softmaxBackward', [y!, dy], {})[0]!], { outputs: [0] });
