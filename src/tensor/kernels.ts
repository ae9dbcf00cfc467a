// Every kernel, declared once by name with its attributes. Backends register implementations
// for these names (backends/*/kernels/), ops (src/ops/) are the typed front-ends, and each
// gradient is registered beside its op. Shapes use B batch, T time, H heads, D head dim,
// C channels, V vocabulary, R rows.

import type { DType } from './dtype.js';
import type { Tensor } from './tensor.js';

export type ActivationKind = 'gelu' | 'gelu_tanh' | 'relu' | 'silu';

/** Where attention's heads sit: 'bhsd' [B, H, T, D] (the default) or 'bshd' [B, T, H, D]. */
export type AttentionLayout = 'bhsd' | 'bshd';

export interface KernelAttrs {
  // --- creation and conversion
  /** () → [shape] filled with `value`. */
  fill: { shape: number[]; dtype: DType; value: number };
  /** x → x as `dtype`. */
  cast: { dtype: DType };

  // --- elementwise (b's shape equals a's, or is a suffix of it and broadcasts over leading dims)
  add: Record<string, never>;
  sub: Record<string, never>;
  mul: Record<string, never>;
  /** x → alpha · x */
  scale: { alpha: number };
  /** a += alpha · b, in place; no outputs. */
  addInPlace: { alpha: number };
  /** a *= alpha, in place; no outputs. */
  scaleInPlace: { alpha: number };

  // --- reductions
  /** x [..] → [] sum of all elements (f32 accumulate). */
  sum: Record<string, never>;
  /** x [R, C] → [C] column sums (bias gradients, broadcast gradients). */
  sumRows: Record<string, never>;
  /** x (one or many tensors) → [] Σ x² over every element of every input, in f32 (gradient norms). */
  sumSquares: Record<string, never>;

  // --- matmul
  /** a [.., M, K] (or [.., K, M] with transA), b [.., K, N] (or [.., N, K] with transB) → [.., M, N].
   *  b may be 2-D and shared across a's batch dims. */
  matmul: { transA: boolean; transB: boolean };
  /** x [.., K], w [N, K], bias? [N] → [.., N]  (y = x · wᵀ + b, nn.Linear). */
  linear: Record<string, never>;
  /**
   * x [.., K], w [N, K], bias? [N] → y = gelu_tanh(x · wᵀ + b) [.., N] and the pre-activation
   * x · wᵀ + b [.., N] (what the gradient reads): GPT-NeoX's bias_gelu_fusion, one cuBLASLt call
   * with the GELU_AUX(_BIAS) epilogue on CUDA.
   */
  linearGelu: Record<string, never>;

  // --- shape
  /** x → x permuted by `perm` (a copy). */
  permute: { perm: number[] };
  /** x → outputs split along `axis` into `sizes`. */
  split: { axis: number; sizes: number[] };
  /** xs → concatenation along `axis`. */
  concat: { axis: number };
  /** x → view with `shape` (no copy; backend-independent). */
  reshape: { shape: number[] };

  // --- embeddings
  /** ids [..] i32, w [V, C] → [.., C]. */
  embedding: Record<string, never>;
  /** ids [..] i32, dy [.., C] → dw [V, C]. */
  embeddingBackward: { vocab: number };

  // --- normalization (over the last dim, C)
  /** x [R, C], w [C], b [C] → y [R, C], mean [R] f32, rstd [R] f32. */
  layerNorm: { eps: number };
  /** dy, x, w, mean, rstd → dx, dw, db. */
  layerNormBackward: Record<string, never>;
  /** x [R, C], w [C] → y, rstd [R] f32. */
  rmsNorm: { eps: number };
  /** dy, x, w, rstd → dx, dw. */
  rmsNormBackward: Record<string, never>;
  /** x [R, C], g [1] → y = x / max(‖x‖, eps) · g, rnorm [R] f32 (1 / max(‖x‖, eps)). */
  scaleNorm: { eps: number };
  /** dy, x, g, rnorm → dx, dg. */
  scaleNormBackward: { eps: number };

  // --- activations
  /** x → act(x). */
  activation: { kind: ActivationKind };
  /** x, dy → dx. */
  activationBackward: { kind: ActivationKind };
  /** x [.., 2F] → act(x[.., F:]) · x[.., :F]  (GPT-NeoX gated MLP: [up ‖ gate]). */
  gatedActivation: { kind: ActivationKind };
  /** x, dy → dx. */
  gatedActivationBackward: { kind: ActivationKind };
  /** x → softmax over the last dim. */
  softmax: Record<string, never>;
  /** y, dy → dx. */
  softmaxBackward: Record<string, never>;

  // --- dropout (Philox 4x32-10 keyed by seed; element i uses counter offset + i)
  /** x → x · keep / (1 − p). Backward is the same kernel on dy with the same seed and offset. */
  dropout: { p: number; seed: number; offset: number };

  // --- positions and attention
  // `layout` (default 'bhsd') says where the heads sit: 'bhsd' q, o [B, H, T, D] and k, v [B, Hkv, S, D];
  // 'bshd' q, o [B, T, H, D] and k, v [B, S, Hkv, D] (the layout the QKV projection produces, so the
  // model needs no head permutations). lse is [B, H, T] in both.
  /** x [B, H, T, D] (bhsd) or [B, T, H, D] (bshd) → rotate-half rotary on the first `rotaryDims` dims;
   *  positions start at `offset` and run along T. `inverse` rotates by the negative angle (the gradient). */
  rotary: { rotaryDims: number; base: number; offset: number; inverse: boolean; layout?: AttentionLayout };
  /** q [B, H, T, D], k [B, Hkv, S, D], v [B, Hkv, S, D] → o [B, H, T, D], lse [B, H, T] f32 (bhsd; bshd:
   *  q, o [B, T, H, D], k, v [B, S, Hkv, D], lse [B, H, T]). Query t sits at absolute position `S − T + t`.
   *  `window` > 0 limits keys to the last `window` positions; `alibi` adds GPT-NeoX's ALiBi bias. */
  attention: { scale: number; causal: boolean; window: number; alibi: boolean; layout?: AttentionLayout };
  /** q, k, v, o, lse, dO → dq, dk, dv (each in its input's layout). */
  attentionBackward: { scale: number; causal: boolean; window: number; alibi: boolean; layout?: AttentionLayout };
  // Packed QKV (multi-head, H = Hkv): qkv [B, T, H, 3·D], each head's row [q ‖ k ‖ v], GPT-NeoX's
  // fused projection viewed per head. Equal to splitting it into q, k, v [B, T, H, D] (bshd) first.
  /** qkv → qkv with rotary (as `rotary`, bshd) on q and on k; v unchanged. */
  rotaryQKV: { rotaryDims: number; base: number; offset: number; inverse: boolean };
  /** qkv [B, T, H, 3D] → o [B, T, H, D], lse [B, H, T] f32: `attention` (bshd, T = S) of its q, k, v. */
  attentionQKV: { scale: number; causal: boolean; window: number; alibi: boolean };
  /** qkv, o, lse, dO → dqkv [B, T, H, 3D]: `attentionBackward`'s dq, dk, dv, packed. */
  attentionQKVBackward: { scale: number; causal: boolean; window: number; alibi: boolean };

  // --- loss
  /** logits [N, V], labels [N] i32 → loss [N] f32, lse [N] f32. Labels < 0 give loss 0. */
  crossEntropy: Record<string, never>;
  /** logits, labels, lse, dloss [N] → dlogits [N, V]. */
  crossEntropyBackward: Record<string, never>;

  // --- activation checkpointing (backend-independent; see engine.ts `checkpoint`)
  /** inputs → fn(inputs), run without recording; the gradient re-runs fn with recording. */
  checkpoint: { fn: (inputs: Tensor[]) => Tensor };

  // --- optimizer
  /**
   * In place on (param f32, grad f32, m f32, v f32[, paramLowp bf16/f16][, scale [] f32]): AdamW step; no
   * outputs. With `scaleInput`, the last input is a device factor multiplied into gradScale (the
   * clip factor, so the host never waits for the norm); a non-finite factor skips the update.
   */
  adamw: { lr: number; beta1: number; beta2: number; eps: number; weightDecay: number; step: number; gradScale: number; scaleInput?: boolean };
  /**
   * Σg² [] f32 → clip factor [] f32: norm = √Σg² · normScale; maxNorm > 0 and norm > maxNorm give
   * maxNorm / (norm + 1e-6) (torch's clip_grad_norm_), otherwise 1; a non-finite norm gives NaN.
   */
  clipFactor: { maxNorm: number; normScale: number };
  /**
   * adamw over many parameters at once: inputs (p, grad, m, v) × n [, scale [] f32 with
   * `scaleInput`], one weight decay; each quadruple updated exactly as adamw updates it.
   */
  adamwMulti: { lr: number; beta1: number; beta2: number; eps: number; weightDecay: number; step: number; gradScale: number; scaleInput?: boolean };
}

export type KernelName = keyof KernelAttrs;

export const KERNEL_NAMES = [
  'fill', 'cast', 'add', 'sub', 'mul', 'scale', 'addInPlace', 'scaleInPlace', 'sum', 'sumRows', 'sumSquares',
  'matmul', 'linear', 'permute', 'split', 'concat', 'reshape', 'embedding', 'embeddingBackward',
  'layerNorm', 'layerNormBackward', 'rmsNorm', 'rmsNormBackward', 'scaleNorm', 'scaleNormBackward',
  'activation', 'activationBackward', 'gatedActivation', 'gatedActivationBackward', 'softmax', 'softmaxBackward',
  'dropout', 'rotary', 'attention', 'attentionBackward', 'crossEntropy', 'crossEntropyBackward', 'checkpoint', 'adamw',
  'clipFactor', 'adamwMulti', 'linearGelu', 'rotaryQKV', 'attentionQKV', 'attentionQKVBackward',
] as const satisfies readonly KernelName[];

// A compile-time check that KERNEL_NAMES lists every declared kernel.
type Missing = Exclude<KernelName, (typeof KERNEL_NAMES)[number]>;
const _allListed: Missing extends never ? true : Missing = true;
void _allListed;
