// ZeRO stages 1, 2 and 3: AdamW whose state (stage 1), gradients (stage 2) and parameters (stage 3) are sharded across the
// data-parallel ranks, on the device: CUDA tensors through the NCCL group, CPU tensors through the
// CPU group. Nothing goes through the host but the gradient norm (one number per step, logged)
// and checkpoints.
//
// defines: ZeroOptimizer, ZeroOptions, ZeroStage, ZeroMemory, BUCKETS_IN_FLIGHT, FullStateEntry
//          (and re-exports zero_layout.ts)
//
// Layout: zero_layout.ts (parameters in flat buffers, buckets, each rank's slice of every bucket).
//   - the model's parameters are views into the flat parameter buffer (adoptStorage: the Tensor
//     objects the model holds stay), so the all-gather writes them directly;
//   - AdamW's moments are two flat shard tensors (S elements each);
//   - stage 1: the gradients are views into a flat gradient buffer (W·S elements): backward
//     accumulates into them in place; stage 2: a persistent f32 gradient shard (S elements).
// Padding is zero in every buffer and stays zero (AdamW maps p = g = m = v = 0 to 0 when eps > 0),
// so the update runs on "runs": maximal stretches of a rank's slice of one bucket whose pieces
// (a piece: the part of one parameter in the slice) share a weight decay, one 'adamw' launch each.
//
// Reducing during backward (beginBackward() → backward(…, { onGradReady }) → finish(), as DDP and
// DeepSpeed's overlap_comm): the hook counts each bucket's final gradients and issues a bucket's
// reduce-scatter as soon as it is complete, strictly in bucket order (every rank issues the same
// collectives in the same order; a complete bucket waits for its predecessors); finish() issues
// the rest (a parameter without a gradient contributes zeros) and waits. Stage 2, every
// micro-batch: the bucket's gradients are copied into a staging buffer and freed at once; the
// staging buffer lives until the collective no longer reads it: the CPU group copies it when the
// call is made (Work.inputsConsumed), so it is freed right away; on NCCL, when BUCKETS_IN_FLIGHT
// buckets are in flight the oldest is retired: Work.streamWait() makes the compute stream wait for
// its collective, and only then are its buffers freed (the caching allocator is stream-ordered on
// the compute stream, so the memory is not handed to new compute work before the comm stream has
// read it) and, after the first micro-batch (whose reduce-scatter writes the shard directly), its
// output added into the shard. So backward holds the gradients of the bucket being made plus at
// most two staging buffers, not the model's. Stage 1, the last micro-batch only: each bucket is
// reduce-scattered in place in the flat buffer, and update() does not reduce again.
// reduceGradients() (stage 2, after each micro-batch's backward) is the reference path, the same
// collectives after backward; tests compare the two bit for bit.
//
// One step (call update() after the backward of the last micro-batch, instead of syncGradients +
// clipping + AdamW):
//   1. stage 1: per bucket, reduce-scatter `avg` in place in the flat gradient buffer (the same
//      rank-order sums as the data-parallel all-reduce: the same bits), unless a hooked backward did.
//      stage 2: done per micro-batch (hook, or reduceGradients()): per bucket, the gradients into a
//      bucket-sized staging buffer (zeros where a parameter has none), freed, the staging buffer
//      reduce-scattered (`avg`) into this rank's slice of the gradient shard (the first micro-batch
//      writes it, later ones add), freed. Between micro-batches only the shard persists. With
//      accumulation the sum is per micro-batch, then over micro-batches, so the result agrees with
//      data parallelism to rounding (bitwise with one micro-batch).
//   2. global gradient norm: Σ g² of this rank's shard (on the device), all-reduced, and the clip
//      factor from it (clipFactor kernel), on the device.
//   3. AdamW on every run: the clip factor as the kernel's device input (a non-finite one skips the
//      step on the device), the run's weight decay as an attribute.
//   4. per bucket, all-gather in place in the flat parameter buffer: every rank's parameters.
//   Then the one host read of the step: the norm, for the log.
// Without clipping the parameters equal (bitwise) those of DataParallel + AdamW (stage 2: with one
// micro-batch per step); with clipping the norm is summed in another order, so to rounding.
// Checkpoints: fullState() all-gathers the moments bucket by bucket (one download per bucket and
// moment) into whole per-parameter tensors named as AdamW's (`{name}.exp_avg`, `{name}.exp_avg_sq`),
// so a checkpoint saved at one world size loads at any other, and into plain AdamW;
// loadFullState() takes this rank's slices out (one upload per moment).
// Stage 3 (docs/parallel.md, "ZeRO stage 3"): no flat parameter buffer; a rank keeps its slices of
// every bucket in a parameter shard (S elements) that AdamW updates, and update() gathers nothing.
// The layout never puts two gather units (options.units: GPTNeoX.gatherUnits()) in one bucket.
// parameterGather() gives the model before(unit)/after(unit): all-gather the unit's buckets with
// the group's synchronous collectives (SyncCollectives) into a temporary buffer the parameters
// point at, and release it after (the parameters become storage-less: touching one throws), unless
// the tape saved a parameter itself (f32 compute): then the bucket stays gathered until its
// gradients are final (the beginBackward() hook; finish/reduceGradients/zeroGrad/update at the
// latest). Gradients as stage 2. fullParameters()/loadFullParameters(): whole tensors, any W.

import * as ops from '../ops/index.js';
import { type AdamWOptions, type ParamGroup, clipFactorOf } from '../optim/adamw.js';
import type { Backend } from '../tensor/backend.js';
import { empty, noGrad, runKernel, tensor, zeros } from '../tensor/engine.js';
import type { Tensor } from '../tensor/tensor.js';
import { adoptStorage, copyInto, sliceView, zeroInPlace } from '../tensor/views.js';
import { type ProcessGroup, type Work, syncCollectivesOf } from './process_group.js';
import { type ZeroLayout, zeroLayout } from './zero_layout.js';

export * from './zero_layout.js';

export type ZeroStage = 1 | 2 | 3;

/**
 * Stage 3: a part of the model whose parameters are gathered together before it runs (GPT-NeoX:
 * the embedding, each layer, the final norm + output head). `params`: every parameter the unit
 * reads; a parameter listed by several units (tied embeddings) belongs to the first, and the
 * others gather its bucket too. Listed in forward order.
 */
export interface GatherUnit {
  name: string;
  params: readonly Tensor[];
}

/** What the model calls around each unit's forward (GPTNeoX.setParameterGather). */
export interface ParameterGather {
  before(unit: string): void;
  after(unit: string): void;
}

export interface ZeroOptions extends AdamWOptions {
  /** 1: optimizer state sharded (default); 2: gradients too; 3: parameters too (needs `units`). */
  stage?: ZeroStage;
  /** Stage 3: the gather units, in forward order (GPTNeoX.gatherUnits()); they replace `order`. */
  units?: readonly GatherUnit[];
  /** Most elements per reduce-scatter / all-gather bucket (zero_optimization.reduce_bucket_size); default: one bucket. */
  bucketElements?: number;
  /** Alignment of every parameter and rank slice, in elements (default 64 on CUDA, 1 on CPU). */
  align?: number;
  /** The parameters' names, for error messages (default: the tensor's name, else its index). */
  names?: ReadonlyMap<Tensor, string>;
  /**
   * The parameters in the order the forward pass uses them (the model's parameters()), which
   * backward reverses: buckets are filled in that order backward, so that they complete one after
   * another during backward. Default: the groups' order, which for [decay, no decay] groups spreads
   * the late-ready first layers' biases over early buckets, so nothing would overlap.
   */
  order?: readonly Tensor[];
}

/**
 * Stage 2 during backward: at most this many buckets' reduce-scatters keep their buffers (staging,
 * and the output to add into the shard) before the compute stream is made to wait for the oldest
 * (DeepSpeed's overlap_comm double-buffers the same way).
 */
export const BUCKETS_IN_FLIGHT = 2;

/** Bytes this rank holds for the optimizer (persistent buffers; see memory()). */
export interface ZeroMemory {
  stage: ZeroStage;
  /** The AdamW moments: 8 bytes per shard element (≈ 1/W of AdamW's 8 per parameter). */
  optimizerState: number;
  /** Stage 1: the flat gradient buffer (every parameter's); stage 2: the gradient shard (≈ 1/W). */
  gradients: number;
  /** The f32 parameters: stages 1–2 the flat buffer (every parameter); stage 3 this rank's shard (≈ 1/W). */
  parameters: number;
}

/** The part of one parameter inside this rank's slice of a bucket. */
interface Piece {
  param: number;
  weightDecay: number;
  bucket: number;
  /** Offset within the parameter. */
  paramOffset: number;
  /** Offset in the flat buffers. */
  flatOffset: number;
  /** Offset in this rank's shard. */
  shardOffset: number;
  length: number;
}

/** Adjacent pieces of one bucket slice with one weight decay: one adamw launch over views. */
interface Run {
  weightDecay: number;
  p: Tensor;
  g: Tensor;
  m: Tensor;
  v: Tensor;
}

/** Per bucket, the views the collectives use (kept for the optimizer's lifetime). */
interface BucketViews {
  /** The bucket in the flat parameter buffer, and this rank's slice of it (in-place all-gather); stage 3: no flat buffer, the slice is in the parameter shard. */
  params: Tensor | null;
  paramSlice: Tensor;
  /** Stage 1: the bucket in the flat gradient buffer and this rank's slice (in-place reduce-scatter). */
  grads: Tensor | null;
  gradSlice: Tensor | null;
  /** Stage 2: this rank's slice of the gradient shard. */
  shardGrad: Tensor | null;
}

export interface FullStateEntry {
  name: string;
  shape: readonly number[];
  data: Float32Array;
}

/** A bucket's reduce-scatter issued during backward, until its buffers are released. */
interface InFlight {
  bucket: number;
  work: Work;
  /** Stage 2: the staging buffer the collective reads (null once the group has read it). */
  staging: Tensor | null;
  /** Stage 2 after the first micro-batch: the collective's output, added into the shard once it is there. */
  out: Tensor | null;
}

/** One backward's overlapped reduction: beginBackward() → onGradReady reports → finish(). */
interface Round {
  /** Stage 2: the first micro-batch since zeroGrad() (overwrites the shard). */
  readonly first: boolean;
  /** Per parameter: reported ready. */
  readonly ready: boolean[];
  /** Per bucket: how many of its parameters are not ready yet. */
  readonly missing: number[];
  /** The next bucket to issue (all before it are issued). */
  next: number;
  /** Issued, buffers not yet released, in issue order. */
  readonly inFlight: InFlight[];
  finished: boolean;
}

type AdamWAttrs = { lr: number; beta1: number; beta2: number; eps: number; weightDecay: number; step: number; gradScale: number };

/** The one call of the 'adamw' kernel: `factor` is the [] f32 clip factor on the device (non-finite: the kernel skips the step). */
function adamwStep(p: Tensor, g: Tensor, m: Tensor, v: Tensor, factor: Tensor, attrs: AdamWAttrs): void {
  runKernel('adamw', [p, g, m, v, factor], { ...attrs, scaleInput: true });
}

export class ZeroOptimizer {
  /** Completed optimizer steps (bias correction uses step + 1). */
  step = 0;
  readonly stage: ZeroStage;
  readonly params: Tensor[];
  readonly layout: ZeroLayout;
  readonly backend: Backend;
  private readonly weightDecays: number[];
  /** Stages 1–2: every parameter (W·S); stage 3: null. */
  private readonly flatParams: Tensor | null;
  /** Stage 3: this rank's slices of the parameters (S). */
  private readonly paramShard: Tensor | null;
  /** Stage 3: per bucket, the gathered parameters while some unit holds them (or backward may read them). */
  private readonly gathered: (Tensor | null)[] = [];
  /** Stage 3: per bucket, how many units between before() and after() hold it. */
  private readonly holds: number[] = [];
  /** Stage 3: per bucket, the tape saved its parameters: keep them until their gradients are final. */
  private readonly deferred: boolean[] = [];
  /** Stage 3: per unit name, the buckets it gathers. */
  private readonly unitBuckets = new Map<string, number[]>();
  private readonly flatGrads: Tensor | null;
  private readonly gradShard: Tensor | null;
  private readonly expAvg: Tensor;
  private readonly expAvgSq: Tensor;
  private readonly pieces: Piece[] = [];
  private readonly runs: Run[] = [];
  private readonly bucketViews: BucketViews[];
  /** Stage 1: each parameter's gradient view into flatGrads (what p.grad should be). */
  private readonly gradViews: (Tensor | null)[];
  /** Stage 2: micro-batches reduced into the shard since zeroGrad(). */
  private reduced = 0;
  /** Stage 1: a hooked backward's finish() reduce-scattered the flat gradients (update() must not again). */
  private reducedInBackward = false;
  /** The overlapped reduction in progress (or the last one). */
  private round: Round | null = null;
  private readonly indexOf = new Map<Tensor, number>();
  /** Each parameter's bucket. */
  private readonly bucketOf: number[];
  private disposed = false;

  constructor(readonly group: ProcessGroup, readonly groups: ParamGroup[], readonly opts: ZeroOptions) {
    this.stage = opts.stage ?? 1;
    if (this.stage !== 1 && this.stage !== 2 && this.stage !== 3) throw new Error(`ZeroOptimizer: stage ${String(opts.stage)} is not 1, 2 or 3`);
    if (this.stage === 3 && !syncCollectivesOf(group)) {
      throw new Error(`ZeroOptimizer: stage 3 gathers parameters inside forward and backward and needs a process group with synchronous collectives ` +
        `(the NCCL group, device cuda; or the in-process thread group); the '${group.backend}' group has none`);
    }
    if (this.stage === 3 && !opts.units?.length) throw new Error('ZeroOptimizer: stage 3 needs the model\'s gather units (units: GPTNeoX.gatherUnits())');
    this.params = groups.flatMap((g) => g.params);
    this.weightDecays = groups.flatMap((g) => g.params.map(() => g.weightDecay));
    const groupOf = groups.flatMap((g, j) => g.params.map(() => j));
    if (this.params.length === 0) throw new Error('ZeroOptimizer: no parameters');
    const backend = (this.backend = this.params[0]!.backend);
    const seen = new Set<Tensor>();
    for (const p of this.params) {
      if (seen.has(p)) throw new Error(`ZeroOptimizer: ${p} is in two parameter groups`);
      seen.add(p);
      if (p.dtype !== 'f32') throw new Error(`ZeroOptimizer: parameters must be f32 (master weights), ${p} is ${p.dtype}`);
      if (p.backend !== backend) throw new Error(`ZeroOptimizer: parameters on two devices (${backend.name} and ${p.backend.name})`);
      if (p.sharedStorage.refs !== 1) throw new Error(`ZeroOptimizer: ${p} shares its memory with another tensor; ZeRO moves each parameter into a flat buffer`);
    }
    const align = opts.align ?? (backend.name === 'cpu' ? 1 : 64);
    this.params.forEach((p, i) => this.indexOf.set(p, i));
    let order: number[] | undefined;
    let unitOfParam: number[] | undefined;
    if (this.stage === 3) {
      // Forward order and unit membership from the units: each parameter in the first unit listing it.
      unitOfParam = this.params.map(() => -1);
      order = [];
      opts.units!.forEach((u, j) => {
        if (this.unitBuckets.has(u.name)) throw new Error(`ZeroOptimizer: two gather units are named '${u.name}'`);
        this.unitBuckets.set(u.name, []);
        for (const p of u.params) {
          const i = this.indexOf.get(p);
          if (i === undefined) throw new Error(`ZeroOptimizer: ${p} of gather unit '${u.name}' is in no parameter group`);
          if (unitOfParam![i] !== -1) continue;
          unitOfParam![i] = j;
          order!.push(i);
        }
      });
      const stray = unitOfParam.findIndex((u) => u === -1);
      if (stray >= 0) throw new Error(`ZeroOptimizer (stage 3): parameter ${this.params[stray]} is in no gather unit, so nothing would gather it`);
    } else if (opts.order) {
      order = opts.order.map((p) => {
        const i = this.indexOf.get(p);
        if (i === undefined) throw new Error(`ZeroOptimizer: ${p} is in \`order\` but in no parameter group`);
        return i;
      });
      if (new Set(order).size !== order.length || order.length !== this.params.length) {
        throw new Error(`ZeroOptimizer: \`order\` must list each of the ${this.params.length} parameters once (it has ${order.length}, ${new Set(order).size} distinct)`);
      }
    }
    const layout = (this.layout = zeroLayout(this.params.map((p) => p.numel), group.size, { bucketElements: opts.bucketElements, align, order, classes: groupOf, units: unitOfParam }));
    const { offsets, total, shardSize } = layout;
    const r = group.rank;

    // Stages 1–2: the parameters move into the flat buffer (padding zero). Stage 3: this rank's
    // slices go into the parameter shard (after the pieces are known, below).
    const flatParams = (this.flatParams = this.stage === 3 ? null : zeros([total], 'f32', backend).keep());
    this.paramShard = this.stage === 3 ? zeros([shardSize], 'f32', backend).keep() : null;
    if (flatParams) {
      this.params.forEach((p, i) => {
        const v = sliceView(flatParams, offsets[i]!, p.shape);
        copyInto(v, p);
        adoptStorage(p, v);
        v.dispose();
      });
    }
    this.flatGrads = this.stage === 1 ? zeros([total], 'f32', backend).keep() : null;
    this.gradShard = this.stage !== 1 ? zeros([shardSize], 'f32', backend).keep() : null;
    this.expAvg = zeros([shardSize], 'f32', backend).keep();
    this.expAvgSq = zeros([shardSize], 'f32', backend).keep();
    this.gradViews = this.params.map(() => null);

    this.bucketViews = layout.buckets.map((b) => {
      const lo = b.start + r * b.slice;
      return {
        params: flatParams ? sliceView(flatParams, b.start, [b.length]).keep() : null,
        paramSlice: flatParams ? sliceView(flatParams, lo, [b.slice]).keep() : sliceView(this.paramShard!, b.shardOffset, [b.slice]).keep(),
        grads: this.flatGrads ? sliceView(this.flatGrads, b.start, [b.length]).keep() : null,
        gradSlice: this.flatGrads ? sliceView(this.flatGrads, lo, [b.slice]).keep() : null,
        shardGrad: this.gradShard ? sliceView(this.gradShard, b.shardOffset, [b.slice]).keep() : null,
      };
    });

    // Pieces (for checkpoints) and runs (for the update), bucket by bucket.
    const mergeGaps = opts.eps > 0; // zero padding stays zero only when eps > 0 (else 0/0)
    layout.buckets.forEach((b, k) => {
      const lo = b.start + r * b.slice;
      const hi = lo + b.slice;
      let run: { weightDecay: number; flat: number; shard: number; end: number } | null = null;
      const flush = () => {
        if (!run) return;
        const n = run.end - run.flat;
        this.runs.push({
          weightDecay: run.weightDecay,
          p: flatParams ? sliceView(flatParams, run.flat, [n]).keep() : sliceView(this.paramShard!, run.shard, [n]).keep(),
          g: this.flatGrads ? sliceView(this.flatGrads, run.flat, [n]).keep() : sliceView(this.gradShard!, run.shard, [n]).keep(),
          m: sliceView(this.expAvg, run.shard, [n]).keep(),
          v: sliceView(this.expAvgSq, run.shard, [n]).keep(),
        });
        run = null;
      };
      for (const i of b.params) {
        const o = offsets[i]!;
        const a = Math.max(lo, o);
        const z = Math.min(hi, o + this.params[i]!.numel);
        if (z <= a) continue;
        const piece: Piece = {
          param: i, weightDecay: this.weightDecays[i]!, bucket: k, paramOffset: a - o, flatOffset: a,
          shardOffset: b.shardOffset + (a - lo), length: z - a,
        };
        this.pieces.push(piece);
        if (run && mergeGaps && run.weightDecay === piece.weightDecay) {
          run.end = z;
        } else {
          flush();
          run = { weightDecay: piece.weightDecay, flat: a, shard: piece.shardOffset, end: z };
        }
      }
      flush();
    });
    this.bucketOf = this.params.map(() => 0);
    layout.buckets.forEach((b, k) => b.params.forEach((i) => { this.bucketOf[i] = k; }));
    if (this.stage === 1) this.attachGradViews(false);
    if (this.stage === 3) {
      // This rank's slices into the shard; then every parameter lets go of its memory.
      for (const piece of this.pieces) {
        const p = this.params[piece.param]!;
        const src = sliceView(p, piece.paramOffset, [piece.length]);
        const dst = sliceView(this.paramShard!, piece.shardOffset, [piece.length]);
        copyInto(dst, src);
        src.dispose();
        dst.dispose();
      }
      this.params.forEach((p, i) => p.releaseStorage(this.releasedNote(i)));
      layout.buckets.forEach((b, k) => {
        this.gathered.push(null);
        this.holds.push(0);
        this.deferred.push(false);
        for (const i of b.params) if (unitOfParam![i] === -1) throw new Error(`internal: bucket ${k}`);
      });
      opts.units!.forEach((u) => {
        const ks = new Set(u.params.map((p) => this.bucketOf[this.indexOf.get(p)!]!));
        this.unitBuckets.set(u.name, [...ks].sort((a, b) => a - b));
      });
    }
  }

  private releasedNote(i: number): string {
    return `parameter ${this.nameOf(i)} is sharded by ZeRO stage 3 and not gathered now; ` +
      'the model gathers a unit\'s parameters around its forward (GPTNeoX.setParameterGather); use ZeroOptimizer.fullParameters() to read them';
  }

  // --- stage 3: gathering parameters

  /**
   * Stage 3: the hooks to install on the model (GPTNeoX.setParameterGather). before(unit) all-gathers
   * the unit's buckets (synchronous collectives: the result is there, in stream order, when it
   * returns) into a temporary buffer and points its parameters at it; after(unit) releases it
   * (the parameters become storage-less, and touching one throws), unless the tape saved one of
   * them for backward (f32 compute: linear saves its weight itself, not a cast copy): then the
   * bucket stays gathered until its gradients are final (the hook of beginBackward(), or
   * finish() / reduceGradients()), so backward never gathers again. Every rank must run the same
   * units in the same order (it does: the same model code).
   */
  parameterGather(): ParameterGather {
    if (this.stage !== 3) throw new Error('ZeroOptimizer.parameterGather: only stage 3 shards the parameters');
    return { before: (unit) => this.gatherUnit(unit), after: (unit) => this.releaseUnit(unit) };
  }

  private bucketsOf(unit: string): number[] {
    this.checkLive();
    const ks = this.unitBuckets.get(unit);
    if (!ks) throw new Error(`ZeroOptimizer: no gather unit '${unit}' (have: ${[...this.unitBuckets.keys()].join(', ')})`);
    return ks;
  }

  private gatherUnit(unit: string): void {
    for (const k of this.bucketsOf(unit)) {
      this.holds[k]!++;
      if (!this.gathered[k]) this.gatherBucket(k);
      for (const i of this.layout.buckets[k]!.params) this.params[i]!.saved = false; // after() reads what this unit's tape saved
    }
  }

  private releaseUnit(unit: string): void {
    for (const k of this.bucketsOf(unit)) {
      if (this.holds[k]! <= 0) throw new Error(`ZeroOptimizer: after('${unit}') without before('${unit}')`);
      this.holds[k]!--;
      if (this.layout.buckets[k]!.params.some((i) => this.params[i]!.saved)) this.deferred[k] = true;
      this.maybeRelease(k);
    }
  }

  /** Bucket k all-gathered into a fresh buffer; its parameters become views of it. */
  private gatherBucket(k: number): void {
    const b = this.layout.buckets[k]!;
    const buf = empty([b.length], 'f32', this.backend);
    syncCollectivesOf(this.group)!.allGatherNow(buf, this.bucketViews[k]!.paramSlice);
    for (const i of b.params) {
      const p = this.params[i]!;
      const v = sliceView(buf, this.layout.offsets[i]! - b.start, p.shape);
      p.adoptShared(v.sharedStorage);
      v.dispose();
    }
    this.gathered[k] = buf;
  }

  /** Releases bucket k's gathered buffer when no unit holds it and backward will not read it. */
  private maybeRelease(k: number, force = false): void {
    const buf = this.gathered[k];
    if (!buf || this.holds[k]! > 0 || (this.deferred[k] && !force)) return;
    for (const i of this.layout.buckets[k]!.params) this.params[i]!.releaseStorage(this.releasedNote(i));
    buf.dispose(); // the memory goes when the last view of it does (a tape may still hold one)
    this.gathered[k] = null;
    this.deferred[k] = false;
  }

  /** Backward is over: every bucket kept for it goes. */
  private releaseDeferred(): void {
    if (this.stage !== 3) return;
    for (let k = 0; k < this.gathered.length; k++) this.maybeRelease(k, true);
  }

  /** Stage 3: how many buckets are gathered now (tests). */
  get gatheredBuckets(): number {
    return this.gathered.filter((g) => g !== null).length;
  }

  /** Bytes of optimizer state this rank holds (about 1/W of AdamW's 8 bytes per parameter). */
  stateBytes(): number {
    return 8 * this.layout.shardSize;
  }

  /** Persistent bytes per rank: optimizer state, gradients, parameters. */
  memory(): ZeroMemory {
    const { total, shardSize } = this.layout;
    return {
      stage: this.stage, optimizerState: 8 * shardSize, gradients: 4 * (this.stage === 1 ? total : shardSize),
      parameters: 4 * (this.stage === 3 ? shardSize : total),
    };
  }

  /** How many adamw launches a step makes (runs of pieces; tests). */
  get runCount(): number {
    return this.runs.length;
  }

  /**
   * Stage 2: reduce-scatters the gradients of the micro-batch whose backward just ran into this
   * rank's gradient shard, bucket by bucket, and frees them (p.grad becomes null). Call it after
   * every micro-batch's backward, on every rank (or reduce during backward instead: beginBackward()).
   * Stage 1: nothing (backward accumulated into the flat gradient buffer; update() reduces it).
   */
  async reduceGradients(): Promise<void> {
    this.checkLive();
    this.checkNoRound('reduceGradients');
    if (this.stage === 1) return;
    this.releaseDeferred();
    const first = this.reduced === 0;
    for (let k = 0; k < this.layout.buckets.length; k++) await this.reduceBucket(k, first);
    this.reduced++;
  }

  /**
   * Stage 2, one bucket, after backward: its parameters' gradients → a staging buffer (then freed)
   * → reduce-scatter (avg) into this rank's slice of the gradient shard (`first`: overwrite, else
   * add). issueBucket() is the same from the gradient-ready hook, without awaiting.
   */
  private async reduceBucket(k: number, first: boolean): Promise<void> {
    const b = this.layout.buckets[k]!;
    const shardGrad = this.bucketViews[k]!.shardGrad!;
    const staging = this.stageBucket(k);
    let out: Tensor | null = null;
    try {
      out = first ? shardGrad : zeros([b.slice], 'f32', this.backend);
      await this.group.reduceScatter(out, staging, 'avg');
      if (!first) noGrad(() => ops.addInPlace(shardGrad, out!));
    } finally {
      staging.dispose();
      if (out && out !== shardGrad) out.dispose();
    }
  }

  /** Stage 2: bucket k's gradients copied into a fresh staging buffer (zeros where a parameter has none), and freed. */
  private stageBucket(k: number): Tensor {
    const b = this.layout.buckets[k]!;
    const staging = zeros([b.length], 'f32', this.backend);
    for (const i of b.params) {
      const p = this.params[i]!;
      if (!p.grad) continue; // contributes zeros
      const dst = sliceView(staging, this.layout.offsets[i]! - b.start, [p.numel]);
      copyInto(dst, p.grad);
      dst.dispose();
      p.grad.dispose();
      p.grad = null;
    }
    return staging;
  }

  /**
   * Starts the reduction overlapped with one backward: returns the hook to pass as backward's
   * `onGradReady`; call finish() once backward has returned. As each bucket's gradients are all
   * final, the bucket's reduce-scatter is issued at once, strictly in bucket order (a complete
   * bucket waits for its predecessors: every rank issues the same collectives in the same order).
   * Stage 2: every micro-batch's backward (instead of reduceGradients()); the bucket's gradients
   * go into a staging buffer and are freed right away, and the staging buffer is freed as soon as
   * the collective no longer needs it (when the group has read it, on CPU; on NCCL, once
   * BUCKETS_IN_FLIGHT buckets are in flight, after making the compute stream wait for the oldest),
   * so gradient memory during backward is a few buckets plus the shard. Stage 1: only the last
   * micro-batch's backward; each bucket is reduce-scattered in place, and update() does not again.
   */
  beginBackward(): (leaf: Tensor) => void {
    this.checkLive();
    if (this.round && !this.round.finished) {
      throw new Error('ZeroOptimizer.beginBackward: the previous backward\'s reduction is not finished; call finish() after each backward');
    }
    if (this.stage === 1 && this.reducedInBackward) {
      throw new Error('ZeroOptimizer.beginBackward (stage 1): this step\'s gradients were already reduce-scattered by a hooked backward; ' +
        'hook only the backward of the last micro-batch, then update() and zeroGrad()');
    }
    const round: Round = {
      first: this.reduced === 0, ready: this.params.map(() => false), missing: this.layout.buckets.map((b) => b.params.length),
      next: 0, inFlight: [], finished: false,
    };
    this.round = round;
    return (leaf) => this.gradReady(round, leaf);
  }

  /** How many buckets the current (or last) backward has issued so far: those issued during backward, before finish(). */
  get issuedBuckets(): number {
    return this.round?.next ?? 0;
  }

  /**
   * After the hooked backward: issues the buckets not issued yet (a parameter that got no gradient
   * contributes zeros), waits for every reduce-scatter (on CUDA the compute stream waits; the host
   * does not) and releases their buffers. Stage 2: the micro-batch is then in the shard.
   */
  async finish(): Promise<void> {
    this.checkLive();
    const round = this.round;
    if (!round || round.finished) throw new Error('ZeroOptimizer.finish: no backward in progress; call beginBackward() before the backward');
    round.finished = true;
    try {
      while (round.next < this.layout.buckets.length) this.issueBucket(round, round.next++);
      while (round.inFlight.length) {
        await round.inFlight[0]!.work.wait();
        this.release(round.inFlight.shift()!);
      }
    } finally {
      for (const f of round.inFlight.splice(0)) { // after a failure
        f.staging?.dispose();
        f.out?.dispose();
      }
    }
    this.releaseDeferred();
    if (this.stage !== 1) this.reduced++;
    else this.reducedInBackward = true;
  }

  /** The hook: `leaf`'s gradient is final; issue every bucket that is now complete, in order. */
  private gradReady(round: Round, leaf: Tensor): void {
    const i = this.indexOf.get(leaf);
    if (i === undefined) return; // not one of these parameters
    const k = this.bucketOf[i]!;
    if (round.finished) {
      throw new Error(`ZeroOptimizer: parameter ${this.nameOf(i)} reported its gradient ready after finish(); ` +
        'pass the hook of beginBackward() to one backward only, and call finish() after that backward returns');
    }
    if (round.ready[i]) {
      throw new Error(`ZeroOptimizer: parameter ${this.nameOf(i)} was reported ready twice in one backward` +
        `${k < round.next ? ', after its bucket was already reduce-scattered' : ''}: its gradient was not final the first time. ` +
        'This happens when a parameter is used in two activation-checkpointed segments, or both inside and outside one ' +
        '(each segment is differentiated by its own nested backward). Keep each parameter in one segment ' +
        `(or turn activation checkpointing off), or reduce after backward instead: ${this.stage !== 1 ? 'reduceGradients()' : 'update()'} and no hook.`);
    }
    round.ready[i] = true;
    round.missing[k]!--;
    if (round.missing[k] === 0 && this.stage === 3) this.maybeRelease(k, true); // no node left reads its parameters
    while (round.next < this.layout.buckets.length && round.missing[round.next] === 0) this.issueBucket(round, round.next++);
  }

  /** Issues bucket k's reduce-scatter (without awaiting it): stage 1 in place, stage 2 from a staging buffer. */
  private issueBucket(round: Round, k: number): void {
    const bv = this.bucketViews[k]!;
    if (this.stage === 1) {
      this.attachGradViews(true, this.layout.buckets[k]!.params);
      round.inFlight.push({ bucket: k, work: this.group.reduceScatter(bv.gradSlice!, bv.grads!, 'avg'), staging: null, out: null });
      return;
    }
    // Room first: the oldest buckets in flight release their buffers once the compute stream is
    // ordered after their collective (NCCL), so the caching allocator reuses that memory only then.
    while (round.inFlight.length >= BUCKETS_IN_FLIGHT && round.inFlight[0]!.work.streamWait) {
      const f = round.inFlight.shift()!;
      f.work.streamWait!();
      this.release(f);
    }
    // Kept: the hook runs inside the caller's scope, which must not free what a collective still uses.
    const staging = this.stageBucket(k).keep();
    const out = round.first ? bv.shardGrad! : zeros([this.layout.buckets[k]!.slice], 'f32', this.backend).keep();
    const f: InFlight = { bucket: k, work: this.group.reduceScatter(out, staging, 'avg'), staging, out: round.first ? null : out };
    if (f.work.inputsConsumed) { // the group has copied it (CPU)
      staging.dispose();
      f.staging = null;
    }
    round.inFlight.push(f);
  }

  /** A bucket's collective is done, or the compute stream is ordered after it: add its output into the shard, free its buffers. */
  private release(f: InFlight): void {
    f.staging?.dispose();
    f.staging = null;
    if (f.out) {
      const out = f.out;
      noGrad(() => ops.addInPlace(this.bucketViews[f.bucket]!.shardGrad!, out));
      out.dispose();
      f.out = null;
    }
  }

  private checkNoRound(what: string): void {
    if (this.round && !this.round.finished) {
      throw new Error(`ZeroOptimizer.${what}: a backward's reduction (beginBackward) is in progress; call finish() after that backward first`);
    }
  }

  private nameOf(i: number): string {
    const p = this.params[i]!;
    return `'${this.opts.names?.get(p) ?? p.name ?? `#${i}`}' (shape [${p.shape.join(', ')}])`;
  }

  /**
   * Averages the gradients across ranks (stage 1: reduce-scatter; stage 2: reduceGradients() did,
   * or does now if it was never called since zeroGrad()), clips them to `maxNorm` by the global
   * norm (≤ 0: no clipping), updates this rank's shard and all-gathers the parameters. The norm is
   * read on the host once, after all that is queued; when it is not finite the device skipped the
   * update (parameters and state unchanged, `step` not advanced): the caller stops, or, under fp16
   * loss scaling, counts an overflow. `gradScale` multiplies the gradients first (1 / the loss
   * scale); the returned norm is of the scaled gradients, as AdamW's gradNormAndClip reports.
   */
  async update(lr: number, maxNorm: number, gradScale = 1): Promise<{ norm: number; scale: number }> {
    this.checkLive();
    this.checkNoRound('update');
    if (this.stage === 3) {
      const held = this.holds.findIndex((h) => h > 0);
      if (held >= 0) throw new Error('ZeroOptimizer.update (stage 3): a unit\'s parameters are still gathered (before() without after())');
      this.releaseDeferred(); // a gathered copy would go stale
    }
    const { rank } = this.group;
    // 1. averaged gradients in this rank's shard
    if (this.stage === 1) {
      if (!this.reducedInBackward) {
        this.attachGradViews(true);
        await waitAll(this.bucketViews.map((bv) => this.group.reduceScatter(bv.gradSlice!, bv.grads!, 'avg')));
      }
    } else {
      if (this.reduced === 0) await this.reduceGradients();
      const pending = this.params.filter((p) => p.grad).length;
      if (pending) {
        throw new Error(`ZeroOptimizer (stage 2) on rank ${rank}: ${pending} parameters hold gradients that were not reduced; ` +
          'call reduceGradients() after the backward of every micro-batch (or run each backward with the hook of beginBackward(), then finish())');
      }
    }
    // 2. global norm: Σ g² over this rank's shard, summed over ranks, and the clip factor, on the device
    const sources = this.stage === 1 ? this.bucketViews.map((bv) => bv.gradSlice!) : [this.gradShard!];
    const sq = noGrad(() => {
      let total: Tensor | null = null;
      for (const g of sources) {
        if (g.numel === 0) continue;
        const s = ops.sumSquares(g);
        if (total) {
          ops.addInPlace(total, s);
          s.dispose();
        } else {
          total = s;
        }
      }
      return total ?? zeros([], 'f32', this.backend);
    });
    let factor: Tensor | null = null;
    let norm: number;
    try {
      await this.group.allReduce(sq, 'sum');
      factor = clipFactorOf(sq, maxNorm, gradScale);
      // 3. AdamW on each run; a non-finite factor (norm) makes the kernel skip the step on every rank
      this.step++;
      const [beta1, beta2] = this.opts.betas;
      noGrad(() => {
        for (const run of this.runs) {
          adamwStep(run.p, run.g, run.m, run.v, factor!, { lr, beta1, beta2, eps: this.opts.eps, weightDecay: run.weightDecay, step: this.step, gradScale });
        }
      });
      // 4. every rank's updated slices → every rank's parameters (stage 3: the next forward gathers them)
      if (this.stage !== 3) await waitAll(this.bucketViews.map((bv) => this.group.allGather(bv.params!, bv.paramSlice)));
      norm = Math.sqrt(sq.item()) * gradScale; // the step's one host read, after it is queued
    } finally {
      sq.dispose();
      factor?.dispose();
    }
    if (!Number.isFinite(norm)) this.step--; // the device skipped it
    const scale = maxNorm > 0 && norm > maxNorm ? maxNorm / (norm + 1e-6) : 1;
    return { norm, scale };
  }

  /** Clears the gradients: stage 1 zeroes the flat buffer (p.grad stays its view); stage 2 frees them and zeroes the shard. */
  zeroGrad(): void {
    if (this.disposed) return;
    this.checkNoRound('zeroGrad');
    this.reducedInBackward = false;
    this.releaseDeferred();
    if (this.stage === 1) {
      this.params.forEach((p, i) => {
        if (p.grad && p.grad !== this.gradViews[i]) {
          p.grad.dispose();
          p.grad = null;
        }
      });
      zeroInPlace(this.flatGrads!);
      this.attachGradViews(false);
    } else {
      for (const p of this.params) {
        p.grad?.dispose();
        p.grad = null;
      }
      zeroInPlace(this.gradShard!);
      this.reduced = 0;
    }
  }

  /**
   * Stage 1: makes every p.grad (of the parameters `only`, by index) its view into the flat
   * gradient buffer. A gradient someone else put there is copied in (`copyForeign`; otherwise
   * dropped) and freed; a missing one is zeros.
   */
  private attachGradViews(copyForeign: boolean, only?: readonly number[]): void {
    for (const i of only ?? this.params.keys()) {
      const p = this.params[i]!;
      let mine = this.gradViews[i];
      if (mine && p.grad === mine && !mine.disposed) continue;
      if (!mine || mine.disposed) {
        mine = sliceView(this.flatGrads!, this.layout.offsets[i]!, p.shape).keep();
        this.gradViews[i] = mine;
      }
      const foreign = p.grad && !p.grad.disposed ? p.grad : null;
      if (foreign && copyForeign) copyInto(mine, foreign);
      else zeroInPlace(mine);
      foreign?.dispose();
      p.grad = mine;
    }
  }

  /** Gathers the moments into whole tensors named as AdamW's; collective (every rank calls it). */
  async fullState(names: Map<Tensor, string>): Promise<FullStateEntry[]> {
    this.checkLive();
    const nameOf = this.params.map((p) => {
      const n = names.get(p);
      if (n === undefined) throw new Error(`ZeroOptimizer.fullState: no name for ${p}`);
      return n;
    });
    const m = new Array<Float32Array>(this.params.length);
    const v = new Array<Float32Array>(this.params.length);
    const longest = Math.max(...this.layout.buckets.map((b) => b.length));
    const buffer = zeros([longest], 'f32', this.backend).keep();
    try {
      for (const [state, into] of [[this.expAvg, m], [this.expAvgSq, v]] as const) {
        for (const b of this.layout.buckets) {
          const out = sliceView(buffer, 0, [b.length]);
          const mine = sliceView(state, b.shardOffset, [b.slice]);
          try {
            await this.group.allGather(out, mine);
            const host = out.toFloat32(); // one download per bucket and moment
            for (const i of b.params) {
              const o = this.layout.offsets[i]! - b.start;
              into[i] = host.slice(o, o + this.params[i]!.numel);
            }
          } finally {
            out.dispose();
            mine.dispose();
          }
        }
      }
    } finally {
      buffer.dispose();
    }
    return this.params.flatMap((p, i) => [
      { name: `${nameOf[i]}.exp_avg`, shape: p.shape, data: m[i]! },
      { name: `${nameOf[i]}.exp_avg_sq`, shape: p.shape, data: v[i]! },
    ]);
  }

  /**
   * The whole parameters, named (`names`) as the model's, for checkpoints: stages 1–2 read them;
   * stage 3 all-gathers each bucket (collective: every rank calls it). One download per bucket.
   */
  async fullParameters(names: Map<Tensor, string>): Promise<FullStateEntry[]> {
    this.checkLive();
    const nameOf = (i: number) => {
      const n = names.get(this.params[i]!);
      if (n === undefined) throw new Error(`ZeroOptimizer.fullParameters: no name for ${this.params[i]}`);
      return n;
    };
    if (this.stage !== 3) return this.params.map((p, i) => ({ name: nameOf(i), shape: p.shape, data: p.toFloat32() }));
    const data = new Array<Float32Array>(this.params.length);
    for (const [k, b] of this.layout.buckets.entries()) {
      const out = zeros([b.length], 'f32', this.backend);
      try {
        await this.group.allGather(out, this.bucketViews[k]!.paramSlice);
        const host = out.toFloat32();
        for (const i of b.params) {
          const o = this.layout.offsets[i]! - b.start;
          data[i] = host.slice(o, o + this.params[i]!.numel);
        }
      } finally {
        out.dispose();
      }
    }
    return this.params.map((p, i) => ({ name: nameOf(i), shape: p.shape, data: data[i]! }));
  }

  /**
   * Stage 3: takes this rank's slices out of whole parameter tensors (a checkpoint saved at any
   * world size and stage, or without ZeRO). Stages 1–2 hold the parameters: load them directly.
   */
  loadFullParameters(lookup: (name: string) => Float32Array | undefined, names: Map<Tensor, string>): void {
    this.checkLive();
    if (this.stage !== 3) throw new Error('ZeroOptimizer.loadFullParameters: stage 3 only (stages 1–2: load into the parameters themselves)');
    if (this.gathered.some((g) => g !== null)) throw new Error('ZeroOptimizer.loadFullParameters: parameters are gathered now (call it between steps)');
    const host = new Float32Array(this.layout.shardSize);
    for (const piece of this.pieces) {
      const p = this.params[piece.param]!;
      const n = names.get(p);
      if (n === undefined) throw new Error(`ZeroOptimizer.loadFullParameters: no name for ${p}`);
      const full = lookup(n);
      if (!full) throw new Error(`parameter ${n} is missing`);
      if (full.length !== p.numel) throw new Error(`parameter ${n} has ${full.length} elements, the model's ${p.numel}`);
      host.set(full.subarray(piece.paramOffset, piece.paramOffset + piece.length), piece.shardOffset);
    }
    const t = tensor(host, [this.layout.shardSize], 'f32', this.backend);
    copyInto(this.paramShard!, t);
    t.dispose();
  }

  /** Takes this rank's slices out of whole moment tensors (saved at any world size, or by AdamW). */
  loadFullState(lookup: (name: string) => Float32Array | undefined, names: Map<Tensor, string>, step: number): void {
    this.checkLive();
    const S = this.layout.shardSize;
    const host = [new Float32Array(S), new Float32Array(S)] as const;
    for (const piece of this.pieces) {
      const p = this.params[piece.param]!;
      const n = names.get(p);
      if (n === undefined) throw new Error(`ZeroOptimizer.loadFullState: no name for ${p}`);
      (['exp_avg', 'exp_avg_sq'] as const).forEach((suffix, j) => {
        const full = lookup(`${n}.${suffix}`);
        if (!full) throw new Error(`optimizer state ${n}.${suffix} is missing`);
        if (full.length !== p.numel) throw new Error(`optimizer state ${n}.${suffix} has ${full.length} elements, the parameter ${p.numel}`);
        host[j]!.set(full.subarray(piece.paramOffset, piece.paramOffset + piece.length), piece.shardOffset);
      });
    }
    // Everything checked: now overwrite (one upload per moment).
    for (const [dst, values] of [[this.expAvg, host[0]], [this.expAvgSq, host[1]]] as const) {
      const t = tensor(values, [S], 'f32', this.backend);
      copyInto(dst, t);
      t.dispose();
    }
    this.step = step;
  }

  /**
   * Releases the optimizer's buffers and views. The parameters keep their memory (views of the
   * flat buffer, which lives as long as they do); stage 1 gradients stay as they are. Stage 3:
   * the parameters have no memory of their own (read them with fullParameters() first).
   */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const run of this.runs) for (const t of [run.p, run.g, run.m, run.v]) t.dispose();
    for (const bv of this.bucketViews) for (const t of [bv.params, bv.paramSlice, bv.grads, bv.gradSlice, bv.shardGrad]) t?.dispose();
    for (const t of this.gathered) t?.dispose();
    for (const t of [this.flatParams, this.paramShard, this.flatGrads, this.gradShard, this.expAvg, this.expAvgSq]) t?.dispose();
  }

  private checkLive(): void {
    if (this.disposed) throw new Error('ZeroOptimizer used after dispose()');
  }
}

async function waitAll(works: Work[]): Promise<void> {
  await Promise.all(works.map((w) => w.wait()));
}
