// The CPU kernels' hot loops as pure functions over an index range, importable by the worker pool.
//
// A task is (args, start, end) → void: it computes items start … end − 1 of its kernel (elements,
// rows, columns or (batch, head) pairs) and writes only their outputs, so any split of [0, n) gives
// bitwise the same result as one call over all of it. pool.ts runs them (parallelFor) on the main
// thread and in its workers (pool_worker.ts), which import this module: it must import nothing
// with side effects (only gemm.js, tensor/philox.js and types), and args hold only numbers,
// strings, plain arrays and typed arrays (SharedArrayBuffer-backed when they go to a worker).
//
// Reductions stay deterministic: parameter gradients (layerNorm's dw, db) and sumRows are split by
// columns, each column summed over all rows in order, exactly as one thread would.

import type { ActivationKind } from '../../tensor/kernels.js';
import type { FloatArray, HostArray } from '../../tensor/dtype.js';
import { type Distribution, sampleInto } from '../../tensor/philox.js';
import { type GemmArgs, gemmRows } from './gemm.js';

type Floats = Float32Array | Float64Array;
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Task = (args: any, start: number, end: number) => void;

/**
 * The GEMM tasks call. In a worker (and inside a parallel region) it must run inline; pool.ts points
 * it at the pool's gemm on the main thread, which runs inline while a parallelFor is in progress.
 */
export const nested = { gemm: (g: GemmArgs): void => gemmRows(g, 0, g.M) };

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
// Activations: elements (plain) or rows of (up ‖ gate) (gated).

interface ActArgs { kind: ActivationKind; X: FloatArray; Y: FloatArray }
interface ActBackArgs { kind: ActivationKind; X: FloatArray; DY: FloatArray; DX: FloatArray }

function activationTask(a: ActArgs, i0: number, i1: number): void {
  forwardRun(a.kind, a.X, i0, null, 0, a.Y, i0, i1 - i0);
}

function activationBackwardTask(a: ActBackArgs, i0: number, i1: number): void {
  backwardRun(a.kind, a.X, i0, a.DY, i0, null, 0, a.DX, i0, null, 0, i1 - i0);
}

function gatedActivationTask(a: ActArgs & { F: number }, r0: number, r1: number): void {
  const { kind, X, Y, F } = a;
  for (let r = r0; r < r1; r++) forwardRun(kind, X, r * 2 * F + F, X, r * 2 * F, Y, r * F, F);
}

function gatedActivationBackwardTask(a: ActBackArgs & { F: number }, r0: number, r1: number): void {
  const { kind, X, DY, DX, F } = a;
  for (let r = r0; r < r1; r++) {
    const up = r * 2 * F, gate = up + F;
    backwardRun(kind, X, gate, DY, r * F, X, up, DX, gate, DX, up, F);
  }
}

// ---------------------------------------------------------------------------------------------
// Cross-entropy over rows of logits (N, V).

function crossEntropyTask(a: { X: FloatArray; L: Int32Array; LOSS: FloatArray; LSE: FloatArray; V: number }, n0: number, n1: number): void {
  const { X, L, LOSS, LSE, V } = a;
  for (let n = n0; n < n1; n++) {
    const o = n * V;
    let m = -Infinity;
    for (let v = 0; v < V; v++) if (X[o + v]! > m) m = X[o + v]!;
    let s = 0;
    for (let v = 0; v < V; v++) s += Math.exp(X[o + v]! - m);
    const z = m + Math.log(s);
    LSE[n] = z;
    const label = L[n]!;
    LOSS[n] = label < 0 ? 0 : z - X[o + label]!;
  }
}

function crossEntropyBackwardTask(a: { X: FloatArray; L: Int32Array; LSE: FloatArray; DL: FloatArray; DX: FloatArray; V: number }, n0: number, n1: number): void {
  const { X, L, LSE, DL, DX, V } = a;
  for (let n = n0; n < n1; n++) {
    const o = n * V;
    const label = L[n]!;
    const d = DL[n]!;
    if (label < 0 || d === 0) {
      DX.fill(0, o, o + V);
      continue;
    }
    const z = LSE[n]!;
    for (let v = 0; v < V; v++) DX[o + v] = Math.exp(X[o + v]! - z) * d;
    DX[o + label] = DX[o + label]! - d;
  }
}

// ---------------------------------------------------------------------------------------------
// Attention (see kernels/attention.ts for the method): forward by (batch, head) pairs, backward by
// (batch, kv head) pairs, each with this thread's own scratch tiles.

/** Query rows per block: small enough to skip most masked keys, large enough to amortise a GEMM call. */
const QB = 32;

/** First key visible from absolute position p. */
function firstKey(p: number, window: number): number {
  return window > 0 ? Math.max(0, p - window + 1) : 0;
}

/** One past the last key visible from absolute position p. */
function endKey(p: number, S: number, causal: boolean): number {
  return causal ? Math.max(0, Math.min(S, p + 1)) : S;
}

// Scratch tiles in the inputs' dtype (so f32 attention runs on the f32 SIMD GEMM), per thread (each
// worker has its own copy of this module), reused across calls. SharedArrayBuffer-backed so that
// the main thread, running a task inline, can still split one large GEMM over the pool.
const tiles = { f32: [] as Float32Array[], f64: [] as Float64Array[] };
function tile(slot: number, n: number, like: Floats): Floats {
  if (like instanceof Float32Array) {
    let t = tiles.f32[slot];
    if (!t || t.length < n) tiles.f32[slot] = t = new Float32Array(new SharedArrayBuffer(Math.max(1, n) * 4));
    return t;
  }
  let t = tiles.f64[slot];
  if (!t || t.length < n) tiles.f64[slot] = t = new Float64Array(new SharedArrayBuffer(Math.max(1, n) * 8));
  return t;
}

/**
 * Turns one row of raw scores Sc[base … base + N) (keys lo … lo + N − 1) into softmax probabilities for
 * the query at position p seeing keys [a, e); returns the row's log-sum-exp (−∞ when it sees none).
 */
function softmaxRow(Sc: Floats, base: number, lo: number, N: number, a: number, e: number, p: number, scale: number, slope: number): number {
  if (e <= a) {
    Sc.fill(0, base, base + N);
    return -Infinity;
  }
  const off = base - lo;
  let m = -Infinity;
  for (let j = a; j < e; j++) {
    const s = scale * Sc[off + j]! - slope * Math.abs(p - j);
    Sc[off + j] = s;
    if (s > m) m = s;
  }
  let l = 0;
  for (let j = a; j < e; j++) {
    const x = Math.exp(Sc[off + j]! - m);
    Sc[off + j] = x;
    l += x;
  }
  const inv = 1 / l;
  for (let j = a; j < e; j++) Sc[off + j] *= inv;
  Sc.fill(0, base, off + a);
  Sc.fill(0, off + e, base + N);
  return m + Math.log(l);
}

/** Recomputes one row of probabilities from raw scores and the stored log-sum-exp (backward). */
function probsRow(Sc: Floats, base: number, lo: number, N: number, a: number, e: number, p: number, scale: number, slope: number, lse: number): void {
  if (e <= a || lse === -Infinity) {
    Sc.fill(0, base, base + N);
    return;
  }
  const off = base - lo;
  for (let j = a; j < e; j++) Sc[off + j] = Math.exp(scale * Sc[off + j]! - slope * Math.abs(p - j) - lse);
  Sc.fill(0, base, off + a);
  Sc.fill(0, off + e, base + N);
}

export interface AttentionArgs {
  Q: Floats; K: Floats; V: Floats;
  /** ALiBi slopes per query head, or null. */
  slopes: Float64Array | null;
  H: number; Hkv: number; T: number; S: number; D: number; group: number; shift: number;
  scale: number; causal: boolean; window: number;
}

function attentionTask(a: AttentionArgs & { O: Floats; L: Floats }, i0: number, i1: number): void {
  const { Q, K, V, O, L, slopes, H, Hkv, T, S, D, group, shift, scale, causal, window } = a;
  const gemm = nested.gemm;
  const Sc = tile(0, QB * S, Q); // (QB, ≤ S) scores, then probabilities
  const Oc = tile(1, QB * D, Q); // (QB, D) output rows
  for (let bh = i0; bh < i1; bh++) {
    const b = Math.floor(bh / H), h = bh - b * H;
    const kOff = (b * Hkv + Math.floor(h / group)) * S * D;
    const row0 = (b * H + h) * T;
    const slope = slopes ? slopes[h]! : 0;
    for (let t0 = 0; t0 < T; t0 += QB) {
      const t1 = Math.min(T, t0 + QB);
      const rows = t1 - t0;
      const lo = firstKey(shift + t0, window);
      const N = endKey(shift + t1 - 1, S, causal) - lo;
      if (N <= 0) {
        O.fill(0, (row0 + t0) * D, (row0 + t1) * D);
        L.fill(-Infinity, row0 + t0, row0 + t1);
        continue;
      }
      // (rows, D) · (N, D)ᵀ → (rows, N)
      gemm({ A: Q, aOff: (row0 + t0) * D, B: K, bOff: kOff + lo * D, C: Sc, cOff: 0, M: rows, N, K: D, transA: false, transB: true, accumulate: false });
      for (let r = 0; r < rows; r++) {
        const p = shift + t0 + r;
        L[row0 + t0 + r] = softmaxRow(Sc, r * N, lo, N, firstKey(p, window), endKey(p, S, causal), p, scale, slope);
      }
      // (rows, N) · (N, D) → (rows, D)
      gemm({ A: Sc, aOff: 0, B: V, bOff: kOff + lo * D, C: Oc, cOff: 0, M: rows, N: D, K: N, transA: false, transB: false, accumulate: false });
      O.set(Oc.subarray(0, rows * D), (row0 + t0) * D);
    }
  }
}

function attentionBackwardTask(
  a: AttentionArgs & { O: Floats; L: Floats; DO: Floats; DQ: Floats; DK: Floats; DV: Floats }, i0: number, i1: number,
): void {
  const { Q, K, V, O, L, DO, DQ, DK, DV, slopes, H, Hkv, T, S, D, group, shift, scale, causal, window } = a;
  const gemm = nested.gemm;
  const P = tile(0, QB * S, Q); // (QB, ≤ S) probabilities
  const dS = tile(2, QB * S, Q); // (QB, ≤ S) dP, then dS (scale folded in)
  const dQc = tile(1, QB * D, Q); // (QB, D)
  const dKc = tile(3, S * D, Q); // (S, D) accumulators over the group's query heads
  const dVc = tile(4, S * D, Q); // (S, D)
  for (let bk = i0; bk < i1; bk++) {
    const b = Math.floor(bk / Hkv), kvh = bk - b * Hkv;
    const kOff = (b * Hkv + kvh) * S * D;
    dKc.fill(0, 0, S * D);
    dVc.fill(0, 0, S * D);
    for (let h = kvh * group; h < (kvh + 1) * group; h++) {
      const row0 = (b * H + h) * T;
      const slope = slopes ? slopes[h]! : 0;
      for (let t0 = 0; t0 < T; t0 += QB) {
        const t1 = Math.min(T, t0 + QB);
        const rows = t1 - t0;
        const qOff = (row0 + t0) * D;
        const lo = firstKey(shift + t0, window);
        const N = endKey(shift + t1 - 1, S, causal) - lo;
        if (N <= 0) {
          DQ.fill(0, qOff, qOff + rows * D);
          continue;
        }
        // P: (rows, D) · (N, D)ᵀ → (rows, N), then exp(scores − lse)
        gemm({ A: Q, aOff: qOff, B: K, bOff: kOff + lo * D, C: P, cOff: 0, M: rows, N, K: D, transA: false, transB: true, accumulate: false });
        for (let r = 0; r < rows; r++) {
          const p = shift + t0 + r;
          probsRow(P, r * N, lo, N, firstKey(p, window), endKey(p, S, causal), p, scale, slope, L[row0 + t0 + r]!);
        }
        // dP: (rows, D) · (N, D)ᵀ → (rows, N)
        gemm({ A: DO, aOff: qOff, B: V, bOff: kOff + lo * D, C: dS, cOff: 0, M: rows, N, K: D, transA: false, transB: true, accumulate: false });
        for (let r = 0; r < rows; r++) {
          const x = qOff + r * D;
          let Di = 0;
          for (let d = 0; d < D; d++) Di += DO[x + d]! * O[x + d]!;
          const base = r * N;
          for (let j = 0; j < N; j++) dS[base + j] = scale * P[base + j]! * (dS[base + j]! - Di);
        }
        // dQ: (rows, N) · (N, D) → (rows, D)
        gemm({ A: dS, aOff: 0, B: K, bOff: kOff + lo * D, C: dQc, cOff: 0, M: rows, N: D, K: N, transA: false, transB: false, accumulate: false });
        DQ.set(dQc.subarray(0, rows * D), qOff);
        // dK[lo:hi] += (rows, N)ᵀ · (rows, D);  dV[lo:hi] += Pᵀ · dO
        gemm({ A: dS, aOff: 0, B: Q, bOff: qOff, C: dKc, cOff: lo * D, M: N, N: D, K: rows, transA: true, transB: false, accumulate: true });
        gemm({ A: P, aOff: 0, B: DO, bOff: qOff, C: dVc, cOff: lo * D, M: N, N: D, K: rows, transA: true, transB: false, accumulate: true });
      }
    }
    DK.set(dKc.subarray(0, S * D), kOff);
    DV.set(dVc.subarray(0, S * D), kOff);
  }
}

// ---------------------------------------------------------------------------------------------
// LayerNorm over rows of x (R, C); backward's dx by rows, dw and db by columns.

function layerNormTask(
  a: { X: FloatArray; W: FloatArray; B: FloatArray | null; Y: FloatArray; MEAN: FloatArray; RSTD: FloatArray; C: number; eps: number }, r0: number, r1: number,
): void {
  const { X, W, B, Y, MEAN, RSTD, C, eps } = a;
  for (let r = r0; r < r1; r++) {
    const o = r * C;
    let s = 0;
    for (let c = 0; c < C; c++) s += X[o + c]!;
    MEAN[r] = s / C;
    const m = MEAN[r]!;
    let v = 0;
    for (let c = 0; c < C; c++) {
      const d = X[o + c]! - m;
      v += d * d;
    }
    RSTD[r] = 1 / Math.sqrt(v / C + eps);
    const rs = RSTD[r]!;
    if (B) for (let c = 0; c < C; c++) Y[o + c] = (X[o + c]! - m) * rs * W[c]! + B[c]!;
    else for (let c = 0; c < C; c++) Y[o + c] = (X[o + c]! - m) * rs * W[c]!;
  }
}

interface LayerNormBackArgs { DY: FloatArray; X: FloatArray; W: FloatArray; MEAN: FloatArray; RSTD: FloatArray; R: number; C: number }

// dx = rstd · (g − mean(g) − x̂ · mean(g · x̂)) with g = dy · w
function layerNormBackwardRowsTask(a: LayerNormBackArgs & { DX: FloatArray }, r0: number, r1: number): void {
  const { DY, X, W, MEAN, RSTD, DX, C } = a;
  for (let r = r0; r < r1; r++) {
    const o = r * C;
    const m = MEAN[r]!, rs = RSTD[r]!;
    let sg = 0, sgx = 0;
    for (let c = 0; c < C; c++) {
      const d = DY[o + c]!;
      const xh = (X[o + c]! - m) * rs;
      const g = d * W[c]!;
      sg += g;
      sgx += g * xh;
    }
    sg /= C;
    sgx /= C;
    for (let c = 0; c < C; c++) {
      const xh = (X[o + c]! - m) * rs;
      DX[o + c] = rs * (DY[o + c]! * W[c]! - sg - xh * sgx);
    }
  }
}

// dw = Σ_r dy · x̂;  db = Σ_r dy — columns c0 … c1 − 1, each summed over rows 0 … R − 1 in order (f64)
function layerNormBackwardColsTask(a: LayerNormBackArgs & { DW: FloatArray; DB: FloatArray }, c0: number, c1: number): void {
  const { DY, X, MEAN, RSTD, DW, DB, R, C } = a;
  const w = c1 - c0;
  const accW = new Float64Array(w), accB = new Float64Array(w);
  for (let r = 0; r < R; r++) {
    const o = r * C + c0;
    const m = MEAN[r]!, rs = RSTD[r]!;
    for (let c = 0; c < w; c++) {
      const d = DY[o + c]!;
      const xh = (X[o + c]! - m) * rs;
      accW[c] += d * xh;
      accB[c] += d;
    }
  }
  DW.set(accW, c0);
  DB.set(accB, c0);
}

// ---------------------------------------------------------------------------------------------
// Elementwise a op b (b equal to a or broadcast over its leading dims), sumRows, permute.

/** op: 0 add, 1 sub, 2 mul. Items are elements when b matches a (m = n), else rows of m. */
function binaryTask(a: { op: 0 | 1 | 2; A: FloatArray; B: FloatArray; Y: FloatArray; m: number; full: boolean }, i0: number, i1: number): void {
  const { op, A, B, Y, m, full } = a;
  if (full) {
    if (op === 0) for (let i = i0; i < i1; i++) Y[i] = A[i]! + B[i]!;
    else if (op === 1) for (let i = i0; i < i1; i++) Y[i] = A[i]! - B[i]!;
    else for (let i = i0; i < i1; i++) Y[i] = A[i]! * B[i]!;
    return;
  }
  for (let r = i0; r < i1; r++) {
    const i = r * m;
    if (op === 0) for (let j = 0; j < m; j++) Y[i + j] = A[i + j]! + B[j]!;
    else if (op === 1) for (let j = 0; j < m; j++) Y[i + j] = A[i + j]! - B[j]!;
    else for (let j = 0; j < m; j++) Y[i + j] = A[i + j]! * B[j]!;
  }
}

/** Columns c0 … c1 − 1 of Σ_r x[r, c], each in f64 over rows in order. */
function sumRowsTask(a: { X: FloatArray; Y: FloatArray; R: number; C: number }, c0: number, c1: number): void {
  const { X, Y, R, C } = a;
  const w = c1 - c0;
  const acc = new Float64Array(w);
  for (let r = 0; r < R; r++) {
    const o = r * C + c0;
    for (let c = 0; c < w; c++) acc[c] += X[o + c]!;
  }
  Y.set(acc, c0);
}

/** Below this many elements a contiguous run is copied by a loop rather than subarray + set. */
const BLOCK_COPY_MIN = 16;

function copyRun(dst: HostArray, dOff: number, src: HostArray, sOff: number, len: number): void {
  if (len >= BLOCK_COPY_MIN) dst.set(src.subarray(sOff, sOff + len), dOff);
  else for (let i = 0; i < len; i++) dst[dOff + i] = src[sOff + i]!;
}

/**
 * Output runs o0 … o1 − 1 of a permute: dims/strides are the merged output dims and the input stride
 * each walks; the last dim is a run of `len` elements at input stride `s`.
 */
function permuteTask(a: { X: HostArray; Y: HostArray; dims: number[]; strides: number[] }, o0: number, o1: number): void {
  const { X, Y, dims, strides } = a;
  const m = dims.length - 1;
  const len = dims[m]!;
  const s = strides[m]!;
  // The odometer at run o0 (innermost of the outer dims last).
  const idx = new Array<number>(m).fill(0);
  let src = 0;
  for (let d = m - 1, rest = o0; d >= 0; d--) {
    idx[d] = rest % dims[d]!;
    rest = Math.floor(rest / dims[d]!);
    src += idx[d]! * strides[d]!;
  }
  for (let o = o0, dst = o0 * len; o < o1; o++, dst += len) {
    if (s === 1) copyRun(Y, dst, X, src, len);
    else for (let i = 0, j = src; i < len; i++, j += s) Y[dst + i] = X[j]!;
    // Advance the odometer (innermost of the outer dims first).
    for (let d = m - 1; d >= 0; d--) {
      src += strides[d]!;
      if (++idx[d]! < dims[d]!) break;
      src -= strides[d]! * dims[d]!;
      idx[d] = 0;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Philox draws (random init): tensor/philox.ts's sampleInto over chunks of `chunk` elements.
// Unlike the other tasks it ignores its [start, end): every call claims chunks from the shared
// counter `next` until none are left, so the calls together fill each chunk exactly once however
// parallelFor split [0, chunks), and a thread slowed by other load simply claims fewer. Each
// element depends only on its stream position, so the bits do not depend on who computed what.

function philoxSampleTask(a: {
  out: Float32Array; seed: number; offset: number; kind: Distribution['kind']; param: number; chunk: number; chunks: number; next: Int32Array;
}): void {
  const dist: Distribution = a.kind === 'normal' ? { kind: 'normal', std: a.param }
    : a.kind === 'uniform_symmetric' ? { kind: 'uniform_symmetric', bound: a.param } : { kind: 'uniform' };
  const n = a.out.length;
  for (let c = Atomics.add(a.next, 0, 1); c < a.chunks; c = Atomics.add(a.next, 0, 1)) {
    sampleInto(a.seed, a.offset, dist, a.out, c * a.chunk, Math.min((c + 1) * a.chunk, n));
  }
}

// ---------------------------------------------------------------------------------------------

/** The task table, by name (workers resolve the names they are sent here). */
export const TASKS: Record<string, Task> = {
  activation: activationTask,
  activationBackward: activationBackwardTask,
  gatedActivation: gatedActivationTask,
  gatedActivationBackward: gatedActivationBackwardTask,
  crossEntropy: crossEntropyTask,
  crossEntropyBackward: crossEntropyBackwardTask,
  attention: attentionTask,
  attentionBackward: attentionBackwardTask,
  layerNorm: layerNormTask,
  layerNormBackwardRows: layerNormBackwardRowsTask,
  layerNormBackwardCols: layerNormBackwardColsTask,
  binary: binaryTask,
  sumRows: sumRowsTask,
  permute: permuteTask,
  philoxSample: philoxSampleTask,
  // for tests: mark each index once; throw
  testMark: (a: { out: Int32Array }, i0: number, i1: number) => { for (let i = i0; i < i1; i++) a.out[i] = a.out[i]! + 1; },
  testThrow: (_a: unknown, i0: number) => { if (i0 > 0) throw new Error('testThrow: failed in a worker'); },
};
