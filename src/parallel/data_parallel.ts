// Data parallelism: every rank holds the whole model, computes gradients on its slice of the
// global batch, and the gradients are averaged across ranks before the optimizer step, so every
// rank applies the same update and the parameters stay identical.
//
// defines: DataParallel, DataParallelOptions, buildBuckets, parameterChecksum
//
// - Buckets: gradients are reduced in buckets of at most `bucketElements` elements (GPT-NeoX's
//   zero_optimization.reduce_bucket_size), filled in reverse parameter order, the order backward
//   produces them, so that on CUDA a bucket can be reduced as soon as its last gradient exists,
//   overlapping the rest of the backward pass. On CPU (and until the NCCL group lands) all buckets
//   are reduced after the backward of the last micro-batch: syncGradients().
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

  constructor(readonly group: ProcessGroup, readonly params: readonly Tensor[], opts: DataParallelOptions = {}) {
    this.buckets = buildBuckets(params, opts.bucketElements ?? DEFAULT_BUCKET_ELEMENTS);
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
    for (const p of this.params) {
      if (!p.grad) p.grad = zeros(p.shape, p.dtype, p.backend).keep();
    }
    const seen = new Set<unknown>();
    const works: Work[] = [];
    for (const bucket of this.buckets) {
      const grads: Tensor[] = [];
      for (const p of bucket) {
        const storage = p.grad!.sharedStorage;
        if (seen.has(storage)) continue;
        seen.add(storage);
        grads.push(p.grad!);
      }
      if (grads.length) works.push(this.group.allReduceCoalesced(grads, 'avg'));
    }
    await Promise.all(works.map((w) => w.wait()));
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
