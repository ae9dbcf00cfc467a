// The CPU attention tasks for the 'bshd' layout (q, o, dO, dq [B, T, H, D]; k, v, dk, dv [B, S, Hkv, D];
// lse [B, H, T] as in bhsd), added to tasks.ts's table as 'attentionBshd' and 'attentionBackwardBshd'.
// pool_worker.ts imports this module so that the workers know them too; like tasks.ts it has no other
// side effects and takes only plain and typed-array arguments.
//
// A head's rows are H·D (Hkv·D) apart in this layout, and the block GEMMs of tasks.ts's attention
// loop need contiguous rows (gemm.ts has no leading dimension). So each item gathers its head's rows
// into this thread's contiguous scratch, runs the unchanged bhsd loop on that one-head problem
// (forward: item = (batch, head), the problem B = H = Hkv = 1; backward: item = (batch, kv head), the
// problem B = Hkv = 1 with the group's H / Hkv query heads), and scatters its outputs back; lse is
// read and written in place. The gather costs O((T + S)·D) per head against the loop's O(T·S·D), no
// full-tensor permute is made, and the loop sees exactly the numbers it would see in bhsd, so bshd
// equals permute ∘ attention(bhsd) ∘ permute bitwise (and does not depend on the thread count).
//
// The packed QKV (attentionQKV: q, k, v and dq, dk, dv inside one [B, T, H, 3D] array, H = Hkv) is the
// same walk with wider rows: `packed` gives each head's row width W = 3D and the q, k, v offsets
// 0, D, 2D within it (Q = K = V and DQ = DK = DV are then the one array); o, dO, lse are as in bshd.

import { type AttentionArgs, TASKS } from './tasks.js';

type Floats = Float32Array | Float64Array;

// Per-thread scratch (each worker has its own copy of this module), in the inputs' dtype, reused
// across calls. SharedArrayBuffer-backed so that the main thread, running a task inline, can still
// split one large GEMM of the loop over the pool.
const scratch = { f32: [] as Float32Array[], f64: [] as Float64Array[] };
function buf(slot: number, n: number, like: Floats): Floats {
  if (like instanceof Float32Array) {
    let t = scratch.f32[slot];
    if (!t || t.length < n) scratch.f32[slot] = t = new Float32Array(new SharedArrayBuffer(Math.max(1, n) * 4));
    return t;
  }
  let t = scratch.f64[slot];
  if (!t || t.length < n) scratch.f64[slot] = t = new Float64Array(new SharedArrayBuffer(Math.max(1, n) * 8));
  return t;
}

/** dst[dOff + r·D + d] = src[sOff + r·stride + d] for r < rows, d < D. */
function gather(dst: Floats, dOff: number, src: Floats, sOff: number, stride: number, rows: number, D: number): void {
  for (let r = 0; r < rows; r++) {
    const i = sOff + r * stride, j = dOff + r * D;
    for (let d = 0; d < D; d++) dst[j + d] = src[i + d]!;
  }
}

/** dst[dOff + r·stride + d] = src[sOff + r·D + d] for r < rows, d < D. */
function scatter(dst: Floats, dOff: number, stride: number, src: Floats, sOff: number, rows: number, D: number): void {
  for (let r = 0; r < rows; r++) {
    const i = sOff + r * D, j = dOff + r * stride;
    for (let d = 0; d < D; d++) dst[j + d] = src[i + d]!;
  }
}

/** Where q, k, v (and dq, dk, dv) rows sit: per head a row of W values, q at +q, k at +k, v at +v. */
interface Rows { W: number; q: number; k: number; v: number }

/** The packed QKV's rows (`packed: true`), else bshd's own. */
function rowsOf(a: { packed?: boolean; D: number }): Rows {
  return a.packed ? { W: 3 * a.D, q: 0, k: a.D, v: 2 * a.D } : { W: a.D, q: 0, k: 0, v: 0 };
}

/** Items (batch, head) i0 … i1 − 1 of the forward pass. */
function attentionBshdTask(a: AttentionArgs & { O: Floats; L: Floats; packed?: boolean }, i0: number, i1: number): void {
  const { Q, K, V, O, L, slopes, H, Hkv, T, S, D, group, shift, scale, causal, window } = a;
  const r = rowsOf(a);
  const loop = TASKS['attention']!;
  const q = buf(0, T * D, Q), o = buf(1, T * D, Q), k = buf(2, S * D, Q), v = buf(3, S * D, Q);
  let held = -1; // the (batch, kv head) whose keys and values are in k, v
  for (let bh = i0; bh < i1; bh++) {
    const b = Math.floor(bh / H), h = bh - b * H;
    const kv = b * Hkv + Math.floor(h / group);
    gather(q, 0, Q, (b * T * H + h) * r.W + r.q, H * r.W, T, D);
    if (kv !== held) {
      const kOff = (b * S * Hkv + (kv - b * Hkv)) * r.W;
      gather(k, 0, K, kOff + r.k, Hkv * r.W, S, D);
      gather(v, 0, V, kOff + r.v, Hkv * r.W, S, D);
      held = kv;
    }
    loop({
      Q: q, K: k, V: v, O: o, L: L.subarray(bh * T, (bh + 1) * T), slopes: slopes ? slopes.subarray(h, h + 1) : null,
      H: 1, Hkv: 1, T, S, D, group: 1, shift, scale, causal, window,
    }, 0, 1);
    scatter(O, (b * T * H + h) * D, H * D, o, 0, T, D);
  }
}

/** Items (batch, kv head) i0 … i1 − 1 of the backward pass. */
function attentionBackwardBshdTask(
  a: AttentionArgs & { O: Floats; L: Floats; DO: Floats; DQ: Floats; DK: Floats; DV: Floats; packed?: boolean }, i0: number, i1: number,
): void {
  const { Q, K, V, O, L, DO, DQ, DK, DV, slopes, H, Hkv, T, S, D, group, shift, scale, causal, window } = a;
  const r = rowsOf(a);
  const loop = TASKS['attentionBackward']!;
  const n = group * T * D;
  const q = buf(0, n, Q), o = buf(1, n, Q), dO = buf(4, n, Q), dq = buf(5, n, Q);
  const k = buf(2, S * D, Q), v = buf(3, S * D, Q), dk = buf(6, S * D, Q), dv = buf(7, S * D, Q);
  for (let bk = i0; bk < i1; bk++) {
    const b = Math.floor(bk / Hkv), kvh = bk - b * Hkv;
    const h0 = kvh * group; // the group's first query head
    for (let g = 0; g < group; g++) {
      const src = (b * T * H + h0 + g) * D;
      gather(q, g * T * D, Q, (b * T * H + h0 + g) * r.W + r.q, H * r.W, T, D);
      gather(o, g * T * D, O, src, H * D, T, D);
      gather(dO, g * T * D, DO, src, H * D, T, D);
    }
    const kOff = (b * S * Hkv + kvh) * r.W;
    gather(k, 0, K, kOff + r.k, Hkv * r.W, S, D);
    gather(v, 0, V, kOff + r.v, Hkv * r.W, S, D);
    const l0 = (b * H + h0) * T;
    loop({
      Q: q, K: k, V: v, O: o, L: L.subarray(l0, l0 + group * T), DO: dO, DQ: dq, DK: dk, DV: dv,
      slopes: slopes ? slopes.subarray(h0, h0 + group) : null, H: group, Hkv: 1, T, S, D, group, shift, scale, causal, window,
    }, 0, 1);
    for (let g = 0; g < group; g++) scatter(DQ, (b * T * H + h0 + g) * r.W + r.q, H * r.W, dq, g * T * D, T, D);
    scatter(DK, kOff + r.k, Hkv * r.W, dk, 0, S, D);
    scatter(DV, kOff + r.v, Hkv * r.W, dv, 0, S, D);
  }
}

TASKS['attentionBshd'] = attentionBshdTask;
TASKS['attentionBackwardBshd'] = attentionBackwardBshdTask;
