// ZeRO stages 1 and 2 (src/parallel/zero.ts) on CPU ranks in this one process (CPU process groups
// over loopback TCP), against data parallelism + AdamW on the same data: the flat layout (buckets,
// alignment, rank slices), the parameters bit for bit over several steps without clipping (stage 1
// with gradient accumulation; stage 2 with one micro-batch per step), to rounding with clipping and
// for stage 2 with accumulation (its sums go per micro-batch, then over micro-batches), several
// buckets, padding and a parameter without a gradient on one rank included; memory per rank (1/W of
// the state, stage 2 also of the gradients; the full gradients freed after each micro-batch); the
// reduction during backward (beginBackward/finish) bit for bit the one after it (more of it, on
// GPT-NeoX, with memory: tests/zero_overlap.test.ts); a checkpoint saved at W = 2 resumes at
// W = 1 (plain AdamW, and ZeRO on one rank) exactly as the uninterrupted run; misuse errors. Views themselves: tests/tensor_views.test.ts; on CUDA:
// tests/cuda_zero.test.ts.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import '../src/backends/cpu/index.js';
import * as ops from '../src/ops/index.js';
import { AdamW, type ParamGroup, gradNormAndClip } from '../src/optim/index.js';
import {
  type ProcessGroup, DataParallel, ZeroOptimizer, type ZeroStage, zeroLayout,
} from '../src/parallel/index.js';
import { type Tensor, backward, getBackend, noGrad, scope, tensor } from '../src/tensor/index.js';
import { assertClose, rng } from './helpers/check.js';
import { withGroups } from './helpers/procs.js';

const cpu = getBackend('cpu');
const BETAS: [number, number] = [0.9, 0.95];
const EPS = 1e-8;
const STEPS = 4;


// A toy model: five parameters of awkward sizes in two weight-decay groups that interleave the
// parameter order; loss = Σ_i Σ (p_i² · x_i + p_i · y_i), so ∂/∂p_i = 2 p_i x_i + y_i.
const SHAPES = [[4, 5], [3], [7], [2, 6], [1]];
const N = SHAPES.reduce((n, s) => n + s.reduce((a, b) => a * b, 1), 0); // 43

function makeParams(): Tensor[] {
  return SHAPES.map((shape, i) => {
    const r = rng(100 + i);
    const n = shape.reduce((a, b) => a * b, 1);
    const p = tensor(Float32Array.from({ length: n }, () => r() * 2 - 1), shape, 'f32', cpu).keep();
    p.requiresGrad = true;
    return p;
  });
}

function groupsOf(ps: Tensor[]): ParamGroup[] {
  return [{ params: [ps[0]!, ps[3]!], weightDecay: 0.1 }, { params: [ps[1]!, ps[2]!, ps[4]!], weightDecay: 0 }];
}

interface DataOpts {
  /** Every rank sees the same data (so the average over ranks is exact: checkpoint test). */
  same?: boolean;
}

/** One micro-batch's backward on rank r (step s, micro-batch m of gas); parameter 2 gets no gradient on rank 1. */
function microBackward(ps: Tensor[], r: number, s: number, m: number, gas: number, o: DataOpts = {}, onGradReady?: (leaf: Tensor) => void, lossScale = 1): void {
  scope(() => {
    let loss: Tensor | null = null;
    ps.forEach((p, i) => {
      if (!o.same && i === 2 && r === 1) return;
      const g = rng(1000 * s + 100 * m + 10 * i + (o.same ? 0 : 7 * r + 1));
      const x = tensor(Float32Array.from({ length: p.numel }, () => 0.5 + g()), p.shape, 'f32', cpu);
      const y = tensor(Float32Array.from({ length: p.numel }, () => g() * 2 - 1), p.shape, 'f32', cpu);
      const term = ops.add(ops.sum(ops.mul(ops.mul(p, p), x)), ops.sum(ops.mul(p, y)));
      loss = loss ? ops.add(loss, term) : term;
    });
    const seed = lossScale / gas;
    backward(loss!, seed === 1 ? undefined : ops.fill([], seed, 'f32', cpu), { onGradReady });
  });
}

const lrAt = (s: number) => 0.02 / (1 + s);

interface RunResult {
  /** Each rank's parameters after the last step, flattened in parameter order. */
  params: Float32Array[];
  norms: number[];
}

const flatValues = (ps: Tensor[]) => Float32Array.from(ps.flatMap((p) => Array.from(p.toFloat32())));

/** Data parallelism + AdamW (the reference): syncGradients, clip by the global norm, update. */
async function runDP(gs: ProcessGroup[] | null, gas: number, maxNorm: number, o: DataOpts = {}, steps = STEPS): Promise<RunResult> {
  const W = gs?.length ?? 1;
  const ranks = Array.from({ length: W }, (_, r) => {
    const params = makeParams();
    return { params, adam: new AdamW(groupsOf(params), { betas: BETAS, eps: EPS }), dp: gs ? new DataParallel(gs[r]!, params) : null };
  });
  const norms: number[] = [];
  for (let s = 0; s < steps; s++) {
    const stepNorms = await Promise.all(ranks.map(async ({ params, adam, dp }, r) => {
      for (let m = 0; m < gas; m++) microBackward(params, r, s, m, gas, o);
      await dp?.syncGradients();
      const { norm, scale } = gradNormAndClip(params, maxNorm);
      noGrad(() => adam.update(lrAt(s), scale));
      adam.zeroGrad();
      return norm;
    }));
    norms.push(stepNorms[0]!);
  }
  return { params: ranks.map((x) => flatValues(x.params)), norms };
}

interface ZeroRun extends RunResult {
  zeros: ZeroOptimizer[];
  rankParams: Tensor[][];
}

/**
 * The same steps through ZeroOptimizer (stage 2: reduceGradients after every micro-batch's backward;
 * `overlap`: the hook of beginBackward() instead, and finish(), on every micro-batch for stage 2
 * and on the last for stage 1).
 */
async function runZero(gs: ProcessGroup[], stage: ZeroStage, gas: number, maxNorm: number,
  o: DataOpts & { bucketElements?: number; align?: number; from?: number; steps?: number; overlap?: boolean;
    init?: (ps: Tensor[], z: ZeroOptimizer, r: number) => void;
    /** fp16-style loss scaling: the backward seed carries it, update() divides it out. */
    lossScale?: number } = {}): Promise<ZeroRun> {
  const rankParams = gs.map(() => makeParams());
  const zeros = gs.map((g, r) => new ZeroOptimizer(g, groupsOf(rankParams[r]!), { betas: BETAS, eps: EPS, stage, bucketElements: o.bucketElements, align: o.align }));
  if (o.init) zeros.forEach((z, r) => o.init!(rankParams[r]!, z, r));
  const norms: number[] = [];
  const from = o.from ?? 0;
  for (let s = from; s < from + (o.steps ?? STEPS); s++) {
    const stepNorms = await Promise.all(zeros.map(async (z, r) => {
      for (let m = 0; m < gas; m++) {
        const scale = o.lossScale ?? 1;
        if (o.overlap && (stage === 2 || m === gas - 1)) {
          microBackward(rankParams[r]!, r, s, m, gas, o, z.beginBackward(), scale);
          await z.finish();
        } else {
          microBackward(rankParams[r]!, r, s, m, gas, o, undefined, scale);
          await z.reduceGradients();
        }
        if (stage === 2) assert.ok(rankParams[r]!.every((p) => p.grad === null), 'stage 2 frees the full gradients after each micro-batch');
      }
      const { norm } = await z.update(lrAt(s), maxNorm, 1 / (o.lossScale ?? 1));
      z.zeroGrad();
      return norm;
    }));
    assert.equal(stepNorms[0], stepNorms.at(-1), 'every rank computes the same norm');
    norms.push(stepNorms[0]!);
  }
  return { params: rankParams.map(flatValues), norms, zeros, rankParams };
}

function assertBitwise(actual: Float32Array, expected: Float32Array, what: string): void {
  assert.equal(Buffer.compare(Buffer.from(actual.buffer, actual.byteOffset, actual.byteLength), Buffer.from(expected.buffer, expected.byteOffset, expected.byteLength)), 0,
    `${what}: not bitwise equal (max |Δ| ${Math.max(...Array.from(actual, (a, i) => Math.abs(a - expected[i]!)))})`);
}

test('layout: buckets in reverse parameter order, aligned parameters, equal rank slices, shards end to end', () => {
  // One bucket, no alignment: rank r owns [r·S, (r+1)·S), as shardRange says.
  const one = zeroLayout([6, 3, 5], 2);
  assert.deepEqual(one, { offsets: [0, 6, 9], buckets: [{ start: 0, length: 14, slice: 7, shardOffset: 0, params: [0, 1, 2] }], total: 14, shardSize: 7 });
  // Buckets of ≤ 8 elements, filled from the last parameter: {1, 2} then {0}; laid out in parameter order.
  const two = zeroLayout([6, 3, 5], 2, { bucketElements: 8 });
  assert.deepEqual(two.offsets, [0, 6, 9]);
  assert.deepEqual(two.buckets, [
    { start: 6, length: 8, slice: 4, shardOffset: 3, params: [1, 2] },
    { start: 0, length: 6, slice: 3, shardOffset: 0, params: [0] },
  ]);
  assert.equal(two.shardSize, 7);
  // Alignment 4 on 3 ranks: every offset and slice a multiple of 4; buckets padded to 12.
  const al = zeroLayout([6, 3, 5, 1], 3, { bucketElements: 12, align: 4 });
  for (const o of al.offsets) assert.equal(o % 4, 0);
  for (const b of al.buckets) {
    assert.equal(b.slice % 4, 0);
    assert.equal(b.length, 3 * b.slice);
  }
  assert.deepEqual(al.buckets.map((b) => b.params), [[2, 3], [0, 1]]);
  assert.equal(al.total, al.buckets.reduce((n, b) => n + b.length, 0));
  assert.equal(al.shardSize * 3, al.total);
  assert.throws(() => zeroLayout([1], 2, { bucketElements: 0 }), /at least 1 element/);
  // Forward order 2, 0, 1, 3 (buckets filled from its end), classes (weight decay groups) laid out one after another in a bucket.
  const ordered = zeroLayout([4, 1, 2, 3], 1, { bucketElements: 6, order: [2, 0, 1, 3], classes: [0, 1, 0, 0] });
  assert.deepEqual(ordered.buckets.map((b) => b.params), [[3, 1], [2, 0]]);
  assert.deepEqual(ordered.offsets, [2, 9, 0, 6]);
  assert.throws(() => zeroLayout([1, 1], 1, { order: [0, 0] }), /order must list each of the 2 parameters once/);
});

test('ZeRO-1 (with accumulation) and ZeRO-2 (one micro-batch) = data-parallel AdamW bit for bit; several buckets, padding; W = 2, 3', async () => {
  for (const W of [2, 3]) {
    await withGroups(W, async (gs) => {
      const dpAcc = await runDP(gs, 2, 0);
      const dpOne = await runDP(gs, 1, 0);
      for (const [stage, gas, ref] of [[1, 2, dpAcc], [2, 1, dpOne]] as const) {
        for (const layout of [{}, { bucketElements: 16, align: 4 }]) {
          const z = await runZero(gs, stage, gas, 0, layout);
          const what = `W=${W} ZeRO-${stage} gas ${gas} ${JSON.stringify(layout)}`;
          for (let r = 0; r < W; r++) assertBitwise(z.params[r]!, ref.params[0]!, `${what} rank ${r}`);
          assertClose(z.norms, ref.norms, { rtol: 1e-5, atol: 0 }, `${what} norms`);
          if (layout.bucketElements) assert.ok(z.zeros[0]!.layout.buckets.length >= 3, `${what}: ${z.zeros[0]!.layout.buckets.length} buckets`);
        }
      }
      // The data-parallel ranks agree with each other too (the reference is sound).
      for (let r = 1; r < W; r++) assertBitwise(dpAcc.params[r]!, dpAcc.params[0]!, `DP rank ${r}`);
    });
  }
});

test('reduce-scattered during backward (beginBackward/finish) = after it, bit for bit: both stages, accumulation, clipping, a parameter without a gradient on one rank; W = 2, 3', async () => {
  for (const W of [2, 3]) {
    await withGroups(W, async (gs) => {
      for (const stage of [1, 2] as const) {
        for (const gas of [1, 2]) {
          for (const layout of [{}, { bucketElements: 16, align: 4 }]) {
            const what = `W=${W} ZeRO-${stage} gas ${gas} ${JSON.stringify(layout)}`;
            const post = await runZero(gs, stage, gas, 1.0, layout);
            const hooked = await runZero(gs, stage, gas, 1.0, { ...layout, overlap: true });
            for (let r = 0; r < W; r++) assertBitwise(hooked.params[r]!, post.params[r]!, `${what} rank ${r}`);
            assert.deepEqual(hooked.norms, post.norms, what);
          }
        }
      }
    });
  }
});

test('ZeRO-2 with accumulation, and both stages with clipping, agree with data parallelism to rounding', async () => {
  await withGroups(2, async (gs) => {
    const dpAcc = await runDP(gs, 2, 0);
    const z2 = await runZero(gs, 2, 2, 0, { bucketElements: 16, align: 4 });
    for (let r = 0; r < 2; r++) {
      assertClose(z2.params[r]!, dpAcc.params[0]!, { rtol: 1e-5, atol: 1e-6 }, `ZeRO-2 gas 2 rank ${r}`);
      assertBitwise(z2.params[r]!, z2.params[0]!, `ZeRO-2 ranks agree (rank ${r})`);
    }
    const clipped = await runDP(gs, 2, 1.0);
    assert.ok(clipped.norms.every((n) => n > 1.0), `clipping active: norms ${clipped.norms}`);
    for (const stage of [1, 2] as const) {
      const z = await runZero(gs, stage, 2, 1.0, { bucketElements: 16 });
      for (let r = 0; r < 2; r++) assertClose(z.params[r]!, clipped.params[0]!, { rtol: 1e-5, atol: 1e-6 }, `ZeRO-${stage} clipped rank ${r}`);
      assertClose(z.norms, clipped.norms, { rtol: 1e-5, atol: 0 }, `ZeRO-${stage} norms`);
    }
  });
});

test('fp16 loss scaling under ZeRO: a power-of-two scale in the seed, divided out by update(), gives the unscaled run bit for bit; an overflow on one rank skips the step on all', async () => {
  for (const stage of [1, 2] as const) {
    await withGroups(2, async (gs) => {
      const plain = await runZero(gs, stage, 2, 0.5, { bucketElements: 16 });
      const scaled = await runZero(gs, stage, 2, 0.5, { bucketElements: 16, lossScale: 1024, overlap: true });
      for (let r = 0; r < 2; r++) assertBitwise(scaled.params[r]!, plain.params[r]!, `stage ${stage} rank ${r}`);
      assert.deepEqual(scaled.norms, plain.norms, 'the reported norm is of the unscaled gradients');
      for (const z of [...plain.zeros, ...scaled.zeros]) z.dispose();
    });
    await withGroups(2, async (gs) => {
      const rankParams = gs.map(() => makeParams());
      const zeros = gs.map((g, r) => new ZeroOptimizer(g, groupsOf(rankParams[r]!), { betas: BETAS, eps: EPS, stage, bucketElements: 16 }));
      const before = rankParams.map(flatValues);
      const norms = await Promise.all(zeros.map(async (z, r) => {
        microBackward(rankParams[r]!, r, 0, 0, 1, {}, undefined, 1024);
        if (r === 1) noGrad(() => ops.scaleInPlace(rankParams[1]![3]!.grad!, Infinity)); // an fp16 overflow on rank 1 only
        await z.reduceGradients();
        const { norm } = await z.update(0.01, 1, 1 / 1024);
        z.zeroGrad();
        return norm;
      }));
      assert.ok(norms.every((n) => !Number.isFinite(n)), `every rank sees the overflow: ${norms}`);
      rankParams.forEach((ps, r) => assertBitwise(flatValues(ps), before[r]!, `stage ${stage} rank ${r}: parameters unchanged`));
      assert.ok(zeros.every((z) => z.step === 0), 'the step is not counted');
      for (const z of zeros) z.dispose();
    });
  }
});

test('memory per rank: 1/W of the optimizer state (and, stage 2, of the gradients); the parameters live in the flat buffer', async () => {
  await withGroups(2, async (gs) => {
    for (const stage of [1, 2] as const) {
      const ps = gs.map(() => makeParams());
      const before = ps.map((p) => flatValues(p));
      const zs = gs.map((g, r) => new ZeroOptimizer(g, groupsOf(ps[r]!), { betas: BETAS, eps: EPS, stage }));
      const S = Math.ceil(N / 2);
      for (const z of zs) {
        assert.equal(z.stateBytes(), 8 * S);
        assert.deepEqual(z.memory(), { stage, optimizerState: 8 * S, gradients: 4 * (stage === 1 ? 2 * S : S), parameters: 4 * 2 * S });
        assert.ok(z.runCount <= 3, `${z.runCount} adamw launches (pieces of one weight decay merge)`);
      }
      // Moving the parameters into the flat buffer kept their values (and their Tensor objects).
      ps.forEach((p, r) => assertBitwise(flatValues(p), before[r]!, 'parameters after the move'));
      if (stage === 1) assert.ok(ps[0]!.every((p) => p.grad !== null), 'stage 1: every parameter\'s gradient is a view into the flat buffer');
      else assert.ok(ps[0]!.every((p) => p.grad === null));
      for (const z of zs) z.dispose();
    }
  });
});

test('a checkpoint saved by ZeRO-2 at W = 2 resumes at W = 1 (AdamW, and ZeRO on one rank) exactly as the uninterrupted run', async () => {
  const same = { same: true }; // same data on every rank: the average over ranks is exact, so W does not change the math
  let straight!: Float32Array;
  let saved!: { params: Float32Array[]; state: Map<string, Float32Array>; step: number };
  await withGroups(2, async (gs) => {
    straight = (await runZero(gs, 2, 2, 0, { ...same, bucketElements: 16, align: 4 })).params[0]!;
    const half = await runZero(gs, 2, 2, 0, { ...same, bucketElements: 16, align: 4, steps: STEPS / 2 });
    const names = half.rankParams.map((ps) => new Map(ps.map((p, i) => [p, `p${i}`] as const)));
    const [full] = await Promise.all(half.zeros.map((z, r) => z.fullState(names[r]!)));
    saved = { params: half.rankParams[0]!.map((p) => p.toFloat32()), state: new Map(full!.map((e) => [e.name, e.data] as const)), step: half.zeros[0]!.step };
    assert.equal(saved.step, STEPS / 2);
    assert.equal(full!.length, 2 * SHAPES.length);
    for (const e of full!) assert.deepEqual(e.shape, SHAPES[Number(e.name.slice(1, e.name.indexOf('.')))]);
  });
  // Plain AdamW on one process, from the gathered state.
  const ps = makeParams();
  ps.forEach((p, i) => noGrad(() => { ops.scaleInPlace(p, 0); ops.addInPlace(p, tensor(saved.params[i]!, p.shape, 'f32', cpu)); }));
  const adam = new AdamW(groupsOf(ps), { betas: BETAS, eps: EPS });
  ps.forEach((p, i) => {
    const { m, v } = adam.moments(p);
    noGrad(() => {
      ops.addInPlace(m, tensor(saved.state.get(`p${i}.exp_avg`)!, p.shape, 'f32', cpu));
      ops.addInPlace(v, tensor(saved.state.get(`p${i}.exp_avg_sq`)!, p.shape, 'f32', cpu));
    });
  });
  adam.step = saved.step;
  for (let s = STEPS / 2; s < STEPS; s++) {
    for (let m = 0; m < 2; m++) microBackward(ps, 0, s, m, 2, same);
    const { scale } = gradNormAndClip(ps, 0);
    noGrad(() => adam.update(lrAt(s), scale));
    adam.zeroGrad();
  }
  assertBitwise(flatValues(ps), straight, 'resumed with AdamW at W = 1');
  // ZeRO (stage 1) on a one-rank group, from the same state.
  await withGroups(1, async (gs) => {
    const names = new Map<Tensor, string>();
    const z = await runZero(gs, 1, 2, 0, {
      ...same, from: STEPS / 2, steps: STEPS / 2,
      init: (rps, opt) => {
        rps.forEach((p, i) => {
          names.set(p, `p${i}`);
          noGrad(() => { ops.scaleInPlace(p, 0); ops.addInPlace(p, tensor(saved.params[i]!, p.shape, 'f32', cpu)); });
        });
        opt.loadFullState((n) => saved.state.get(n), names, saved.step);
      },
    });
    assertBitwise(z.params[0]!, straight, 'resumed with ZeRO at W = 1');
  });
});

test('ZeRO misuse: stage 3 on the TCP group, gradients left unreduced, a parameter twice, use after dispose', async () => {
  await withGroups(1, async ([g]) => {
    assert.throws(() => new ZeroOptimizer(g!, groupsOf(makeParams()), { betas: BETAS, eps: EPS, stage: 4 as ZeroStage }), /stage 4 is not 1, 2 or 3/);
    assert.throws(() => new ZeroOptimizer(g!, groupsOf(makeParams()), { betas: BETAS, eps: EPS, stage: 3 }), /stage 3 .* needs a process group with synchronous collectives .* the 'cpu' group has none/);
    const ps = makeParams();
    assert.throws(() => new ZeroOptimizer(g!, [{ params: [ps[0]!], weightDecay: 0 }, { params: [ps[0]!], weightDecay: 0 }], { betas: BETAS, eps: EPS }), /is in two parameter groups/);
    const z = new ZeroOptimizer(g!, groupsOf(ps), { betas: BETAS, eps: EPS, stage: 2 });
    microBackward(ps, 0, 0, 0, 1);
    await z.reduceGradients();
    microBackward(ps, 0, 0, 1, 1); // and no reduceGradients()
    await assert.rejects(z.update(0.01, 0), /5 parameters hold gradients that were not reduced; call reduceGradients\(\) after the backward of every micro-batch/);
    z.zeroGrad();
    z.dispose();
    await assert.rejects(z.update(0.01, 0), /used after dispose/);
    // The parameters outlive the optimizer (their memory is the flat buffer's).
    assert.equal(ps[0]!.toFloat32().length, 20);
  });
});
