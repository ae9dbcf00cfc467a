// CPU kernels: attention forward and backward, the hot spot of CPU training.
//
//   attention          q [B, H, T, D], k [B, Hkv, S, D], v [B, Hkv, S, D] → o [B, H, T, D], lse [B, H, T]
//   attentionBackward  q, k, v, o, lse, dO → dq [B, H, T, D], dk, dv [B, Hkv, S, D]
//
// Work goes per (batch, head) in blocks of QB query rows. A block whose queries sit at absolute
// positions p0 … p1 (query t is at S − T + t) can only see keys [lo, hi) = [first(p0), end(p1)), so keys
// that causality or the window hide from the whole block are never touched. Per block:
//   forward   Sc = Q·Kᵀ (GEMM, f64) → scale, ALiBi, mask, exact softmax per row in place (lse = m + log l)
//             → O = P·V (GEMM into f64, then stored)
//   backward  (FlashAttention-2) P = exp(scale·Q·Kᵀ + bias − lse), dP = dO·Vᵀ, D_i = Σ dO∘O,
//             dS = scale · P ∘ (dP − D_i); dQ = dS·K, dK += dSᵀ·Q, dV += Pᵀ·dO
// dK and dV accumulate in f64 over the query heads of a kv group before they are stored.
// Rows that see no key (S < T under causality) give o = 0, lse = −∞ and zero gradients.
// lse is stored in the inputs' dtype (f32, or f64 for gradient checks).

import { registerKernel } from '../../../tensor/engine.js';
import type { Tensor } from '../../../tensor/tensor.js';
import { alibiSlopes } from '../../../ops/attention.js';
import { gemm } from '../pool.js';
import { f, out } from './util.js';

/** Query rows per block: small enough to skip most masked keys, large enough to amortise a GEMM call. */
const QB = 32;

interface Dims {
  B: number; H: number; Hkv: number; T: number; S: number; D: number;
  /** Query heads per kv head. */
  group: number;
  /** Absolute position of query 0: S − T. */
  shift: number;
}

function dims(q: Tensor, k: Tensor, v: Tensor, kernel: string): Dims {
  const [B, H, T, D] = q.shape as [number, number, number, number];
  const [Bk, Hkv, S, Dk] = k.shape as [number, number, number, number];
  if (q.ndim !== 4 || k.ndim !== 4 || k.shape.join(',') !== v.shape.join(',') || Bk !== B || Dk !== D || H % Hkv !== 0) {
    throw new Error(`${kernel}: expected q [B, H, T, D], k = v [B, Hkv, S, D] with H a multiple of Hkv, got [${q.shape}], [${k.shape}], [${v.shape}]`);
  }
  if (q.dtype !== k.dtype || q.dtype !== v.dtype) throw new Error(`${kernel}: dtypes differ (${q.dtype}, ${k.dtype}, ${v.dtype})`);
  return { B, H, Hkv, T, S, D, group: H / Hkv, shift: S - T };
}

/** First key visible from absolute position p. */
function firstKey(p: number, window: number): number {
  return window > 0 ? Math.max(0, p - window + 1) : 0;
}

/** One past the last key visible from absolute position p. */
function endKey(p: number, S: number, causal: boolean): number {
  return causal ? Math.max(0, Math.min(S, p + 1)) : S;
}

/** ALiBi slopes as the kernel applies them (GPT-NeoX holds them in an f32 buffer), or null. */
function slopesFor(H: number, alibi: boolean): Float64Array | null {
  return alibi ? alibiSlopes(H).map(Math.fround) : null;
}

// Scratch tiles in the inputs' dtype (so f32 attention runs on the f32 SIMD GEMM), reused across
// calls (kernels run one at a time) and shared with the GEMM workers.
type Floats = Float32Array | Float64Array;
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

registerKernel('attention', 'cpu', ([q, k, v], { scale, causal, window, alibi }, be) => {
  const { B, H, Hkv, T, S, D, group, shift } = dims(q!, k!, v!, 'attention');
  const Q = f(q!, 'attention'); // (B, H, T, D)
  const K = f(k!, 'attention'); // (B, Hkv, S, D)
  const V = f(v!, 'attention'); // (B, Hkv, S, D)
  const o = out([B, H, T, D], q!.dtype, be);
  const lse = out([B, H, T], q!.dtype, be);
  const O = f(o, 'attention'); // (B, H, T, D)
  const L = f(lse, 'attention'); // (B, H, T)
  const slopes = slopesFor(H, alibi);
  const Sc = tile(0, QB * S, Q); // (QB, ≤ S) scores, then probabilities
  const Oc = tile(1, QB * D, Q); // (QB, D) output rows
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
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
  return [o, lse];
});

registerKernel('attentionBackward', 'cpu', ([q, k, v, o, lse, dO], { scale, causal, window, alibi }, be) => {
  const { B, H, Hkv, T, S, D, group, shift } = dims(q!, k!, v!, 'attentionBackward');
  for (const [name, t, shape] of [['o', o!, q!.shape], ['dO', dO!, q!.shape], ['lse', lse!, q!.shape.slice(0, 3)]] as const) {
    if (t.shape.join(',') !== shape.join(',')) throw new Error(`attentionBackward: ${name} has shape [${t.shape}], expected [${shape}]`);
  }
  const Q = f(q!, 'attentionBackward'); // (B, H, T, D)
  const K = f(k!, 'attentionBackward'); // (B, Hkv, S, D)
  const V = f(v!, 'attentionBackward'); // (B, Hkv, S, D)
  const O = f(o!, 'attentionBackward'); // (B, H, T, D)
  const L = f(lse!, 'attentionBackward'); // (B, H, T)
  const DO = f(dO!, 'attentionBackward'); // (B, H, T, D)
  const dq = out(q!.shape, q!.dtype, be);
  const dk = out(k!.shape, k!.dtype, be);
  const dv = out(v!.shape, v!.dtype, be);
  const DQ = f(dq, 'attentionBackward');
  const DK = f(dk, 'attentionBackward');
  const DV = f(dv, 'attentionBackward');
  const slopes = slopesFor(H, alibi);
  const P = tile(0, QB * S, Q); // (QB, ≤ S) probabilities
  const dS = tile(2, QB * S, Q); // (QB, ≤ S) dP, then dS (scale folded in)
  const dQc = tile(1, QB * D, Q); // (QB, D)
  const dKc = tile(3, S * D, Q); // (S, D) accumulators over the group's query heads
  const dVc = tile(4, S * D, Q); // (S, D)
  for (let b = 0; b < B; b++) {
    for (let kvh = 0; kvh < Hkv; kvh++) {
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
  return [dq, dk, dv];
});
