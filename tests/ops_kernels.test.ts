// Kernel families beyond the basics: shape (permute/split/concat), norms, activations, dropout
// (Philox), cross-entropy, AdamW. Forward against naive f64 references written here, backward
// against finite differences (gradcheck in f64), plus edge cases and known-answer vectors.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { erf } from '../src/backends/cpu/kernels/activation.js';
import * as ops from '../src/ops/index.js';
import { type ActivationKind, type Tensor, backward, bf16ToF32, f32ToBf16, hasKernel, runKernel, scope, tensor } from '../src/tensor/index.js';
import { normal, philox4x32, uniform, uniformWord } from '../src/tensor/philox.js';
import { assertClose, gradcheck, randn, rng } from './helpers/check.js';

const f64 = (t: Tensor): Float64Array => Float64Array.from(t.toArray());

test('every kernel of these families has a CPU implementation', () => {
  for (const k of ['permute', 'split', 'concat', 'layerNorm', 'layerNormBackward', 'rmsNorm', 'rmsNormBackward', 'scaleNorm',
    'scaleNormBackward', 'activation', 'activationBackward', 'gatedActivation', 'gatedActivationBackward', 'softmax',
    'softmaxBackward', 'dropout', 'crossEntropy', 'crossEntropyBackward', 'adamw', 'clipFactor', 'adamwMulti']) {
    assert.ok(hasKernel(k, 'cpu'), k);
  }
});

// ---------------------------------------------------------------------------------------------
// Shape

function naivePermute(x: Float64Array, shape: number[], perm: number[]): Float64Array {
  const outShape = perm.map((p) => shape[p]!);
  const strides = shape.map((_, i) => shape.slice(i + 1).reduce((a, b) => a * b, 1));
  const y = new Float64Array(x.length);
  const idx = new Array<number>(shape.length).fill(0);
  for (let o = 0; o < y.length; o++) {
    let rem = o;
    for (let d = outShape.length - 1; d >= 0; d--) {
      idx[d] = rem % outShape[d]!;
      rem = Math.floor(rem / outShape[d]!);
    }
    let src = 0;
    for (let d = 0; d < perm.length; d++) src += idx[d]! * strides[perm[d]!]!;
    y[o] = x[src]!;
  }
  return y;
}

test('permute matches a naive gather for many permutations, size-1 dims and i32', () => {
  const cases: [number[], number[]][] = [
    [[2, 3], [1, 0]], [[2, 3, 4, 5], [0, 2, 1, 3]], [[2, 3, 4, 5], [3, 1, 0, 2]], [[3, 1, 4], [2, 1, 0]],
    [[2, 5, 1, 3], [0, 3, 2, 1]], [[4, 3, 2], [0, 1, 2]], [[1, 1], [1, 0]], [[2, 3, 17, 5], [0, 2, 1, 3]], [[7], [0]],
  ];
  for (const [shape, perm] of cases) {
    const x = randn(shape, shape.length * 7 + perm[0]!);
    const y = ops.permute(x, perm);
    assert.deepEqual(y.shape, perm.map((p) => shape[p]));
    assert.deepEqual(Array.from(y.toArray()), Array.from(naivePermute(f64(x), shape, perm)), `perm [${perm}] of [${shape}]`);
  }
  const ids = tensor([0, 1, 2, 3, 4, 5], [2, 3], 'i32');
  assert.deepEqual(Array.from(ops.permute(ids, [1, 0]).toArray()), [0, 3, 1, 4, 2, 5]);
  assert.throws(() => ops.permute(ids, [0, 0]), /not a permutation/);
});

test('permute gradient is the inverse permutation', () => {
  gradcheck((x) => ops.permute(x, [2, 0, 1]), [randn([2, 3, 4], 1)]);
  gradcheck((x) => ops.permute(x, [0, 2, 1, 3]), [randn([2, 3, 2, 3], 2)]);
});

test('split and concat match naive slicing on every axis, and invert each other', () => {
  const x = randn([3, 4, 6], 3);
  const xv = f64(x);
  const at = (i: number, j: number, k: number) => xv[i * 24 + j * 6 + k]!;
  const [a, b, c] = ops.split(x, [1, 0, 5], -1);
  assert.deepEqual([a!.shape, b!.shape, c!.shape], [[3, 4, 1], [3, 4, 0], [3, 4, 5]]);
  const ref: number[] = [];
  for (let i = 0; i < 3; i++) for (let j = 0; j < 4; j++) for (let k = 1; k < 6; k++) ref.push(at(i, j, k));
  assert.deepEqual(Array.from(c!.toArray()), ref);
  const [p, q] = ops.split(x, [3, 1], 1);
  const refQ: number[] = [];
  for (let i = 0; i < 3; i++) for (let k = 0; k < 6; k++) refQ.push(at(i, 3, k));
  assert.deepEqual(Array.from(q!.toArray()), refQ);
  for (const axis of [0, 1, 2, -1]) {
    const dim = x.shape[axis < 0 ? axis + 3 : axis]!;
    const sizes = dim === 3 ? [2, 1] : dim === 4 ? [1, 2, 1] : [3, 3];
    assert.deepEqual(Array.from(ops.concat(ops.split(x, sizes, axis), axis).toArray()), Array.from(xv));
  }
  assert.deepEqual(ops.concat([p!, q!], 1).shape, [3, 4, 6]);
  assert.throws(() => ops.split(x, [2, 2], -1), /add up/);
  assert.throws(() => ops.concat([x, randn([3, 5, 6], 1)], -1), /differ outside axis/);
  const ids = ops.concat([tensor([1, 2], [1, 2], 'i32'), tensor([3, 4, 5, 6], [2, 2], 'i32')], 0);
  assert.deepEqual(Array.from(ids.toArray()), [1, 2, 3, 4, 5, 6]);
});

test('split gradient concatenates, with zeros for unused pieces; concat gradient splits', () => {
  gradcheck((x) => ops.split(x, [2, 3, 1], 1)[1]!, [randn([2, 6, 3], 4)]);
  gradcheck((x) => {
    const [a, b] = ops.split(x, [1, 3], -1);
    return ops.concat([b!, a!, b!], -1); // b used twice
  }, [randn([3, 4], 5)]);
  gradcheck((a, b, c) => ops.concat([a, b, c], 0), [randn([1, 3], 6), randn([2, 3], 7), randn([3, 3], 8)]);
  gradcheck((a, b) => ops.concat([a, b], 1), [randn([2, 2, 3], 9), randn([2, 1, 3], 10)]);
});

// ---------------------------------------------------------------------------------------------
// Norms

function naiveLayerNorm(x: Float64Array, w: Float64Array, b: Float64Array | null, C: number, eps: number): Float64Array {
  const y = new Float64Array(x.length);
  for (let o = 0; o < x.length; o += C) {
    let m = 0;
    for (let c = 0; c < C; c++) m += x[o + c]! / C;
    let v = 0;
    for (let c = 0; c < C; c++) v += (x[o + c]! - m) ** 2 / C;
    for (let c = 0; c < C; c++) y[o + c] = ((x[o + c]! - m) / Math.sqrt(v + eps)) * w[c]! + (b ? b[c]! : 0);
  }
  return y;
}

test('layerNorm matches the naive formula (with and without bias, f32 and f64, C = 1)', () => {
  const x = randn([2, 3, 5], 11, 'f64', 3), w = randn([5], 12), b = randn([5], 13);
  assertClose(f64(ops.layerNorm(x, w, b, 1e-5)), naiveLayerNorm(f64(x), f64(w), f64(b), 5, 1e-5), { rtol: 1e-12, atol: 1e-12 });
  assertClose(f64(ops.layerNorm(x, w, null, 1e-5)), naiveLayerNorm(f64(x), f64(w), null, 5, 1e-5), { rtol: 1e-12, atol: 1e-12 });
  const x32 = randn([4, 33], 14, 'f32', 2), w32 = randn([33], 15, 'f32'), b32 = randn([33], 16, 'f32');
  const y32 = ops.layerNorm(x32, w32, b32, 1e-5);
  assert.equal(y32.dtype, 'f32');
  assertClose(f64(y32), naiveLayerNorm(f64(x32), f64(w32), f64(b32), 33, 1e-5), { rtol: 1e-5, atol: 1e-5 });
  // C = 1: every row normalizes to 0, so y = b.
  const y1 = ops.layerNorm(randn([3, 1], 17), tensor([2], [1], 'f64'), tensor([0.5], [1], 'f64'), 1e-5);
  assert.deepEqual(Array.from(y1.toArray()), [0.5, 0.5, 0.5]);
  assert.throws(() => ops.layerNorm(x, randn([4], 1), null, 1e-5), /last dim/);
});

test('layerNorm gradients match finite differences', () => {
  gradcheck((x, w, b) => ops.layerNorm(x, w, b, 1e-5), [randn([2, 3, 5], 18), randn([5], 19), randn([5], 20)]);
  gradcheck((x, w) => ops.layerNorm(x, w, null, 1e-5), [randn([4, 7], 21), randn([7], 22)]);
  gradcheck((x, w, b) => ops.layerNorm(x, w, b, 1e-5), [randn([3, 1], 23), randn([1], 24), randn([1], 25)]);
});

test('rmsNorm matches x / √(mean(x²) + eps) · w and its gradients', () => {
  const x = randn([2, 3, 6], 26), w = randn([6], 27);
  const xv = f64(x), wv = f64(w);
  const ref = new Float64Array(xv.length);
  for (let o = 0; o < xv.length; o += 6) {
    let ms = 0;
    for (let c = 0; c < 6; c++) ms += xv[o + c]! ** 2 / 6;
    for (let c = 0; c < 6; c++) ref[o + c] = (xv[o + c]! / Math.sqrt(ms + 1e-6)) * wv[c]!;
  }
  assertClose(f64(ops.rmsNorm(x, w, 1e-6)), ref, { rtol: 1e-12, atol: 1e-12 });
  gradcheck((x, w) => ops.rmsNorm(x, w, 1e-6), [randn([2, 3, 6], 28), randn([6], 29)]);
  gradcheck((x, w) => ops.rmsNorm(x, w, 1e-6), [randn([3, 1], 30), randn([1], 31)]);
});

test('scaleNorm matches x / max(‖x‖, eps) · g, including clamped rows, and its gradients', () => {
  // Row 0 is tiny (its norm is clamped to eps), row 1 is not.
  const x = tensor([0.01, -0.02, 0.015, 0.005, 0.7, -0.4, 0.9, 0.3], [2, 4], 'f64');
  const g = tensor([1.7], [1], 'f64');
  const eps = 0.1;
  const xv = f64(x);
  const ref = new Float64Array(8);
  for (let r = 0; r < 2; r++) {
    const n = Math.hypot(...xv.subarray(r * 4, r * 4 + 4));
    for (let c = 0; c < 4; c++) ref[r * 4 + c] = (xv[r * 4 + c]! / Math.max(n, eps)) * 1.7;
  }
  assertClose(f64(ops.scaleNorm(x, g, eps)), ref, { rtol: 1e-12, atol: 1e-14 });
  gradcheck((x, g) => ops.scaleNorm(x, g, eps), [x, g]);
  gradcheck((x, g) => ops.scaleNorm(x, g, 1e-5), [randn([2, 3, 5], 32), randn([1], 33)]);
  assert.throws(() => ops.scaleNorm(x, randn([4], 1), eps), /one element/);
});

// ---------------------------------------------------------------------------------------------
// Activations

/** erf by its Taylor series (|x| < 3) or the continued fraction of erfc (|x| ≥ 3), in f64. */
function erfRef(x: number): number {
  const ax = Math.abs(x);
  if (ax < 3) {
    let term = x, s = x;
    for (let n = 1; n < 200; n++) {
      term *= (-x * x) / n;
      const t = term / (2 * n + 1);
      s += t;
      if (Math.abs(t) < 1e-18) break;
    }
    return (s * 2) / Math.sqrt(Math.PI);
  }
  let fr = ax;
  for (let k = 80; k >= 1; k--) fr = ax + k / 2 / fr;
  return Math.sign(x) * (1 - Math.exp(-ax * ax) / Math.sqrt(Math.PI) / fr);
}

test('erf is accurate to well below 1e-7 everywhere', () => {
  let worst = 0;
  for (let x = -7; x <= 7; x += 0.00123) worst = Math.max(worst, Math.abs(erf(x) - erfRef(x)));
  assert.ok(worst < 1e-12, `max |erf − ref| = ${worst}`);
  assertClose([erf(0.5), erf(1), erf(2), erf(3), erf(-1), erf(0)], [0.5204998778130465, 0.8427007929497149, 0.9953222650189527, 0.9999779095030014, -0.8427007929497149, 0], { rtol: 1e-15, atol: 1e-16 });
  assert.ok(Number.isNaN(erf(NaN)));
  assert.equal(erf(Infinity), 1);
  assert.equal(erf(-Infinity), -1);
});

const ACT: Record<ActivationKind, (x: number) => number> = {
  gelu: (x) => 0.5 * x * (1 + erfRef(x / Math.SQRT2)),
  gelu_tanh: (x) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3))),
  relu: (x) => Math.max(x, 0),
  silu: (x) => x / (1 + Math.exp(-x)),
};
const KINDS = Object.keys(ACT) as ActivationKind[];

test('activations match their formulas in f64 and f32', () => {
  for (const kind of KINDS) {
    const x = randn([3, 7], 40, 'f64', 4);
    assertClose(f64(ops.activation(x, kind)), Array.from(f64(x), ACT[kind]), { rtol: 1e-12, atol: 1e-13 }, kind);
    const x32 = randn([5, 9], 41, 'f32', 4);
    assertClose(f64(ops.activation(x32, kind)), Array.from(f64(x32), ACT[kind]), { rtol: 1e-6, atol: 1e-7 }, `${kind} f32`);
  }
  // Large magnitudes stay finite.
  const big = tensor([-100, -30, 30, 100], [4], 'f64');
  for (const kind of KINDS) for (const v of f64(ops.activation(big, kind))) assert.ok(Number.isFinite(v), kind);
});

test('activation gradients match finite differences', () => {
  for (const kind of KINDS) gradcheck((x) => ops.activation(x, kind), [randn([2, 5], 42, 'f64', 3)]);
});

test('gatedActivation is act(second half) · first half, for odd F, with gradients', () => {
  for (const kind of KINDS) {
    const x = randn([2, 2, 6], 43, 'f64', 3); // F = 3
    const xv = f64(x);
    const ref: number[] = [];
    for (let r = 0; r < 4; r++) for (let j = 0; j < 3; j++) ref.push(ACT[kind](xv[r * 6 + 3 + j]!) * xv[r * 6 + j]!);
    const y = ops.gatedActivation(x, kind);
    assert.deepEqual(y.shape, [2, 2, 3]);
    assertClose(f64(y), ref, { rtol: 1e-12, atol: 1e-13 }, kind);
    gradcheck((x) => ops.gatedActivation(x, kind), [randn([3, 10], 44, 'f64', 3)]);
    gradcheck((x) => ops.gatedActivation(x, kind), [randn([2, 2], 45, 'f64', 3)]); // F = 1
  }
  assert.throws(() => ops.gatedActivation(randn([2, 3], 1), 'silu'), /even/);
});

test('softmax over the last dim matches the naive formula, is stable for large inputs, and has the right gradient', () => {
  const x = randn([3, 4, 5], 46, 'f64', 5);
  const xv = f64(x);
  const ref = new Float64Array(xv.length);
  for (let o = 0; o < xv.length; o += 5) {
    let s = 0;
    for (let c = 0; c < 5; c++) s += Math.exp(xv[o + c]!);
    for (let c = 0; c < 5; c++) ref[o + c] = Math.exp(xv[o + c]!) / s;
  }
  assertClose(f64(ops.softmax(x)), ref, { rtol: 1e-12, atol: 1e-15 });
  const big = ops.softmax(tensor([1000, 1001, 999, -1000], [1, 4], 'f32'));
  const e = [Math.exp(-1), 1, Math.exp(-2), 0];
  const z = e.reduce((a, b) => a + b);
  assertClose(f64(big), e.map((v) => v / z), { rtol: 1e-6, atol: 1e-7 });
  assert.deepEqual(Array.from(ops.softmax(tensor([3], [1, 1], 'f64')).toArray()), [1]);
  gradcheck((x) => ops.softmax(x), [randn([3, 6], 47, 'f64', 2)]);
});

// ---------------------------------------------------------------------------------------------
// Philox and dropout

test('philox4x32-10 reproduces the Random123 known-answer vectors', () => {
  const kat: [number[], number[], number[]][] = [
    [[0, 0, 0, 0], [0, 0], [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]],
    [[0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff], [0xffffffff, 0xffffffff], [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]],
    [[0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0], [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]],
  ];
  for (const [c, k, expected] of kat) {
    assert.deepEqual(Array.from(philox4x32(c[0]!, c[1]!, c[2]!, c[3]!, k[0]!, k[1]!)), expected);
  }
});

test('the uniform stream follows its documented layout (64-bit counter and key split, carries)', () => {
  // seed = 5·2^32 + 7 → key (7, 5); position 4·(3·2^32 + 9) + 2 → counter (9, 3, 0, 0), word 2.
  const seed = 5 * 2 ** 32 + 7;
  const pos = 4 * (3 * 2 ** 32 + 9) + 2;
  const w = philox4x32(9, 3, 0, 0, 7, 5)[2]!;
  assert.equal(uniformWord(seed, pos), w);
  assert.equal(uniform(seed, pos, 1)[0], (w >>> 8) * 2 ** -24);
  // A run crossing the carry from block (0xffffffff, 0) to (0, 1), starting mid-block.
  const start = 4 * (2 ** 32 - 1) + 2;
  const u = uniform(42, start, 6);
  const b0 = philox4x32(0xffffffff, 0, 0, 0, 42, 0), b1 = philox4x32(0, 1, 0, 0, 42, 0);
  assert.deepEqual(Array.from(u), [b0[2]!, b0[3]!, b1[0]!, b1[1]!, b1[2]!, b1[3]!].map((x) => (x >>> 8) * 2 ** -24));
  // Element i depends only on offset + i.
  const long = uniform(3, 5, 50);
  assert.deepEqual(Array.from(uniform(3, 12, 20)), Array.from(long.subarray(7, 27)));
  assert.ok(long.every((v) => v >= 0 && v < 1));
  assert.throws(() => uniform(-1, 0, 4), /seed/);
});

test('normal() is Box–Muller over uniform pairs with mean 0 and variance 1', () => {
  const n = 100_000;
  const z = normal(7, 0, n);
  let s = 0, s2 = 0;
  for (const v of z) {
    s += v;
    s2 += v * v;
  }
  assert.ok(Math.abs(s / n) < 0.02, `mean ${s / n}`);
  assert.ok(Math.abs(s2 / n - 1) < 0.02, `variance ${s2 / n}`);
  const u = uniform(7, 10, 4);
  const r = Math.sqrt(-2 * Math.log(1 - u[0]!));
  assertClose(normal(7, 10, 3), [r * Math.cos(2 * Math.PI * u[1]!), r * Math.sin(2 * Math.PI * u[1]!), Math.sqrt(-2 * Math.log(1 - u[2]!)) * Math.cos(2 * Math.PI * u[3]!)], { rtol: 1e-6, atol: 1e-7 });
});

test('dropout: p = 0 is the identity, masks follow the Philox stream and keep ≈ 1 − p', () => {
  const x = randn([10], 50, 'f32');
  assert.equal(ops.dropout(x, 0, 1, 0), x);
  const n = 100_000;
  const ones = tensor(new Float32Array(n).fill(1), [n], 'f32');
  for (const p of [0.1, 0.5, 0.9]) {
    const y = ops.dropout(ones, p, 1234, 777).toArray() as Float32Array;
    const u = uniform(1234, 777, n);
    const scale = Math.fround(1 / (1 - p));
    let kept = 0;
    for (let i = 0; i < n; i++) {
      const keep = u[i]! >= p;
      if (keep) kept++;
      if (y[i] !== (keep ? scale : 0)) assert.fail(`p=${p}: element ${i} is ${y[i]}, expected ${keep ? scale : 0}`);
    }
    assert.ok(Math.abs(kept / n - (1 - p)) < 0.01, `p=${p}: kept ${kept / n}`);
  }
  const a = ops.dropout(ones, 0.5, 9, 0).toArray();
  assert.deepEqual(Array.from(ops.dropout(ones, 0.5, 9, 0).toArray()), Array.from(a), 'same seed and offset, same mask');
  const b = ops.dropout(ones, 0.5, 9, 1).toArray();
  const c = ops.dropout(ones, 0.5, 10, 0).toArray();
  assert.notDeepEqual(Array.from(b), Array.from(a), 'a different offset gives a different mask');
  assert.notDeepEqual(Array.from(c), Array.from(a), 'a different seed gives a different mask');
  // Shifting the offset by k shifts the mask by k elements.
  assert.deepEqual(Array.from(b.subarray(0, n - 1)), Array.from(a.subarray(1)));
  assert.ok(Array.from(ops.dropout(ones, 1, 9, 0).toArray()).every((v) => v === 0), 'p = 1 drops everything');
  // f64 values are scaled by the exact 1/(1 − p).
  const x64 = tensor([1, 2, 3, 4, 5, 6, 7, 8], [8], 'f64');
  for (const [i, v] of f64(ops.dropout(x64, 0.3, 5, 0)).entries()) assert.ok(v === 0 || v === (i + 1) * (1 / (1 - 0.3)));
});

test('dropout backward applies the forward mask to dy', () => {
  const n = 1000;
  const x = tensor(new Float64Array(n).fill(1), [n], 'f64');
  x.requiresGrad = true;
  const dy = randn([n], 51);
  const dv = f64(dy); // backward(root, seed) consumes (disposes) the seed
  scope(() => {
    const y = ops.dropout(x, 0.3, 77, 12345);
    const yv = f64(y);
    backward(y, dy);
    const g = f64(x.grad!);
    for (let i = 0; i < n; i++) assert.equal(g[i], yv[i] === 0 ? 0 : dv[i]! * (1 / (1 - 0.3)));
  });
  gradcheck((x) => ops.dropout(x, 0.4, 3, 8), [randn([5, 7], 52)]);
});

// ---------------------------------------------------------------------------------------------
// Cross-entropy

function naiveCrossEntropy(logits: Float64Array, labels: number[], V: number): { loss: number[]; lse: number[] } {
  const loss: number[] = [], lse: number[] = [];
  labels.forEach((label, n) => {
    const row = Array.from(logits.subarray(n * V, n * V + V));
    const m = Math.max(...row);
    const z = m + Math.log(row.reduce((s, v) => s + Math.exp(v - m), 0));
    lse.push(z);
    loss.push(label < 0 ? 0 : z - row[label]!);
  });
  return { loss, lse };
}

test('crossEntropy matches log-softmax, ignores labels < 0, and is stable for large logits', () => {
  const labels = [2, -1, 6, 0, -100];
  const logits = randn([5, 7], 60, 'f64', 4);
  const { loss, lse } = ops.crossEntropy(logits, tensor(labels, [5], 'i32'));
  const ref = naiveCrossEntropy(f64(logits), labels, 7);
  assert.equal(loss.dtype, 'f64');
  assertClose(f64(loss), ref.loss, { rtol: 1e-12, atol: 1e-12 });
  assertClose(f64(lse), ref.lse, { rtol: 1e-12, atol: 1e-12 });
  assert.equal(f64(loss)[1], 0);
  const l32 = randn([3, 53], 61, 'f32', 1000); // large logits
  const lab32 = [0, 5, 11];
  const out32 = ops.crossEntropy(l32, tensor(lab32, [3], 'i32'));
  assert.equal(out32.loss.dtype, 'f32');
  assertClose(f64(out32.loss), naiveCrossEntropy(f64(l32), lab32, l32.dim(1)).loss, { rtol: 1e-5, atol: 1e-4 });
  assert.throws(() => ops.crossEntropy(logits, tensor([0, 0, 7, 0, 0], [5], 'i32')), /out of range/);
  assert.throws(() => ops.crossEntropy(logits, tensor([0, 0, 0, 0, 0], [5], 'f32')), /i32/);
});

test('crossEntropy gradient is (softmax − onehot) · dloss, zero on ignored rows', () => {
  const labels = tensor([2, -1, 6, 0], [4], 'i32');
  gradcheck((x) => ops.crossEntropy(x, labels).loss, [randn([4, 7], 62, 'f64', 3)]);
  const x = randn([4, 7], 63, 'f64', 3);
  x.requiresGrad = true;
  scope(() => backward(ops.sum(ops.crossEntropy(x, labels).loss)));
  const g = f64(x.grad!);
  assert.ok(g.subarray(7, 14).every((v) => v === 0), 'ignored row has zero gradient');
  for (const r of [0, 2, 3]) assertClose([g.subarray(r * 7, r * 7 + 7).reduce((a, b) => a + b)], [0], { atol: 1e-12 });
  assert.throws(() => scope(() => {
    const y = randn([2, 3], 64);
    y.requiresGrad = true;
    backward(ops.sum(ops.crossEntropy(y, tensor([0, 1], [2], 'i32')).lse));
  }), /statistic/);
});

test('maskedMeanLoss is Σ(loss · mask) / Σ mask, with gradients through crossEntropy', () => {
  const loss = tensor([1, 2, 3, 4], [4], 'f64');
  const mask = tensor([1, 0, 1, 1], [4], 'f64');
  assertClose([ops.maskedMeanLoss(loss, mask).item()], [(1 + 3 + 4) / 3], { rtol: 1e-15 });
  assert.equal(ops.maskedMeanLoss(loss, tensor([0, 0, 0, 0], [4], 'f64')).item(), 0);
  const l32 = tensor([1, 2, 3, 4], [4], 'f32');
  assertClose([ops.maskedMeanLoss(l32, tensor([0.5, 0, 0, 0.5], [4], 'f32')).item()], [2.5], { rtol: 1e-7 });
  const labels = tensor([1, 4, -1, 3, 0], [5], 'i32');
  const m = tensor([1, 1, 0, 0, 1], [5], 'f64');
  gradcheck((x) => ops.reshape(ops.maskedMeanLoss(ops.crossEntropy(x, labels).loss, m), [1]), [randn([5, 6], 65, 'f64', 2)]);
});

// ---------------------------------------------------------------------------------------------
// AdamW

interface AdamState { p: number; m: number; v: number }
/** torch.optim.AdamW (_single_tensor_adamw), one element, in f64. */
function torchAdamW(s: AdamState, grad: number, o: { lr: number; beta1: number; beta2: number; eps: number; weightDecay: number; gradScale: number }, step: number): AdamState {
  const g = grad * o.gradScale;
  const p = s.p * (1 - o.lr * o.weightDecay);
  const m = s.m + (g - s.m) * (1 - o.beta1); // exp_avg.lerp_(grad, 1 − β1)
  const v = s.v * o.beta2 + (1 - o.beta2) * g * g;
  const bc1 = 1 - o.beta1 ** step, bc2 = 1 - o.beta2 ** step;
  const denom = Math.sqrt(v) / Math.sqrt(bc2) + o.eps;
  return { p: p - (o.lr / bc1) * (m / denom), m, v };
}

test('adamw matches torch.optim.AdamW over two steps, with gradScale and a bf16 copy', () => {
  const o = { lr: 0.01, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, gradScale: 0.25 };
  const n = 37;
  const r = rng(70);
  const p0 = Array.from({ length: n }, () => r() * 2 - 1);
  const g1 = Array.from({ length: n }, () => (r() * 2 - 1) * 4);
  const g2 = Array.from({ length: n }, () => (r() * 2 - 1) * 4);
  const param = tensor(p0, [n], 'f32'), m = tensor(new Float32Array(n), [n]), v = tensor(new Float32Array(n), [n]);
  const lowp = tensor(new Float32Array(n), [n], 'bf16');
  let ref: AdamState[] = Array.from(Float32Array.from(p0), (p) => ({ p, m: 0, v: 0 }));
  for (const [step, g] of [[1, g1], [2, g2]] as const) {
    const grad = tensor(g, [n], 'f32');
    runKernel('adamw', [param, grad, m, v, lowp], { ...o, step });
    ref = ref.map((s, i) => torchAdamW(s, Math.fround(g[i]!), o, step));
    assertClose(param.toArray(), ref.map((s) => s.p), { rtol: 1e-6, atol: 1e-7 }, `param after step ${step}`);
    assertClose(m.toArray(), ref.map((s) => s.m), { rtol: 1e-6, atol: 1e-8 }, `m after step ${step}`);
    assertClose(v.toArray(), ref.map((s) => s.v), { rtol: 1e-6, atol: 1e-9 }, `v after step ${step}`);
    assert.deepEqual(Array.from(lowp.toArray()), Array.from(param.toArray(), f32ToBf16), 'bf16 copy refreshed');
  }
  // Step 1 by hand: m̂ = g, v̂ = g², so the update is lr · g / (|g| + eps) ≈ lr · sign(g).
  const one = tensor([0.5], [1]), grad = tensor([-2], [1]), m1 = tensor([0], [1]), v1 = tensor([0], [1]);
  runKernel('adamw', [one, grad, m1, v1], { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 0, weightDecay: 0.5, step: 1, gradScale: 0.5 });
  assertClose(one.toArray(), [0.5 * (1 - 0.1 * 0.5) + 0.1], { rtol: 1e-7 });
  assertClose(m1.toArray(), [0.1 * -1], { rtol: 1e-7 });
  assertClose(v1.toArray(), [0.001 * 1], { rtol: 1e-6 });
  assert.ok(Math.abs(bf16ToF32(f32ToBf16(0.5)) - 0.5) === 0);
});

test('clipFactor gives clip_grad_norm_\'s factor for the unscaled norm, NaN for a non-finite one', () => {
  const factor = (sumSq: number, maxNorm: number, normScale = 1) =>
    runKernel('clipFactor', [tensor([sumSq], [], 'f32')], { maxNorm, normScale })[0]!.item();
  assertClose([factor(25, 1)], [1 / (5 + 1e-6)], { rtol: 1e-6 }); // norm 5 > 1
  assert.equal(factor(25, 10), 1); // within the limit
  assert.equal(factor(25, 0), 1); // no clipping
  assertClose([factor(25 * 1024 * 1024, 2, 1 / 1024)], [2 / (5 + 1e-6)], { rtol: 1e-6 }); // a loss scale of 1024 undone
  assert.ok(Number.isNaN(factor(NaN, 1)));
  assert.ok(Number.isNaN(factor(Infinity, 0)), 'an overflow is reported even without clipping');
});

test('adamw with a device scale: the factor multiplies gradScale; a non-finite factor skips the update', () => {
  const o = { lr: 0.01, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, step: 1 };
  const r = rng(71);
  const n = 19;
  const p0 = Array.from({ length: n }, () => r() * 2 - 1);
  const g = Array.from({ length: n }, () => r() * 2 - 1);
  const run = (gradScale: number, factor: number | null) => {
    const p = tensor(p0, [n]), m = tensor(new Float32Array(n), [n]), v = tensor(new Float32Array(n), [n]);
    const lowp = tensor(new Float32Array(n), [n], 'bf16');
    const inputs = [p, tensor(g, [n]), m, v, lowp];
    if (factor !== null) inputs.push(tensor([factor], [], 'f32'));
    runKernel('adamw', inputs, { ...o, gradScale, scaleInput: factor !== null });
    return { p: Array.from(p.toArray()), m: Array.from(m.toArray()), low: Array.from(lowp.toArray()) };
  };
  assert.deepEqual(run(0.5, 0.25), run(0.125, null), 'factor × gradScale');
  const skipped = run(0.5, NaN);
  assert.deepEqual(skipped.p, Array.from(Float32Array.from(p0)), 'parameters untouched');
  assert.ok(skipped.m.every((x) => x === 0), 'moments untouched');
  assert.ok(skipped.low.every((x) => x === 0), 'low-precision copy untouched');
  assert.deepEqual(run(1, Infinity).p, Array.from(Float32Array.from(p0)));
});

test('adamwMulti updates every (p, grad, m, v) exactly as adamw does; sumSquares over many tensors', () => {
  const o = { lr: 0.01, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, step: 3, gradScale: 0.5 };
  const r = rng(72);
  const sizes = [1, 7, 64, 33];
  const vals = (n: number) => Array.from({ length: n }, () => r() * 2 - 1);
  const p0 = sizes.map(vals), g = sizes.map(vals), m0 = sizes.map(vals), v0 = sizes.map((n) => vals(n).map(Math.abs));
  const make = () => sizes.map((n, k) => [tensor(p0[k]!, [n]), tensor(g[k]!, [n]), tensor(m0[k]!, [n]), tensor(v0[k]!, [n])]);
  for (const factor of [null, 0.25, NaN]) {
    const one = make(), many = make();
    const scale = factor === null ? [] : [tensor([factor], [], 'f32')];
    for (const q of one) runKernel('adamw', [...q, ...scale], { ...o, scaleInput: factor !== null });
    runKernel('adamwMulti', [...many.flat(), ...scale], { ...o, scaleInput: factor !== null });
    one.forEach((q, k) => q.forEach((t, j) => assert.deepEqual(Array.from(many[k]![j]!.toArray()), Array.from(t.toArray()), `factor ${factor}: tensor ${k}.${j}`)));
  }
  assert.throws(() => runKernel('adamwMulti', make().flat().slice(0, 6), o), /6 inputs are not \(p, grad, m, v\) × n/);
  const xs = sizes.map((n, k) => tensor(p0[k]!, [n]));
  const each = xs.reduce((s, x) => s + ops.sumSquares(x).item(), 0);
  assertClose([runKernel('sumSquares', xs, {})[0]!.item()], [each], { rtol: 1e-6 });
});
