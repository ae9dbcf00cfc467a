// The backend contract: a backend is an allocator plus a set of kernels registered by name.
//
// A backend owns the memory behind tensors (typed arrays on the CPU, device buffers on CUDA). The
// engine never looks inside a Storage; kernels of the same backend do.

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
  /** Releases memory; the storage must not be used afterwards. */
  free(storage: Storage): void;
  /** Waits until all queued work has finished. */
  synchronize(): void;
  memoryStats(): MemoryStats;
}
