// Helpers shared by the CUDA kernel registrations: the backend, outputs, dtype suffixes.

import type { Backend } from '../../../tensor/backend.js';
import type { DType } from '../../../tensor/dtype.js';
import { empty } from '../../../tensor/engine.js';
import type { Tensor } from '../../../tensor/tensor.js';
import { CudaBackend } from '../backend.js';

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
