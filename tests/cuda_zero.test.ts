// Views and ZeRO on one GPU. Views: a slice is pointer + offset into its parent's block, writes go
// both ways, disposing a slice frees nothing and the parent's block stays allocated while a slice
// lives (the caching allocator's counts), copyInto / zeroInPlace on the stream. ZeroOptimizer on
// one rank (stages 1, 2 and 3, several buckets): every parameter 256-byte aligned in the flat buffer,
// the parameters bit for bit those of AdamW on the same device without clipping and to rounding
// with it, fullState equal to AdamW's state; through an in-process one-rank group (device copies:
// the flat-buffer update alone) and through a one-rank NCCL communicator (when NCCL loads), also
// reduce-scattered during backward (beginBackward/finish; through NCCL with enough buckets that
// the oldest in flight are retired by Work.streamWait() during backward). Stage 3 (two gather
// units around the loss terms): each unit gathered once per micro-batch, every parameter
// storage-less (reading it throws, naming it) between micro-batches and steps, the parameters
// read through fullParameters(). CPU ranks:
// tests/zero.test.ts, tests/zero_overlap.test.ts. Without a GPU every test reports `skipped: no CUDA device`.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type CudaBackend, ptr } from '../src/backends/cuda/backend.js';
import { initCuda } from '../src/backends/cuda/index.js';
import { createNcclGroup } from '../src/backends/cuda/nccl_group.js';
import * as ops from '../src/ops/index.js';
import { AdamW, type ParamGroup, gradNormAndClip } from '../src/optim/index.js';
import { type GatherUnit, type ParameterGather, type ProcessGroup, type Work, CompletedWork, Store, StoreServer, ZeroOptimizer, type ZeroStage } from '../src/parallel/index.js';
import { type Tensor, backward, copyInto, noGrad, scope, sliceView, tensor, zeroInPlace, zeros } from '../src/tensor/index.js';
import { assertClose, rng } from './helpers/check.js';

const gpu = initCuda() as CudaBackend | null;
const noGpu = gpu ? false : 'skipped: no CUDA device';

test('CUDA views: pointer + offset, writes both ways, the parent\'s block lives while a slice does', { skip: noGpu }, () => {
  const be = gpu!;
  const before = be.allocator.stats().allocated;
  const parent = tensor(Float32Array.from({ length: 1000 }, (_, i) => i), [1000], 'f32', be).keep();
  const held = be.allocator.stats().allocated;
  const v = sliceView(parent, 128, [4, 8]).keep();
  assert.equal(ptr(v), ptr(parent) + 128 * 4);
  assert.equal(be.allocator.stats().allocated, held, 'a view allocates nothing');
  noGrad(() => ops.scaleInPlace(v, 2));
  const p = parent.toFloat32();
  assert.equal(p[127], 127);
  assert.equal(p[128], 256);
  assert.equal(p[159], 318);
  assert.equal(p[160], 160);
  const w = sliceView(v, 8, [8]).keep(); // nested: elements 136 … 143 of the parent
  assert.equal(ptr(w), ptr(parent) + 136 * 4);
  const ones = tensor(new Float32Array(8).fill(-1), [8], 'f32', be);
  copyInto(w, ones);
  ones.dispose();
  assert.deepEqual(Array.from(parent.toFloat32().subarray(135, 145)), [270, -1, -1, -1, -1, -1, -1, -1, -1, 288]);
  v.dispose();
  assert.equal(be.allocator.stats().allocated, held, 'disposing a view frees nothing');
  parent.dispose();
  assert.equal(be.allocator.stats().allocated, held, 'the block stays while a view holds it');
  assert.deepEqual(Array.from(w.toFloat32()), new Array(8).fill(-1));
  zeroInPlace(w);
  assert.deepEqual(Array.from(w.toFloat32()), new Array(8).fill(0));
  w.dispose();
  assert.equal(be.allocator.stats().allocated, before, 'freed with the last view');
  const t = tensor([NaN, -0, Infinity], [3], 'f32', be);
  zeroInPlace(t);
  assert.ok(t.toFloat32().every((x) => Object.is(x, 0)));
  t.dispose();
});

/** A group of one rank on any device: reduce-scatter and all-gather are device copies (the flat-buffer logic alone). */
class OneRank implements ProcessGroup {
  readonly backend = 'one';
  readonly rank = 0;
  readonly size = 1;
  readonly ranks = [0];
  protected copy(out: Tensor, input: Tensor): Work {
    const tmp = ops.scale(input, 1); // through a temporary: in-place calls pass the same memory
    copyInto(out, tmp);
    tmp.dispose();
    return new CompletedWork();
  }
  allReduce(): Work { return new CompletedWork(); }
  allReduceCoalesced(): Work { return new CompletedWork(); }
  reduceScatter(output: Tensor, input: Tensor): Work { return this.copy(output, input); }
  allGather(output: Tensor, input: Tensor): Work { return this.copy(output, input); }
  broadcast(): Work { return new CompletedWork(); }
  send(): Work { throw new Error('one rank'); }
  recv(): Work { throw new Error('one rank'); }
  barrier(): Work { return new CompletedWork(); }
  newGroup(): ProcessGroup | null { return null; }
  async destroy(): Promise<void> {}
}

/** OneRank with the synchronous collectives stage 3 needs (device copies, in stream order). */
class OneRankSync extends OneRank {
  allGatherNow(output: Tensor, input: Tensor): void { this.copy(output, input); }
  reduceScatterNow(output: Tensor, input: Tensor): void { this.copy(output, input); }
}

const SHAPES = [[64, 33], [33], [7], [5, 17], [1], [96]];

function makeParams(be: CudaBackend): Tensor[] {
  return SHAPES.map((shape, i) => {
    const r = rng(100 + i);
    const n = shape.reduce((a, b) => a * b, 1);
    const p = tensor(Float32Array.from({ length: n }, () => r() * 2 - 1), shape, 'f32', be).keep();
    p.requiresGrad = true;
    return p;
  });
}

const groupsOf = (ps: Tensor[]): ParamGroup[] => [
  { params: [ps[0]!, ps[3]!], weightDecay: 0.1 }, { params: [ps[1]!, ps[2]!, ps[4]!, ps[5]!], weightDecay: 0 },
];

/** Stage 3: two gather units, parameters 0–2 and 3–5 (each unit's terms computed between before and after). */
const unitsOf = (ps: Tensor[]): GatherUnit[] => [{ name: 'a', params: ps.slice(0, 3) }, { name: 'b', params: ps.slice(3) }];

function microBackward(ps: Tensor[], s: number, m: number, gas: number, onGradReady?: (leaf: Tensor) => void, gather?: ParameterGather): void {
  scope(() => {
    let loss: Tensor | null = null;
    ps.forEach((p, i) => {
      if (gather && i % 3 === 0) gather.before(i === 0 ? 'a' : 'b');
      const g = rng(1000 * s + 100 * m + 10 * i);
      const x = tensor(Float32Array.from({ length: p.numel }, () => 0.5 + g()), p.shape, 'f32', p.backend);
      const y = tensor(Float32Array.from({ length: p.numel }, () => g() * 2 - 1), p.shape, 'f32', p.backend);
      const term = ops.add(ops.sum(ops.mul(ops.mul(p, p), x)), ops.sum(ops.mul(p, y)));
      loss = loss ? ops.add(loss, term) : term;
      if (gather && i % 3 === 2) gather.after(i === 2 ? 'a' : 'b');
    });
    backward(loss!, gas === 1 ? undefined : ops.fill([], 1 / gas, 'f32', p0(ps).backend), { onGradReady });
  });
}
const p0 = (ps: Tensor[]) => ps[0]!;
const flat = (ps: Tensor[]) => Float32Array.from(ps.flatMap((p) => Array.from(p.toFloat32())));

/**
 * ZeRO (stage, several buckets) against AdamW on the same device, 3 steps of 2 micro-batches;
 * `overlap`: reduced during backward (stage 2 every micro-batch, stage 1 the last), in more buckets.
 */
async function compareWithAdamW(be: CudaBackend, group: ProcessGroup, stage: ZeroStage, maxNorm: number, overlap = false): Promise<void> {
  const ref = makeParams(be);
  const adam = new AdamW(groupsOf(ref), { betas: [0.9, 0.95], eps: 1e-8 });
  const ps = makeParams(be);
  const names = new Map(ps.map((p, i) => [p, `p${i}`] as const));
  const z = new ZeroOptimizer(group, groupsOf(ps), {
    betas: [0.9, 0.95], eps: 1e-8, stage, bucketElements: overlap ? 128 : 1200, names, units: stage === 3 ? unitsOf(ps) : undefined,
  });
  assert.ok(z.layout.buckets.length >= 2, `${z.layout.buckets.length} buckets`);
  if (stage !== 3) for (const p of ps) assert.equal(ptr(p) % 256, 0, `${p} is not 256-byte aligned in the flat buffer`);
  // Stage 3: the model's hooks, counted; inside a unit its buckets are gathered and its parameters readable.
  let gathers = 0;
  const inner = stage === 3 ? z.parameterGather() : null;
  const gather: ParameterGather | undefined = inner ? {
    before: (u) => {
      inner.before(u);
      gathers++;
      assert.ok(z.gatheredBuckets >= 1, `unit ${u} gathered`);
      for (const p of u === 'a' ? ps.slice(0, 3) : ps.slice(3)) assert.equal(p.toFloat32().length, p.numel, `${p} readable inside its unit`);
    },
    after: (u) => inner.after(u),
  } : undefined;
  const storageless = (when: string) => {
    if (stage !== 3) return;
    assert.equal(z.gatheredBuckets, 0, `nothing gathered ${when}`);
    for (let i = 0; i < ps.length; i++) assert.throws(() => ps[i]!.toFloat32(), new RegExp(`'p${i}' \\(shape .*\\) is sharded by ZeRO stage 3 and not gathered now`), `p${i} ${when}`);
  };
  storageless('after construction');
  for (let s = 0; s < 3; s++) {
    const lr = 0.01 / (1 + s);
    for (let m = 0; m < 2; m++) {
      microBackward(ref, s, m, 2);
      if (overlap && (stage !== 1 || m === 1)) {
        microBackward(ps, s, m, 2, z.beginBackward(), gather);
        await z.finish();
      } else {
        microBackward(ps, s, m, 2, undefined, gather);
        await z.reduceGradients();
      }
      storageless(`after micro-batch ${m} of step ${s + 1}`);
    }
    const { norm: refNorm, scale } = gradNormAndClip(ref, maxNorm);
    noGrad(() => adam.update(lr, scale));
    adam.zeroGrad();
    const { norm } = await z.update(lr, maxNorm);
    z.zeroGrad();
    storageless(`after step ${s + 1}`);
    assertClose([norm], [refNorm], { rtol: 1e-5, atol: 0 }, `stage ${stage} norm, step ${s + 1}`);
  }
  if (stage === 3) assert.equal(gathers, 3 * 2 * 2, 'each unit gathered once per micro-batch (backward reads what forward gathered)');
  const what = `stage ${stage}, maxNorm ${maxNorm}${overlap ? ', during backward' : ''}`;
  // One rank: stages 1–3 (one reduce per micro-batch, each a copy) sum as AdamW's .grad does.
  const mine = stage === 3 ? Float32Array.from((await z.fullParameters(names)).flatMap((e) => Array.from(e.data))) : flat(ps);
  if (stage === 3) {
    // fullParameters() lists by parameter group: reorder the reference the same way.
    const order = groupsOf(ref).flatMap((g) => g.params);
    if (maxNorm <= 0) assert.deepEqual(mine, flat(order), `${what}: parameters differ from AdamW's`);
    else assertClose(mine, flat(order), { rtol: 1e-5, atol: 1e-6 }, what);
  } else if (maxNorm <= 0) assert.deepEqual(mine, flat(ref), `${what}: parameters differ from AdamW's`);
  else assertClose(mine, flat(ref), { rtol: 1e-5, atol: 1e-6 }, what);
  const refNames = new Map(ref.map((p, i) => [p, `p${i}`] as const));
  const full = await z.fullState(names);
  const refState = new Map(adam.stateTensors(refNames).map(([n, t]) => [n, t.toFloat32()] as const));
  for (const e of full) {
    if (maxNorm <= 0) assert.deepEqual(e.data, refState.get(e.name), `${what}: ${e.name}`);
    else assertClose(e.data, refState.get(e.name)!, { rtol: 1e-4, atol: 1e-7 }, `${what}: ${e.name}`);
  }
  z.dispose();
  for (const p of [...ps, ...ref]) p.dispose();
}

test('CUDA ZeRO on one rank (device copies for collectives): stages 1, 2 and 3 = AdamW (also reduced during backward), aligned flat buffers', { skip: noGpu }, async () => {
  for (const stage of [1, 2, 3] as const) {
    for (const maxNorm of [0, 1.0]) {
      for (const overlap of [false, true]) await compareWithAdamW(gpu!, stage === 3 ? new OneRankSync() : new OneRank(), stage, maxNorm, overlap);
    }
  }
  // Stage 2 frees the full gradients after each micro-batch: only the shard stays.
  const ps = makeParams(gpu!);
  const z = new ZeroOptimizer(new OneRank(), groupsOf(ps), { betas: [0.9, 0.95], eps: 1e-8, stage: 2 });
  microBackward(ps, 0, 0, 1);
  const withGrads = gpu!.allocator.stats().allocated;
  await z.reduceGradients();
  assert.ok(ps.every((p) => p.grad === null));
  assert.ok(gpu!.allocator.stats().allocated < withGrads, 'the full gradients were freed');
  z.dispose();
  for (const p of ps) p.dispose();
  const probe = zeros([1], 'f32', gpu!); // the device is still healthy
  assert.equal(probe.toFloat32()[0], 0);
});

test('CUDA ZeRO through a one-rank NCCL group: stages 1, 2 and 3 = AdamW, also reduce-scattered during backward; stage 3 storage-less between steps', { skip: noGpu }, async (t) => {
  const server = await StoreServer.listen('127.0.0.1', 0);
  const store = await Store.connect('127.0.0.1', server.port, { rank: 0, timeoutMs: 30_000 });
  let group: ProcessGroup | null = null;
  try {
    try {
      group = await createNcclGroup({ store, rank: 0, size: 1, timeoutMs: 30_000 });
    } catch (e) {
      t.skip(`skipped: no NCCL (${(e as Error).message})`);
      return;
    }
    for (const stage of [1, 2, 3] as const) {
      for (const maxNorm of [0, 1.0]) {
        for (const overlap of [false, true]) await compareWithAdamW(gpu!, group, stage, maxNorm, overlap);
      }
    }
  } finally {
    await group?.destroy();
    await store.close();
    await server.close();
  }
});
