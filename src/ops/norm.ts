// Ops: normalization over the last dim, with gradients through the *Backward kernels.
//   layerNorm(x, w, b, eps)   (x − mean) / √(var + eps) · w + b      (torch.nn.LayerNorm, biased var)
//   rmsNorm(x, w, eps)        x / √(mean(x²) + eps) · w               (LLaMA / HF RMSNorm)
//   scaleNorm(x, g, eps)      x / max(‖x‖₂, eps) · g                  (GPT-NeoX ScaleNorm, g [1])
// The kernels work on (R, C); these front-ends view x [.., C] as (R, C) and back. The saved row
// statistics (mean, rstd, rnorm) are kernel outputs but not differentiable.

import { registerGradient, runKernel } from '../tensor/engine.js';
import type { Tensor } from '../tensor/tensor.js';
import { reshape } from './basic.js';

function rows(name: string, x: Tensor, C: number): Tensor {
  if (x.ndim < 1 || x.dim(-1) !== C) throw new Error(`${name}: last dim of x [${x.shape}] must be ${C}`);
  return reshape(x, [x.numel / C, C]); // (R, C)
}

function checkParam(name: string, what: string, p: Tensor, x: Tensor): void {
  if (p.ndim !== 1) throw new Error(`${name}: ${what} must be 1-D, got [${p.shape}]`);
  if (p.dtype !== x.dtype) throw new Error(`${name}: ${what} is ${p.dtype} but x is ${x.dtype}`);
}

function noStatGradient(name: string, dys: (Tensor | null)[]): void {
  if (dys.slice(1).some((d) => d !== null)) throw new Error(`${name}: its saved statistics are not differentiable`);
}

/** LayerNorm over the last dim: x [.., C], w [C], b [C] or null. */
export function layerNorm(x: Tensor, w: Tensor, b: Tensor | null, eps: number): Tensor {
  checkParam('layerNorm', 'w', w, x);
  if (b) checkParam('layerNorm', 'b', b, x);
  if (b && b.dim(0) !== w.dim(0)) throw new Error(`layerNorm: b [${b.shape}] does not match w [${w.shape}]`);
  const x2 = rows('layerNorm', x, w.dim(0));
  const [y] = runKernel('layerNorm', b ? [x2, w, b] : [x2, w], { eps }); // (R, C), mean (R), rstd (R)
  return reshape(y!, x.shape);
}
registerGradient('layerNorm', (dys, inputs, [, mean, rstd]) => {
  noStatGradient('layerNorm', dys);
  const [dy] = dys;
  if (!dy) return inputs.map(() => null);
  const [x, w] = inputs;
  const [dx, dw, db] = runKernel('layerNormBackward', [dy, x!, w!, mean!, rstd!], {});
  return inputs.length === 3 ? [dx!, dw!, db!] : [dx!, dw!];
}, { inputs: [0, 1], outputs: [1, 2] });

/** RMSNorm over the last dim: x [.., C], w [C]. */
export function rmsNorm(x: Tensor, w: Tensor, eps: number): Tensor {
  checkParam('rmsNorm', 'w', w, x);
  const x2 = rows('rmsNorm', x, w.dim(0));
  const [y] = runKernel('rmsNorm', [x2, w], { eps }); // (R, C), rstd (R)
  return reshape(y!, x.shape);
}
registerGradient('rmsNorm', (dys, [x, w], [, rstd]) => {
  noStatGradient('rmsNorm', dys);
  const [dy] = dys;
  if (!dy) return [null, null];
  const [dx, dw] = runKernel('rmsNormBackward', [dy, x!, w!, rstd!], {});
  return [dx!, dw!];
}, { inputs: [0, 1], outputs: [1] });

/** ScaleNorm over the last dim: x [.., C], g [1]. */
export function scaleNorm(x: Tensor, g: Tensor, eps: number): Tensor {
  if (g.numel !== 1) throw new Error(`scaleNorm: g must have one element, got [${g.shape}]`);
  if (g.dtype !== x.dtype) throw new Error(`scaleNorm: g is ${g.dtype} but x is ${x.dtype}`);
  if (x.ndim < 1) throw new Error('scaleNorm: x must have at least one dim');
  const x2 = rows('scaleNorm', x, x.dim(-1));
  const [y] = runKernel('scaleNorm', [x2, g], { eps }); // (R, C), rnorm (R)
  return reshape(y!, x.shape);
}
registerGradient('scaleNorm', (dys, [x, g], [, rnorm], { eps }) => {
  noStatGradient('scaleNorm', dys);
  const [dy] = dys;
  if (!dy) return [null, null];
  const [dx, dg] = runKernel('scaleNormBackward', [dy, x!, g!, rnorm!], { eps });
  return [dx!, dg!];
}, { inputs: [0, 1], outputs: [1] });
