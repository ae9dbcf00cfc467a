// Positions and attention: forward against naive references (explicit score matrix, mask, softmax,
// weighted sum; explicit rotate-half), backward against finite differences in f64, and the position
// helpers (ALiBi slopes against their closed form, sinusoidal layout [sin ‖ cos]). The bshd layout
// ([B, T, H, D] heads) against permute ∘ bhsd ∘ permute, bitwise, for attention (forward and
// backward, every mode) and rotary (partial, offsets, inverse), plus its gradients against finite
// differences.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as ops from '../src/ops/index.js';
import { type KernelAttrs, type Tensor, backward, runKernel, tensor } from '../src/tensor/index.js';
import { assertClose, gradcheck, randn } from './helpers/check.js';

interface Mode {
  causal: boolean;
  window: number;
  alibi: boolean;
  scale?: number;
}

/** ALiBi slopes in closed form: 2^(−8(i+1)/n) for a power of two; else those of p = 2^⌊log2 n⌋, then 2^(−4(2j+1)/p). */
function closedFormSlopes(n: number): number[] {
  const p = 2 ** Math.floor(Math.log2(n));
  const s = Array.from({ length: p }, (_, i) => 2 ** ((-8 * (i + 1)) / p));
  for (let j = 0; j < n - p; j++) s.push(2 ** ((-4 * (2 * j + 1)) / p));
  return s;
}

/** The textbook computation: a [T, S] score matrix per (b, h), −∞ where masked, softmax, Σ p·v. */
function naiveAttention(q: Tensor, k: Tensor, v: Tensor, mode: Mode): { o: Float64Array; lse: Float64Array } {
  const [B, H, T, D] = q.shape as [number, number, number, number];
  const [, Hkv, S] = k.shape as [number, number, number, number];
  const Q = Float64Array.from(q.toArray()), K = Float64Array.from(k.toArray()), V = Float64Array.from(v.toArray());
  const scale = mode.scale ?? 1 / Math.sqrt(D);
  const slopes = closedFormSlopes(H).map(Math.fround);
  const o = new Float64Array(B * H * T * D);
  const lse = new Float64Array(B * H * T);
  for (let b = 0; b < B; b++) for (let h = 0; h < H; h++) {
    const kv = b * Hkv + Math.floor(h / (H / Hkv)); // HF repeat_kv: kv head h / n_rep
    for (let t = 0; t < T; t++) {
      const pq = S - T + t;
      const qi = ((b * H + h) * T + t) * D;
      const scores = new Float64Array(S);
      for (let s = 0; s < S; s++) {
        const masked = (mode.causal && s > pq) || (mode.window > 0 && !(s > pq - mode.window));
        if (masked) { scores[s] = -Infinity; continue; }
        let dot = 0;
        for (let d = 0; d < D; d++) dot += Q[qi + d]! * K[(kv * S + s) * D + d]!;
        scores[s] = scale * dot + (mode.alibi ? -slopes[h]! * Math.abs(pq - s) : 0);
      }
      const m = Math.max(...scores);
      const row = (b * H + h) * T + t;
      if (m === -Infinity) { lse[row] = -Infinity; continue; }
      let l = 0;
      for (let s = 0; s < S; s++) l += Math.exp(scores[s]! - m);
      lse[row] = m + Math.log(l);
      for (let s = 0; s < S; s++) {
        const w = Math.exp(scores[s]! - m) / l;
        for (let d = 0; d < D; d++) o[qi + d] += w * V[(kv * S + s) * D + d]!;
      }
    }
  }
  return { o, lse };
}

function run(q: Tensor, k: Tensor, v: Tensor, mode: Mode): { o: Tensor; lse: Tensor } {
  const scale = mode.scale ?? 1 / Math.sqrt(q.dim(-1));
  const [o, lse] = runKernel('attention', [q, k, v], { scale, causal: mode.causal, window: mode.window, alibi: mode.alibi });
  return { o: o!, lse: lse! };
}

const causal: Mode = { causal: true, window: 0, alibi: false };

// [name, B, H, Hkv, T, S, D, mode]: T, S past the 32-row query block so that several blocks and the
// skipping of masked key ranges are exercised.
const CASES: [string, number, number, number, number, number, number, Mode][] = [
  ['causal MHA', 2, 3, 3, 37, 37, 8, causal],
  ['GQA (H=4, Hkv=2)', 2, 4, 2, 40, 40, 6, causal],
  ['MQA (Hkv=1)', 1, 4, 1, 35, 35, 5, causal],
  ['sliding window 5 < T', 2, 2, 2, 45, 45, 4, { causal: true, window: 5, alibi: false }],
  ['window of 1 (self only)', 1, 2, 1, 9, 9, 4, { causal: true, window: 1, alibi: false }],
  ['ALiBi, 4 heads', 1, 4, 4, 36, 36, 4, { causal: true, window: 0, alibi: true }],
  ['ALiBi, 6 heads (not a power of 2)', 1, 6, 3, 33, 33, 4, { causal: true, window: 0, alibi: true }],
  ['KV cache: one query, S = 40', 2, 4, 2, 1, 40, 8, causal],
  ['KV cache: T = 35 < S = 70, window and ALiBi', 1, 4, 2, 35, 70, 4, { causal: true, window: 20, alibi: true }],
  ['non-causal, custom scale', 1, 2, 1, 7, 11, 4, { causal: false, window: 0, alibi: false, scale: 0.3 }],
  ['non-causal ALiBi', 1, 3, 3, 6, 6, 4, { causal: false, window: 0, alibi: true }],
];

test('attention forward matches the naive score-matrix reference (o and lse), f64 and f32', () => {
  for (const [name, B, H, Hkv, T, S, D, mode] of CASES) {
    for (const dtype of ['f64', 'f32'] as const) {
      const q = randn([B, H, T, D], 1, dtype, 2), k = randn([B, Hkv, S, D], 2, dtype, 2), v = randn([B, Hkv, S, D], 3, dtype);
      const ref = naiveAttention(q, k, v, mode);
      const { o, lse } = run(q, k, v, mode);
      assert.deepEqual(o.shape, [B, H, T, D]);
      assert.equal(lse.dtype, dtype, `${name}: lse dtype`);
      const tol = dtype === 'f64' ? { rtol: 1e-12, atol: 1e-12 } : { rtol: 1e-5, atol: 2e-6 };
      assertClose(o.toArray(), ref.o, tol, `${name} (${dtype}) o`);
      assertClose(lse.toArray(), ref.lse, tol, `${name} (${dtype}) lse`);
      // The op front-end agrees with the kernel and applies the same defaults.
      assertClose(ops.attention(q, k, v, mode).toArray(), o.toArray(), { rtol: 0, atol: 0 }, `${name}: ops.attention`);
    }
  }
});

test('GQA equals MHA over kv heads repeated with repeat_interleave (HF repeat_kv)', () => {
  const [B, H, Hkv, T, D] = [2, 6, 2, 10, 4];
  const q = randn([B, H, T, D], 4), k = randn([B, Hkv, T, D], 5), v = randn([B, Hkv, T, D], 6);
  const repeat = (x: Tensor): Tensor => {
    const X = x.toArray() as Float64Array;
    const n = T * D, g = H / Hkv;
    const y = new Float64Array(B * H * n);
    for (let b = 0; b < B; b++) for (let h = 0; h < H; h++) {
      const src = (b * Hkv + Math.floor(h / g)) * n;
      y.set(X.subarray(src, src + n), (b * H + h) * n);
    }
    return tensor(y, [B, H, T, D], 'f64');
  };
  const gqa = ops.attention(q, k, v).toArray();
  const mha = ops.attention(q, repeat(k), repeat(v)).toArray();
  assertClose(gqa, mha, { rtol: 1e-13, atol: 1e-13 });
});

test('rows that see no key (S < T, causal) give zeros and lse = −∞, and zero gradients', () => {
  const q = randn([1, 2, 6, 3], 7), k = randn([1, 1, 4, 3], 8), v = randn([1, 1, 4, 3], 9);
  const { o, lse } = run(q, k, v, causal);
  const O = o.toArray(), L = lse.toArray();
  for (const h of [0, 1]) for (const t of [0, 1]) {
    assert.equal(L[h * 6 + t], -Infinity);
    for (let d = 0; d < 3; d++) assert.equal(O[(h * 6 + t) * 3 + d], 0);
  }
  assertClose(O, naiveAttention(q, k, v, causal).o, { rtol: 1e-12, atol: 1e-12 });
  gradcheck((q, k, v) => ops.attention(q, k, v), [q, k, v]);
});

test('attention gradients match finite differences in every mode', () => {
  // [name, B, H, Hkv, T, S, mode]
  const modes: [string, number, number, number, number, number, Mode][] = [
    ['causal MHA', 2, 2, 2, 5, 5, causal],
    ['GQA', 1, 4, 2, 5, 5, causal],
    ['MQA', 1, 3, 1, 5, 5, causal],
    ['sliding window', 1, 2, 2, 7, 7, { causal: true, window: 3, alibi: false }],
    ['ALiBi (4 heads)', 1, 4, 4, 5, 5, { causal: true, window: 0, alibi: true }],
    ['ALiBi (3 heads)', 1, 3, 1, 5, 5, { causal: true, window: 0, alibi: true }],
    ['KV cache T < S', 1, 2, 1, 3, 7, causal],
    ['KV cache with window and ALiBi', 1, 2, 2, 3, 8, { causal: true, window: 4, alibi: true }],
    ['non-causal', 1, 2, 1, 4, 6, { causal: false, window: 0, alibi: false, scale: 0.7 }],
  ];
  for (const [, B, H, Hkv, T, S, mode] of modes) {
    const D = 3;
    gradcheck((q, k, v) => ops.attention(q, k, v, mode), [randn([B, H, T, D], 10), randn([B, Hkv, S, D], 11), randn([B, Hkv, S, D], 12)]);
  }
});

test('attention gradients across several query blocks (T = 34 > 32) with GQA, window and ALiBi', () => {
  const mode: Mode = { causal: true, window: 20, alibi: true };
  gradcheck((q, k, v) => ops.attention(q, k, v, mode), [randn([1, 2, 34, 2], 13), randn([1, 1, 34, 2], 14), randn([1, 1, 34, 2], 15)]);
});

/** Textbook backward from the explicit probability matrix: dV = Pᵀ·dO, dS = P ∘ (dO·Vᵀ − rowsum(P ∘ dO·Vᵀ)), dQ = s·dS·K, dK = s·dSᵀ·Q. */
function naiveAttentionBackward(q: Tensor, k: Tensor, v: Tensor, dO: Tensor, mode: Mode): Float64Array[] {
  const [B, H, T, D] = q.shape as [number, number, number, number];
  const [, Hkv, S] = k.shape as [number, number, number, number];
  const Q = Float64Array.from(q.toArray()), K = Float64Array.from(k.toArray()), V = Float64Array.from(v.toArray()), G = Float64Array.from(dO.toArray());
  const scale = mode.scale ?? 1 / Math.sqrt(D);
  const slopes = closedFormSlopes(H).map(Math.fround);
  const dq = new Float64Array(Q.length), dk = new Float64Array(K.length), dv = new Float64Array(V.length);
  const P = new Float64Array(S), dP = new Float64Array(S);
  for (let b = 0; b < B; b++) for (let h = 0; h < H; h++) {
    const kv = (b * Hkv + Math.floor(h / (H / Hkv))) * S * D;
    for (let t = 0; t < T; t++) {
      const pq = S - T + t, qi = ((b * H + h) * T + t) * D;
      let m = -Infinity;
      for (let s = 0; s < S; s++) {
        const masked = (mode.causal && s > pq) || (mode.window > 0 && !(s > pq - mode.window));
        let dot = 0;
        for (let d = 0; d < D; d++) dot += Q[qi + d]! * K[kv + s * D + d]!;
        P[s] = masked ? -Infinity : scale * dot + (mode.alibi ? -slopes[h]! * Math.abs(pq - s) : 0);
        m = Math.max(m, P[s]!);
      }
      if (m === -Infinity) continue;
      let l = 0;
      for (let s = 0; s < S; s++) l += (P[s] = Math.exp(P[s]! - m));
      let rowsum = 0;
      for (let s = 0; s < S; s++) {
        P[s] = P[s]! / l;
        let dot = 0;
        for (let d = 0; d < D; d++) dot += G[qi + d]! * V[kv + s * D + d]!;
        dP[s] = dot;
        rowsum += P[s]! * dot;
      }
      for (let s = 0; s < S; s++) {
        const ds = scale * P[s]! * (dP[s]! - rowsum);
        for (let d = 0; d < D; d++) {
          dq[qi + d] += ds * K[kv + s * D + d]!;
          dk[kv + s * D + d] += ds * Q[qi + d]!;
          dv[kv + s * D + d] += P[s]! * G[qi + d]!;
        }
      }
    }
  }
  return [dq, dk, dv];
}

test('large f32 attention (per-block GEMMs split across the worker pool) matches the naive forward and backward', () => {
  const mode: Mode = { causal: true, window: 600, alibi: true };
  const [B, H, Hkv, T, D] = [1, 2, 1, 640, 64];
  const q = randn([B, H, T, D], 30, 'f32', 2), k = randn([B, Hkv, T, D], 31, 'f32', 2), v = randn([B, Hkv, T, D], 32, 'f32');
  const dO = randn([B, H, T, D], 33, 'f32');
  const { o, lse } = run(q, k, v, mode);
  const ref = naiveAttention(q, k, v, mode);
  // f32 storage with f64 accumulation: only the final rounding separates us from the f64 reference.
  assertClose(o.toArray(), ref.o, { rtol: 1e-5, atol: 1e-6 }, 'o');
  assertClose(lse.toArray(), ref.lse, { rtol: 1e-6, atol: 1e-6 }, 'lse');
  const attrs = { scale: 1 / Math.sqrt(D), causal: mode.causal, window: mode.window, alibi: mode.alibi };
  const grads = runKernel('attentionBackward', [q, k, v, o, lse, dO], attrs);
  const refGrads = naiveAttentionBackward(q, k, v, dO, mode);
  ['dq', 'dk', 'dv'].forEach((name, i) => assertClose(grads[i]!.toArray(), refGrads[i]!, { rtol: 1e-5, atol: 2e-6 }, name));
});

test('attention validates shapes and options', () => {
  const q = randn([1, 3, 4, 2], 1), k = randn([1, 2, 4, 2], 2);
  assert.throws(() => ops.attention(q, k, k), /not a multiple/);
  assert.throws(() => ops.attention(randn([1, 2, 4, 2], 1), k, randn([1, 2, 5, 2], 3)), /differ/);
  assert.throws(() => ops.attention(randn([1, 2, 4, 2], 1), k, k, { window: 1.5 }), /window/);
});

// ---------------------------------------------------------------------------------------------
// The bshd layout: q, o [B, T, H, D], k, v [B, S, Hkv, D], lse [B, H, T]

/** (B, X, Y, D) ↔ (B, Y, X, D): bhsd ↔ bshd. */
const swap12 = (x: Tensor): Tensor => ops.permute(x, [0, 2, 1, 3]);

/** Same shape, dtype and bytes. */
function assertBitwise(actual: Tensor, expected: Tensor, what: string): void {
  assert.deepEqual(actual.shape, expected.shape, `${what}: shape`);
  assert.equal(actual.dtype, expected.dtype, `${what}: dtype`);
  const a = actual.toArray(), e = expected.toArray();
  const bytes = (x: typeof a) => Buffer.from(x.buffer, x.byteOffset, x.byteLength);
  if (!bytes(a).equals(bytes(e))) {
    const i = Array.from(a).findIndex((v, j) => !Object.is(v, e[j]));
    assert.fail(`${what}: differs at ${i}: ${a[i]} vs ${e[i]}`);
  }
}

test('attention bshd equals permute ∘ attention(bhsd) ∘ permute bitwise: o, lse, dq, dk, dv in every mode, f64 and f32', () => {
  for (const [name, B, H, Hkv, T, S, D, mode] of CASES) {
    for (const dtype of ['f64', 'f32'] as const) {
      const q = randn([B, H, T, D], 41, dtype, 2), k = randn([B, Hkv, S, D], 42, dtype, 2), v = randn([B, Hkv, S, D], 43, dtype);
      const dO = randn([B, H, T, D], 44, dtype);
      const attrs: KernelAttrs['attention'] = { scale: mode.scale ?? 1 / Math.sqrt(D), causal: mode.causal, window: mode.window, alibi: mode.alibi };
      const [o, lse] = runKernel('attention', [q, k, v], attrs);
      const grads = runKernel('attentionBackward', [q, k, v, o!, lse!, dO], attrs);
      const bshd = { ...attrs, layout: 'bshd' as const };
      const [qs, ks, vs, dOs] = [q, k, v, dO].map(swap12) as [Tensor, Tensor, Tensor, Tensor];
      const [os, lses] = runKernel('attention', [qs, ks, vs], bshd);
      const at = `${name} (${dtype})`;
      assert.deepEqual(os!.shape, [B, T, H, D], `${at}: o is [B, T, H, D]`);
      assertBitwise(os!, swap12(o!), `${at}: o`);
      assertBitwise(lses!, lse!, `${at}: lse stays [B, H, T]`);
      const gradsS = runKernel('attentionBackward', [qs, ks, vs, os!, lses!, dOs], bshd);
      ['dq', 'dk', 'dv'].forEach((g, i) => assertBitwise(gradsS[i]!, swap12(grads[i]!), `${at}: ${g}`));
      // The op front-end reads the layout too, and the explicit default is bhsd.
      assertBitwise(ops.attention(qs, ks, vs, { ...mode, layout: 'bshd' }), os!, `${at}: ops.attention bshd`);
      assertBitwise(ops.attention(q, k, v, { ...mode, layout: 'bhsd' }), o!, `${at}: ops.attention bhsd`);
    }
  }
});

test('attention bshd: larger f32 problem (several query blocks, GQA, window, ALiBi) equals the permuted bhsd bitwise', () => {
  const [B, H, Hkv, T, D] = [2, 6, 2, 150, 32];
  const attrs: KernelAttrs['attention'] = { scale: 0.2, causal: true, window: 90, alibi: true };
  const q = randn([B, H, T, D], 45, 'f32', 2), k = randn([B, Hkv, T, D], 46, 'f32', 2), v = randn([B, Hkv, T, D], 47, 'f32');
  const dO = randn([B, H, T, D], 48, 'f32');
  const [o, lse] = runKernel('attention', [q, k, v], attrs);
  const grads = runKernel('attentionBackward', [q, k, v, o!, lse!, dO], attrs);
  const bshd = { ...attrs, layout: 'bshd' as const };
  const [qs, ks, vs, dOs] = [q, k, v, dO].map(swap12) as [Tensor, Tensor, Tensor, Tensor];
  const [os, lses] = runKernel('attention', [qs, ks, vs], bshd);
  assertBitwise(os!, swap12(o!), 'o');
  assertBitwise(lses!, lse!, 'lse');
  const gradsS = runKernel('attentionBackward', [qs, ks, vs, os!, lses!, dOs], bshd);
  ['dq', 'dk', 'dv'].forEach((g, i) => assertBitwise(gradsS[i]!, swap12(grads[i]!), g));
});

test('attention bshd gradients match finite differences (MHA, GQA with window and ALiBi, T < S)', () => {
  const modes: [number, number, number, number, number, Mode][] = [
    [2, 2, 2, 5, 5, causal],
    [1, 4, 2, 6, 6, { causal: true, window: 3, alibi: true }],
    [1, 3, 1, 3, 7, { causal: true, window: 0, alibi: false, scale: 0.6 }],
  ];
  for (const [B, H, Hkv, T, S, mode] of modes) {
    const D = 3;
    gradcheck((q, k, v) => ops.attention(q, k, v, { ...mode, layout: 'bshd' }),
      [randn([B, T, H, D], 50), randn([B, S, Hkv, D], 51), randn([B, S, Hkv, D], 52)]);
  }
});

test('attention bshd validates shapes against its layout', () => {
  const q = randn([1, 4, 3, 2], 1), k = randn([1, 4, 2, 2], 2); // T 4, H 3, Hkv 2
  assert.throws(() => ops.attention(q, k, k, { layout: 'bshd' }), /not a multiple/);
  assert.throws(() => ops.attention(randn([1, 4, 2, 2], 1), randn([1, 4, 2, 3], 2), randn([1, 4, 2, 3], 3), { layout: 'bshd' }), /head dim/);
  assert.throws(() => ops.attention(q, k, k, { layout: 'bsdh' as never }), /layout/);
  assert.throws(() => ops.rotary(q, 2, 10000, 0, { layout: 'hbsd' as never }), /layout/);
  // q [B, T, H, D] = [1, 5, 4, 2] with k, v [1, 5, 2, 2]: T = 5, H = 4, Hkv = 2.
  const ok = ops.attention(randn([1, 5, 4, 2], 3), randn([1, 5, 2, 2], 4), randn([1, 5, 2, 2], 5), { layout: 'bshd' });
  assert.deepEqual(ok.shape, [1, 5, 4, 2]);
});

// ---------------------------------------------------------------------------------------------
// Rotary

/** Rotate-half on the first rd dims with f64 angles p · base^(−2i/rd). */
function naiveRotary(x: Tensor, rd: number, base: number, offset: number): Float64Array {
  const [, , T, D] = x.shape as [number, number, number, number];
  const X = Float64Array.from(x.toArray());
  const y = Float64Array.from(X);
  const half = rd / 2;
  for (let r = 0; r < x.numel / D; r++) {
    const p = offset + (r % T);
    const o = r * D;
    // x·cos + rotate_half(x)·sin, rotate_half(x) = cat(−x2, x1)
    for (let i = 0; i < rd; i++) {
      const theta = p * base ** (-(2 * (i % half)) / rd);
      const rot = i < half ? -X[o + i + half]! : X[o + i - half]!;
      y[o + i] = X[o + i]! * Math.cos(theta) + rot * Math.sin(theta);
    }
  }
  return y;
}

test('rotary matches the rotate-half reference: full, rotary_pct = 0.25, offset > 0, and 0 dims', () => {
  const D = 16;
  for (const [rd, offset, base] of [[16, 0, 10000], [4, 0, 10000], [4, 9, 10000], [8, 3, 500000], [0, 5, 10000]] as const) {
    for (const dtype of ['f64', 'f32'] as const) {
      const x = randn([2, 3, 11, D], 20, dtype);
      const y = ops.rotary(x, rd, base, offset);
      assert.deepEqual(y.shape, x.shape);
      // Our angles are f32 like GPT-NeoX/HF; the f64-angle reference differs by ≲ position · 2^−24.
      assertClose(y.toArray(), naiveRotary(x, rd, base, offset), { rtol: 1e-5, atol: 3e-6 }, `rotary rd=${rd} offset=${offset} ${dtype}`);
      const Y = y.toArray(), X = x.toArray();
      for (let r = 0; r < x.numel / D; r++) for (let i = rd; i < D; i++) assert.equal(Y[r * D + i], X[r * D + i]);
    }
  }
});

test('rotary angles are f32 products of f32 inv_freq and position, as GPT-NeoX and HF build them', () => {
  const rd = 8, base = 10000, offset = 2040;
  const f32 = new Float32Array(4);
  const { cos, sin } = ops.rotaryTable(10, rd, base, offset);
  for (let t = 0; t < 10; t++) for (let i = 0; i < rd / 2; i++) {
    f32[0] = (2 * i) / rd; // arange(0, d, 2).float() / d
    f32[1] = base ** f32[0]!; // base ** (...) in f32
    f32[2] = 1 / f32[1]!; // inv_freq
    f32[3] = (offset + t) * f32[2]!; // position.float() · inv_freq in f32
    assert.equal(cos[t * (rd / 2) + i], Math.cos(f32[3]!));
    assert.equal(sin[t * (rd / 2) + i], Math.sin(f32[3]!));
  }
});

test('rotary gradient matches finite differences; inverse undoes the rotation', () => {
  gradcheck((x) => ops.rotary(x, 4, 10000, 7), [randn([1, 2, 5, 8], 21)]);
  gradcheck((x) => ops.rotary(x, 8, 10000, 0), [randn([2, 1, 4, 8], 22)]);
  const x = randn([2, 3, 9, 12], 23);
  for (const rd of [12, 6, 4]) {
    const y = ops.rotary(x, rd, 10000, 13);
    const back = runKernel('rotary', [y], { rotaryDims: rd, base: 10000, offset: 13, inverse: true })[0]!;
    assertClose(back.toArray(), x.toArray(), { rtol: 1e-12, atol: 1e-12 });
  }
  assert.throws(() => ops.rotary(x, 5, 10000), /even/);
  assert.throws(() => ops.rotary(x, 14, 10000), /rotaryDims/);
});

test('rotary bshd ([B, T, H, D], positions along axis 1) equals permute ∘ rotary(bhsd) ∘ permute bitwise', () => {
  const D = 12;
  for (const dtype of ['f64', 'f32'] as const) {
    const x = randn([2, 5, 9, D], 24, dtype, 2); // bhsd: B 2, H 5, T 9
    const xs = swap12(x); // bshd: [2, 9, 5, D]
    for (const [rd, offset] of [[12, 0], [6, 0], [4, 13], [8, 2040], [0, 3]] as const) {
      for (const inverse of [false, true]) {
        const attrs = { rotaryDims: rd, base: 10000, offset, inverse };
        const y = runKernel('rotary', [x], attrs)[0]!;
        const ys = runKernel('rotary', [xs], { ...attrs, layout: 'bshd' })[0]!;
        assertBitwise(ys, swap12(y), `rotary ${dtype} dims ${rd} offset ${offset}${inverse ? ' inverse' : ''}`);
        assertBitwise(runKernel('rotary', [x], { ...attrs, layout: 'bhsd' })[0]!, y, 'explicit bhsd is the default');
      }
      assertBitwise(ops.rotary(xs, rd, 10000, offset, { layout: 'bshd' }), swap12(ops.rotary(x, rd, 10000, offset)), `ops.rotary bshd ${dtype}`);
    }
  }
  // T = 1 (one decoding step) and H = 1 are the degenerate layouts where bshd and bhsd coincide in memory.
  const one = randn([3, 1, 4, 8], 25);
  assertBitwise(ops.rotary(one, 8, 10000, 7, { layout: 'bshd' }), swap12(ops.rotary(swap12(one), 8, 10000, 7)), 'T = 1');
});

test('rotary bshd gradient matches finite differences', () => {
  gradcheck((x) => ops.rotary(x, 4, 10000, 7, { layout: 'bshd' }), [randn([1, 5, 2, 8], 26)]);
  gradcheck((x) => ops.rotary(x, 6, 500, 0, { layout: 'bshd' }), [randn([2, 4, 3, 6], 27)]);
});

// ---------------------------------------------------------------------------------------------
// Packed QKV

test('packed QKV: rotaryQKV + attentionQKV (native CPU kernels) equal split → rotary → attention bitwise (o and the qkv gradient), and packedReference too; gradients match finite differences', () => {
  // The last case is large enough for the worker pool to split it over threads.
  for (const [B, T, H, D, rot, offset, dtype] of [[2, 7, 3, 8, 4, 0, 'f64'], [1, 40, 2, 6, 6, 3, 'f32'], [1, 5, 2, 4, 0, 0, 'f64'], [2, 96, 4, 16, 4, 0, 'f32']] as const) {
    const x = randn([B, T, H, 3 * D], 40 + T, dtype);
    const mode = { causal: true, window: 0, alibi: false };
    const packed = (qkv: Tensor) => ops.attentionQKV(rot ? ops.rotaryQKV(qkv, rot, 10000, offset) : qkv, mode);
    const separate = (qkv: Tensor) => {
      let [q, k, v] = ops.split(qkv, [D, D, D], -1) as [Tensor, Tensor, Tensor];
      if (rot) [q, k] = [ops.rotary(q, rot, 10000, offset, { layout: 'bshd' }), ops.rotary(k, rot, 10000, offset, { layout: 'bshd' })];
      return ops.attention(q, k, v, { ...mode, layout: 'bshd' });
    };
    const dO = randn([B, T, H, D], 90 + T, dtype);
    const run = (f: (qkv: Tensor) => Tensor) => {
      const xi = tensor(x.toArray(), x.shape, dtype);
      xi.requiresGrad = true;
      const o = f(xi);
      const values = Array.from(o.toArray());
      backward(ops.sum(ops.mul(o, dO)));
      return { o: values, g: Array.from(xi.grad!.toArray()) };
    };
    const a = run(packed), b = run(separate);
    assert.deepEqual(a.o, b.o, `o, [${x.shape}] rot ${rot}`);
    assert.deepEqual(a.g, b.g, `dqkv, [${x.shape}] rot ${rot}`);
    // The composition the CUDA kernels fall back to equals the CPU's native packed kernels.
    const attrs = { scale: 1 / Math.sqrt(D), ...mode };
    const [o1, l1] = runKernel('attentionQKV', [x], attrs);
    const [o2, l2] = ops.packedReference.attentionQKV(x, attrs);
    assert.deepEqual(Array.from(o2!.toArray()), Array.from(o1!.toArray()));
    assert.deepEqual(Array.from(l2!.toArray()), Array.from(l1!.toArray()));
    assert.deepEqual(Array.from(ops.packedReference.attentionQKVBackward(x, o1!, l1!, dO, attrs).toArray()),
      Array.from(runKernel('attentionQKVBackward', [x, o1!, l1!, dO], attrs)[0]!.toArray()));
    if (rot) {
      const r = { rotaryDims: rot, base: 10000, offset, inverse: false };
      assert.deepEqual(Array.from(ops.packedReference.rotaryQKV(x, r).toArray()), Array.from(runKernel('rotaryQKV', [x], r)[0]!.toArray()));
    }
  }
  gradcheck((qkv) => ops.rotaryQKV(qkv, 4, 10000, 2), [randn([1, 3, 2, 18], 51)]);
  gradcheck((qkv) => ops.attentionQKV(ops.rotaryQKV(qkv, 2, 500, 0)), [randn([2, 4, 2, 12], 52)]);
  assert.throws(() => ops.attentionQKV(randn([1, 2, 3, 8], 53)), /attentionQKV: expected qkv \[B, T, H, 3·D\], got \[1,2,3,8\]/);
  assert.throws(() => ops.rotaryQKV(randn([1, 2, 3, 12], 54), 6, 10000), /rotaryQKV: rotaryDims must be an even integer in \[0, 4\], got 6/);
});

// ---------------------------------------------------------------------------------------------
// Position helpers

test('alibiSlopes follows GPT-NeoX: geometric for powers of 2, interleaved from 2p otherwise', () => {
  assertClose(ops.alibiSlopes(8), [1 / 2, 1 / 4, 1 / 8, 1 / 16, 1 / 32, 1 / 64, 1 / 128, 1 / 256], { rtol: 1e-15, atol: 0 });
  assertClose(ops.alibiSlopes(6), [1 / 4, 1 / 16, 1 / 64, 1 / 256, 1 / 2, 1 / 8], { rtol: 1e-15, atol: 0 });
  assertClose(ops.alibiSlopes(1), [1 / 256], { rtol: 1e-15, atol: 0 });
  for (const n of [2, 3, 4, 5, 7, 12, 16, 20, 32, 40, 64, 96]) {
    assertClose(ops.alibiSlopes(n), closedFormSlopes(n), { rtol: 1e-14, atol: 0 }, `slopes(${n})`);
  }
});

test('sinusoidalPositions is GPT-NeoX\'s [sin ‖ cos] layout with inv_freq = 1/10000^(2i/C)', () => {
  const T = 20, C = 10;
  const pe = ops.sinusoidalPositions(T, C);
  assert.equal(pe.length, T * C);
  const want = new Float64Array(T * C);
  for (let t = 0; t < T; t++) for (let i = 0; i < C / 2; i++) {
    const a = t / 10000 ** ((2 * i) / C);
    want[t * C + i] = Math.sin(a);
    want[t * C + C / 2 + i] = Math.cos(a);
  }
  assertClose(pe, want, { rtol: 1e-5, atol: 1e-5 });
  assert.throws(() => ops.sinusoidalPositions(4, 7), /even/);
});
