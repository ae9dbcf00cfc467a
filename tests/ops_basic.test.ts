// Forward against naive references and backward against finite differences for the basic ops.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as ops from '../src/ops/index.js';
import { type Tensor, backward, scope, tensor, zeros } from '../src/tensor/index.js';
import { assertClose, gradcheck, randn } from './helpers/check.js';

function naiveMatmul(a: Float64Array, b: Float64Array, M: number, N: number, K: number, tA: boolean, tB: boolean): Float64Array {
  const c = new Float64Array(M * N);
  for (let i = 0; i < M; i++) for (let j = 0; j < N; j++) {
    let s = 0;
    for (let k = 0; k < K; k++) s += (tA ? a[k * M + i]! : a[i * K + k]!) * (tB ? b[j * K + k]! : b[k * N + j]!);
    c[i * N + j] = s;
  }
  return c;
}

test('matmul matches the naive product for every transpose combination and odd sizes', () => {
  for (const [M, N, K] of [[1, 1, 1], [5, 7, 3], [9, 13, 17], [64, 33, 70]] as const) {
    for (const tA of [false, true]) for (const tB of [false, true]) {
      const a = randn(tA ? [K, M] : [M, K], M + N, 'f64');
      const b = randn(tB ? [N, K] : [K, N], K + 7, 'f64');
      const c = ops.matmul(a, b, { transA: tA, transB: tB });
      assert.deepEqual(c.shape, [M, N]);
      assertClose(c.toArray() as Float64Array, naiveMatmul(a.toArray() as Float64Array, b.toArray() as Float64Array, M, N, K, tA, tB), { rtol: 1e-12, atol: 1e-12 });
    }
  }
});

test('large f32 matmul (worker pool path) matches the naive product', () => {
  const [M, N, K] = [130, 96, 120];
  for (const tB of [false, true]) {
    const a = randn([M, K], 3, 'f32');
    const b = randn(tB ? [N, K] : [K, N], 4, 'f32');
    const c = ops.matmul(a, b, { transB: tB });
    const ref = naiveMatmul(Float64Array.from(a.toArray()), Float64Array.from(b.toArray()), M, N, K, false, tB);
    assertClose(c.toArray() as Float32Array, ref, { rtol: 1e-4, atol: 1e-4 });
  }
});

test('matmul gradients (batched, shared b, transposes) match finite differences', () => {
  for (const tA of [false, true]) for (const tB of [false, true]) {
    const a = randn(tA ? [2, 4, 3] : [2, 3, 4], 1);
    const b = randn(tB ? [2, 5, 4] : [2, 4, 5], 2);
    gradcheck((x, y) => ops.matmul(x, y, { transA: tA, transB: tB }), [a, b]);
    const b2 = randn(tB ? [5, 4] : [4, 5], 3);
    gradcheck((x, y) => ops.matmul(x, y, { transA: tA, transB: tB }), [randn(tA ? [2, 4, 3] : [2, 3, 4], 4), b2]);
  }
});

test('linear with and without bias matches x·wᵀ + b and its gradients', () => {
  const x = randn([2, 3, 4], 5), w = randn([6, 4], 6), b = randn([6], 7);
  const y = ops.linear(x, w, b).toArray() as Float64Array;
  const ref = naiveMatmul(x.toArray() as Float64Array, w.toArray() as Float64Array, 6, 6, 4, false, true);
  const bv = b.toArray();
  for (let i = 0; i < 6; i++) for (let j = 0; j < 6; j++) ref[i * 6 + j] += bv[j]!;
  assertClose(y, ref, { rtol: 1e-12, atol: 1e-12 });
  gradcheck((x, w, b) => ops.linear(x, w, b), [x, w, b]);
  gradcheck((x, w) => ops.linear(x, w), [randn([3, 4], 8), randn([2, 4], 9)]);
});

test('elementwise ops broadcast a suffix shape and their gradients reduce it back', () => {
  const a = randn([3, 4], 10), b = randn([4], 11);
  const av = a.toArray(), bv = b.toArray();
  assertClose(ops.add(a, b).toArray(), Array.from(av, (v, i) => v + bv[i % 4]!));
  assertClose(ops.sub(a, b).toArray(), Array.from(av, (v, i) => v - bv[i % 4]!));
  assertClose(ops.mul(a, b).toArray(), Array.from(av, (v, i) => v * bv[i % 4]!));
  for (const op of [ops.add, ops.sub, ops.mul]) {
    gradcheck(op, [randn([3, 4], 12), randn([4], 13)]);
    gradcheck(op, [randn([3, 4], 14), randn([3, 4], 15)]);
  }
  gradcheck((x) => ops.scale(x, -2.5), [randn([5], 16)]);
  gradcheck((x) => ops.reshape(ops.sum(x), [1]), [randn([2, 3], 17)]);
  assert.throws(() => ops.add(a, randn([3], 1)), /does not broadcast/);
});

test('embedding gathers rows and scatters gradients, repeated ids accumulate', () => {
  const w = randn([5, 3], 18);
  const ids = tensor([4, 0, 4, 2], [2, 2], 'i32');
  const y = ops.embedding(ids, w);
  assert.deepEqual(y.shape, [2, 2, 3]);
  const wv = w.toArray();
  assertClose(y.toArray(), [4, 0, 4, 2].flatMap((id) => [0, 1, 2].map((c) => wv[id * 3 + c]!)));
  gradcheck((w) => ops.embedding(ids, w), [w]);
  assert.throws(() => ops.embedding(tensor([5], [1], 'i32'), w), /out of range/);
});

test('gradients accumulate across backward calls and a shared input sums both paths', () => {
  const x = randn([3], 19);
  x.requiresGrad = true;
  scope(() => backward(ops.sum(ops.mul(x, x))));
  const g1 = Array.from(x.grad!.toArray());
  assertClose(g1, Array.from(x.toArray(), (v) => 2 * v), { rtol: 1e-12 });
  scope(() => backward(ops.sum(x)));
  assertClose(x.grad!.toArray(), g1.map((v) => v + 1), { rtol: 1e-12 });
});

test('scope disposes intermediates but keeps returned and kept tensors', () => {
  let inner = zeros([1]);
  let kept = zeros([1]);
  const r = scope(() => {
    inner = zeros([2]);
    kept = zeros([3]).keep();
    return zeros([4]);
  });
  assert.equal(inner.disposed, true);
  assert.equal(kept.disposed, false);
  assert.equal(r.disposed, false);
  assert.throws(() => inner.toArray(), /used after dispose/);
});

test('a scope frees intermediates no gradient reads, keeps the saved ones, and backward still walks through both', () => {
  const n = 1000;
  const w = tensor(Float64Array.from({ length: n }, (_, i) => (i % 7) - 3), [n], 'f64');
  w.requiresGrad = true;
  let a: Tensor | null = null, b: Tensor | null = null;
  scope(() => {
    const out = scope(() => {
      a = ops.scale(w, 2); // read by no gradient (add's): freed when this scope ends
      b = ops.add(a, a); // mul's gradient reads it: saved, handed to the enclosing scope
      return ops.mul(b, b);
    });
    assert.throws(() => a!.toArray(), /no memory now: freed when the scope that made it ended, as no gradient reads it/, 'the unsaved intermediate was freed');
    assert.ok(!b!.disposed, 'the saved one survives');
    backward(ops.sum(out));
  });
  assert.ok(b!.disposed, 'backward (or the enclosing scope) freed the saved one');
  // out = (4w)² → d/dw = 32w
  assertClose(w.grad!.toArray(), Array.from(w.toArray(), (x) => 32 * x), { rtol: 1e-12 });
  // Without an enclosing scope nothing outlives the scope (no tape to keep tensors for).
  let c: Tensor | null = null;
  scope(() => {
    c = ops.add(w, w);
    return ops.mul(c, c);
  });
  assert.ok(c!.disposed);
  w.grad!.dispose();
});

test('linearGelu equals gelu_tanh(linear) bitwise, forward and backward; its gradient passes a finite-difference check', () => {
  for (const withBias of [true, false]) {
    const x = randn([3, 5, 8], 11), w = randn([6, 8], 12), b = randn([6], 13);
    for (const t of [x, w, b]) t.requiresGrad = true;
    const fused = () => scope(() => {
      const y = ops.linearGelu(x, w, withBias ? b : null);
      const values = y.toArray(); // backward frees y
      backward(ops.sum(ops.mul(y, y)));
      return values;
    });
    const plain = () => scope(() => {
      const y = ops.activation(ops.linear(x, w, withBias ? b : null), 'gelu_tanh');
      const values = y.toArray();
      backward(ops.sum(ops.mul(y, y)));
      return values;
    });
    const grads = () => [x, w, b].map((t) => { const g = t.grad ? Array.from(t.grad.toArray()) : null; t.grad?.dispose(); t.grad = null; return g; });
    const yf = fused(), gf = grads();
    const yp = plain(), gp = grads();
    assert.deepEqual(Array.from(yf), Array.from(yp), `forward, bias ${withBias}`);
    assert.deepEqual(gf, gp, `gradients, bias ${withBias}`);
  }
  gradcheck((x, w, b) => ops.sum(ops.mul(ops.linearGelu(x, w, b), ops.linearGelu(x, w, b))), [randn([4, 5], 21), randn([3, 5], 22), randn([3], 23)]);
});
