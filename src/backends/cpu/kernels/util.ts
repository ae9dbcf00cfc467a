// Small helpers shared by the CPU kernels: typed access to tensor data and output allocation.

import type { Backend } from '../../../tensor/backend.js';
import type { DType, FloatArray } from '../../../tensor/dtype.js';
import { empty } from '../../../tensor/engine.js';
import type { Tensor } from '../../../tensor/tensor.js';
import { arr } from '../backend.js';

/** The f32/f64 data of a float tensor; other dtypes are an error (CPU kernels compute in f32/f64). */
export function f(t: Tensor, kernel: string): FloatArray {
  if (t.dtype !== 'f32' && t.dtype !== 'f64') {
    throw new Error(`${kernel} on CPU computes in f32 or f64, got ${t.dtype} (cast first)`);
  }
  return arr(t.storage) as FloatArray;
}

export function i32(t: Tensor, kernel: string): Int32Array {
  if (t.dtype !== 'i32') throw new Error(`${kernel}: expected an i32 tensor, got ${t.dtype}`);
  return arr(t.storage) as Int32Array;
}

export function out(shape: readonly number[], dtype: DType, backend: Backend): Tensor {
  return empty(shape, dtype, backend);
}

export function sameFloatType(a: Tensor, b: Tensor, kernel: string): void {
  if (a.dtype !== b.dtype) throw new Error(`${kernel}: dtypes differ (${a.dtype} and ${b.dtype})`);
}
