// CUDA kernels: rotary position embedding, rotate-half, forward and inverse (rotary.cu), in either
// attention layout (bhsd x [B, H, T, D] or bshd [B, T, H, D]), and rotaryQKV on the packed QKV
// [B, T, H, 3D] (q and k in one pass, 16-byte vectors). The cos/sin table is ops/attention.ts's
// rotaryTable (the CPU uses the same), uploaded as f32 and kept per (T, rotaryDims, base, offset) in
// a small per-backend cache.

import { packedReference, rotaryTable } from '../../../ops/attention.js';
import { ITEM_SIZE } from '../../../tensor/dtype.js';
import { registerKernel } from '../../../tensor/engine.js';
import type { CudaBackend, CudaStorage } from '../backend.js';
import { cuda, floatSuffix, out, ptr } from './util.js';

const TABLES_KEPT = 32;
const tables = new WeakMap<CudaBackend, Map<string, { cos: CudaStorage; sin: CudaStorage }>>();

function table(be: CudaBackend, T: number, rotaryDims: number, base: number, offset: number): { cos: CudaStorage; sin: CudaStorage } {
  let byKey = tables.get(be);
  if (!byKey) tables.set(be, (byKey = new Map()));
  const key = `${T} ${rotaryDims} ${base} ${offset}`;
  const hit = byKey.get(key);
  if (hit) {
    byKey.delete(key); // most recently used last
    byKey.set(key, hit);
    return hit;
  }
  if (byKey.size >= TABLES_KEPT) {
    const [oldKey, old] = byKey.entries().next().value!;
    be.free(old.cos);
    be.free(old.sin);
    byKey.delete(oldKey);
  }
  const { cos, sin } = rotaryTable(T, rotaryDims, base, offset);
  const entry = { cos: be.upload(Float32Array.from(cos), 'f32'), sin: be.upload(Float32Array.from(sin), 'f32') };
  byKey.set(key, entry);
  return entry;
}

registerKernel('rotary', 'cuda', ([x], { rotaryDims, base, offset, inverse, layout }, backend) => {
  const be = cuda(backend);
  const t = floatSuffix(x!.dtype, 'rotary');
  if (x!.ndim !== 4) throw new Error(`rotary: expected a 4-D x, got [${x!.shape}]`);
  const bshd = layout === 'bshd';
  const D = x!.dim(-1);
  const T = x!.dim(bshd ? 1 : 2);
  const inner = bshd ? x!.dim(2) : 1; // rows between consecutive positions
  if (rotaryDims % 2 !== 0 || rotaryDims > D) throw new Error(`rotary: rotaryDims ${rotaryDims} must be even and ≤ head dim ${D}`);
  const y = out(x!.shape, x!.dtype, be);
  const n = x!.numel;
  if (n === 0) return [y];
  if (rotaryDims === 0) {
    be.copyAsync(ptr(y), ptr(x!), y.storage.bytes);
    return [y];
  }
  const tab = table(be, T, rotaryDims, base, offset);
  be.kernel('rotary.cu', `rotary_${t}`, 'pppplllllf')
    .launch(be.grid(n), 256, ptr(x!), ptr(y), tab.cos.ptr, tab.sin.ptr, n, T, inner, D, rotaryDims, inverse ? -1 : 1);
  return [y];
});

registerKernel('rotaryQKV', 'cuda', ([x], attrs, backend) => {
  const { rotaryDims, base, offset, inverse } = attrs;
  const be = cuda(backend);
  const t = floatSuffix(x!.dtype, 'rotaryQKV');
  if (x!.ndim !== 4 || x!.dim(3) % 3 !== 0) throw new Error(`rotaryQKV: expected qkv [B, T, H, 3·D], got [${x!.shape}]`);
  const [, T, H, W] = x!.shape as [number, number, number, number];
  const D = W / 3;
  if (rotaryDims % 2 !== 0 || rotaryDims > D) throw new Error(`rotaryQKV: rotaryDims ${rotaryDims} must be even and ≤ head dim ${D}`);
  const n = x!.numel;
  if (n >= 2 ** 31) return [packedReference.rotaryQKV(x!, attrs)]; // the kernel indexes in 32 bits
  const y = out(x!.shape, x!.dtype, be);
  if (n === 0) return [y];
  if (rotaryDims === 0) {
    be.copyAsync(ptr(y), ptr(x!), y.storage.bytes);
    return [y];
  }
  const V = 16 / ITEM_SIZE[x!.dtype];
  const vec = D % V === 0 && (rotaryDims / 2) % V === 0 && ptr(x!) % 16 === 0 && ptr(y) % 16 === 0;
  const chunks = vec ? n / V : n;
  const tab = table(be, T, rotaryDims, base, offset);
  be.kernel('rotary.cu', vec ? `rotary_qkv_${t}` : `rotary_qkv_scalar_${t}`, 'ppppuuuuuf')
    .launch(be.grid(chunks), 256, ptr(x!), ptr(y), tab.cos.ptr, tab.sin.ptr, chunks, T, H, D, rotaryDims, inverse ? -1 : 1);
  return [y];
});
