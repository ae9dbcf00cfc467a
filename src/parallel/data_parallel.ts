// Data parallelism: every rank holds the whole model, computes gradients on its slice of the
// global batch, and the gradients are averaged across ranks before the optimizer step, so every
// rank applies the same update and the parameters stay identical.
//
// defines: DataParallel, DataParallelOptions, buildBuckets, parameterChecksum
//
// - Buckets: gradients are reduced in buckets of at most `bucketElements` elements (GPT-NeoX's
//   zero_optimization.reduce_bucket_size), filled in reverse parameter order, the order backward
//   produces them.
// - Overlap (as PyTorch DDP): for the backward of an iteration's last micro-batch, beginBackward()
//   gives the engine's onGradReady hook; when every parameter of a bucket is ready, the bucket's
//   all-reduce is issued, while backward goes on (on CUDA it runs on the comm stream). Buckets are
//   issued strictly in bucket order (every rank must issue the same collectives in the same
//   order), so a complete bucket waits for its predecessors. finish(), after backward returns,
//   issues the rest and waits for all. Earlier micro-batches accumulate without a hook.
// - syncGradients(): the reference path, every bucket after backward.
// - Each bucket is one allReduceCoalesced with `avg` (NCCL groups the per-tensor calls, which
//   measured as fast as one flat buffer; the CPU group flattens).
// - A parameter without a gradient on this rank contributes zeros (and gets a zero gradient),
//   because every rank must take part in every bucket's reduction.
// - Gradients that share storage (a backward that handed one tensor to two leaves) are reduced once.

import { createHash } from 'node:crypto';
import { zeros } from '../tensor/engine.js';
import type { Tensor } from '../tensor/tensor.js';
import type { ProcessGroup, Work } from './process_group.js';

export interface DataParallelOptions {
  /** Most elements per gradient bucket (default 2^24 ≈ 16.8M, 64 MiB of f32). */
  bucketElements?: number;
  /** The parameters' names, in `params` order (for error messages). */
  names?: readonly string[];
}

/** One backward's overlapped reduction: beginBackward() → onGradReady reports → finish(). */
interface Round {
  readonly ready: Set<Tensor>;
  /** Per bucket: how many of its parameters are not ready yet. */
  readonly missing: number[];
  /** The next bucket to issue (all before it are issued). */
  next: number;
  readonly works: Work[];
  /** Storages already reduced in this round. */
  readonly seen: Set<unknown>;
  finished: boolean;
}

const DEFAULT_BUCKET_ELEMENTS = 1 << 24;

/** Params in reverse order, grouped into buckets of one dtype and at most `maxElements` elements. */
export function buildBuckets(params: readonly Tensor[], maxElements: number): Tensor[][] {
  if (!(maxElements >= 1)) throw new Error(`bucket size must be at least 1 element, got ${maxElements}`);
  const buckets: Tensor[][] = [];
  let current: Tensor[] = [];
  let size = 0;
  for (let i = params.length - 1; i >= 0; i--) {
    const p = params[i]!;
    if (current.length && (size + p.numel > maxElements || current[0]!.dtype !== p.dtype)) {
      buckets.push(current);
      current = [];
      size = 0;
    }
    current.push(p);
    size += p.numel;
  }
  if (current.length) buckets.push(current);
  return buckets;
}

export class DataParallel {
  readonly buckets: Tensor[][];
  private readonly bucketOf = new Map<Tensor, number>();
  private readonly names: readonly string[];
  private round: Round | null = null;

  constructor(readonly group: ProcessGroup, readonly params: readonly Tensor[], opts: DataParallelOptions = {}) {
    this.buckets = buildBuckets(params, opts.bucketElements ?? DEFAULT_BUCKET_ELEMENTS);
    this.buckets.forEach((b, k) => b.forEach((p) => this.bucketOf.set(p, k)));
    this.names = opts.names ?? [];
  }

  /** Makes every rank's parameters rank `root`'s (call once after building the model, before training). */
  async broadcastParameters(root = 0): Promise<void> {
    const works: Work[] = this.params.map((p) => this.group.broadcast(p, root));
    await Promise.all(works.map((w) => w.wait()));
  }

  /**
   * Averages the gradients over the group, in buckets; call after the backward pass of the last
   * micro-batch and before clipping and the optimizer step.
   */
  async syncGradients(): Promise<void> {
    if (this.group.size === 1) return;
    this.zeroMissingGrads();
    const seen = new Set<unknown>();
    const works: Work[] = [];
    for (let k = 0; k < this.buckets.length; k++) this.reduceBucket(k, seen, works);
    await Promise.all(works.map((w) => w.wait()));
  }

  /**
   * Starts the overlapped reduction of one backward (the last micro-batch's): returns the hook
   * to pass as backward's `onGradReady`. Call finish() once backward has returned.
   */
  beginBackward(): (leaf: Tensor) => void {
    if (this.round && !this.round.finished) throw new Error('DataParallel.beginBackward: the previous round is not finished; call finish() after each backward');
    const round: Round = {
      ready: new Set(), missing: this.buckets.map((b) => b.length), next: 0, works: [], seen: new Set(), finished: false,
    };
    this.round = round;
    return (leaf) => this.gradReady(round, leaf);
  }

  /** How many buckets the current (or last) round has issued so far: those issued during backward, before finish(). */
  get issuedBuckets(): number {
    return this.round?.next ?? 0;
  }

  /** Gives zero gradients to parameters that got none, issues the buckets not issued yet, and waits for all. */
  async finish(): Promise<void> {
    const round = this.round;
    if (!round || round.finished) throw new Error('DataParallel.finish: no round in progress; call beginBackward() before the backward');
    round.finished = true;
    if (this.group.size === 1) return;
    this.zeroMissingGrads();
    while (round.next < this.buckets.length) this.reduceBucket(round.next++, round.seen, round.works);
    await Promise.all(round.works.map((w) => w.wait()));
  }

  /** The hook: `leaf`'s gradient is final; issue every bucket that is now complete, in order. */
  private gradReady(round: Round, leaf: Tensor): void {
    const k = this.bucketOf.get(leaf);
    if (k === undefined) return; // not one of these parameters
    if (round.finished) {
      throw new Error(`DataParallel: parameter ${this.nameOf(leaf)} reported its gradient ready after finish() had reduced its bucket; ` +
        'pass the hook of beginBackward() to one backward only, and call finish() after that backward returns');
    }
    if (round.ready.has(leaf)) {
      throw new Error(`DataParallel: parameter ${this.nameOf(leaf)} was reported ready twice in one backward` +
        `${k < round.next ? ', after its bucket was already reduced' : ''}: its gradient was not final the first time. ` +
        'This happens when a parameter is used in two activation-checkpointed segments, or both inside and outside one ' +
        '(each segment is differentiated by its own nested backward). Keep each parameter in one segment ' +
        '(or turn activation checkpointing off), or reduce after backward instead: syncGradients() and no hook.');
    }
    round.ready.add(leaf);
    round.missing[k]!--;
    if (this.group.size === 1) return;
    while (round.next < this.buckets.length && round.missing[round.next] === 0) this.reduceBucket(round.next++, round.seen, round.works);
  }

  /** Issues bucket k's all-reduce (avg), each storage once. */
  private reduceBucket(k: number, seen: Set<unknown>, works: Work[]): void {
    const grads: Tensor[] = [];
    for (const p of this.buckets[k]!) {
      const storage = p.grad!.sharedStorage;
      if (seen.has(storage)) continue;
      seen.add(storage);
      grads.push(p.grad!);
    }
    if (grads.length) works.push(this.group.allReduceCoalesced(grads, 'avg'));
  }

  private zeroMissingGrads(): void {
    for (const p of this.params) {
      if (!p.grad) p.grad = zeros(p.shape, p.dtype, p.backend).keep();
    }
  }

  private nameOf(p: Tensor): string {
    const i = this.params.indexOf(p);
    return `'${this.names[i] ?? p.name ?? `#${i}`}' (shape [${p.shape.join(', ')}])`;
  }
}

/** SHA-256 (hex) of the parameters' shapes, dtypes and bytes, in order: equal on every rank while they are in sync. */
export function parameterChecksum(params: readonly Tensor[]): string {
  const h = createHash('sha256');
  for (const p of params) {
    h.update(`${p.dtype}[${p.shape.join(',')}]`);
    const a = p.toArray();
    h.update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
  }
  return h.digest('hex');
}
