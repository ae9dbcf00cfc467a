// Zero-copy views (tensor/views.ts, Backend.view) on the CPU backend: a slice writes through to its
// parent and back, slices nest, disposing a slice never frees the parent's memory and the parent's
// memory lives while any slice does (counted once, cached once), kernels (the worker pool's GEMM
// too) read and write slices in place, backward accumulates into a gradient that is a slice, a
// tensor adopts a slice's memory (ZeRO's flat parameters), copyInto / zeroInPlace, and the errors.
// The same on CUDA: tests/cuda_zero.test.ts.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import '../src/backends/cpu/index.js';
import { poolStats, setCpuThreads } from '../src/backends/cpu/pool.js';
import * as ops from '../src/ops/index.js';
import { adoptStorage, backward, copyInto, getBackend, noGrad, sliceView, tensor, zeroInPlace, zeros } from '../src/tensor/index.js';

const cpu = getBackend('cpu');
const range = (n: number, from = 0) => Float32Array.from({ length: n }, (_, i) => from + i);

test('views: a slice writes through to its parent and back; slices nest', () => {
  const parent = tensor(range(10), [10], 'f32', cpu).keep();
  const v = sliceView(parent, 2, [2, 3]).keep();
  assert.deepEqual(v.shape, [2, 3]);
  assert.deepEqual(Array.from(v.toFloat32()), [2, 3, 4, 5, 6, 7]);
  noGrad(() => ops.scaleInPlace(v, 10));
  assert.deepEqual(Array.from(parent.toFloat32()), [0, 1, 20, 30, 40, 50, 60, 70, 8, 9]);
  noGrad(() => ops.addInPlace(parent, tensor(range(10), [10], 'f32', cpu)));
  assert.deepEqual(Array.from(v.toFloat32()), [22, 33, 44, 55, 66, 77]);
  // A slice of a slice: offsets add up; writes reach the root.
  const w = sliceView(v, 1, [2]).keep();
  assert.deepEqual(Array.from(w.toFloat32()), [33, 44]);
  noGrad(() => ops.scaleInPlace(w, 0));
  assert.deepEqual(Array.from(parent.toFloat32()), [0, 2, 22, 0, 0, 55, 66, 77, 16, 18]);
  // A kernel output is a new tensor; its input slice is read in place.
  assert.deepEqual(Array.from(ops.scale(v, 2).toFloat32()), [44, 0, 0, 110, 132, 154]);
  for (const t of [w, v, parent]) t.dispose();
});

test('views: disposing a slice never frees the parent; the parent\'s memory lives while a slice does', () => {
  for (const n of [10, 40_000]) { // a small array, and one large enough for a SharedArrayBuffer (the buffer cache)
    const bytes = 4 * n;
    const before = cpu.memoryStats();
    const parent = tensor(range(n), [n], 'f32', cpu).keep();
    assert.equal(cpu.memoryStats().allocated, before.allocated + bytes);
    const a = sliceView(parent, 1, [3]).keep();
    const b = sliceView(parent, n - 4, [4]).keep();
    assert.equal(cpu.memoryStats().allocated, before.allocated + bytes, 'views allocate nothing');
    a.dispose();
    assert.equal(cpu.memoryStats().allocated, before.allocated + bytes, 'disposing a view frees nothing');
    assert.deepEqual(Array.from(parent.toFloat32().subarray(0, 3)), [0, 1, 2]);
    parent.dispose();
    assert.equal(cpu.memoryStats().allocated, before.allocated + bytes, 'the memory stays while a view holds it');
    assert.deepEqual(Array.from(b.toFloat32()), [n - 4, n - 3, n - 2, n - 1]);
    assert.throws(() => a.toFloat32(), /used after dispose/);
    b.dispose();
    const after = cpu.memoryStats();
    assert.equal(after.allocated, before.allocated, 'freed once the last view goes');
    if (n === 40_000) {
      // The shared buffer went to the cache exactly once (not once per view).
      assert.equal(after.reserved - after.allocated, before.reserved - before.allocated + bytes);
      const again = zeros([n], 'f32', cpu); // reuses it, zero-filled
      assert.ok(again.toFloat32().every((x) => x === 0));
      again.dispose();
    }
  }
});

test('views: kernels, the worker pool and backward work on slices in place', () => {
  const M = 96, K = 200;
  const flat = tensor(Float32Array.from({ length: 50 + M * K }, (_, i) => Math.sin(i)), [50 + M * K], 'f32', cpu).keep();
  const a = sliceView(flat, 50, [M, K]).keep(); // a SharedArrayBuffer subarray at a byte offset
  const copy = tensor(a.toFloat32(), [M, K], 'f32', cpu).keep();
  const viaView = ops.matmul(a, a, { transB: true }).keep();
  const viaCopy = ops.matmul(copy, copy, { transB: true }).keep();
  assert.deepEqual(viaView.toFloat32(), viaCopy.toFloat32());
  // Worker threads get the subarrays (SharedArrayBuffer, byte offset and length survive postMessage).
  setCpuThreads(2);
  try {
    const n = 1 << 16;
    const big = tensor(Float32Array.from({ length: 10 + 2 * n }, (_, i) => i % 1000), [10 + 2 * n], 'f32', cpu).keep();
    const x = sliceView(big, 10, [n]);
    const y = sliceView(big, 10 + n, [n]);
    const calls = poolStats().get('binary') ?? 0;
    const sum = ops.add(x, y).toFloat32();
    assert.ok((poolStats().get('binary') ?? 0) > calls, 'the add went to the worker pool');
    for (let i = 0; i < n; i += 997) assert.equal(sum[i], ((10 + i) % 1000) + ((10 + n + i) % 1000));
    for (const t of [x, y, big]) t.dispose();
  } finally {
    setCpuThreads(null);
  }

  // A leaf whose gradient is a slice of a flat buffer: backward accumulates into the buffer.
  const grads = zeros([20], 'f32', cpu).keep();
  const p = tensor([1, 2, 3], [3], 'f32', cpu).keep();
  p.requiresGrad = true;
  p.grad = sliceView(grads, 5, [3]).keep();
  for (let k = 0; k < 2; k++) backward(ops.sum(ops.mul(ops.mul(p, p), tensor([1, 10, 100], [3], 'f32', cpu))));
  assert.deepEqual(Array.from(grads.toFloat32().subarray(4, 9)), [0, 4, 80, 1200, 0]); // twice 2·p·x
  for (const t of [flat, a, copy, viaView, viaCopy, grads, p]) t.dispose();
});

test('views: adoptStorage moves a tensor into a flat buffer; copyInto; zeroInPlace clears NaN and -0', () => {
  const before = cpu.memoryStats().allocated;
  const p = tensor([1, 2, 3, 4, 5, 6], [2, 3], 'f32', cpu).keep();
  const flat = zeros([8], 'f32', cpu).keep();
  const slot = sliceView(flat, 1, [2, 3]);
  copyInto(slot, p);
  adoptStorage(p, slot);
  slot.dispose();
  assert.deepEqual(p.shape, [2, 3]);
  assert.equal(cpu.memoryStats().allocated, before + 32, 'p\'s own memory was released');
  noGrad(() => ops.scaleInPlace(p, 2));
  assert.deepEqual(Array.from(flat.toFloat32()), [0, 2, 4, 6, 8, 10, 12, 0]);
  flat.dispose(); // p still holds the buffer
  assert.deepEqual(Array.from(p.toFloat32()), [2, 4, 6, 8, 10, 12]);
  const t = tensor([NaN, -0, Infinity, 5], [4], 'f32', cpu);
  zeroInPlace(t);
  assert.ok(Object.is(t.toFloat32()[1], 0) && t.toFloat32().every((x) => Object.is(x, 0)));
  p.dispose();
  t.dispose();
  assert.equal(cpu.memoryStats().allocated, before);
});

test('views: out-of-range slices, mismatched copies and adoptions fail with the sizes', () => {
  const t = zeros([6], 'f32', cpu);
  assert.throws(() => sliceView(t, 4, [3]), /sliceView: elements \[4, 7\) are outside .* \(6 elements\)/);
  assert.throws(() => sliceView(t, -1, [1]), /outside/);
  assert.throws(() => copyInto(t, zeros([5], 'f32', cpu)), /does not fit/);
  assert.throws(() => copyInto(t, zeros([6], 'f64', cpu)), /does not fit/);
  assert.throws(() => adoptStorage(t, zeros([3], 'f32', cpu)), /does not fit/);
  assert.throws(() => cpu.view(t.storage, 2, 4), /multiples of the element size/);
  assert.throws(() => cpu.view(t.storage, 20, 8), /outside a 24-byte storage/);
});
