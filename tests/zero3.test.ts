// ZeRO stage 3 (src/parallel/zero.ts) on CPU ranks that are worker threads of this process, sharing
// a ThreadProcessGroup (synchronous collectives through a SharedArrayBuffer): GPT-NeoX trained with
// stage 3 gives the same parameters (gathered) as stage 2 on the same group, bit for bit without
// clipping and within rounding with it (one step: see below), with gradient accumulation 1 and 2, with and without
// activation checkpointing, tied embeddings, the chunked loss; on 2 and 3 ranks. Parameter memory
// per rank is about 1/W; between steps nothing is gathered and touching a parameter throws,
// naming it; evaluation (no grad) gathers and releases per unit. The thread group's collectives
// themselves are checked against their definitions. Checkpoints: fullParameters() + fullState()
// after K steps at W = 2 load into AdamW without ZeRO, stage 2 at W = 2 (bit for bit the
// uninterrupted run) and stage 3 at W = 3 (to rounding); AdamW's tensors load into stage 3 (bit for bit).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Worker } from 'node:worker_threads';
import '../src/backends/cpu/index.js';
import { ThreadProcessGroup, threadGroupInit } from '../src/parallel/index.js';
import { getBackend, tensor } from '../src/tensor/index.js';
import { type Zero3Job, type Zero3Result, runPlainJob } from './zero3_worker.js';

const cpu = getBackend('cpu');

function runRanks(W: number, job: Omit<Zero3Job, 'init' | 'rank'>): Promise<Zero3Result[]> {
  const init = threadGroupInit(W, 1 << 12, 60_000); // a small scratch: collectives go in many pieces
  return Promise.all(Array.from({ length: W }, (_, rank) => new Promise<Zero3Result>((resolve, reject) => {
    const w = new Worker(new URL('./zero3_worker.js', import.meta.url), { workerData: { ...job, init, rank } });
    w.once('message', (m: { ok?: Zero3Result; error?: string }) => {
      if (m.ok) resolve(m.ok);
      else reject(new Error(`rank ${rank}: ${m.error}`));
      void w.terminate();
    });
    w.once('error', reject);
  })));
}

function compare(a: Zero3Result, b: Zero3Result, exact: boolean, what: string): void {
  assert.equal(a.params.length, b.params.length);
  a.params.forEach(([name, xs], i) => {
    const [nb, ys] = b.params[i]!;
    assert.equal(name, nb);
    for (let j = 0; j < xs.length; j++) {
      if (exact) assert.ok(Object.is(xs[j], ys[j]), `${what}: ${name}[${j}] ${xs[j]} vs ${ys[j]}`);
      else assert.ok(Math.abs(xs[j]! - ys[j]!) <= 1e-5 * (1 + Math.abs(ys[j]!)), `${what}: ${name}[${j}] ${xs[j]} vs ${ys[j]}`);
    }
  });
}

test('thread group collectives: all-gather, reduce-scatter (avg, rank order), all-reduce, broadcast, in pieces', async () => {
  // Two ranks on this thread would deadlock (the barrier blocks); one rank checks the plumbing.
  const g = new ThreadProcessGroup(threadGroupInit(1, 64), 0);
  const x = tensor(Float32Array.from({ length: 50 }, (_, i) => i + 0.5), [50], 'f32', cpu);
  const out = tensor(new Float32Array(50), [50], 'f32', cpu);
  g.allGatherNow(out, x);
  assert.deepEqual(Array.from(out.toFloat32()), Array.from(x.toFloat32()));
  const rs = tensor(new Float32Array(50), [50], 'f32', cpu);
  g.reduceScatterNow(rs, x, 'avg');
  assert.deepEqual(Array.from(rs.toFloat32()), Array.from(x.toFloat32()));
  await g.allReduce(x, 'sum');
  await g.broadcast(x, 0);
  assert.throws(() => g.send(), /no point-to-point/);
});

for (const W of [2, 3]) {
  for (const [gas, every, tied, clip] of [[1, 0, false, 0], [2, 1, true, 0], [1, 2, true, 1.0], [2, 0, false, 1.0]] as const) {
    test(`ZeRO-3 = ZeRO-2 on ${W} thread ranks: gas ${gas}, checkpointing ${every || 'off'}, ${tied ? 'tied' : 'untied'}, clip ${clip || 'off'}`, async () => {
      // With clipping, one step: stage 3's norm sums Σg² over other shards (per-unit buckets), so
      // the clip factor differs in the last bit, and over several steps AdamW turns that 1-ulp
      // difference into lr-sized ones on the attention key bias, whose gradient is mathematically
      // zero (softmax ignores it) and numerically noise that depends on every bit of the input.
      const job = { gas, every, tied, clip, steps: clip ? 1 : 3 };
      const z2 = await runRanks(W, { ...job, stage: 2 });
      const z3 = await runRanks(W, { ...job, stage: 3 });
      for (let r = 0; r < W; r++) {
        compare(z3[r]!, z2[0]!, clip === 0, `rank ${r} stage 3 vs stage 2`);
        assert.ok(z3[r]!.norms.every((n, s) => Math.abs(n - z2[0]!.norms[s]!) <= 1e-5 * n), 'the norms agree');
        assert.equal(z3[r]!.gatheredAtRest, 0, 'nothing gathered between steps');
        assert.match(z3[r]!.touchError ?? '', /attention\.dense\.weight.*sharded by ZeRO stage 3 and not gathered now/);
        assert.ok(Math.abs(z3[r]!.evalLoss - z2[0]!.evalLoss) <= 1e-6 * Math.abs(z2[0]!.evalLoss), 'evaluation (no grad) through the gather hooks');
        // The parameter shard is ≈ 1/W of the flat buffer; at rest the allocator holds less than stage 2 by ≈ (1 − 1/W) of the parameters.
        assert.ok(z3[r]!.paramBytes * W <= z2[r]!.paramBytes + 4 * W * 16, `parameter bytes ${z3[r]!.paramBytes} ≈ ${z2[r]!.paramBytes} / ${W}`);
        const saved = z2[r]!.allocatedAtRest - z3[r]!.allocatedAtRest;
        const expect = z2[r]!.paramBytes - z3[r]!.paramBytes;
        assert.ok(saved >= 0.9 * expect, `allocator at rest: stage 3 holds ${saved} bytes less than stage 2, expected ≈ ${expect}`);
      }
    });
  }
}

test('ZeRO-3 with the chunked loss (the head gathered around its checkpointed chunks)', async () => {
  const job = { gas: 1, every: 1, tied: true, clip: 0, steps: 2, lossChunk: 5 };
  const z2 = await runRanks(2, { ...job, stage: 2 });
  const z3 = await runRanks(2, { ...job, stage: 3 });
  compare(z3[1]!, z2[0]!, true, 'chunked loss');
});

// --- checkpoints: fullParameters() + fullState() are whole tensors named as the model's and AdamW's

type Named = [string, ArrayLike<number>][];

/** By name (ZeRO lists the parameters by group, the model in its own order). `tol` 0: bit for bit. */
function compareNamed(got: Named, want: Named, tol: number, what: string): number {
  const w = new Map(want);
  assert.equal(got.length, want.length, `${what}: as many tensors`);
  let worst = 0;
  for (const [name, xs] of got) {
    const ys = w.get(name);
    assert.ok(ys, `${what}: ${name} missing`);
    assert.equal(xs.length, ys.length, `${what}: ${name} size`);
    for (let j = 0; j < xs.length; j++) {
      const d = Math.abs(xs[j]! - ys[j]!);
      worst = Math.max(worst, d);
      if (tol === 0) assert.ok(Object.is(xs[j], ys[j]), `${what}: ${name}[${j}] ${xs[j]} vs ${ys[j]}`);
      else assert.ok(d <= tol * (1 + Math.abs(ys[j]!)), `${what}: ${name}[${j}] ${xs[j]} vs ${ys[j]} (|Δ| ${d.toExponential(2)})`);
    }
  }
  return worst;
}

const K = 2, MORE = 2, ROWS = 6; // save after K steps, then MORE; a global batch of 6 rows (3 per rank at W = 2, 2 at W = 3)

for (const tied of [false, true]) {
  test(`ZeRO-3 checkpoint round trip (${tied ? 'tied' : 'untied'}): W = 2 stage 3 → AdamW, stage 2 at W = 2, stage 3 at W = 3; AdamW → stage 3`, async () => {
    const base = { gas: 1, every: 1, tied, clip: 0, globalRows: ROWS };
    // Uninterrupted: K + MORE steps at W = 2, stage 3, whole tensors taken after K.
    const ref = await runRanks(2, { ...base, stage: 3, steps: K + MORE, saveAt: K });
    const ckpt = ref[0]!.saved!;
    assert.equal(ckpt.step, K);
    compareNamed(ref[1]!.saved!.params, ckpt.params, 0, 'every rank gathers the same parameters');
    compareNamed(ref[1]!.saved!.state, ckpt.state, 0, 'every rank gathers the same state');
    assert.equal(ckpt.state.length, 2 * ckpt.params.length);
    const want = ref[0]!.params;
    const moved = new Map(ckpt.params);
    assert.ok(want.some(([n, xs]) => xs.some((x, j) => x !== moved.get(n)![j])), 'the MORE steps after the checkpoint change the parameters');
    const resume = { ...base, firstStep: K, steps: MORE, resume: ckpt };

    // (a) AdamW without ZeRO, the two ranks' shares accumulated: the same sums in the same order, bit for bit.
    const plain = runPlainJob({ tied, globalRows: ROWS, W: 2, firstStep: K, steps: MORE, resume: ckpt });
    compareNamed(plain.params, want, 0, 'stage 3 checkpoint → AdamW');

    // (b) stage 2 at W = 2 (parameters loaded into the model, moments through loadFullState): bit for bit.
    const z2 = await runRanks(2, { ...resume, stage: 2 });
    for (const r of z2) compareNamed(r.params, want, 0, 'stage 3 checkpoint → stage 2, W = 2');

    // (c) stage 3 at W = 3: each rank averages 2 rows' mean loss gradient over 3 ranks instead of 3 rows' over 2,
    // the same global gradient to rounding (sums in another order, /3); AdamW's step g/(√v + eps) keeps that
    // relative (seen ≤ 3e-7), but the attention key bias has a gradient mathematically 0 and numerically rounding noise,
    // which Adam's normalisation turns into lr-sized steps (seen 5e-3): the qkv bias is compared to lr · MORE.
    const z3 = await runRanks(3, { ...resume, stage: 3 });
    for (const r of z3) {
      const noKeyBias = (xs: Named): Named => xs.filter(([n]) => !/query_key_value\.bias$/.test(n));
      compareNamed(noKeyBias(r.params), noKeyBias(want), 1e-5, 'stage 3 checkpoint → stage 3, W = 3'); // seen: ≤ 3e-7
      compareNamed(r.params.filter(([n]) => /query_key_value\.bias$/.test(n)), want.filter(([n]) => /query_key_value\.bias$/.test(n)), 0.01 * MORE, 'qkv bias, W = 3');
      assert.equal(r.gatheredAtRest, 0);
    }

    // Reverse: AdamW's state and parameters after K steps → stage 3 at W = 2, bit for bit the uninterrupted run.
    const fromPlain = runPlainJob({ tied, globalRows: ROWS, W: 2, steps: K, saveAt: K }).saved!;
    compareNamed(fromPlain.params, ckpt.params, 0, 'AdamW after K steps = stage 3 after K steps');
    compareNamed(fromPlain.state, ckpt.state, 0, 'AdamW state after K steps = stage 3 fullState()');
    const back = await runRanks(2, { ...base, stage: 3, firstStep: K, steps: MORE, resume: fromPlain });
    for (const r of back) compareNamed(r.params, want, 0, 'AdamW checkpoint → stage 3, W = 2');
  });
}
