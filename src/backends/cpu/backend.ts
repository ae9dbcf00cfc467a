// The CPU backend's allocator: tensors live in host typed arrays (SharedArrayBuffer-backed when
// large, so worker threads can compute on them without copies).
//
// Views (Backend.view) are subarrays of another storage's array, of the same element type: they
// share its buffer (and so reach the worker pool when it is shared), count nothing in
// memoryStats, and freeing one neither caches nor releases the buffer, which stays its owner's.

import type { Backend, MemoryStats, Storage } from '../../tensor/backend.js';
import { type DType, type HostArray, ITEM_SIZE, hostArray } from '../../tensor/dtype.js';

export class CpuStorage implements Storage {
  /** `isView`: `data` is a subarray of another storage's array, which owns the buffer. */
  constructor(readonly data: HostArray, readonly isView = false) {}
  get bytes(): number {
    return this.data.byteLength;
  }
}

/** Arrays of at least this many bytes live in SharedArrayBuffers (visible to the worker pool). */
const SHARED_MIN_BYTES = 1 << 16;

function allocArray(dtype: DType, numel: number): HostArray {
  const bytes = numel * ITEM_SIZE[dtype];
  if (bytes < SHARED_MIN_BYTES) return hostArray(dtype, numel);
  return view(dtype, new SharedArrayBuffer(bytes));
}

function view(dtype: DType, buf: SharedArrayBuffer): HostArray {
  switch (dtype) {
    case 'f32': return new Float32Array(buf);
    case 'f64': return new Float64Array(buf);
    case 'bf16': case 'f16': case 'u16': return new Uint16Array(buf);
    case 'i32': return new Int32Array(buf);
    case 'u8': return new Uint8Array(buf);
  }
}

/** Freed shared buffers kept for reuse, at most this many bytes in all. */
const CACHE_MAX_BYTES = 1 << 30;

export class CpuBackend implements Backend {
  readonly name = 'cpu';
  private allocated = 0;
  private peak = 0;
  // A fresh SharedArrayBuffer costs a page fault per 4 KiB on first touch, several times the
  // cost of most kernels, so freed ones are recycled by byte size (zero-filled on reuse).
  private readonly cache = new Map<number, SharedArrayBuffer[]>();
  private cachedBytes = 0;

  alloc(dtype: DType, numel: number): CpuStorage {
    return this.zeros(dtype, numel);
  }

  zeros(dtype: DType, numel: number): CpuStorage {
    return this.take(dtype, numel, true);
  }

  upload(data: HostArray, dtype: DType): CpuStorage {
    const s = this.take(dtype, data.length, false); // every element is overwritten: no zero-fill of a reused buffer
    s.data.set(data);
    return s;
  }

  /** A storage for numel elements: a cached buffer of that size (zero-filled if `zero`), else a fresh (zero) one. */
  private take(dtype: DType, numel: number, zero: boolean): CpuStorage {
    const bytes = numel * ITEM_SIZE[dtype];
    const reuse = this.cache.get(bytes)?.pop();
    let data: HostArray;
    if (reuse) {
      this.cachedBytes -= bytes;
      data = view(dtype, reuse);
      if (zero) data.fill(0);
    } else {
      data = allocArray(dtype, numel);
    }
    const s = new CpuStorage(data);
    this.allocated += s.bytes;
    if (this.allocated > this.peak) this.peak = this.allocated;
    return s;
  }

  download(storage: Storage, _dtype: DType, numel: number): HostArray {
    return (storage as CpuStorage).data.slice(0, numel);
  }

  free(storage: Storage): void {
    if ((storage as CpuStorage).isView) return; // the buffer belongs to the parent storage
    this.allocated -= storage.bytes;
    const buf = (storage as CpuStorage).data.buffer;
    if (buf instanceof SharedArrayBuffer && this.cachedBytes + buf.byteLength <= CACHE_MAX_BYTES) {
      let list = this.cache.get(buf.byteLength);
      if (!list) this.cache.set(buf.byteLength, (list = []));
      list.push(buf);
      this.cachedBytes += buf.byteLength;
    }
  }

  view(storage: Storage, byteOffset: number, bytes: number): CpuStorage {
    const d = (storage as CpuStorage).data;
    const size = d.BYTES_PER_ELEMENT;
    if (!Number.isInteger(byteOffset) || !Number.isInteger(bytes) || byteOffset < 0 || bytes < 0 || byteOffset + bytes > d.byteLength) {
      throw new Error(`view: bytes [${byteOffset}, ${byteOffset + bytes}) are outside a ${d.byteLength}-byte storage`);
    }
    if (byteOffset % size !== 0 || bytes % size !== 0) {
      throw new Error(`view: offset ${byteOffset} and length ${bytes} must be multiples of the element size (${size} bytes)`);
    }
    const Ctor = d.constructor as new (buf: ArrayBufferLike, byteOffset: number, length: number) => HostArray;
    return new CpuStorage(new Ctor(d.buffer, d.byteOffset + byteOffset, bytes / size), true);
  }

  copy(dst: Storage, src: Storage, bytes: number): void {
    const to = bytesOf((dst as CpuStorage).data, bytes, 'copy: destination');
    to.set(bytesOf((src as CpuStorage).data, bytes, 'copy: source'));
  }

  clear(storage: Storage): void {
    (storage as CpuStorage).data.fill(0);
  }

  synchronize(): void {}

  memoryStats(): MemoryStats {
    return { allocated: this.allocated, reserved: this.allocated + this.cachedBytes, peak: this.peak };
  }

  resetPeakMemory(): void {
    this.peak = this.allocated;
  }
}

/** The first `bytes` bytes of a host array, as bytes. */
function bytesOf(a: HostArray, bytes: number, what: string): Uint8Array {
  if (!Number.isInteger(bytes) || bytes < 0 || bytes > a.byteLength) throw new Error(`${what}: ${bytes} bytes asked of a ${a.byteLength}-byte storage`);
  return new Uint8Array(a.buffer, a.byteOffset, bytes);
}

/** The host array behind a CPU tensor's storage. */
export function arr(s: Storage): HostArray {
  return (s as CpuStorage).data;
}
