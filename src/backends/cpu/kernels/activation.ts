// CPU kernels: pointwise activations, gated activations, softmax; forward and backward.
//   erf(x)                                   double-precision erf (fdlibm's method, < 1 ulp)
//   activation / activationBackward          gelu (exact, erf), gelu_tanh, relu, silu
//   gatedActivation / gatedActivationBackward x (R, 2F) → act(x[:, F:]) · x[:, :F]   (up ‖ gate)
//   softmax / softmaxBackward                over the last dim, max-subtracted, f64 row sums
// Each kind has its own loop (the switch is outside the loop), so the math inlines.

import type { ActivationKind } from '../../../tensor/kernels.js';
import type { FloatArray } from '../../../tensor/dtype.js';
import { registerKernel } from '../../../tensor/engine.js';
import { f, out, sameFloatType } from './util.js';

// ---------------------------------------------------------------------------------------------
// erf: the method and coefficients of fdlibm's s_erf.c, whose notice follows.
//
// Copyright (C) 1993 by Sun Microsystems, Inc. All rights reserved.
// Developed at SunPro, a Sun Microsystems, Inc. business.
// Permission to use, copy, modify, and distribute this software is freely granted, provided
// that this notice is preserved.
//
//   |x| < 0.84375          erf(x) = x + x · P(x²)/Q(x²)
//   0.84375 ≤ |x| < 1.25   erf(x) = ±(c + P1(s)/Q1(s)), s = |x| − 1, c = 0.84506291151 (f32)
//   1.25 ≤ |x| < 6         erf(x) = ±(1 − exp(−z² − 0.5625) · exp((z − |x|)(z + |x|) + R/S) / |x|)
//                          with z = |x| rounded to f32 (so z² is exact) and R/S rational in 1/x²
//   |x| ≥ 6                erf(x) = ±1

const EFX = 1.28379167095512586316e-1;
const ERX = 8.45062911510467529297e-1;
const PP0 = 1.28379167095512558561e-1, PP1 = -3.25042107247001499370e-1, PP2 = -2.84817495755985104766e-2,
  PP3 = -5.77027029648944159157e-3, PP4 = -2.37630166566501626084e-5;
const QQ1 = 3.97917223959155352819e-1, QQ2 = 6.50222499887672944485e-2, QQ3 = 5.08130628187576562776e-3,
  QQ4 = 1.32494738004321644526e-4, QQ5 = -3.96022827877536812320e-6;
const PA0 = -2.36211856075265944077e-3, PA1 = 4.14856118683748331666e-1, PA2 = -3.72207876035701323847e-1,
  PA3 = 3.18346619901161753674e-1, PA4 = -1.10894694282396677476e-1, PA5 = 3.54783043256182359371e-2,
  PA6 = -2.16637559486879084300e-3;
const QA1 = 1.06420880400844228286e-1, QA2 = 5.40397917702171048937e-1, QA3 = 7.18286544141962662868e-2,
  QA4 = 1.26171219808761642112e-1, QA5 = 1.36370839120290507362e-2, QA6 = 1.19844998467991074170e-2;
const RA0 = -9.86494403484714822705e-3, RA1 = -6.93858572707181764372e-1, RA2 = -1.05586262253232909814e1,
  RA3 = -6.23753324503260060396e1, RA4 = -1.62396669462573470355e2, RA5 = -1.84605092906711035994e2,
  RA6 = -8.12874355063065934246e1, RA7 = -9.81432934416914548592;
const SA1 = 1.96512716674392571292e1, SA2 = 1.37657754143519042600e2, SA3 = 4.34565877475229228821e2,
  SA4 = 6.45387271733267880336e2, SA5 = 4.29008140027567833386e2, SA6 = 1.08635005541779435134e2,
  SA7 = 6.57024977031928170135, SA8 = -6.04244152148580987438e-2;
const RB0 = -9.86494292470009928597e-3, RB1 = -7.99283237680523006574e-1, RB2 = -1.77579549177547519889e1,
  RB3 = -1.60636384855821916062e2, RB4 = -6.37566443368389627722e2, RB5 = -1.02509513161107724954e3,
  RB6 = -4.83519191608651397019e2;
const SB1 = 3.03380607434824582924e1, SB2 = 3.25792512996573918826e2, SB3 = 1.53672958608443695994e3,
  SB4 = 3.19985821950859553908e3, SB5 = 2.55305040643316442583e3, SB6 = 4.74528541206955367215e2,
  SB7 = -2.24409524465858183362e1;

export function erf(x: number): number {
  const ax = Math.abs(x);
  if (ax < 0.84375) {
    if (ax < 3.7252902984e-9) return x + EFX * x;
    const z = x * x;
    const r = PP0 + z * (PP1 + z * (PP2 + z * (PP3 + z * PP4)));
    const s = 1 + z * (QQ1 + z * (QQ2 + z * (QQ3 + z * (QQ4 + z * QQ5))));
    return x + x * (r / s);
  }
  if (ax < 1.25) {
    const s = ax - 1;
    const p = PA0 + s * (PA1 + s * (PA2 + s * (PA3 + s * (PA4 + s * (PA5 + s * PA6)))));
    const q = 1 + s * (QA1 + s * (QA2 + s * (QA3 + s * (QA4 + s * (QA5 + s * QA6)))));
    return x >= 0 ? ERX + p / q : -ERX - p / q;
  }
  if (ax >= 6) return x > 0 ? 1 : -1;
  if (ax !== ax) return NaN;
  const s = 1 / (ax * ax);
  let R: number, S: number;
  if (ax < 1 / 0.35) {
    R = RA0 + s * (RA1 + s * (RA2 + s * (RA3 + s * (RA4 + s * (RA5 + s * (RA6 + s * RA7))))));
    S = 1 + s * (SA1 + s * (SA2 + s * (SA3 + s * (SA4 + s * (SA5 + s * (SA6 + s * (SA7 + s * SA8)))))));
  } else {
    R = RB0 + s * (RB1 + s * (RB2 + s * (RB3 + s * (RB4 + s * (RB5 + s * RB6)))));
    S = 1 + s * (SB1 + s * (SB2 + s * (SB3 + s * (SB4 + s * (SB5 + s * (SB6 + s * SB7))))));
  }
  const z = Math.fround(ax);
  const r = Math.exp(-z * z - 0.5625) * Math.exp((z - ax) * (z + ax) + R / S);
  return x >= 0 ? 1 - r / ax : r / ax - 1;
}

const SQRT1_2 = Math.SQRT1_2;
const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);
const TANH_K = Math.sqrt(2 / Math.PI);
const TANH_C = 0.044715;

// ---------------------------------------------------------------------------------------------
// Runs of elements. `U` is the gated "up" operand (null for a plain activation):
//   forward   Y = act(G) · U
//   backward  dG = dY · U · act'(G),  dU = dY · act(G)

function forwardRun(kind: ActivationKind, G: FloatArray, g0: number, U: FloatArray | null, u0: number, Y: FloatArray, y0: number, n: number): void {
  switch (kind) {
    case 'gelu':
      for (let i = 0; i < n; i++) {
        const x = G[g0 + i]!;
        const v = 0.5 * x * (1 + erf(x * SQRT1_2));
        Y[y0 + i] = U === null ? v : v * U[u0 + i]!;
      }
      return;
    case 'gelu_tanh':
      for (let i = 0; i < n; i++) {
        const x = G[g0 + i]!;
        const v = 0.5 * x * (1 + Math.tanh(TANH_K * (x + TANH_C * x * x * x)));
        Y[y0 + i] = U === null ? v : v * U[u0 + i]!;
      }
      return;
    case 'relu':
      for (let i = 0; i < n; i++) {
        const x = G[g0 + i]!;
        const v = x > 0 ? x : 0;
        Y[y0 + i] = U === null ? v : v * U[u0 + i]!;
      }
      return;
    case 'silu':
      for (let i = 0; i < n; i++) {
        const x = G[g0 + i]!;
        const v = x / (1 + Math.exp(-x));
        Y[y0 + i] = U === null ? v : v * U[u0 + i]!;
      }
      return;
    default:
      throw new Error(`activation: unknown kind '${kind as string}'`);
  }
}

function backwardRun(
  kind: ActivationKind, G: FloatArray, g0: number, DY: FloatArray, d0: number,
  U: FloatArray | null, u0: number, DG: FloatArray, dg0: number, DU: FloatArray | null, du0: number, n: number,
): void {
  switch (kind) {
    case 'gelu':
      for (let i = 0; i < n; i++) {
        const x = G[g0 + i]!, dy = DY[d0 + i]!;
        const cdf = 0.5 * (1 + erf(x * SQRT1_2));
        const der = cdf + x * Math.exp(-0.5 * x * x) * INV_SQRT_2PI;
        if (U === null) DG[dg0 + i] = dy * der;
        else {
          DG[dg0 + i] = dy * U[u0 + i]! * der;
          DU![du0 + i] = dy * x * cdf;
        }
      }
      return;
    case 'gelu_tanh':
      for (let i = 0; i < n; i++) {
        const x = G[g0 + i]!, dy = DY[d0 + i]!;
        const t = Math.tanh(TANH_K * (x + TANH_C * x * x * x));
        const der = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * TANH_K * (1 + 3 * TANH_C * x * x);
        if (U === null) DG[dg0 + i] = dy * der;
        else {
          DG[dg0 + i] = dy * U[u0 + i]! * der;
          DU![du0 + i] = dy * 0.5 * x * (1 + t);
        }
      }
      return;
    case 'relu':
      for (let i = 0; i < n; i++) {
        const x = G[g0 + i]!, dy = DY[d0 + i]!;
        if (U === null) DG[dg0 + i] = x > 0 ? dy : 0;
        else {
          DG[dg0 + i] = x > 0 ? dy * U[u0 + i]! : 0;
          DU![du0 + i] = x > 0 ? dy * x : 0;
        }
      }
      return;
    case 'silu':
      for (let i = 0; i < n; i++) {
        const x = G[g0 + i]!, dy = DY[d0 + i]!;
        const s = 1 / (1 + Math.exp(-x));
        const der = s * (1 + x * (1 - s));
        if (U === null) DG[dg0 + i] = dy * der;
        else {
          DG[dg0 + i] = dy * U[u0 + i]! * der;
          DU![du0 + i] = dy * x * s;
        }
      }
      return;
    default:
      throw new Error(`activationBackward: unknown kind '${kind as string}'`);
  }
}

// ---------------------------------------------------------------------------------------------

registerKernel('activation', 'cpu', ([x], { kind }, be) => {
  const y = out(x!.shape, x!.dtype, be);
  forwardRun(kind, f(x!, 'activation'), 0, null, 0, f(y, 'activation'), 0, x!.numel);
  return [y];
});

registerKernel('activationBackward', 'cpu', ([x, dy], { kind }, be) => {
  sameFloatType(x!, dy!, 'activationBackward');
  if (dy!.numel !== x!.numel) throw new Error(`activationBackward: dy [${dy!.shape}] does not match x [${x!.shape}]`);
  const dx = out(x!.shape, x!.dtype, be);
  backwardRun(kind, f(x!, 'activationBackward'), 0, f(dy!, 'activationBackward'), 0, null, 0, f(dx, 'activationBackward'), 0, null, 0, x!.numel);
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
  for (let r = 0; r < R; r++) forwardRun(kind, X, r * 2 * F + F, X, r * 2 * F, Y, r * F, F);
  return [y];
});

registerKernel('gatedActivationBackward', 'cpu', ([x, dy], { kind }, be) => {
  sameFloatType(x!, dy!, 'gatedActivationBackward');
  const [R, F] = halves(x!, 'gatedActivationBackward');
  if (dy!.numel !== R * F) throw new Error(`gatedActivationBackward: dy [${dy!.shape}] does not match x [${x!.shape}]`);
  const dx = out(x!.shape, x!.dtype, be);
  const X = f(x!, 'gatedActivationBackward'), DY = f(dy!, 'gatedActivationBackward'), DX = f(dx, 'gatedActivationBackward');
  for (let r = 0; r < R; r++) {
    const up = r * 2 * F, gate = up + F;
    backwardRun(kind, X, gate, DY, r * F, X, up, DX, gate, DX, up, F);
  }
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
