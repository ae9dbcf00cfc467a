// ZeRO stage 1: AdamW whose moment buffers are sharded across the data-parallel ranks, so each
// rank holds 1/W of the optimizer state; the update of each shard happens on its owner and the
// updated parameters are all-gathered. The CPU reference of what the NCCL version will do on GPUs.
//
// defines: ZeroOptimizer, ZeroOptions, ShardRange, shardRange, FullStateEntry
//
// Layout: the parameters, in optimizer-group order, are one flat vector of N elements padded to
// W·S (S = ceil(N / W)); rank r owns elements [r·S, (r+1)·S). Its state is one (m, v) pair per
// piece, the part of a parameter inside the shard.
// One step (call after the backward of the last micro-batch, instead of syncGradients + AdamW):
//   1. reduce-scatter the flat gradient with `avg` → this rank's averaged gradient shard (the
//      same rank-order sum as the data-parallel all-reduce, so the same bits)
//   2. global gradient norm: the squared shard norms summed over ranks → clip scale
//   3. AdamW on each piece with the piece's weight decay
//   4. all-gather the updated shards → every rank's parameters
// Without clipping the parameters equal (bitwise) those of DataParallel + AdamW; with clipping
// the norm is summed in another order, so they agree to rounding.
// Checkpoints: fullState() gathers the moments into whole per-parameter tensors named as AdamW's
// (`{name}.exp_avg`, `{name}.exp_avg_sq`), so a checkpoint saved at one world size loads at any
// other, and into plain AdamW; loadFullState() takes each rank's slice back out.
// A parameter without a gradient contributes zeros (and is updated with a zero gradient).
// Stage 2 (gradients reduce-scattered into shards as backward produces them, full gradients
// freed) and stage 3 (parameters sharded, gathered per layer) need hooks in backward; see
// docs/parallel.md.

import { CpuStorage } from '../backends/cpu/backend.js';
import type { AdamWOptions, ParamGroup } from '../optim/adamw.js';
import { runKernel, tensor, zeros } from '../tensor/engine.js';
import type { Tensor } from '../tensor/tensor.js';
import { type ProcessGroup, CollectiveError } from './process_group.js';

export type ZeroOptions = AdamWOptions;

export interface ShardRange {
  /** Elements per shard, S = ceil(N / W). */
  shardSize: number;
  /** W·S: the flat vector's padded length. */
  padded: number;
  start: number;
  /** Exclusive; capped at N. */
  end: number;
}

/** Rank r's slice of a flat vector of `total` elements split W ways. */
export function shardRange(total: number, worldSize: number, rank: number): ShardRange {
  const shardSize = Math.ceil(total / worldSize);
  const start = Math.min(total, rank * shardSize);
  return { shardSize, padded: shardSize * worldSize, start, end: Math.min(total, start + shardSize) };
}

interface Piece {
  param: Tensor;
  weightDecay: number;
  /** Offset of the piece within the parameter. */
  paramOffset: number;
  /** Offset of the piece within this rank's shard. */
  shardOffset: number;
  length: number;
  m: Tensor; // (length,) f32
  v: Tensor; // (length,) f32
}

export interface FullStateEntry {
  name: string;
  shape: readonly number[];
  data: Float32Array;
}

export class ZeroOptimizer {
  step = 0;
  readonly params: Tensor[];
  readonly range: ShardRange;
  private readonly offsets = new Map<Tensor, number>();
  private readonly pieces: Piece[] = [];
  private readonly total: number;

  constructor(readonly group: ProcessGroup, readonly groups: ParamGroup[], readonly opts: ZeroOptions) {
    this.params = groups.flatMap((g) => g.params);
    let off = 0;
    for (const p of this.params) {
      if (this.offsets.has(p)) throw new Error(`ZeroOptimizer: ${p} is in two parameter groups`);
      if (p.dtype !== 'f32') throw new Error(`ZeroOptimizer: parameters must be f32 (master weights), ${p} is ${p.dtype}`);
      this.offsets.set(p, off);
      off += p.numel;
    }
    this.total = off;
    this.range = shardRange(this.total, group.size, group.rank);
    const { start, end } = this.range;
    for (const g of groups) {
      for (const p of g.params) {
        const o = this.offsets.get(p)!;
        const lo = Math.max(start, o);
        const hi = Math.min(end, o + p.numel);
        if (hi <= lo) continue;
        this.pieces.push({
          param: p, weightDecay: g.weightDecay, paramOffset: lo - o, shardOffset: lo - start, length: hi - lo,
          m: zeros([hi - lo], 'f32', p.backend).keep(), v: zeros([hi - lo], 'f32', p.backend).keep(),
        });
      }
    }
  }

  /** Bytes of optimizer state this rank holds (about 1/W of AdamW's 8 bytes per parameter). */
  stateBytes(): number {
    return this.pieces.reduce((n, p) => n + 8 * p.length, 0);
  }

  /**
   * Averages the gradients across ranks (reduce-scatter), clips them to `maxNorm` by the global
   * norm (≤ 0: no clipping), updates this rank's shard and all-gathers the parameters.
   */
  async update(lr: number, maxNorm: number): Promise<{ norm: number; scale: number }> {
    const { shardSize, padded } = this.range;
    const backend = this.params[0]!.backend;
    // 1. flat gradient (padded) → averaged shard
    const flat = new Float32Array(padded);
    for (const p of this.params) if (p.grad) flat.set(p.grad.toFloat32(), this.offsets.get(p)!);
    const flatT = tensor(flat, [padded], 'f32', backend).keep();
    const shardT = zeros([shardSize], 'f32', backend).keep();
    try {
      await this.group.reduceScatter(shardT, flatT, 'avg');
      const shard = shardT.toFloat32();
      // 2. global norm
      let sq = 0;
      for (let i = 0; i < shard.length; i++) sq += shard[i]! * shard[i]!;
      const sqT = tensor(Float64Array.of(sq), [1], 'f64', backend).keep();
      await this.group.allReduce(sqT, 'sum');
      const norm = Math.sqrt(sqT.toArray()[0]!);
      sqT.dispose();
      const scale = maxNorm > 0 && norm > maxNorm ? maxNorm / (norm + 1e-6) : 1;
      // 3. AdamW on each piece
      this.step++;
      const newShard = new Float32Array(shardSize);
      for (const piece of this.pieces) {
        const pv = piece.param.toFloat32().subarray(piece.paramOffset, piece.paramOffset + piece.length);
        const pT = tensor(pv.slice(), [piece.length], 'f32', backend);
        const gT = tensor(shard.slice(piece.shardOffset, piece.shardOffset + piece.length), [piece.length], 'f32', backend);
        runKernel('adamw', [pT, gT, piece.m, piece.v], {
          lr, beta1: this.opts.betas[0], beta2: this.opts.betas[1], eps: this.opts.eps,
          weightDecay: piece.weightDecay, step: this.step, gradScale: scale,
        });
        newShard.set(pT.toFloat32(), piece.shardOffset);
        pT.dispose();
        gT.dispose();
      }
      // 4. all-gather the parameters
      const newShardT = tensor(newShard, [shardSize], 'f32', backend).keep();
      await this.group.allGather(flatT, newShardT);
      newShardT.dispose();
      const all = flatT.toFloat32();
      for (const p of this.params) {
        const o = this.offsets.get(p)!;
        writeInto(p, all.subarray(o, o + p.numel), this.group.rank);
      }
      return { norm, scale };
    } finally {
      flatT.dispose();
      shardT.dispose();
    }
  }

  zeroGrad(): void {
    for (const p of this.params) {
      p.grad?.dispose();
      p.grad = null;
    }
  }

  /** Gathers the moments into whole tensors named as AdamW's; collective (every rank calls it). */
  async fullState(names: Map<Tensor, string>): Promise<FullStateEntry[]> {
    const { shardSize, padded } = this.range;
    const backend = this.params[0]!.backend;
    const gather = async (pick: (p: Piece) => Tensor): Promise<Float32Array> => {
      const shard = new Float32Array(shardSize);
      for (const piece of this.pieces) shard.set(pick(piece).toFloat32(), piece.shardOffset);
      const shardT = tensor(shard, [shardSize], 'f32', backend).keep();
      const flatT = zeros([padded], 'f32', backend).keep();
      try {
        await this.group.allGather(flatT, shardT);
        return flatT.toFloat32();
      } finally {
        shardT.dispose();
        flatT.dispose();
      }
    };
    const m = await gather((p) => p.m);
    const v = await gather((p) => p.v);
    const out: FullStateEntry[] = [];
    for (const p of this.params) {
      const n = names.get(p);
      if (n === undefined) throw new Error(`ZeroOptimizer.fullState: no name for ${p}`);
      const o = this.offsets.get(p)!;
      out.push({ name: `${n}.exp_avg`, shape: p.shape, data: m.slice(o, o + p.numel) });
      out.push({ name: `${n}.exp_avg_sq`, shape: p.shape, data: v.slice(o, o + p.numel) });
    }
    return out;
  }

  /** Takes this rank's slices out of whole moment tensors (saved at any world size, or by AdamW). */
  loadFullState(lookup: (name: string) => Float32Array | undefined, names: Map<Tensor, string>, step: number): void {
    for (const piece of this.pieces) {
      const n = names.get(piece.param)!;
      for (const [suffix, dst] of [['exp_avg', piece.m], ['exp_avg_sq', piece.v]] as const) {
        const full = lookup(`${n}.${suffix}`);
        if (!full) throw new Error(`optimizer state ${n}.${suffix} is missing`);
        if (full.length !== piece.param.numel) throw new Error(`optimizer state ${n}.${suffix} has ${full.length} elements, the parameter ${piece.param.numel}`);
        writeInto(dst, full.subarray(piece.paramOffset, piece.paramOffset + piece.length), this.group.rank);
      }
    }
    this.step = step;
  }
}

/** Overwrites a CPU tensor's values in place. */
function writeInto(t: Tensor, values: Float32Array, rank: number): void {
  const s = t.storage;
  if (!(s instanceof CpuStorage)) {
    throw new CollectiveError('ZeroOptimizer', rank, `ZeRO runs on CPU tensors until the NCCL group lands; got ${t}`);
  }
  (s.data as Float32Array).set(values);
}
