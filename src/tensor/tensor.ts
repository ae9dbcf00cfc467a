// Tensor: shape, dtype and a reference-counted storage on one backend; plus autograd bookkeeping.
//
// Storage is contiguous row-major. `reshape` returns a view sharing the storage (no copy); every
// other op produces a new tensor through a kernel. Memory is released by `dispose()`, which the
// engine's scopes call for intermediates (see engine.ts), so CUDA memory never waits on the GC.

import type { Backend, Storage } from './backend.js';
import { type DType, type HostArray, toF32 } from './dtype.js';
import type { TapeNode } from './engine.js';

export class SharedStorage {
  refs = 1;
  constructor(readonly backend: Backend, readonly storage: Storage) {}
  release(): void {
    if (--this.refs === 0) this.backend.free(this.storage);
  }
}

let nextId = 1;

export class Tensor {
  readonly id = nextId++;
  readonly shape: readonly number[];
  readonly numel: number;
  /** Whether gradients flow to this tensor (parameters, and outputs of ops on them). */
  requiresGrad = false;
  /** Accumulated gradient of a leaf that requires it. */
  grad: Tensor | null = null;
  /** The tape node that produced this tensor, while the tape is alive. */
  creator: TapeNode | null = null;
  /** Kept tensors survive the end of the scope that created them. */
  kept = false;
  name?: string;
  private shared: SharedStorage | null;

  constructor(shape: readonly number[], readonly dtype: DType, readonly backend: Backend, shared: SharedStorage) {
    for (const d of shape) {
      if (!Number.isInteger(d) || d < 0) throw new Error(`invalid tensor shape [${shape.join(', ')}]`);
    }
    this.shape = Object.freeze([...shape]);
    this.numel = shape.reduce((a, b) => a * b, 1);
    this.shared = shared;
  }

  get ndim(): number {
    return this.shape.length;
  }

  get disposed(): boolean {
    return this.shared === null;
  }

  /** The backend memory; kernels use it. Throws if the tensor was disposed. */
  get storage(): Storage {
    if (this.shared === null) throw new Error(`tensor #${this.id}${this.name ? ` (${this.name})` : ''} used after dispose`);
    return this.shared.storage;
  }

  /** @internal the shared storage, for views. */
  get sharedStorage(): SharedStorage {
    if (this.shared === null) throw new Error(`tensor #${this.id} used after dispose`);
    return this.shared;
  }

  /** Size of dimension `i` (negative counts from the end). */
  dim(i: number): number {
    const d = this.shape[i < 0 ? this.shape.length + i : i];
    if (d === undefined) throw new Error(`dimension ${i} out of range for shape [${this.shape.join(', ')}]`);
    return d;
  }

  /** The values on the host, in the dtype's host array type (bf16/f16 as raw 16-bit words). */
  toArray(): HostArray {
    return this.backend.download(this.storage, this.dtype, this.numel);
  }

  /** The values on the host as f32 (converting bf16/f16/integers). */
  toFloat32(): Float32Array {
    const a = this.toArray();
    return this.dtype === 'f32' ? (a as Float32Array) : toF32(this.dtype, a);
  }

  /** The single value of a one-element tensor. */
  item(): number {
    if (this.numel !== 1) throw new Error(`item() needs a one-element tensor, got shape [${this.shape.join(', ')}]`);
    return this.dtype === 'f64' ? this.toArray()[0]! : this.toFloat32()[0]!;
  }

  /** Marks the tensor to survive the scope that created it. Returns itself. */
  keep(): this {
    this.kept = true;
    return this;
  }

  dispose(): void {
    if (this.shared === null) return;
    this.shared.release();
    this.shared = null;
    this.creator = null;
    if (this.grad) {
      this.grad.dispose();
      this.grad = null;
    }
  }

  toString(): string {
    return `Tensor(#${this.id}${this.name ? ` ${this.name}` : ''}, [${this.shape.join(', ')}], ${this.dtype}, ${this.backend.name})`;
  }
}
