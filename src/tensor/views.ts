// Zero-copy slices and in-place memory operations, so that many tensors can live in one flat
// buffer (ZeRO's parameters, gradients and optimizer state; src/parallel/zero.ts).
//
//   sliceView(t, offset, shape)  elements [offset, offset + numel(shape)) of t as a tensor of `shape`,
//                                sharing t's memory (Backend.view); holds a reference to t's storage
//   copyInto(dst, src)           dst ← src, a device copy (same dtype and element count)
//   zeroInPlace(t)               every element of t becomes 0 (a memset: NaN and -0 included)
//   adoptStorage(t, from)        t (the same Tensor object, e.g. a model's parameter) now uses from's
//                                memory; its own is released
//
// None of these is recorded on the autograd tape: they are for buffers (optimizer state, flat
// parameter and gradient storage), not for computations to differentiate. A slice's memory stays
// alive while the slice does, even after `t` is disposed; disposing a slice never frees t's memory.
// Slices nest (a slice of a slice aliases the same root buffer). On CUDA, keep offsets that kernels
// read aligned (see Backend.view).

import { ITEM_SIZE } from './dtype.js';
import { view } from './engine.js';
import { SharedStorage, Tensor } from './tensor.js';

function numelOf(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/**
 * Elements [offset, offset + numel(shape)) of `t` (row-major, flat) as a tensor of `shape`,
 * sharing t's memory. Tracked by the current scope like any new tensor; `keep()` it to hold it.
 */
export function sliceView(t: Tensor, offset: number, shape: readonly number[]): Tensor {
  const n = numelOf(shape);
  if (!Number.isInteger(offset) || offset < 0 || offset + n > t.numel) {
    throw new Error(`sliceView: elements [${offset}, ${offset + n}) are outside ${t} (${t.numel} elements)`);
  }
  const item = ITEM_SIZE[t.dtype];
  const parent = t.sharedStorage;
  const storage = t.backend.view(parent.storage, offset * item, n * item);
  parent.refs++;
  const raw = new Tensor(shape, t.dtype, t.backend, new SharedStorage(t.backend, storage, parent));
  // Made through engine.view so that the current scope tracks it (the engine's `track` is private);
  // the raw object's reference is then handed over.
  const v = view(raw, shape);
  raw.dispose();
  return v;
}

/** dst ← src (a device copy in stream order): same dtype and number of elements. */
export function copyInto(dst: Tensor, src: Tensor): void {
  if (dst.dtype !== src.dtype || dst.numel !== src.numel) throw new Error(`copyInto: ${src} does not fit ${dst} (same dtype and size needed)`);
  if (dst.backend !== src.backend) throw new Error(`copyInto: ${src} and ${dst} are on different devices`);
  dst.backend.copy(dst.storage, src.storage, dst.numel * ITEM_SIZE[dst.dtype]);
}

/** Sets every element of `t` to 0 in place (a memset, so NaN and -0 become +0 too). */
export function zeroInPlace(t: Tensor): void {
  const item = ITEM_SIZE[t.dtype];
  if (t.storage.bytes === t.numel * item) {
    t.backend.clear(t.storage);
  } else {
    // A storage larger than the tensor (never made by this engine, but allowed): clear a view of the tensor's bytes.
    const s = t.backend.view(t.storage, 0, t.numel * item);
    t.backend.clear(s);
    t.backend.free(s);
  }
}

/**
 * Makes `t` use `from`'s memory (same dtype and size; typically a slice of a flat buffer that
 * already holds t's values): the Tensor object stays, so whatever holds it (a model) sees the
 * new memory; t's old storage is released. `from` may be disposed afterwards.
 */
export function adoptStorage(t: Tensor, from: Tensor): void {
  if (t.dtype !== from.dtype || t.numel !== from.numel) throw new Error(`adoptStorage: ${from} does not fit ${t} (same dtype and size needed)`);
  t.adoptShared(from.sharedStorage);
}
