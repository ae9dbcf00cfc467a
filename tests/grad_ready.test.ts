// The engine's per-leaf "gradient ready" hook (backward's onGradReady), which data parallelism
// uses to reduce gradient buckets while backward goes on: it fires exactly once per leaf, right
// after the leaf's last use in backward order, with .grad already final (equal to a plain
// backward's); under activation checkpointing (the segment's parameters are leaves of its nested
// backward), for tied parameters, with accumulation into an existing .grad, for a leaf root; and
// a gradient handed to two leaves is copied, so reducing one .grad in place leaves the other alone.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import '../src/backends/cpu/index.js';
import { GPTNeoX, resolveModelConfig } from '../src/models/gpt_neox/index.js';
import * as ops from '../src/ops/index.js';
import { type Tensor, backward, checkpoint, noGrad, scope, tensor } from '../src/tensor/index.js';
import { cpu, randn, rng } from './helpers/check.js';
import { modelKeys } from './helpers/model.js';

function param(shape: number[], seed: number): Tensor {
  const p = randn(shape, seed, 'f64').keep();
  p.requiresGrad = true;
  return p;
}

/** Runs `loss()` + backward with a hook that logs each ready leaf and snapshots its .grad. */
function hooked(params: Tensor[], loss: () => Tensor, log: string[] = []): { fired: Map<Tensor, number[]>; log: string[] } {
  const fired = new Map<Tensor, number[]>();
  scope(() => backward(loss(), undefined, {
    onGradReady: (leaf) => {
      assert.ok(!fired.has(leaf), `${leaf.name} fired twice`);
      assert.ok(leaf.grad, `${leaf.name}: .grad is written before the hook`);
      fired.set(leaf, Array.from(leaf.grad.toArray()));
      log.push(`ready ${leaf.name}`);
    },
  }));
  assert.deepEqual(new Set(fired.keys()), new Set(params.filter((p) => p.grad)), 'every leaf with a gradient fired');
  for (const [p, snap] of fired) assert.deepEqual(snap, Array.from(p.grad!.toArray()), `${p.name}: final at the hook`);
  return { fired, log };
}

const grads = (ps: Tensor[]) => ps.map((p) => Array.from(p.grad!.toArray()));
const clearGrads = (ps: Tensor[]) => ps.forEach((p) => { p.grad?.dispose(); p.grad = null; });

test('onGradReady: once per leaf, right after its last use, with the final gradient (tied use, checkpoint probes)', () => {
  const [w1, w2, w3] = [param([3], 1), param([3], 2), param([3], 3)];
  w1.name = 'w1'; w2.name = 'w2'; w3.name = 'w3';
  const x = randn([2, 3], 4, 'f64');
  const log: string[] = [];
  let inBackward = false;
  // An identity whose recomputation, which happens during backward, marks where backward is.
  const probe = (label: string, h: Tensor) => checkpoint(([t]) => {
    if (inBackward) log.push(`probe ${label}`);
    return ops.scale(t!, 1);
  }, [h]);
  const loss = () => {
    let h = probe('after w1', ops.mul(x, w1)); // (2, 3)
    h = probe('mid', ops.mul(h, w2));
    h = ops.add(h, w2); // w2 used twice (tied)
    const l = ops.sum(ops.mul(h, w3));
    inBackward = true;
    return l;
  };
  const ps = [w1, w2, w3];
  scope(() => backward(loss()));
  const plain = grads(ps);
  clearGrads(ps);
  inBackward = false;
  log.length = 0;
  hooked(ps, loss, log);
  assert.deepEqual(log, ['ready w3', 'probe mid', 'ready w2', 'probe after w1', 'ready w1']);
  assert.deepEqual(grads(ps), plain);
});

test('onGradReady: accumulation into an existing .grad, a leaf root, and no hook keeps working', () => {
  const [a, b] = [param([4], 5), param([2, 4], 6)];
  a.name = 'a'; b.name = 'b';
  const loss = () => ops.sum(ops.mul(ops.add(b, a), b));
  scope(() => backward(loss()));
  scope(() => backward(loss()));
  const twice = grads([a, b]);
  clearGrads([a, b]);
  scope(() => backward(loss())); // first micro-batch: no hook
  hooked([a, b], loss); // the hook sees the accumulated, final value
  assert.deepEqual(grads([a, b]), twice);
  // A root that is itself a leaf: its gradient (the seed) comes at the very end.
  const r = param([], 7);
  r.name = 'r';
  const fired: Tensor[] = [];
  backward(r, undefined, { onGradReady: (t) => fired.push(t) });
  assert.deepEqual(fired, [r]);
  assert.equal(r.grad!.item(), 1);
});

test('a gradient handed to two leaves is copied: in-place reduction of one leaves the other, and accumulation is right', () => {
  const [p, q] = [param([2], 8), param([2], 9)];
  p.name = 'p'; q.name = 'q';
  const loss = () => ops.sum(ops.add(p, q)); // add's gradient hands dy to both inputs
  for (let i = 0; i < 2; i++) scope(() => backward(loss()));
  assert.deepEqual(grads([p, q]), [[2, 2], [2, 2]]); // each accumulates once per backward
  assert.notEqual(p.grad!.sharedStorage, q.grad!.sharedStorage);
  clearGrads([p, q]);
  // The hook doubles each gradient in place as it comes, as an all-reduce would write it.
  scope(() => backward(loss(), undefined, { onGradReady: (t) => noGrad(() => ops.scaleInPlace(t.grad!, 2)) }));
  assert.deepEqual(grads([p, q]), [[2, 2], [2, 2]]);
});

test('onGradReady on GPT-NeoX with activation checkpointing, tied embeddings and the chunked head: every parameter once, final, = plain backward', () => {
  const V = 11, B = 2, T = 6;
  const r = rng(3);
  const ids = Int32Array.from({ length: B * T }, () => Math.floor(r() * V));
  const labels = Int32Array.from({ length: B * T }, () => Math.floor(r() * V));
  const mask = new Float64Array(B * T).fill(1);
  const run = (every: number, chunk: number, withHook: boolean) => {
    const model = new GPTNeoX(resolveModelConfig(modelKeys(), V), cpu(), 'f64');
    for (const [n, p] of model.namedParameters()) p.name = n;
    model.setActivationCheckpointing(every);
    model.setLossChunk(chunk);
    const params = model.parameters();
    const loss = () => {
      model.setDropoutSeed(9);
      return model.loss(tensor(ids, [B, T], 'i32'), tensor(labels, [B, T], 'i32'), tensor(mask, [B, T], 'f64'));
    };
    const order: string[] = [];
    if (withHook) hooked(params, loss, order);
    else scope(() => backward(loss()));
    return { grads: grads(params), order };
  };
  for (const [every, chunk] of [[0, 0], [1, 5], [2, 0]] as const) {
    const plain = run(every, chunk, false);
    const withHook = run(every, chunk, true);
    assert.deepEqual(withHook.grads, plain.grads, `checkpoint every ${every}, chunk ${chunk}`);
    // Backward order: the last layer's parameters are ready before the first's; the tied embedding (used first) last.
    const at = (name: string) => withHook.order.indexOf(`ready ${name}`);
    assert.ok(at('layers.2.mlp.dense_4h_to_h.weight') < at('layers.0.mlp.dense_4h_to_h.weight'), withHook.order.join(', '));
    assert.equal(withHook.order.at(-1), 'ready embed_in.weight');
  }
});
