// The CPU worker pool's parallelFor: every kernel routed through it gives bitwise the same outputs
// with 1 thread (inline) and with 2 threads (main thread + a worker), and the routed kernels do
// take the parallel path on shapes this size. Also: small or unshared problems run inline, a task
// that throws in a worker surfaces on the main thread, and a gemm inside a task runs inline.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import '../src/backends/cpu/index.js';
import * as pool from '../src/backends/cpu/pool.js';
import { type Tensor, runKernel, tensor } from '../src/tensor/index.js';
import type { ActivationKind } from '../src/tensor/kernels.js';
import { rng } from './helpers/check.js';

function rand(shape: number[], seed: number, dtype: 'f32' | 'f64' = 'f32', scale = 2): Tensor {
  const r = rng(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  const v = new Float64Array(n);
  for (let i = 0; i < n; i++) v[i] = (r() * 2 - 1) * scale;
  return tensor(v, shape, dtype);
}

function labels(N: number, V: number, seed: number): Tensor {
  const r = rng(seed);
  const v = new Int32Array(N);
  for (let i = 0; i < N; i++) v[i] = i % 7 === 3 ? -1 : Math.floor(r() * V);
  return tensor(v, [N], 'i32');
}

/** Runs every routed kernel on fixed inputs; returns each output's bytes by name. */
export function runAll(): Map<string, Uint8Array> {
  const res = new Map<string, Uint8Array>();
  const keep = (name: string, ts: Tensor[]) => ts.forEach((t, i) => {
    const a = t.toArray();
    res.set(`${name}#${i}`, new Uint8Array(a.buffer.slice(a.byteOffset, a.byteOffset + a.byteLength)));
  });
  for (const dtype of ['f32', 'f64'] as const) {
    const x = rand([96, 512], 1, dtype, 4);
    const dy = rand([96, 512], 2, dtype);
    const dyg = rand([96, 256], 3, dtype);
    for (const kind of ['gelu', 'gelu_tanh', 'relu', 'silu'] as ActivationKind[]) {
      keep(`activation ${kind} ${dtype}`, runKernel('activation', [x], { kind }));
      keep(`activationBackward ${kind} ${dtype}`, runKernel('activationBackward', [x, dy], { kind }));
      keep(`gatedActivation ${kind} ${dtype}`, runKernel('gatedActivation', [x], { kind }));
      keep(`gatedActivationBackward ${kind} ${dtype}`, runKernel('gatedActivationBackward', [x, dyg], { kind }));
    }
    // cross-entropy: some ignored labels, some zero dloss
    const logits = rand([200, 300], 4, dtype, 6);
    const lab = labels(200, 300, 5);
    const ce = runKernel('crossEntropy', [logits, lab], {});
    keep(`crossEntropy ${dtype}`, ce);
    const dl = rand([200], 6, dtype === 'f64' ? 'f64' : 'f32');
    keep(`crossEntropyBackward ${dtype}`, runKernel('crossEntropyBackward', [logits, lab, ce[1]!, dl], {}));
    // attention: MHA and GQA, causal / window / ALiBi, T < S
    for (const [name, H, Hkv, T, S, attrs] of [
      ['causal', 4, 4, 96, 96, { scale: 0.2, causal: true, window: 0, alibi: false }],
      ['gqa-alibi', 4, 2, 80, 80, { scale: 0.3, causal: true, window: 0, alibi: true }],
      ['window', 2, 1, 70, 100, { scale: 0.25, causal: true, window: 33, alibi: false }],
      ['full', 2, 2, 40, 72, { scale: 0.25, causal: false, window: 0, alibi: false }],
    ] as const) {
      const B = 3, D = 24;
      const q = rand([B, H, T, D], 7, dtype), k = rand([B, Hkv, S, D], 8, dtype), v = rand([B, Hkv, S, D], 9, dtype);
      const [o, l] = runKernel('attention', [q, k, v], attrs);
      keep(`attention ${name} ${dtype}`, [o!, l!]);
      const dO = rand([B, H, T, D], 10, dtype);
      keep(`attentionBackward ${name} ${dtype}`, runKernel('attentionBackward', [q, k, v, o!, l!, dO], attrs));
      // The bshd layout ([B, T, H, D] heads) runs its own tasks (backends/cpu/attention_bshd.ts).
      const bshd = { ...attrs, layout: 'bshd' as const };
      const qs = rand([B, T, H, D], 7, dtype), ks = rand([B, S, Hkv, D], 8, dtype), vs = rand([B, S, Hkv, D], 9, dtype);
      const [os, ls] = runKernel('attention', [qs, ks, vs], bshd);
      keep(`attention bshd ${name} ${dtype}`, [os!, ls!]);
      keep(`attentionBackward bshd ${name} ${dtype}`, runKernel('attentionBackward', [qs, ks, vs, os!, ls!, rand([B, T, H, D], 10, dtype)], bshd));
    }
    // layerNorm with and without bias
    const xn = rand([300, 96], 11, dtype, 3), w = rand([96], 12, dtype), b = rand([96], 13, dtype), dyn = rand([300, 96], 14, dtype);
    for (const bias of [true, false]) {
      const [y, mean, rstd] = runKernel('layerNorm', bias ? [xn, w, b] : [xn, w], { eps: 1e-5 });
      keep(`layerNorm bias=${bias} ${dtype}`, [y!, mean!, rstd!]);
      keep(`layerNormBackward bias=${bias} ${dtype}`, runKernel('layerNormBackward', [dyn, xn, w, mean!, rstd!], {}));
    }
    // elementwise, sumRows, permute
    const a = rand([64, 8, 160], 15, dtype), c = rand([64, 8, 160], 16, dtype), row = rand([160], 17, dtype);
    for (const op of ['add', 'sub', 'mul'] as const) {
      keep(`${op} ${dtype}`, runKernel(op, [a, c], {}));
      keep(`${op} broadcast ${dtype}`, runKernel(op, [a, row], {}));
    }
    keep(`sumRows ${dtype}`, runKernel('sumRows', [rand([2000, 96], 18, dtype)], {}));
    keep(`permute 0213 ${dtype}`, runKernel('permute', [a], { perm: [1, 0, 2] }));
    keep(`permute 210 ${dtype}`, runKernel('permute', [a], { perm: [2, 1, 0] }));
    keep(`permute 4d ${dtype}`, runKernel('permute', [rand([8, 64, 8, 24], 19, dtype)], { perm: [0, 2, 1, 3] }));
  }
  return res;
}


test('routed CPU kernels: bitwise identical outputs with 1 and 2 threads, parallel path taken', () => {
  const { setCpuThreads, poolStats } = pool;
  try {
    setCpuThreads(1);
    const one = runAll();
    assert.equal(poolStats().size, 0, 'one thread: nothing dispatched to workers');
    setCpuThreads(2);
    const two = runAll();
    assert.equal(one.size, two.size);
    for (const [name, bytes] of one) {
      const other = two.get(name);
      assert.ok(other, name);
      assert.ok(Buffer.compare(Buffer.from(bytes), Buffer.from(other)) === 0, `${name}: 1-thread and 2-thread outputs differ`);
    }
    const stats = poolStats();
    for (const task of ['activation', 'activationBackward', 'gatedActivation', 'gatedActivationBackward', 'crossEntropy',
      'crossEntropyBackward', 'attention', 'attentionBackward', 'attentionBshd', 'attentionBackwardBshd', 'layerNorm', 'layerNormBackwardRows', 'layerNormBackwardCols',
      'binary', 'sumRows', 'permute']) {
      assert.ok((stats.get(task) ?? 0) > 0, `${task} ran on the pool (${[...stats.keys()].join(', ')})`);
    }
  } finally {
    setCpuThreads(null);
    pool.shutdownPool();
  }
});

test('parallelFor: inline when small or unshared; worker errors surface; covers [0, n) exactly once', () => {
  const { setCpuThreads, poolStats } = pool;
  const p = pool;
  try {
    setCpuThreads(2);
    const n = 100_003;
    const hits = new Int32Array(new SharedArrayBuffer(n * 4));
    p.parallelFor('testMark', { out: hits }, n, 1);
    assert.ok(hits.every((h) => h === 1), 'every index visited once');
    assert.equal(poolStats().get('testMark'), 1);
    const local = new Int32Array(n);
    p.parallelFor('testMark', { out: local }, n, 1);
    assert.ok(local.every((h) => h === 1));
    assert.equal(poolStats().get('testMark'), 1, 'unshared array: ran inline');
    p.parallelFor('testMark', { out: hits }, 1, 1);
    assert.equal(poolStats().get('testMark'), 1, 'n = 1: ran inline');
    assert.throws(() => p.parallelFor('testThrow', { out: hits }, n, 1), /testThrow/);
    // the pool still works after an error
    hits.fill(0);
    p.parallelFor('testMark', { out: hits }, n, 1);
    assert.ok(hits.every((h) => h === 1));
  } finally {
    setCpuThreads(null);
    pool.shutdownPool();
  }
});
