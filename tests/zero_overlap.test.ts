// ZeRO with the reduction overlapped with backward (ZeroOptimizer.beginBackward / finish, the
// engine's onGradReady hook), against the post-backward path (reduceGradients(); stage 1: update()
// reducing), on 2 CPU ranks in this process: GPT-NeoX with activation checkpointing (the hooks
// come from the nested backward of each recomputed layer) and tied embeddings, gradient
// accumulation 1 and 2, clipping, several buckets: the parameters bit for bit over 3 steps, the
// buckets reduce-scattered in bucket order while backward runs. Peak allocator memory during one
// backward (memoryStats after resetPeakMemory): the overlapped path holds about two buckets of full
// gradients instead of the whole model's, through the CPU group (which copies a reduce-scatter's
// input when issued) and through a stream-ordered test group that behaves as NCCL does (nothing
// runs until waited on; streamWait() orders what follows), where freeing a buffer before its
// collective read it would fail. Misuse errors name the parameter.
// The toy model with a parameter missing on one rank: tests/zero.test.ts; through `neox launch`:
// tests/zero_train.test.ts.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import '../src/backends/cpu/index.js';
import { GPTNeoX, resolveModelConfig } from '../src/models/gpt_neox/index.js';
import * as ops from '../src/ops/index.js';
import {
  BUCKETS_IN_FLIGHT, type ProcessGroup, type ReduceOp, type Work, ZeroOptimizer, type ZeroStage,
} from '../src/parallel/index.js';
import { type Tensor, backward, checkpoint, getBackend, scope, tensor } from '../src/tensor/index.js';
import { rng } from './helpers/check.js';
import { modelKeys } from './helpers/model.js';
import { withGroups } from './helpers/procs.js';

const cpu = getBackend('cpu');
const BETAS: [number, number] = [0.9, 0.95];


/** `g`, logging each reduceScatter it is asked for into `log`. */
function logged(g: ProcessGroup, log: string[]): ProcessGroup {
  return new Proxy(g, {
    get(target, key) {
      if (key === 'reduceScatter') {
        return (out: Tensor, input: Tensor, op?: ReduceOp) => {
          log.push('reduceScatter');
          return target.reduceScatter(out, input, op);
        };
      }
      const v = Reflect.get(target, key) as unknown;
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
}

const V = 13, B = 2, T = 6;

function buildModel(over: Parameters<typeof modelKeys>[0] = {}, every = 1): GPTNeoX {
  const model = new GPTNeoX(resolveModelConfig(modelKeys(over), V), cpu);
  if (every) model.setActivationCheckpointing(every);
  return model;
}

function zeroFor(g: ProcessGroup, model: GPTNeoX, stage: ZeroStage, bucketElements: number): ZeroOptimizer {
  const { decay, noDecay } = model.weightDecayGroups();
  return new ZeroOptimizer(g, [{ params: decay, weightDecay: 0.1 }, { params: noDecay, weightDecay: 0 }], {
    betas: BETAS, eps: 1e-8, stage, bucketElements, names: new Map(model.namedParameters().map(([n, p]) => [p, n] as const)), order: model.parameters(),
  });
}

/** Micro-batch m of step s on rank r: the loss, with the engine's dropout seed set. */
function microLoss(model: GPTNeoX, r: number, s: number, m: number, b = B, t = T): Tensor {
  const rand = rng(1000 * s + 100 * m + r + 1);
  const ids = Int32Array.from({ length: b * t }, () => Math.floor(rand() * V));
  const labels = Int32Array.from({ length: b * t }, () => Math.floor(rand() * V));
  model.setDropoutSeed(10 * s + m);
  return model.loss(tensor(ids, [b, t], 'i32', cpu), tensor(labels, [b, t], 'i32', cpu), tensor(new Float32Array(b * t).fill(1), [b, t], 'f32', cpu));
}

const flat = (model: GPTNeoX) => Float32Array.from(model.parameters().flatMap((p) => Array.from(p.toFloat32())));

function assertBitwise(actual: Float32Array, expected: Float32Array, what: string): void {
  assert.equal(Buffer.compare(Buffer.from(actual.buffer, actual.byteOffset, actual.byteLength), Buffer.from(expected.buffer, expected.byteOffset, expected.byteLength)), 0,
    `${what}: not bitwise equal (max |Δ| ${actual.reduce((m, a, i) => Math.max(m, Math.abs(a - expected[i]!)), 0)})`);
}

/**
 * `steps` training steps of ZeRO-`stage` on every rank: `hook` reduces during backward
 * (beginBackward/finish: stage 2 every micro-batch, stage 1 the last), `post` after it. Returns
 * each rank's parameters, the norms and each rank's event log.
 */
async function train(gs: ProcessGroup[], stage: ZeroStage, gas: number, mode: 'hook' | 'post', steps = 3) {
  const logs: string[][] = gs.map(() => []);
  const ranks = gs.map((g, r) => {
    const model = buildModel();
    return { model, zero: zeroFor(logged(g, logs[r]!), model, stage, 600) };
  });
  const norms: number[] = [];
  for (let s = 0; s < steps; s++) {
    const stepNorms = await Promise.all(ranks.map(async ({ model, zero }, r) => {
      const log = logs[r]!;
      for (let m = 0; m < gas; m++) {
        const hooked = mode === 'hook' && (stage === 2 || m === gas - 1);
        scope(() => {
          const loss = microLoss(model, r, s, m);
          const hook = hooked ? zero.beginBackward() : null;
          backward(loss, gas === 1 ? undefined : tensor([1 / gas], [], 'f32', cpu), { onGradReady: hook ? (leaf) => { log.push('ready'); hook(leaf); } : undefined });
        });
        log.push(`returned ${s}.${m}`);
        if (hooked) {
          log.push(`issued during backward ${zero.issuedBuckets}`);
          await zero.finish();
        } else if (mode === 'post') {
          await zero.reduceGradients();
        }
        if (stage === 2) assert.ok(model.parameters().every((p) => p.grad === null), 'stage 2: the full gradients are freed after each micro-batch');
      }
      const { norm } = await zero.update(0.01, 1.0);
      zero.zeroGrad();
      return norm;
    }));
    for (const n of stepNorms) assert.equal(n, stepNorms[0], 'the ranks agree on the norm');
    norms.push(stepNorms[0]!);
  }
  return { params: ranks.map(({ model }) => flat(model)), norms, logs, buckets: ranks[0]!.zero.layout.buckets.length };
}

test('ZeRO-2 (every micro-batch) and ZeRO-1 (the last) reduce-scattered during backward = after it, bit for bit: GPT-NeoX, activation checkpointing, tied embeddings, accumulation 1 and 2, clipping', async () => {
  await slowGroups(2, async (gs) => {
    for (const stage of [2, 1] as const) {
      for (const gas of [1, 2]) {
        const what = `ZeRO-${stage} gas ${gas}`;
        const hook = await train(gs, stage, gas, 'hook');
        const post = await train(gs, stage, gas, 'post');
        assert.ok(hook.buckets >= 6, `${what}: ${hook.buckets} buckets`);
        assert.ok(hook.norms.every((n) => n > 1), `${what}: clipping active (norms ${hook.norms})`);
        for (let r = 0; r < 2; r++) assertBitwise(hook.params[r]!, post.params[r]!, `${what} rank ${r}: overlapped vs after backward`);
        assertBitwise(hook.params[1]!, hook.params[0]!, `${what}: the ranks agree`);
        assert.deepEqual(hook.norms, post.norms, `${what}: norms`);
        for (const log of hook.logs) {
          // Per hooked backward: every bucket went out before backward returned (every parameter
          // gets a gradient), the first one while backward still had gradients to make.
          const hooked = log.filter((e) => e.startsWith('issued during backward'));
          assert.equal(hooked.length, 3 * (stage === 2 ? gas : 1), what);
          for (const e of hooked) assert.equal(e, `issued during backward ${hook.buckets}`, what);
          const firstReturn = log.indexOf(stage === 2 ? 'returned 0.0' : `returned 0.${gas - 1}`); // the first hooked backward
          const firstRs = log.indexOf('reduceScatter');
          const lastReady = log.slice(0, firstReturn).lastIndexOf('ready');
          // Buckets follow backward order (ZeroOptions.order): all but the last (the tied embedding's,
          // whose gradient is final last) go out while backward still has gradients to make.
          const early = log.slice(0, lastReady).filter((e) => e === 'reduceScatter').length;
          const trace = log.slice(0, firstReturn + 1).map((e) => (e === 'ready' ? '.' : e === 'reduceScatter' ? 'R' : ` ${e} `)).join('');
          assert.ok(firstRs < lastReady && early >= hook.buckets - 1, `${what}: ${early} buckets went out during backward (. ready, R reduce-scatter): ${trace}`);
        }
        for (const log of post.logs) assert.ok(!log.includes('ready'));
      }
    }
  });
});

// ---------------------------------------------------------------------------------------------
// A process group that behaves as NCCL towards the caller: operations run only when waited on (in
// issue order; wait() or streamWait()), never when issued, and read their inputs then; so a
// buffer freed before its collective ran makes that collective fail ("used after dispose"). Its
// peers are mirrors of this rank (every rank contributes what this one does): reduceScatter(avg)
// of x is x's chunk exactly, allReduce(sum) doubles, allGather leaves the other chunks as they are.

class StreamOrderedWork implements Work {
  done = false;
  constructor(private readonly group: MirrorGroup, readonly run: () => void) {}
  get completed(): boolean {
    return this.done;
  }
  wait(): Promise<void> {
    try {
      this.group.runUpTo(this);
    } catch (e) {
      return Promise.reject(e);
    }
    return Promise.resolve();
  }
  streamWait(): void {
    this.group.runUpTo(this);
  }
  then<A = void, Z = never>(ok?: ((v: void) => A | PromiseLike<A>) | null, err?: ((e: unknown) => Z | PromiseLike<Z>) | null): PromiseLike<A | Z> {
    return this.wait().then(ok, err);
  }
}

class MirrorGroup implements ProcessGroup {
  readonly backend = 'mirror';
  readonly rank = 0;
  readonly ranks: number[];
  private readonly queue: StreamOrderedWork[] = [];
  constructor(readonly size: number) {
    this.ranks = Array.from({ length: size }, (_, r) => r);
  }
  runUpTo(w: StreamOrderedWork): void {
    while (!w.done) {
      const next = this.queue.shift()!;
      next.run();
      next.done = true;
    }
  }
  private issue(run: () => void): Work {
    const w = new StreamOrderedWork(this, run);
    this.queue.push(w);
    return w;
  }
  allReduce(t: Tensor, op: ReduceOp = 'sum'): Work {
    return this.issue(() => { if (op === 'sum') ops.scaleInPlace(t, this.size); });
  }
  allReduceCoalesced(ts: Tensor[], op?: ReduceOp): Work {
    return this.issue(() => ts.forEach((t) => this.allReduce(t, op)));
  }
  reduceScatter(output: Tensor, input: Tensor, op: ReduceOp = 'sum'): Work {
    return this.issue(() => {
      const mine = input.toFloat32().subarray(this.rank * output.numel, (this.rank + 1) * output.numel);
      const out = op === 'avg' ? mine : mine.map((v) => v * this.size);
      const t = tensor(out, [output.numel], 'f32', cpu);
      ops.scaleInPlace(output, 0);
      ops.addInPlace(output, t);
      t.dispose();
    });
  }
  allGather(_output: Tensor, _input: Tensor): Work {
    return this.issue(() => {}); // in place: this rank's chunk is already there
  }
  broadcast(): Work { throw new Error('not used'); }
  send(): Work { throw new Error('not used'); }
  recv(): Work { throw new Error('not used'); }
  barrier(): Work { throw new Error('not used'); }
  newGroup(): ProcessGroup | null { throw new Error('not used'); }
  async destroy(): Promise<void> {}
}

/**
 * Peak allocator bytes above the start of one micro-batch (forward, backward and the reduction) on
 * rank 0, overlapped (`hook`) or after backward (`post`, reduceGradients()); the second of two steps.
 */
async function peakOfBackward(gs: ProcessGroup[], mode: 'hook' | 'post', bucketElements: number) {
  const ranks = gs.map((g) => {
    const model = buildModel({ hidden_size: 64, num_layers: 4, hidden_dropout: 0 }, 0);
    return { model, zero: zeroFor(g, model, 2, bucketElements) };
  });
  const peaks: number[] = [];
  for (let s = 0; s < 2; s++) {
    await Promise.all(ranks.map(async ({ model, zero }, r) => {
      // Rank 0's micro-batch runs without yielding, so the peak is its own.
      const start = cpu.memoryStats().allocated;
      if (r === 0) cpu.resetPeakMemory();
      scope(() => {
        const loss = microLoss(model, r, s, 0, 1, 4);
        backward(loss, undefined, { onGradReady: mode === 'hook' ? zero.beginBackward() : undefined });
      });
      if (r === 0) peaks.push(cpu.memoryStats().peak - start);
      await (mode === 'hook' ? zero.finish() : zero.reduceGradients());
      await zero.update(0.01, 0);
      zero.zeroGrad();
    }));
  }
  const numel = ranks[0]!.model.numParameters();
  const bucketBytes = 4 * Math.max(...ranks[0]!.zero.layout.buckets.map((b) => b.length));
  return { peak: peaks[1]!, gradBytes: 4 * numel, bucketBytes, buckets: ranks[0]!.zero.layout.buckets.length, params: ranks.map(({ model }) => flat(model)) };
}

test('ZeRO-2 overlapped: peak memory during backward holds about two buckets of full gradients, not the whole model\'s (CPU group, and a stream-ordered group as NCCL)', async () => {
  const bucketElements = 12_000;
  const report: string[] = [];
  const check = (what: string, hook: Awaited<ReturnType<typeof peakOfBackward>>, post: Awaited<ReturnType<typeof peakOfBackward>>, buffers: number) => {
    const kB = (n: number) => `${(n / 1024).toFixed(1)} kB`;
    report.push(`${what}: ${hook.buckets} buckets of ≤ ${kB(hook.bucketBytes)}, gradients ${kB(hook.gradBytes)}; peak above the start of a micro-batch: ` +
      `after backward ${kB(post.peak)}, overlapped ${kB(hook.peak)} (saved ${kB(post.peak - hook.peak)})`);
    assert.ok(hook.buckets >= 8, `${what}: ${hook.buckets} buckets`);
    // The post-backward path holds every gradient at the end of backward, the overlapped one at
    // most `buffers` buckets more than the gradients of the bucket being filled: it saves at least
    // the model's gradients less that.
    assert.ok(post.peak - hook.peak >= hook.gradBytes - buffers * hook.bucketBytes, report.at(-1));
    assert.ok(post.peak - hook.peak <= hook.gradBytes + hook.bucketBytes, report.at(-1));
    hook.params.forEach((p, r) => assertBitwise(p, post.params[r]!, `${what}: overlapped vs after backward, rank ${r}`));
  };
  await slowGroups(2, async (gs) => {
    // The CPU group has copied each staging buffer when the reduce-scatter returns: it is freed at once.
    check('CPU group', await peakOfBackward(gs, 'hook', bucketElements), await peakOfBackward(gs, 'post', bucketElements), 2);
  });
  // Stream-ordered: staging buffers live until the compute stream is ordered after their collective,
  // at most BUCKETS_IN_FLIGHT of them, plus the one being filled.
  const mirror = [new MirrorGroup(2)];
  check('stream-ordered group', await peakOfBackward(mirror, 'hook', bucketElements), await peakOfBackward(mirror, 'post', bucketElements), BUCKETS_IN_FLIGHT + 1);
  console.log(report.join('\n'));
});

test('stream-ordered group (as NCCL): overlapped = after backward, bit for bit, with accumulation (outputs added into the shard once ordered) and for ZeRO-1; no buffer freed before its collective ran', async () => {
  for (const [stage, gas] of [[2, 2], [2, 1], [1, 2]] as const) {
    const hook = await train([new MirrorGroup(2)], stage, gas, 'hook');
    const post = await train([new MirrorGroup(2)], stage, gas, 'post');
    assertBitwise(hook.params[0]!, post.params[0]!, `ZeRO-${stage} gas ${gas}`);
    assert.deepEqual(hook.norms, post.norms);
  }
});

test('ZeRO overlapped misuse: a parameter reported twice (two checkpointed segments, or by hand) or after finish(), rounds out of order: errors name the parameter', async () => {
  await slowGroups(1, async ([g]) => {
    const mk = (name: string, n: number, seed: number) => {
      const r = rng(seed);
      const p = tensor(Float32Array.from({ length: n }, () => r() - 0.5), [n], 'f32', cpu).keep();
      p.requiresGrad = true;
      p.name = name;
      return p;
    };
    const x = tensor([1, 2, 3, 4], [4], 'f32', cpu).keep();
    for (const stage of [1, 2] as const) {
      const [b, w] = [mk('b', 4, 1), mk('w', 4, 2)];
      // One parameter per bucket; w's (the last parameter's) is the first to go.
      const z = new ZeroOptimizer(g!, [{ params: [b, w], weightDecay: 0 }], { betas: BETAS, eps: 1e-8, stage, bucketElements: 4, names: new Map([[w, 'layer.w']]) });
      // w in two checkpointed segments: the second segment's nested backward reports it (and its
      // bucket goes out) before the first segment adds its part.
      const hook = z.beginBackward();
      assert.throws(() => scope(() => {
        const h = checkpoint(([t]) => ops.mul(t!, w), [ops.add(x, b)]);
        const y = checkpoint(([t]) => ops.mul(t!, w), [h]);
        backward(ops.sum(y), undefined, { onGradReady: hook });
      }), new RegExp(`^Error: ZeroOptimizer: parameter 'layer.w' \\(shape \\[4\\]\\) was reported ready twice in one backward, after its bucket was already ` +
        `reduce-scattered: its gradient was not final the first time.*two activation-checkpointed segments.*${stage === 2 ? 'reduceGradients\\(\\)' : 'update\\(\\)'} and no hook`));
      assert.equal(z.issuedBuckets, 1);
      // The round is still open: everything else waits for finish().
      assert.throws(() => z.beginBackward(), /the previous backward's reduction is not finished; call finish\(\)/);
      await assert.rejects(z.reduceGradients(), /reduceGradients: a backward's reduction \(beginBackward\) is in progress; call finish\(\) after that backward first/);
      await assert.rejects(z.update(0.01, 0), /update: a backward's reduction .* is in progress/);
      assert.throws(() => z.zeroGrad(), /zeroGrad: a backward's reduction .* is in progress/);
      await z.finish();
      assert.throws(() => hook(b), /parameter 'b' \(shape \[4\]\) reported its gradient ready after finish\(\); pass the hook of beginBackward\(\) to one backward only/);
      await assert.rejects(z.finish(), /no backward in progress; call beginBackward\(\) before the backward/);
      if (stage === 1) assert.throws(() => z.beginBackward(), /already reduce-scattered by a hooked backward; hook only the backward of the last micro-batch/);
      z.zeroGrad();
      z.dispose();
    }
    // Reported twice by hand, before its bucket went out (it waits for an earlier bucket).
    const [c, d] = [mk('c', 2, 3), mk('d', 2, 4)];
    const z = new ZeroOptimizer(g!, [{ params: [c, d], weightDecay: 0 }], { betas: BETAS, eps: 1e-8, stage: 2, bucketElements: 2 });
    const hook = z.beginBackward();
    hook(x); // not one of its parameters: ignored
    c.grad = tensor([1, 1], [2], 'f32', cpu).keep();
    hook(c);
    assert.equal(z.issuedBuckets, 0, 'c\'s bucket waits for d\'s');
    assert.throws(() => hook(c), /parameter 'c' \(shape \[2\]\) was reported ready twice in one backward: its gradient was not final/);
    await z.finish(); // d got no gradient: zeros
    assert.equal(z.issuedBuckets, 2);
    assert.equal(c.grad, null);
    await z.update(0.01, 0);
    z.dispose();
  });
});

/** withGroups with a longer timeout: these tests run whole models on every rank. */
function slowGroups(W: number, fn: (groups: ProcessGroup[]) => Promise<void>, timeoutMs = 20_000): Promise<void> {
  return withGroups(W, fn, timeoutMs);
}
