// CPU kernels: attention forward and backward, the hot spot of CPU training.
//
//   attention          q [B, H, T, D], k [B, Hkv, S, D], v [B, Hkv, S, D] → o [B, H, T, D], lse [B, H, T]
//   attentionBackward  q, k, v, o, lse, dO → dq [B, H, T, D], dk, dv [B, Hkv, S, D]
// (layout 'bhsd'; with 'bshd' q, o, dO, dq are [B, T, H, D] and k, v, dk, dv [B, S, Hkv, D], lse the same)
//
// Work goes per (batch, head) in blocks of QB query rows. A block whose queries sit at absolute
// positions p0 … p1 (query t is at S − T + t) can only see keys [lo, hi) = [first(p0), end(p1)), so keys
// that causality or the window hide from the whole block are never touched. Per block:
//   forward   Sc = Q·Kᵀ (GEMM, f64) → scale, ALiBi, mask, exact softmax per row in place (lse = m + log l)
//             → O = P·V (GEMM into f64, then stored)
//   backward  (FlashAttention-2) P = exp(scale·Q·Kᵀ + bias − lse), dP = dO·Vᵀ, D_i = Σ dO∘O,
//             dS = scale · P ∘ (dP − D_i); dQ = dS·K, dK += dSᵀ·Q, dV += Pᵀ·dO
// dK and dV accumulate over the query heads of a kv group (in that order) before they are stored.
// The loops live in ../tasks.ts: the worker pool (parallelFor) splits the forward pass over
// (batch, head) pairs and the backward pass over (batch, kv head) pairs, each thread with its own
// scratch tiles, so the outputs do not depend on the thread count. The bshd layout goes through
// ../attention_bshd.ts, which gathers each head's strided rows into per-thread scratch and runs the
// same loop on them: bitwise the bhsd result, permuted, without a full-tensor permute.
// attentionQKV / attentionQKVBackward (the packed QKV [B, T, H, 3D]) are the bshd tasks with packed
// rows: bitwise split → attention(bshd) → concat, without the copies.
// Rows that see no key (S < T under causality) give o = 0, lse = −∞ and zero gradients.
// lse is stored in the inputs' dtype (f32, or f64 for gradient checks).

import { registerKernel } from '../../../tensor/engine.js';
import type { Tensor } from '../../../tensor/tensor.js';
import { alibiSlopes } from '../../../ops/attention.js';
import type { AttentionLayout } from '../../../tensor/kernels.js';
import { attentionShape, headsFirst } from '../../../tensor/layout.js';
import '../attention_bshd.js'; // the bshd tasks
import { parallelFor, releaseShareable, shareable } from '../pool.js';
import { f, out } from './util.js';

/** (batch, head) pairs per thread below which attention is not split: about 2¹⁸ multiply-adds each. */
function grain(T: number, S: number, D: number): number {
  return Math.max(1, Math.ceil((1 << 18) / Math.max(1, T * S * D)));
}

interface Dims {
  B: number; H: number; Hkv: number; T: number; S: number; D: number;
  /** Query heads per kv head. */
  group: number;
  /** Absolute position of query 0: S − T. */
  shift: number;
}

function dims(q: Tensor, k: Tensor, v: Tensor, layout: AttentionLayout, kernel: string): Dims {
  const [B, H, T, D] = headsFirst(q.shape, layout);
  const [Bk, Hkv, S, Dk] = headsFirst(k.shape, layout);
  if (q.ndim !== 4 || k.ndim !== 4 || k.shape.join(',') !== v.shape.join(',') || Bk !== B || Dk !== D || H % Hkv !== 0) {
    const want = layout === 'bshd' ? 'q [B, T, H, D], k = v [B, S, Hkv, D]' : 'q [B, H, T, D], k = v [B, Hkv, S, D]';
    throw new Error(`${kernel}: expected ${want} with H a multiple of Hkv, got [${q.shape}], [${k.shape}], [${v.shape}]`);
  }
  if (q.dtype !== k.dtype || q.dtype !== v.dtype) throw new Error(`${kernel}: dtypes differ (${q.dtype}, ${k.dtype}, ${v.dtype})`);
  return { B, H, Hkv, T, S, D, group: H / Hkv, shift: S - T };
}

/** ALiBi slopes as the kernel applies them (GPT-NeoX holds them in an f32 buffer), or null. */
function slopesFor(H: number, alibi: boolean): Float64Array | null {
  return alibi ? alibiSlopes(H).map(Math.fround) : null;
}

registerKernel('attention', 'cpu', ([q, k, v], { scale, causal, window, alibi, layout = 'bhsd' }, be) => {
  const { B, H, Hkv, T, S, D, group, shift } = dims(q!, k!, v!, layout, 'attention');
  const Q = f(q!, 'attention'); // (B, H, T, D) or (B, T, H, D)
  const K = f(k!, 'attention'); // (B, Hkv, S, D) or (B, S, Hkv, D)
  const V = f(v!, 'attention'); // as K
  const o = out(attentionShape(B, H, T, D, layout), q!.dtype, be);
  const lse = out([B, H, T], q!.dtype, be);
  const O = f(o, 'attention'); // as Q
  const L = f(lse, 'attention'); // (B, H, T)
  const Ls = shareable(L);
  const slopes = slopesFor(H, alibi);
  parallelFor(layout === 'bshd' ? 'attentionBshd' : 'attention', {
    Q, K, V, O, L: Ls, slopes: slopes && shareable(slopes), H, Hkv, T, S, D, group, shift, scale, causal, window,
  }, B * H, grain(T, S, D));
  if (Ls !== L) L.set(Ls);
  releaseShareable();
  return [o, lse];
});

registerKernel('attentionBackward', 'cpu', ([q, k, v, o, lse, dO], { scale, causal, window, alibi, layout = 'bhsd' }, be) => {
  const { B, H, Hkv, T, S, D, group, shift } = dims(q!, k!, v!, layout, 'attentionBackward');
  for (const [name, t, shape] of [['o', o!, q!.shape], ['dO', dO!, q!.shape], ['lse', lse!, [B, H, T]]] as const) {
    if (t.shape.join(',') !== shape.join(',')) throw new Error(`attentionBackward: ${name} has shape [${t.shape}], expected [${shape}]`);
  }
  const Q = f(q!, 'attentionBackward'); // (B, H, T, D) or (B, T, H, D)
  const K = f(k!, 'attentionBackward'); // (B, Hkv, S, D) or (B, S, Hkv, D)
  const V = f(v!, 'attentionBackward'); // as K
  const O = f(o!, 'attentionBackward'); // as Q
  const L = f(lse!, 'attentionBackward'); // (B, H, T)
  const DO = f(dO!, 'attentionBackward'); // as Q
  const dq = out(q!.shape, q!.dtype, be);
  const dk = out(k!.shape, k!.dtype, be);
  const dv = out(v!.shape, v!.dtype, be);
  const DQ = f(dq, 'attentionBackward');
  const DK = f(dk, 'attentionBackward');
  const DV = f(dv, 'attentionBackward');
  const slopes = slopesFor(H, alibi);
  parallelFor(layout === 'bshd' ? 'attentionBackwardBshd' : 'attentionBackward', {
    Q, K, V, O, L: shareable(L), DO, DQ, DK, DV, slopes: slopes && shareable(slopes), H, Hkv, T, S, D, group, shift, scale, causal, window,
  }, B * Hkv, grain(T * group, S, D));
  releaseShareable();
  return [dq, dk, dv];
});

/** The packed QKV's dims (T = S, H = Hkv). */
function packedDims(qkv: Tensor, kernel: string): Dims {
  if (qkv.ndim !== 4 || qkv.dim(3) % 3 !== 0) throw new Error(`${kernel}: expected qkv [B, T, H, 3·D], got [${qkv.shape}]`);
  const [B, T, H, W] = qkv.shape as [number, number, number, number];
  return { B, H, Hkv: H, T, S: T, D: W / 3, group: 1, shift: 0 };
}

registerKernel('attentionQKV', 'cpu', ([qkv], { scale, causal, window, alibi }, be) => {
  const { B, H, Hkv, T, S, D, group, shift } = packedDims(qkv!, 'attentionQKV');
  const X = f(qkv!, 'attentionQKV'); // (B, T, H, 3D)
  const o = out([B, T, H, D], qkv!.dtype, be);
  const lse = out([B, H, T], qkv!.dtype, be);
  const L = f(lse, 'attentionQKV'); // (B, H, T)
  const Ls = shareable(L);
  const slopes = slopesFor(H, alibi);
  parallelFor('attentionBshd', {
    Q: X, K: X, V: X, O: f(o, 'attentionQKV'), L: Ls, slopes: slopes && shareable(slopes), H, Hkv, T, S, D, group, shift, scale, causal, window, packed: true,
  }, B * H, grain(T, S, D));
  if (Ls !== L) L.set(Ls);
  releaseShareable();
  return [o, lse];
});

registerKernel('attentionQKVBackward', 'cpu', ([qkv, o, lse, dO], { scale, causal, window, alibi }, be) => {
  const { B, H, Hkv, T, S, D, group, shift } = packedDims(qkv!, 'attentionQKVBackward');
  for (const [name, t, shape] of [['o', o!, [B, T, H, D]], ['dO', dO!, [B, T, H, D]], ['lse', lse!, [B, H, T]]] as const) {
    if (t.shape.join(',') !== shape.join(',')) throw new Error(`attentionQKVBackward: ${name} has shape [${t.shape}], expected [${shape}]`);
  }
  const X = f(qkv!, 'attentionQKVBackward'); // (B, T, H, 3D)
  const dqkv = out(qkv!.shape, qkv!.dtype, be);
  const G = f(dqkv, 'attentionQKVBackward'); // (B, T, H, 3D): every element written (q, k, v parts of each head)
  const slopes = slopesFor(H, alibi);
  parallelFor('attentionBackwardBshd', {
    Q: X, K: X, V: X, O: f(o!, 'attentionQKVBackward'), L: shareable(f(lse!, 'attentionQKVBackward')), DO: f(dO!, 'attentionQKVBackward'),
    DQ: G, DK: G, DV: G, slopes: slopes && shareable(slopes), H, Hkv, T, S, D, group, shift, scale, causal, window, packed: true,
  }, B * Hkv, grain(T * group, S, D));
  releaseShareable();
  return [dqkv];
});
