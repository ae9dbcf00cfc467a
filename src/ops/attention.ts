// Ops: positions and attention, with their gradients.
//   rotary(x, rotaryDims, base, offset, { layout })  rotate-half rotary embedding (GPT-NeoX / HF), partial via rotaryDims
//   attention(q, k, v, opts)              scaled dot-product attention: causal, sliding window, ALiBi, GQA/MQA
//   rotaryQKV(qkv, …), attentionQKV(qkv, opts)  the same on the packed QKV projection [B, T, H, 3D] (MHA):
//                                         no split or concat, q/k/v read in place (see "Packed QKV" below)
//   rotaryTable(T, rotaryDims, base, offset)  the cos/sin table every backend uses (angles as GPT-NeoX/HF round them)
//   alibiSlopes(H)                        GPT-NeoX's ALiBi slopes (incl. the non-power-of-2 rule)
//   sinusoidalPositions(T, C)             GPT-NeoX's SinusoidalPositionalEmbedding table, [sin ‖ cos]
//
// Layouts (opts.layout, default 'bhsd'): 'bhsd' q, o [B, H, T, D] and k, v [B, Hkv, S, D]; 'bshd'
// q, o [B, T, H, D] and k, v [B, S, Hkv, D], the layout the fused QKV projection produces, so the model
// feeds attention without permuting heads (the kernels read either layout; lse is [B, H, T] in both).
// Rotary's positions run along T in both. Gradients come back in their input's layout.
//
// Conventions (checked against EleutherAI/gpt-neox megatron/model/{positional_embeddings,transformer}.py
// and HF transformers gpt_neox / llama / mistral):
// - Rotary: on the first rotaryDims dims, x1 = first half, x2 = second half, out = x·cos + cat(−x2, x1)·sin,
//   inv_freq = 1 / base^(arange(0, d, 2) / d) with d = rotaryDims, position = offset + t.
//   Both references build the angles in f32 (f32 inv_freq, f32 positions, f32 product) and take cos/sin
//   of that f32 angle; we round inv_freq and the angle to f32 the same way, so an f32 model sees the
//   same angles as GPT-NeoX/HF (at position 2048 an f64 angle would differ by up to ~1e-4).
// - Query t sits at absolute position S − T + t (KV cache). Key s is visible when
//   (!causal || s ≤ pos_q) and (window = 0 || pos_q − s < window)  (HF Mistral: kv_idx > q_idx − window).
// - GQA/MQA: query head h reads kv head floor(h / (H / Hkv)) (HF repeat_kv, GPT-NeoX repeat_interleave).
// - ALiBi: score += −slope_h · |pos_q − pos_k| (causal: GPT-NeoX's −tril(i − j) bias; non-causal:
//   flash-attn's alibi_slopes convention), slopes rounded to f32 as GPT-NeoX's slopes buffer is.

import { noGrad, registerGradient, runKernel } from '../tensor/engine.js';
import type { AttentionLayout, KernelAttrs } from '../tensor/kernels.js';
import { headsFirst } from '../tensor/layout.js';
import type { Tensor } from '../tensor/tensor.js';

// ---------------------------------------------------------------------------------------------
// Position tables (host-side; shared by every backend's kernels)

/**
 * cos/sin of the rotary angles for positions offset … offset + T − 1, each [T, rotaryDims / 2]
 * (row t, column i: frequency i). The angle is computed in f32 exactly as GPT-NeoX and HF do
 * (fround(pos · fround(1 / fround(base^fround(2i / d))))); cos/sin of it are kept in f64.
 */
export function rotaryTable(T: number, rotaryDims: number, base: number, offset = 0): { cos: Float64Array; sin: Float64Array } {
  const half = rotaryDims / 2;
  const invFreq = new Float64Array(half);
  const b = Math.fround(base);
  for (let i = 0; i < half; i++) invFreq[i] = Math.fround(1 / Math.fround(b ** Math.fround((2 * i) / rotaryDims)));
  const cos = new Float64Array(T * half); // (T, half)
  const sin = new Float64Array(T * half); // (T, half)
  for (let t = 0; t < T; t++) {
    const pos = Math.fround(offset + t);
    for (let i = 0; i < half; i++) {
      const angle = Math.fround(pos * invFreq[i]!);
      cos[t * half + i] = Math.cos(angle);
      sin[t * half + i] = Math.sin(angle);
    }
  }
  return { cos, sin };
}

/**
 * ALiBi slopes for H heads, as GPT-NeoX's AliBi._get_slopes: for a power of two n, start · ratio^i with
 * start = ratio = 2^(−2^(−(log2 n − 3))) (= 2^(−8 (i + 1) / n)); otherwise the slopes of the closest
 * smaller power of two p, then every other slope of 2p, up to H. f64 values (GPT-NeoX keeps them as f32).
 */
export function alibiSlopes(H: number): Float64Array {
  if (!Number.isInteger(H) || H < 1) throw new Error(`alibiSlopes: head count must be a positive integer, got ${H}`);
  const powerOf2 = (n: number): number[] => {
    const start = 2 ** -(2 ** -(Math.log2(n) - 3));
    return Array.from({ length: n }, (_, i) => start * start ** i);
  };
  const slopes = (n: number): number[] => {
    if (Number.isInteger(Math.log2(n))) return powerOf2(n);
    const p = 2 ** Math.floor(Math.log2(n));
    return [...powerOf2(p), ...slopes(2 * p).filter((_, i) => i % 2 === 0).slice(0, n - p)];
  };
  return Float64Array.from(slopes(H));
}

/**
 * GPT-NeoX's SinusoidalPositionalEmbedding for positions 0 … T − 1: [T, C] with row t =
 * [sin(t · inv_freq) ‖ cos(t · inv_freq)], inv_freq = 1 / base^(arange(0, C, 2) / C), angles in f32.
 */
export function sinusoidalPositions(T: number, C: number, base = 10000): Float32Array {
  if (!Number.isInteger(C) || C <= 0 || C % 2 !== 0) throw new Error(`sinusoidalPositions: channels must be a positive even number, got ${C}`);
  const half = C / 2;
  const { cos, sin } = rotaryTable(T, C, base, 0);
  const out = new Float32Array(T * C); // (T, C)
  for (let t = 0; t < T; t++) {
    for (let i = 0; i < half; i++) {
      out[t * C + i] = sin[t * half + i]!;
      out[t * C + half + i] = cos[t * half + i]!;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Rotary

export interface RotaryOptions {
  /** Where the heads sit: 'bhsd' x [B, H, T, D] (default) or 'bshd' x [B, T, H, D]. */
  layout?: AttentionLayout;
}

/**
 * x [B, H, T, D] (or [B, T, H, D] with layout 'bshd') → x with rotate-half rotary applied to the first
 * `rotaryDims` dims at positions offset + t.
 */
export function rotary(x: Tensor, rotaryDims: number, base: number, offset = 0, opts: RotaryOptions = {}): Tensor {
  const layout = checkLayout(opts.layout, 'rotary');
  if (x.ndim !== 4) throw new Error(`rotary: expected x ${layout === 'bhsd' ? '[B, H, T, D]' : '[B, T, H, D]'}, got [${x.shape}]`);
  const D = x.dim(-1);
  if (!Number.isInteger(rotaryDims) || rotaryDims < 0 || rotaryDims > D || rotaryDims % 2 !== 0) {
    throw new Error(`rotary: rotaryDims must be an even integer in [0, ${D}], got ${rotaryDims}`);
  }
  if (!(base > 0)) throw new Error(`rotary: base must be positive, got ${base}`);
  if (!Number.isInteger(offset) || offset < 0) throw new Error(`rotary: offset must be a non-negative integer, got ${offset}`);
  return runKernel('rotary', [x], { rotaryDims, base, offset, inverse: false, layout })[0]!;
}
// The rotation is orthogonal, so its gradient is the rotation by the opposite angle (same layout).
registerGradient('rotary', ([dy], _x, _y, attrs) => [dy && runKernel('rotary', [dy], { ...attrs, inverse: !attrs.inverse })[0]!], {});

function checkLayout(layout: AttentionLayout | undefined, op: string): AttentionLayout {
  if (layout === undefined) return 'bhsd';
  if (layout !== 'bhsd' && layout !== 'bshd') throw new Error(`${op}: layout must be 'bhsd' or 'bshd', got ${JSON.stringify(layout)}`);
  return layout;
}

// ---------------------------------------------------------------------------------------------
// Attention

export interface AttentionOptions {
  /** Multiplies q·k; default 1/√D. */
  scale?: number;
  /** Mask keys after the query's position; default true. */
  causal?: boolean;
  /** > 0: keep only keys with pos_q − pos_k < window (Mistral's sliding window); default 0 (none). */
  window?: number;
  /** Add GPT-NeoX's ALiBi bias; default false. */
  alibi?: boolean;
  /** Where the heads sit: 'bhsd' (default) q, o [B, H, T, D], k, v [B, Hkv, S, D]; 'bshd' q, o [B, T, H, D], k, v [B, S, Hkv, D]. */
  layout?: AttentionLayout;
}

/**
 * q [B, H, T, D], k [B, Hkv, S, D], v [B, Hkv, S, D] → o [B, H, T, D] (layout 'bshd': q [B, T, H, D],
 * k, v [B, S, Hkv, D] → o [B, T, H, D]). H must be a multiple of Hkv; query t sits at absolute position
 * S − T + t. Rows that see no key (only possible when S < T) give zeros.
 */
export function attention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}): Tensor {
  const layout = checkLayout(opts.layout, 'attention');
  const bshd = layout === 'bshd';
  if (q.ndim !== 4 || k.ndim !== 4 || v.ndim !== 4) {
    const want = bshd ? 'q [B, T, H, D], k and v [B, S, Hkv, D]' : 'q [B, H, T, D], k and v [B, Hkv, S, D]';
    throw new Error(`attention: expected ${want}, got [${q.shape}], [${k.shape}], [${v.shape}]`);
  }
  const [B, H, , D] = headsFirst(q.shape, layout);
  const [Bk, Hkv, , Dk] = headsFirst(k.shape, layout);
  if (k.shape.join(',') !== v.shape.join(',')) throw new Error(`attention: k [${k.shape}] and v [${v.shape}] differ`);
  if (Bk !== B || Dk !== D) throw new Error(`attention: q [${q.shape}] and k [${k.shape}] disagree on batch or head dim`);
  if (Hkv < 1 || H % Hkv !== 0) throw new Error(`attention: ${H} query heads are not a multiple of ${Hkv} kv heads`);
  if (q.dtype !== k.dtype || q.dtype !== v.dtype) throw new Error(`attention: dtypes differ (${q.dtype}, ${k.dtype}, ${v.dtype})`);
  const window = opts.window ?? 0;
  if (!Number.isInteger(window) || window < 0) throw new Error(`attention: window must be a non-negative integer, got ${window}`);
  const attrs: KernelAttrs['attention'] = {
    scale: opts.scale ?? 1 / Math.sqrt(D),
    causal: opts.causal ?? true,
    window,
    alibi: opts.alibi ?? false,
    layout,
  };
  return runKernel('attention', [q, k, v], attrs)[0]!; // outputs: o, lse (kept on the tape for backward)
}

// The backward kernel takes the same attrs, layout included: dq, dk, dv come back in q, k, v's layout.
registerGradient('attention', ([dO], [q, k, v], [o, lse], attrs) => {
  if (!dO) return [null, null, null]; // lse is internal: nothing but o carries a gradient
  const [dq, dk, dv] = runKernel('attentionBackward', [q!, k!, v!, o!, lse!, dO], attrs);
  return [dq!, dk!, dv!];
}, { inputs: [0, 1, 2], outputs: [0, 1] });

// ---------------------------------------------------------------------------------------------
// Packed QKV
//
// qkv [B, T, H, 3·D]: the fused projection's output viewed per head, each row [q ‖ k ‖ v] (GPT-NeoX's
// layout; multi-head only, H = Hkv). rotaryQKV rotates q and k in one pass; attentionQKV attends
// with q, k, v read in place and its gradient comes back as one dqkv. In training this replaces
// split → rotary(q), rotary(k) → attention → (backward) concat. packedReference below is exactly that
// composition, which CUDA falls back to where cuDNN does not apply; the CPU's own kernels
// (backends/cpu) give the same bits without the copies. tests/attention.test.ts checks both.

/** qkv [B, T, H, 3D] → qkv with rotate-half rotary on the first `rotaryDims` dims of q and of k. */
export function rotaryQKV(qkv: Tensor, rotaryDims: number, base: number, offset = 0): Tensor {
  const D = packedHeadDim(qkv, 'rotaryQKV');
  if (!Number.isInteger(rotaryDims) || rotaryDims < 0 || rotaryDims > D || rotaryDims % 2 !== 0) {
    throw new Error(`rotaryQKV: rotaryDims must be an even integer in [0, ${D}], got ${rotaryDims}`);
  }
  if (!(base > 0)) throw new Error(`rotaryQKV: base must be positive, got ${base}`);
  if (!Number.isInteger(offset) || offset < 0) throw new Error(`rotaryQKV: offset must be a non-negative integer, got ${offset}`);
  return runKernel('rotaryQKV', [qkv], { rotaryDims, base, offset, inverse: false })[0]!;
}
registerGradient('rotaryQKV', ([dy], _x, _y, attrs) => [dy && runKernel('rotaryQKV', [dy], { ...attrs, inverse: !attrs.inverse })[0]!], {});

/** qkv [B, T, H, 3D] → o [B, T, H, D]: attention(q, k, v, { layout: 'bshd', ...opts }) of the packed heads. */
export function attentionQKV(qkv: Tensor, opts: Omit<AttentionOptions, 'layout'> = {}): Tensor {
  const D = packedHeadDim(qkv, 'attentionQKV');
  const window = opts.window ?? 0;
  if (!Number.isInteger(window) || window < 0) throw new Error(`attentionQKV: window must be a non-negative integer, got ${window}`);
  const attrs: KernelAttrs['attentionQKV'] = { scale: opts.scale ?? 1 / Math.sqrt(D), causal: opts.causal ?? true, window, alibi: opts.alibi ?? false };
  return runKernel('attentionQKV', [qkv], attrs)[0]!; // outputs: o, lse (kept on the tape for backward)
}
registerGradient('attentionQKV', ([dO], [qkv], [o, lse], attrs) => {
  if (!dO) return [null];
  return [runKernel('attentionQKVBackward', [qkv!, o!, lse!, dO], attrs)[0]!];
}, { inputs: [0], outputs: [0, 1] });

function packedHeadDim(qkv: Tensor, op: string): number {
  if (qkv.ndim !== 4 || qkv.dim(3) % 3 !== 0) throw new Error(`${op}: expected qkv [B, T, H, 3·D], got [${qkv.shape}]`);
  return qkv.dim(3) / 3;
}

/**
 * The packed kernels as the composition of the separate ones (split, rotary / attention(Backward),
 * concat), intermediates freed: every backend's reference, and the CUDA kernels' fallback for the
 * cases their fast path does not take.
 */
export const packedReference = {
  rotaryQKV(qkv: Tensor, attrs: KernelAttrs['rotaryQKV']): Tensor {
    return noGrad(() => {
      const [q, k, v] = unpack(qkv);
      const rq = runKernel('rotary', [q], { ...attrs, layout: 'bshd' })[0]!;
      const rk = runKernel('rotary', [k], { ...attrs, layout: 'bshd' })[0]!;
      const y = runKernel('concat', [rq, rk, v], { axis: 3 })[0]!;
      for (const t of [q, k, v, rq, rk]) t.dispose();
      return y;
    });
  },
  attentionQKV(qkv: Tensor, attrs: KernelAttrs['attentionQKV']): Tensor[] {
    return noGrad(() => {
      const [q, k, v] = unpack(qkv);
      const out = runKernel('attention', [q, k, v], { ...attrs, layout: 'bshd' });
      for (const t of [q, k, v]) t.dispose();
      return out;
    });
  },
  attentionQKVBackward(qkv: Tensor, o: Tensor, lse: Tensor, dO: Tensor, attrs: KernelAttrs['attentionQKVBackward']): Tensor {
    return noGrad(() => {
      const [q, k, v] = unpack(qkv);
      const grads = runKernel('attentionBackward', [q, k, v, o, lse, dO], { ...attrs, layout: 'bshd' });
      const dqkv = runKernel('concat', grads, { axis: 3 })[0]!;
      for (const t of [q, k, v, ...grads]) t.dispose();
      return dqkv;
    });
  },
};

function unpack(qkv: Tensor): Tensor[] {
  const D = packedHeadDim(qkv, 'packed QKV');
  return runKernel('split', [qkv], { axis: 3, sizes: [D, D, D] });
}
