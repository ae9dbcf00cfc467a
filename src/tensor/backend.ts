// The backend contract: a backend is an allocator plus a set of kernels registered by name.
//
// A backend owns the memory behind tensors (typed arrays on the CPU, device buffers on CUDA). The
// engine never looks inside a Storage; kernels of the same backend do.
//
// Views: `view(storage, byteOffset, bytes)` is a Storage over part of another's memory (a
// typed-array subarray on the CPU, pointer + offset on CUDA), so that many tensors can live in one
// flat buffer (ZeRO's parameters, gradients and optimizer state). A view owns nothing: freeing it
// releases no memory and does not count in memoryStats. Its parent must outlive it; tensors
// guarantee that by holding a reference to the parent's SharedStorage (tensor.ts, views.ts).

import type { DType, HostArray } from './dtype.js';

/** Backend-owned memory. `bytes` is what it occupies; the rest is the backend's business. */
export interface Storage {
  readonly bytes: number;
}

export interface MemoryStats {
  allocated: number; // bytes held by live tensors
  reserved: number; // bytes held by the backend (allocated + cached)
  peak: number; // highest `allocated` seen
}

export interface Backend {
  readonly name: string; // 'cpu' | 'cuda'
  /** Uninitialised memory for `numel` elements of `dtype`. */
  alloc(dtype: DType, numel: number): Storage;
  /** Zero-filled memory. */
  zeros(dtype: DType, numel: number): Storage;
  /** Copies host values in; `data` must already be the dtype's host array type. */
  upload(data: HostArray, dtype: DType): Storage;
  /** Copies values out to the host (waits for pending work on that memory). */
  download(storage: Storage, dtype: DType, numel: number): HostArray;
  /** Releases memory; the storage must not be used afterwards. A view releases nothing. */
  free(storage: Storage): void;
  /**
   * A storage aliasing `bytes` bytes of `storage` starting at `byteOffset` (no copy: writes through
   * either are seen by both). Offset and length must be multiples of the parent's element size
   * (CPU) and within it. Freeing the view never frees the parent's memory; the caller keeps the
   * parent alive for as long as the view is used. CUDA kernels and cuBLASLt may assume aligned
   * pointers (16 bytes for vector loads, 256 bytes by default for cuBLASLt): align offsets of views
   * that kernels will read (ZeRO aligns every parameter to 256 bytes on CUDA).
   */
  view(storage: Storage, byteOffset: number, bytes: number): Storage;
  /** Copies the first `bytes` bytes of `src` over those of `dst` (device to device, in stream order; the two must not overlap). */
  copy(dst: Storage, src: Storage, bytes: number): void;
  /** Sets every byte of `storage` to zero, in place (in stream order). */
  clear(storage: Storage): void;
  /** Waits until all queued work has finished. */
  synchronize(): void;
  memoryStats(): MemoryStats;
  /** Restarts `peak` from what is allocated now (torch.cuda.reset_peak_memory_stats), to measure one phase. */
  resetPeakMemory(): void;
  /**
   * Optional device timing for the kernel profile: `mark()` records a point in the queue (a CUDA
   * event) without waiting; `elapsedMs(a, b)` waits for `b` and returns the device time between
   * the two, then releases both. Backends without it are timed by synchronizing around each kernel.
   */
  readonly timing?: { mark(): unknown; elapsedMs(a: unknown, b: unknown): number };
}
