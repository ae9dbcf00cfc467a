// CPU kernels: normalization over the last dim of x (R, C), forward and backward.
//   layerNorm / layerNormBackward   (x − mean) · rstd · w + b          saves mean, rstd
//   rmsNorm / rmsNormBackward       x · rstd · w, rstd = 1/√(mean(x²) + eps)   saves rstd
//   scaleNorm / scaleNormBackward   x / max(‖x‖₂, eps) · g               saves rnorm
// Row statistics accumulate in f64 and are saved as f32 (f64 when x is f64). The forward pass
// normalizes with the saved (rounded) statistics, so backward recomputes exactly the same x̂.
// LayerNorm's loops live in ../tasks.ts, split by the worker pool (parallelFor): rows for y and dx,
// columns for dw and db (each column summed over all rows in order, as on one thread).

import type { FloatArray } from '../../../tensor/dtype.js';
import { registerKernel } from '../../../tensor/engine.js';
import type { Tensor } from '../../../tensor/tensor.js';
import { parallelFor, releaseShareable, shareable } from '../pool.js';
import { f, out, sameFloatType } from './util.js';

/** Rows (of C elements) per thread below which a normalization is not split. */
const rowGrain = (C: number) => Math.ceil(8192 / Math.max(1, C));

/** R and C of a 2-D input, checking that `w` (when given) has C elements. */
function rowsCols(x: Tensor, kernel: string, ...params: (Tensor | undefined)[]): [number, number] {
  if (x.ndim !== 2) throw new Error(`${kernel}: expects x of shape [R, C], got [${x.shape}]`);
  const [R, C] = x.shape as [number, number];
  for (const p of params) {
    if (!p) continue;
    sameFloatType(x, p, kernel);
    if (p.numel !== C) throw new Error(`${kernel}: parameter [${p.shape}] does not match C = ${C}`);
  }
  return [R, C];
}

const statType = (x: Tensor) => (x.dtype === 'f64' ? 'f64' : 'f32');

// ---------------------------------------------------------------------------------------------
// LayerNorm

registerKernel('layerNorm', 'cpu', ([x, w, b], { eps }, be) => {
  const [R, C] = rowsCols(x!, 'layerNorm', w, b);
  const X = f(x!, 'layerNorm'), W = f(w!, 'layerNorm');
  const B = b ? f(b, 'layerNorm') : null;
  const y = out([R, C], x!.dtype, be);
  const mean = out([R], statType(x!), be);
  const rstd = out([R], statType(x!), be);
  const Y = f(y, 'layerNorm'), MEAN = f(mean, 'layerNorm'), RSTD = f(rstd, 'layerNorm');
  const MEANs = shareable(MEAN), RSTDs = shareable(RSTD);
  parallelFor('layerNorm', { X, W: shareable(W), B: B && shareable(B), Y, MEAN: MEANs, RSTD: RSTDs, C, eps }, R, rowGrain(C));
  if (MEANs !== MEAN) MEAN.set(MEANs);
  if (RSTDs !== RSTD) RSTD.set(RSTDs);
  releaseShareable();
  return [y, mean, rstd];
});

// dx = rstd · (g − mean(g) − x̂ · mean(g · x̂)) with g = dy · w;  dw = Σ_r dy · x̂;  db = Σ_r dy
registerKernel('layerNormBackward', 'cpu', ([dy, x, w, mean, rstd], _attrs, be) => {
  const [R, C] = rowsCols(x!, 'layerNormBackward', w);
  sameFloatType(x!, dy!, 'layerNormBackward');
  const DY = f(dy!, 'layerNormBackward'), X = f(x!, 'layerNormBackward'), W = f(w!, 'layerNormBackward');
  const MEAN = f(mean!, 'layerNormBackward'), RSTD = f(rstd!, 'layerNormBackward');
  const dx = out([R, C], x!.dtype, be);
  const dw = out([C], w!.dtype, be);
  const db = out([C], w!.dtype, be);
  const DX = f(dx, 'layerNormBackward');
  const DW = f(dw, 'layerNormBackward'), DB = f(db, 'layerNormBackward');
  const DWs = shareable(DW), DBs = shareable(DB);
  const args = { DY, X, W: shareable(W), MEAN: shareable(MEAN), RSTD: shareable(RSTD), DX, DW: DWs, DB: DBs, R, C };
  parallelFor('layerNormBackwardRows', args, R, rowGrain(C));
  parallelFor('layerNormBackwardCols', args, C, Math.max(1, rowGrain(R)));
  if (DWs !== DW) DW.set(DWs);
  if (DBs !== DB) DB.set(DBs);
  releaseShareable();
  return [dx, dw, db];
});

// ---------------------------------------------------------------------------------------------
// RMSNorm

registerKernel('rmsNorm', 'cpu', ([x, w], { eps }, be) => {
  const [R, C] = rowsCols(x!, 'rmsNorm', w);
  const X = f(x!, 'rmsNorm'), W = f(w!, 'rmsNorm');
  const y = out([R, C], x!.dtype, be);
  const rstd = out([R], statType(x!), be);
  const Y = f(y, 'rmsNorm'), RSTD = f(rstd, 'rmsNorm');
  for (let r = 0; r < R; r++) {
    const o = r * C;
    let s = 0;
    for (let c = 0; c < C; c++) s += X[o + c]! * X[o + c]!;
    RSTD[r] = 1 / Math.sqrt(s / C + eps);
    const rs = RSTD[r]!;
    for (let c = 0; c < C; c++) Y[o + c] = X[o + c]! * rs * W[c]!;
  }
  return [y, rstd];
});

// dx = rstd · (g − x̂ · mean(g · x̂)) with g = dy · w, x̂ = x · rstd;  dw = Σ_r dy · x̂
registerKernel('rmsNormBackward', 'cpu', ([dy, x, w, rstd], _attrs, be) => {
  const [R, C] = rowsCols(x!, 'rmsNormBackward', w);
  sameFloatType(x!, dy!, 'rmsNormBackward');
  const DY = f(dy!, 'rmsNormBackward'), X = f(x!, 'rmsNormBackward'), W = f(w!, 'rmsNormBackward');
  const RSTD = f(rstd!, 'rmsNormBackward');
  const dx = out([R, C], x!.dtype, be);
  const dw = out([C], w!.dtype, be);
  const DX = f(dx, 'rmsNormBackward');
  const accW = new Float64Array(C);
  for (let r = 0; r < R; r++) {
    const o = r * C;
    const rs = RSTD[r]!;
    let sgx = 0;
    for (let c = 0; c < C; c++) {
      const d = DY[o + c]!;
      const xh = X[o + c]! * rs;
      sgx += d * W[c]! * xh;
      accW[c] += d * xh;
    }
    sgx /= C;
    for (let c = 0; c < C; c++) DX[o + c] = rs * (DY[o + c]! * W[c]! - X[o + c]! * rs * sgx);
  }
  f(dw, 'rmsNormBackward').set(accW);
  return [dx, dw];
});

// ---------------------------------------------------------------------------------------------
// ScaleNorm (GPT-NeoX): y = x / max(‖x‖₂, eps) · g, with g a single learned scalar

function gain(g: Tensor, x: Tensor, kernel: string): FloatArray {
  sameFloatType(x, g, kernel);
  if (g.numel !== 1) throw new Error(`${kernel}: g must have one element, got [${g.shape}]`);
  return f(g, kernel);
}

registerKernel('scaleNorm', 'cpu', ([x, g], { eps }, be) => {
  const [R, C] = rowsCols(x!, 'scaleNorm');
  const G = gain(g!, x!, 'scaleNorm')[0]!;
  const X = f(x!, 'scaleNorm');
  const y = out([R, C], x!.dtype, be);
  const rnorm = out([R], statType(x!), be);
  const Y = f(y, 'scaleNorm'), RN = f(rnorm, 'scaleNorm');
  for (let r = 0; r < R; r++) {
    const o = r * C;
    let s = 0;
    for (let c = 0; c < C; c++) s += X[o + c]! * X[o + c]!;
    RN[r] = 1 / Math.max(Math.sqrt(s), eps);
    const k = RN[r]! * G;
    for (let c = 0; c < C; c++) Y[o + c] = X[o + c]! * k;
  }
  return [y, rnorm];
});

// Where ‖x‖ ≥ eps: dx = g · rnorm · (dy − x · rnorm² · Σ dy·x); where clamped (‖x‖ < eps) the norm
// is the constant eps: dx = g · dy / eps. (torch's clamp passes the gradient at equality.)
// dg = Σ dy · x · rnorm.
registerKernel('scaleNormBackward', 'cpu', ([dy, x, g, rnorm], { eps }, be) => {
  const [R, C] = rowsCols(x!, 'scaleNormBackward');
  sameFloatType(x!, dy!, 'scaleNormBackward');
  const G = gain(g!, x!, 'scaleNormBackward')[0]!;
  const DY = f(dy!, 'scaleNormBackward'), X = f(x!, 'scaleNormBackward'), RN = f(rnorm!, 'scaleNormBackward');
  const dx = out([R, C], x!.dtype, be);
  const dg = out(g!.shape, g!.dtype, be);
  const DX = f(dx, 'scaleNormBackward');
  let accG = 0;
  for (let r = 0; r < R; r++) {
    const o = r * C;
    const rn = RN[r]!;
    let sdx = 0, ss = 0;
    for (let c = 0; c < C; c++) {
      const v = X[o + c]!;
      sdx += DY[o + c]! * v;
      ss += v * v;
    }
    accG += sdx * rn;
    const k = G * rn;
    if (Math.sqrt(ss) >= eps) {
      const t = rn * rn * sdx;
      for (let c = 0; c < C; c++) DX[o + c] = k * (DY[o + c]! - X[o + c]! * t);
    } else {
      for (let c = 0; c < C; c++) DX[o + c] = k * DY[o + c]!;
    }
  }
  f(dg, 'scaleNormBackward')[0] = accG;
  return [dx, dg];
});
