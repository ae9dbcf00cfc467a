// CPU kernels: pointwise activations, gated activations, softmax; forward and backward.
//   erf(x)                                   double-precision erf (fdlibm's method, < 1 ulp)
//   activation / activationBackward          gelu (exact, erf), gelu_tanh, relu, silu
//   gatedActivation / gatedActivationBackward x (R, 2F) → act(x[:, F:]) · x[:, :F]   (up ‖ gate)
//   softmax / softmaxBackward                over the last dim, max-subtracted, f64 row sums
// The activation loops (and erf) live in ../tasks.ts, split by the worker pool (parallelFor) over
// elements (plain) or rows (gated); each kind has its own loop there, so the math inlines.
// softmax stays here, on one thread.

import { registerKernel } from '../../../tensor/engine.js';
import { parallelFor } from '../pool.js';
import { f, out, sameFloatType } from './util.js';

export { erf } from '../tasks.js';

/** Elements per thread below which a pointwise activation is not split. */
const ACT_GRAIN = 4096;

// ---------------------------------------------------------------------------------------------

registerKernel('activation', 'cpu', ([x], { kind }, be) => {
  const y = out(x!.shape, x!.dtype, be);
  parallelFor('activation', { kind, X: f(x!, 'activation'), Y: f(y, 'activation') }, x!.numel, ACT_GRAIN);
  return [y];
});

registerKernel('activationBackward', 'cpu', ([x, dy], { kind }, be) => {
  sameFloatType(x!, dy!, 'activationBackward');
  if (dy!.numel !== x!.numel) throw new Error(`activationBackward: dy [${dy!.shape}] does not match x [${x!.shape}]`);
  const dx = out(x!.shape, x!.dtype, be);
  parallelFor('activationBackward', { kind, X: f(x!, 'activationBackward'), DY: f(dy!, 'activationBackward'), DX: f(dx, 'activationBackward') }, x!.numel, ACT_GRAIN);
  return [dx];
});

function halves(x: { shape: readonly number[]; numel: number }, kernel: string): [number, number] {
  const C = x.shape[x.shape.length - 1];
  if (C === undefined || C % 2 !== 0) throw new Error(`${kernel}: last dim of [${x.shape}] must be even (up ‖ gate)`);
  return [x.numel / C, C / 2];
}

registerKernel('gatedActivation', 'cpu', ([x], { kind }, be) => {
  const [R, F] = halves(x!, 'gatedActivation');
  const y = out([...x!.shape.slice(0, -1), F], x!.dtype, be);
  const X = f(x!, 'gatedActivation'), Y = f(y, 'gatedActivation');
  parallelFor('gatedActivation', { kind, X, Y, F }, R, Math.ceil(ACT_GRAIN / Math.max(1, F)));
  return [y];
});

registerKernel('gatedActivationBackward', 'cpu', ([x, dy], { kind }, be) => {
  sameFloatType(x!, dy!, 'gatedActivationBackward');
  const [R, F] = halves(x!, 'gatedActivationBackward');
  if (dy!.numel !== R * F) throw new Error(`gatedActivationBackward: dy [${dy!.shape}] does not match x [${x!.shape}]`);
  const dx = out(x!.shape, x!.dtype, be);
  const X = f(x!, 'gatedActivationBackward'), DY = f(dy!, 'gatedActivationBackward'), DX = f(dx, 'gatedActivationBackward');
  parallelFor('gatedActivationBackward', { kind, X, DY, DX, F }, R, Math.ceil(ACT_GRAIN / Math.max(1, F)));
  return [dx];
});

registerKernel('softmax', 'cpu', ([x], _attrs, be) => {
  const C = x!.dim(-1);
  const R = C === 0 ? 0 : x!.numel / C;
  const y = out(x!.shape, x!.dtype, be);
  const X = f(x!, 'softmax'), Y = f(y, 'softmax');
  for (let r = 0; r < R; r++) {
    const o = r * C;
    let m = -Infinity;
    for (let c = 0; c < C; c++) if (X[o + c]! > m) m = X[o + c]!;
    let s = 0;
    for (let c = 0; c < C; c++) {
      const e = Math.exp(X[o + c]! - m);
      Y[o + c] = e;
      s += e;
    }
    const inv = 1 / s;
    for (let c = 0; c < C; c++) Y[o + c] = Y[o + c]! * inv;
  }
  return [y];
});

// dx = y · (dy − Σ y · dy)
registerKernel('softmaxBackward', 'cpu', ([y, dy], _attrs, be) => {
  sameFloatType(y!, dy!, 'softmaxBackward');
  const C = y!.dim(-1);
  const R = C === 0 ? 0 : y!.numel / C;
  const dx = out(y!.shape, y!.dtype, be);
  const Y = f(y!, 'softmaxBackward'), DY = f(dy!, 'softmaxBackward'), DX = f(dx, 'softmaxBackward');
  for (let r = 0; r < R; r++) {
    const o = r * C;
    let s = 0;
    for (let c = 0; c < C; c++) s += Y[o + c]! * DY[o + c]!;
    for (let c = 0; c < C; c++) DX[o + c] = Y[o + c]! * (DY[o + c]! - s);
  }
  return [dx];
});
