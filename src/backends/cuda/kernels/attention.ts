// CUDA kernels: attention and attentionBackward. Contract: tensor/kernels.ts; reference:
// backends/cpu/kernels/attention.ts.
//
//   cuDNN fused flash attention (sdpa.ts) for the training case it covers: bf16, causal, no window,
//   no ALiBi, T = S with S % 128 = 0, D % 8 = 0 up to 128 (sdpaSupports). A shape cuDNN rejects is
//   remembered and logged once by sdpa.ts, and goes to the fallback from then on.
//   attention.cu everywhere else (f32, f16, windows, ALiBi, T ≠ S, any D up to 256): one module per
//   head dim (HEAD_DIM, ROWS defines). Backward: delta = rowsum(o ∘ dO), then dq, then dk and dv.
//
//   setCudnnAttention(on)  tests force the fallback with it; attentionPaths() counts which path ran
//
// attentionQKV / attentionQKVBackward (the packed QKV [B, T, H, 3D]): cuDNN reads q, k, v in place
// through the packed strides and writes dq, dk, dv into one dqkv (sdpa.ts `packed`); where cuDNN
// does not apply, ops/attention.ts's packedReference (split, the kernels above, concat).
//
// Both layouts (attrs.layout: bhsd q [B, H, T, D], k, v [B, Hkv, S, D], or bshd q [B, T, H, D], k, v
// [B, S, Hkv, D]) run in place on both paths: cuDNN gets the layout's strides (sdpa.ts) and
// attention.cu addresses rows through a per-head base and row stride. No permutes.
// lse is f32 [B, H, T] on both paths and in both layouts (cuDNN's Stats tensor is the same
// quantity: see sdpa.ts).

import { alibiSlopes, packedReference } from '../../../ops/attention.js';
import { registerKernel } from '../../../tensor/engine.js';
import type { AttentionLayout } from '../../../tensor/kernels.js';
import { attentionShape, headsFirst } from '../../../tensor/layout.js';
import type { Tensor } from '../../../tensor/tensor.js';
import { ITEM_SIZE } from '../../../tensor/dtype.js';
import type { CudaBackend, CudaStorage } from '../backend.js';
import { sdpaFor, sdpaSupports } from '../sdpa.js';
import { cuda, floatSuffix, out, ptr } from './util.js';

let cudnnEnabled = true;
const paths = { cudnnForward: 0, cudnnBackward: 0, fallbackForward: 0, fallbackBackward: 0 };

/** Use cuDNN where it applies (the default), or force attention.cu for every shape (tests, debugging). */
export function setCudnnAttention(on: boolean): void {
  cudnnEnabled = on;
}

/** How many calls went through each path since the process started. */
export function attentionPaths(): Readonly<typeof paths> {
  return { ...paths };
}

// Must match attention.cu: 4 warps of ROWS rows; tiles of 32; head dim padded to a multiple of 32.
const WARPS = 4;
const BK = 32;

interface Config { D: number; DP: number; ROWS: number; BQ: number; LD: number }

function config(D: number): Config {
  const DP = Math.ceil(D / 32) * 32;
  const ROWS = DP <= 64 ? 8 : 4;
  return { D, DP, ROWS, BQ: WARPS * ROWS, LD: DP + 4 };
}

/** Dynamic shared memory of each kernel, in bytes (the tiles attention.cu lays out). */
function sharedBytes(c: Config, kernel: 'fwd' | 'dq' | 'dkdv'): number {
  const floats = kernel === 'fwd'
    ? c.BQ * c.DP + BK * c.LD + BK * c.DP + c.BQ * BK
    : kernel === 'dq'
      ? 2 * c.BQ * c.DP + 2 * BK * c.LD + c.BQ * BK
      : 2 * c.BQ * c.DP + 2 * BK * c.LD + 2 * c.BQ * BK + 2 * BK;
  return 4 * floats;
}

interface Dims { B: number; H: number; Hkv: number; T: number; S: number; D: number }

function dims(q: Tensor, k: Tensor, v: Tensor, layout: AttentionLayout, kernel: string): Dims {
  const [B, H, T, D] = headsFirst(q.shape, layout);
  const [Bk, Hkv, S, Dk] = headsFirst(k.shape, layout);
  if (q.ndim !== 4 || k.ndim !== 4 || k.shape.join(',') !== v.shape.join(',') || Bk !== B || Dk !== D || Hkv < 1 || H % Hkv !== 0) {
    const want = layout === 'bshd' ? 'q [B, T, H, D], k = v [B, S, Hkv, D]' : 'q [B, H, T, D], k = v [B, Hkv, S, D]';
    throw new Error(`${kernel}: expected ${want} with H a multiple of Hkv, got [${q.shape}], [${k.shape}], [${v.shape}]`);
  }
  if (q.dtype !== k.dtype || q.dtype !== v.dtype) throw new Error(`${kernel}: dtypes differ (${q.dtype}, ${k.dtype}, ${v.dtype})`);
  if (D > 256) throw new Error(`${kernel} on CUDA supports head dims up to 256, got ${D}`);
  if (B * Math.max(H, Hkv) > 65535) throw new Error(`${kernel} on CUDA: B · H = ${B * H} exceeds the grid's 65535`);
  return { B, H, Hkv, T, S, D };
}

/** GPT-NeoX's ALiBi slopes as f32 on the device, one buffer per head count and backend. */
const slopeTables = new WeakMap<CudaBackend, Map<number, CudaStorage>>();
function slopes(be: CudaBackend, H: number): number {
  let byH = slopeTables.get(be);
  if (!byH) slopeTables.set(be, (byH = new Map()));
  let s = byH.get(H);
  if (!s) byH.set(H, (s = be.upload(Float32Array.from(alibiSlopes(H)), 'f32')));
  return s.ptr;
}

function useCudnn(x: Tensor, d: Dims, causal: boolean, window: number, alibi: boolean): boolean {
  return cudnnEnabled && sdpaSupports(x.dtype, causal, window, alibi, d.T, d.S, d.D);
}

registerKernel('attention', 'cuda', ([q, k, v], { scale, causal, window, alibi, layout = 'bhsd' }, backend) => {
  const be = cuda(backend);
  const d = dims(q!, k!, v!, layout, 'attention');
  const t = floatSuffix(q!.dtype, 'attention');
  const o = out(attentionShape(d.B, d.H, d.T, d.D, layout), q!.dtype, be); // (B, H, T, D) or (B, T, H, D)
  const lse = out([d.B, d.H, d.T], 'f32', be); // (B, H, T)
  if (o.numel === 0) return [o, lse];
  if (useCudnn(q!, d, causal, window, alibi)) {
    const sdpa = sdpaFor(be);
    const shape = { B: d.B, H: d.H, Hkv: d.Hkv, S: d.S, D: d.D, layout };
    if (sdpa?.forward(shape, scale, { q: ptr(q!), k: ptr(k!), v: ptr(v!), o: ptr(o), lse: ptr(lse) })) {
      paths.cudnnForward++;
      return [o, lse];
    }
  }
  const c = config(d.D);
  const defines = { HEAD_DIM: c.D, ROWS: c.ROWS };
  const kern = be.kernel('attention.cu', `attn_fwd_${t}`, 'ppppppiiiiiifi', defines);
  const shared = sharedBytes(c, 'fwd');
  kern.allowSharedMemory(shared, be.device.maxSharedPerBlock);
  kern.launchShared(Math.ceil(d.T / c.BQ), d.B * d.H, 128, 1, shared, [
    ptr(q!), ptr(k!), ptr(v!), ptr(o), ptr(lse), alibi ? slopes(be, d.H) : 0,
    d.H, d.Hkv, d.T, d.S, causal ? 1 : 0, window, scale, layout === 'bshd' ? 1 : 0,
  ]);
  paths.fallbackForward++;
  return [o, lse];
});

registerKernel('attentionBackward', 'cuda', ([q, k, v, o, lse, dO], { scale, causal, window, alibi, layout = 'bhsd' }, backend) => {
  const be = cuda(backend);
  const d = dims(q!, k!, v!, layout, 'attentionBackward');
  for (const [name, x, shape] of [['o', o!, q!.shape], ['dO', dO!, q!.shape], ['lse', lse!, [d.B, d.H, d.T]]] as const) {
    if (x.shape.join(',') !== shape.join(',')) throw new Error(`attentionBackward: ${name} has shape [${x.shape}], expected [${shape}]`);
  }
  if (o!.dtype !== q!.dtype || dO!.dtype !== q!.dtype) throw new Error(`attentionBackward: o and dO must be ${q!.dtype}`);
  if (lse!.dtype !== 'f32') throw new Error(`attentionBackward on CUDA: lse must be f32, got ${lse!.dtype}`);
  const t = floatSuffix(q!.dtype, 'attentionBackward');
  const dq = out(q!.shape, q!.dtype, be); // q's layout
  const dk = out(k!.shape, k!.dtype, be); // k's layout
  const dv = out(v!.shape, v!.dtype, be);
  if (dq.numel === 0 && dk.numel === 0) return [dq, dk, dv];
  if (useCudnn(q!, d, causal, window, alibi)) {
    const sdpa = sdpaFor(be);
    const shape = { B: d.B, H: d.H, Hkv: d.Hkv, S: d.S, D: d.D, layout };
    const args = { q: ptr(q!), k: ptr(k!), v: ptr(v!), o: ptr(o!), lse: ptr(lse!), dO: ptr(dO!), dq: ptr(dq), dk: ptr(dk), dv: ptr(dv) };
    if (sdpa?.backward(shape, scale, args)) {
      paths.cudnnBackward++;
      return [dq, dk, dv];
    }
  }
  const c = config(d.D);
  const defines = { HEAD_DIM: c.D, ROWS: c.ROWS };
  const rows = d.B * d.H * d.T;
  const delta = be.scratch(Math.max(4, rows * 4)); // (B, H, T) f32
  const slopePtr = alibi ? slopes(be, d.H) : 0;
  const bshd = layout === 'bshd' ? 1 : 0;
  const common = [d.H, d.Hkv, d.T, d.S, causal ? 1 : 0, window, scale, bshd];
  if (rows > 0) {
    be.kernel('attention.cu', `attn_bwd_delta_${t}`, 'pppliii', defines)
      .launch(be.grid(rows * 32), 256, ptr(o!), ptr(dO!), delta.ptr, rows, d.H, d.T, bshd);
    const kq = be.kernel('attention.cu', `attn_bwd_dq_${t}`, 'ppppppppiiiiiifi', defines);
    const sq = sharedBytes(c, 'dq');
    kq.allowSharedMemory(sq, be.device.maxSharedPerBlock);
    kq.launchShared(Math.ceil(d.T / c.BQ), d.B * d.H, 128, 1, sq, [
      ptr(q!), ptr(k!), ptr(v!), ptr(dO!), ptr(lse!), delta.ptr, ptr(dq), slopePtr, ...common,
    ]);
  }
  const kkv = be.kernel('attention.cu', `attn_bwd_dkdv_${t}`, 'pppppppppiiiiiifi', defines);
  const skv = sharedBytes(c, 'dkdv');
  kkv.allowSharedMemory(skv, be.device.maxSharedPerBlock);
  kkv.launchShared(Math.ceil(d.S / c.BQ), d.B * d.Hkv, 128, 1, skv, [
    ptr(q!), ptr(k!), ptr(v!), ptr(dO!), ptr(lse!), delta.ptr, ptr(dk), ptr(dv), slopePtr, ...common,
  ]);
  be.releaseScratch(delta);
  paths.fallbackBackward++;
  return [dq, dk, dv];
});

/** The packed QKV's dims, and whether cuDNN takes it (bf16, causal, T % 128 = 0, …). */
function packed(qkv: Tensor, kernel: string, causal: boolean, window: number, alibi: boolean): { B: number; T: number; H: number; D: number; cudnn: boolean } {
  if (qkv.ndim !== 4 || qkv.dim(3) % 3 !== 0) throw new Error(`${kernel}: expected qkv [B, T, H, 3·D], got [${qkv.shape}]`);
  const [B, T, H, W] = qkv.shape as [number, number, number, number];
  const D = W / 3;
  const aligned = ptr(qkv) % 16 === 0 && (D * 2) % 16 === 0; // the k and v pointers, qkv + D and + 2D, 16-byte aligned
  return { B, T, H, D, cudnn: cudnnEnabled && aligned && B * T * H > 0 && sdpaSupports(qkv.dtype, causal, window, alibi, T, T, D) };
}

registerKernel('attentionQKV', 'cuda', ([qkv], attrs, backend) => {
  const be = cuda(backend);
  const { B, T, H, D, cudnn } = packed(qkv!, 'attentionQKV', attrs.causal, attrs.window, attrs.alibi);
  if (cudnn) {
    const sdpa = sdpaFor(be);
    const o = out([B, T, H, D], qkv!.dtype, be); // (B, T, H, D)
    const lse = out([B, H, T], 'f32', be); // (B, H, T)
    const p = ptr(qkv!), e = ITEM_SIZE[qkv!.dtype];
    const shape = { B, H, Hkv: H, S: T, D, layout: 'bshd' as const, packed: true };
    if (sdpa?.forward(shape, attrs.scale, { q: p, k: p + D * e, v: p + 2 * D * e, o: ptr(o), lse: ptr(lse) })) {
      paths.cudnnForward++;
      return [o, lse];
    }
    o.dispose();
    lse.dispose();
  }
  return packedReference.attentionQKV(qkv!, attrs);
});

registerKernel('attentionQKVBackward', 'cuda', ([qkv, o, lse, dO], attrs, backend) => {
  const be = cuda(backend);
  const { B, T, H, D, cudnn } = packed(qkv!, 'attentionQKVBackward', attrs.causal, attrs.window, attrs.alibi);
  for (const [name, x, shape] of [['o', o!, [B, T, H, D]], ['dO', dO!, [B, T, H, D]], ['lse', lse!, [B, H, T]]] as const) {
    if (x.shape.join(',') !== shape.join(',')) throw new Error(`attentionQKVBackward: ${name} has shape [${x.shape}], expected [${shape}]`);
  }
  if (cudnn && o!.dtype === qkv!.dtype && dO!.dtype === qkv!.dtype && lse!.dtype === 'f32') {
    const sdpa = sdpaFor(be);
    const dqkv = out(qkv!.shape, qkv!.dtype, be); // (B, T, H, 3D)
    const p = ptr(qkv!), g = ptr(dqkv), e = ITEM_SIZE[qkv!.dtype];
    const shape = { B, H, Hkv: H, S: T, D, layout: 'bshd' as const, packed: true };
    const args = { q: p, k: p + D * e, v: p + 2 * D * e, o: ptr(o!), lse: ptr(lse!), dO: ptr(dO!), dq: g, dk: g + D * e, dv: g + 2 * D * e };
    if (sdpa?.backward(shape, attrs.scale, args)) {
      paths.cudnnBackward++;
      return [dqkv];
    }
    dqkv.dispose();
  }
  return [packedReference.attentionQKVBackward(qkv!, o!, lse!, dO!, attrs)];
});
