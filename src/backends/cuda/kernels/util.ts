// Helpers shared by the CUDA kernel registrations: the backend, outputs, dtype suffixes, and the
// chunk tables of the multi-tensor kernels.

import type { Backend } from '../../../tensor/backend.js';
import { type DType, ITEM_SIZE } from '../../../tensor/dtype.js';
import { empty } from '../../../tensor/engine.js';
import type { Tensor } from '../../../tensor/tensor.js';
import type { Block } from '../allocator.js';
import { CudaBackend, ptr } from '../backend.js';

export { ptr } from '../backend.js';

export function cuda(be: Backend): CudaBackend {
  if (!(be instanceof CudaBackend)) throw new Error(`CUDA kernel called on backend '${be.name}'`);
  return be;
}

export function out(shape: readonly number[], dtype: DType, be: Backend): Tensor {
  return empty(shape, dtype, be);
}

export type FloatSuffix = 'f32' | 'bf16' | 'f16';

/** The kernel-name suffix of a float storage type; other dtypes are an error naming the kernel. */
export function floatSuffix(dtype: DType, kernel: string): FloatSuffix {
  if (dtype === 'f32' || dtype === 'bf16' || dtype === 'f16') return dtype;
  throw new Error(`${kernel} on CUDA supports f32, bf16 and f16 storage, got ${dtype}`);
}

export function sameDtype(a: Tensor, b: Tensor, kernel: string): void {
  if (a.dtype !== b.dtype) throw new Error(`${kernel}: dtypes differ (${a.dtype} and ${b.dtype})`);
}

/** Threads for a block that walks one row of C elements (a multiple of 32, 32 … 512). */
export function rowBlock(C: number): number {
  return Math.min(512, Math.max(32, Math.ceil(C / 4 / 32) * 32));
}

/** R and C of a 2-D input; parameters must share x's dtype and have C elements. */
export function rowsCols(x: Tensor, kernel: string, ...params: (Tensor | undefined)[]): [number, number] {
  if (x.ndim !== 2) throw new Error(`${kernel}: expects x of shape [R, C], got [${x.shape}]`);
  const [R, C] = x.shape as [number, number];
  for (const p of params) {
    if (!p) continue;
    sameDtype(x, p, kernel);
    if (p.numel !== C) throw new Error(`${kernel}: parameter [${p.shape}] does not match C = ${C}`);
  }
  return [R, C];
}

/** Elements per chunk of the multi-tensor kernels (sumsq_chunks, adamw_chunks): one block each. */
export const CHUNK_ELEMENTS = 1 << 16;

/**
 * The multi-tensor kernels' table, on the device: for every chunk of CHUNK_ELEMENTS elements of
 * each group of same-length tensors, their device pointers at the chunk's start and the chunk's
 * length (`pointers + 1` int64 per chunk). Returns the scratch block (release it after the launch)
 * and the chunk count.
 */
export function chunkTable(be: CudaBackend, groups: readonly (readonly Tensor[])[]): { table: Block; chunks: number } {
  const width = groups[0]?.length ?? 0;
  let chunks = 0;
  for (const g of groups) chunks += Math.ceil(g[0]!.numel / CHUNK_ELEMENTS);
  const host = new BigInt64Array(Math.max(1, chunks * (width + 1)));
  let k = 0;
  for (const g of groups) {
    const n = g[0]!.numel;
    for (let start = 0; start < n; start += CHUNK_ELEMENTS) {
      for (const t of g) host[k++] = BigInt(ptr(t) + start * ITEM_SIZE[t.dtype]);
      host[k++] = BigInt(Math.min(CHUNK_ELEMENTS, n - start));
    }
  }
  const table = be.scratch(host.byteLength);
  // From pageable memory: the driver has staged the bytes when the call returns.
  be.drv.cuMemcpyHtoDAsync_v2(table.ptr, host, host.byteLength, be.stream);
  return { table, chunks };
}
