// Tensor: shape, dtype and a reference-counted storage on one backend; plus autograd bookkeeping.
//
// Storage is contiguous row-major. `reshape` returns a view sharing the storage (no copy); every
// other op produces a new tensor through a kernel. Memory is released by `dispose()`, which the
// engine's scopes call for intermediates (see engine.ts), so CUDA memory never waits on the GC.
//
// A tensor's elements are always elements [0, numel) of its storage. A slice of another tensor
// (views.ts: sliceView) gets its own storage, a backend view of the parent's bytes, and its
// SharedStorage holds a reference to the parent's, released when the view's last reference goes:
// the parent's memory lives as long as any slice of it.

import type { Backend, Storage } from './backend.js';
import { type DType, type HostArray, ITEM_SIZE, toF32 } from './dtype.js';
import type { TapeNode } from './engine.js';

export class SharedStorage {
  refs = 1;
  /** `parent`: for a view (Backend.view), the storage it aliases; this holds one reference to it. */
  constructor(readonly backend: Backend, readonly storage: Storage, readonly parent: SharedStorage | null = null) {}
  release(): void {
    if (--this.refs !== 0) return;
    this.backend.free(this.storage);
    this.parent?.release();
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
  /** A tape node's gradient reads this tensor's values (see engine.ts `Saves`). */
  saved = false;
  name?: string;
  private shared: SharedStorage | null;
  /** Set while the memory is released but the tensor lives on (releaseStorage): why, for the error. */
  private releasedNote: string | null = null;

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
    return this.shared === null && this.releasedNote === null;
  }

  /** Whether the memory is released for now (releaseStorage) and not given back yet (adoptShared). */
  get storageReleased(): boolean {
    return this.releasedNote !== null;
  }

  /** The backend memory; kernels use it. Throws if the tensor was disposed (or its memory released). */
  get storage(): Storage {
    return this.sharedStorage.storage;
  }

  /** @internal the shared storage, for views. */
  get sharedStorage(): SharedStorage {
    if (this.shared === null) {
      if (this.releasedNote !== null) throw new Error(`tensor #${this.id}${this.name ? ` (${this.name})` : ''} has no memory now: ${this.releasedNote}`);
      throw new Error(`tensor #${this.id}${this.name ? ` (${this.name})` : ''} used after dispose`);
    }
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

  /**
   * @internal Makes this tensor use `shared` (taking a reference) and releases its own storage; the
   * Tensor object, its shape, grad and flags stay. ZeRO moves parameters into one flat buffer this
   * way (views.ts: adoptStorage), so the model keeps the objects it holds.
   */
  adoptShared(shared: SharedStorage): void {
    if (this.shared === null && this.releasedNote === null) throw new Error(`tensor #${this.id} used after dispose`);
    if (shared.backend !== this.backend) throw new Error(`adoptShared: storage of backend ${shared.backend.name} for a ${this.backend.name} tensor`);
    const need = this.numel * ITEM_SIZE[this.dtype];
    if (shared.storage.bytes < need) throw new Error(`adoptShared: a ${shared.storage.bytes}-byte storage for ${this} (${need} bytes)`);
    if (shared === this.shared) return;
    shared.refs++;
    this.shared?.release();
    this.shared = shared;
    this.releasedNote = null;
  }

  /**
   * @internal Releases the memory while the tensor lives on (shape, grad, flags, tape links stay):
   * any read of its values then throws, saying `note` (why, and what gives it memory again);
   * adoptShared gives it memory again. ZeRO stage 3 does this to a parameter between gathers, and a
   * scope to an intermediate no gradient reads (backward still walks through its tape link).
   */
  releaseStorage(note: string): void {
    if (this.shared === null && this.releasedNote === null) throw new Error(`tensor #${this.id} used after dispose`);
    this.shared?.release();
    this.shared = null;
    this.releasedNote = note;
  }

  /** Marks the tensor to survive the scope that created it. Returns itself. */
  keep(): this {
    this.kept = true;
    return this;
  }

  dispose(): void {
    if (this.shared === null && this.releasedNote === null) return;
    this.shared?.release();
    this.shared = null;
    this.releasedNote = null;
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
