// The model's own configuration, resolved from a GPT-NeoX-style config (snake_case keys) and the
// tokenizer's vocabulary size. Everything the network needs and nothing it doesn't.

import type { InitMethod } from '../../nn/init.js';
import type { NormKind } from '../../nn/layers.js';
import type { ActivationKind } from '../../tensor/kernels.js';

export type PosEmb = 'learned' | 'rotary' | 'sinusoidal' | 'alibi' | 'none';

export interface GPTNeoXConfig {
  vocabSize: number; // padded (make_vocab_size_divisible_by)
  hiddenSize: number; // C
  numLayers: number; // L
  numHeads: number; // H
  numKvHeads: number; // Hkv (GQA/MQA when < H)
  ffnSize: number; // MLP inner width F (per half when gated)
  gated: boolean; // SwiGLU/GeGLU: the first linear outputs [up ‖ gate] = 2F
  activation: ActivationKind;
  maxPositions: number;
  posEmb: PosEmb;
  rotaryPct: number;
  rotaryBase: number;
  norm: NormKind;
  normEps: number;
  normBias: boolean;
  parallelResidual: boolean; // gpt_j_residual
  gptJTied: boolean; // one norm feeds both attention and MLP
  tiedEmbeddings: boolean; // !no_weight_tying
  attnBias: boolean;
  mlpBias: boolean;
  hiddenDropout: number;
  attentionDropout: number;
  slidingWindow: number; // 0 = full causal attention
  initMethod: InitMethod;
  outputInitMethod: InitMethod;
  initStd: number;
  seed: number;
}

/** The subset of GPT-NeoX config keys the model reads (names as in GPT-NeoX). */
export interface NeoXModelKeys {
  hidden_size: number;
  num_layers: number;
  num_attention_heads: number;
  num_kv_heads?: number | null;
  intermediate_size?: number | null;
  max_position_embeddings?: number | null;
  seq_length: number;
  pos_emb: string;
  rotary_pct: number;
  rotary_emb_base: number;
  norm: string;
  layernorm_epsilon: number;
  rms_norm_epsilon: number;
  scalenorm_epsilon: number;
  use_bias_in_norms?: boolean;
  activation: string;
  bias_gelu_fusion?: boolean;
  gpt_j_residual: boolean;
  gpt_j_tied?: boolean;
  no_weight_tying: boolean;
  use_bias_in_attn_linear?: boolean;
  use_bias_in_mlp?: boolean;
  hidden_dropout: number;
  attention_dropout: number;
  sliding_window_width?: number | null;
  mlp_multiple_of?: number;
  expansion_factor?: number | null;
  init_method: string;
  output_layer_init_method: string;
  init_method_std: number;
  seed: number;
}

export class ModelConfigError extends Error {
  override name = 'NeoxError';
}

const GATED: Record<string, ActivationKind> = { swiglu: 'silu', geglu: 'gelu' };
const PLAIN: Record<string, ActivationKind> = { gelu: 'gelu', relu: 'relu', silu: 'silu', swish: 'silu' };

/** Resolves the model configuration; unsupported choices fail here, naming the key. */
export function resolveModelConfig(c: NeoXModelKeys, vocabSize: number): GPTNeoXConfig {
  const H = c.num_attention_heads;
  const Hkv = c.num_kv_heads ?? H;
  const C = c.hidden_size;
  if (C % H !== 0) throw new ModelConfigError(`hidden_size (${C}) must be divisible by num_attention_heads (${H})`);
  if (H % Hkv !== 0) throw new ModelConfigError(`num_attention_heads (${H}) must be a multiple of num_kv_heads (${Hkv})`);
  const gatedAct = GATED[c.activation];
  let activation = gatedAct ?? PLAIN[c.activation];
  if (!activation) {
    throw new ModelConfigError(`activation '${c.activation}' is not supported; use one of gelu, relu, silu, swiglu, geglu`);
  }
  if (activation === 'gelu' && c.bias_gelu_fusion) activation = 'gelu_tanh'; // GPT-NeoX's fused bias-GELU is the tanh form
  const gated = gatedAct !== undefined;
  // GPT-NeoX sizes a gated MLP at 2/3 of intermediate_size (both halves), rounded up to mlp_multiple_of per half.
  const multiple = c.mlp_multiple_of ?? 1;
  const inter = c.intermediate_size ?? Math.round((c.expansion_factor ?? 4) * C);
  const ffnSize = gated ? Math.ceil(Math.floor(Math.floor((2 * inter) / 3) / 2) / multiple) * multiple : inter;
  const posEmb = c.pos_emb as PosEmb;
  if (!['learned', 'rotary', 'sinusoidal', 'alibi', 'none'].includes(posEmb)) {
    throw new ModelConfigError(`pos_emb '${c.pos_emb}' is not supported; use learned, rotary, sinusoidal, alibi or none`);
  }
  const rotaryDims = Math.floor((C / H) * c.rotary_pct);
  if (posEmb === 'rotary' && rotaryDims % 2 !== 0) {
    throw new ModelConfigError(`rotary_pct ${c.rotary_pct} × head dim ${C / H} gives ${rotaryDims} rotary dims; it must be even`);
  }
  const norm = c.norm as NormKind;
  if (!['layernorm', 'rmsnorm', 'scalenorm'].includes(norm)) throw new ModelConfigError(`norm '${c.norm}' is not supported`);
  if (c.attention_dropout > 0) {
    throw new ModelConfigError(`attention_dropout ${c.attention_dropout} is not supported yet (fused attention has no dropout); set it to 0`);
  }
  return {
    vocabSize,
    hiddenSize: C,
    numLayers: c.num_layers,
    numHeads: H,
    numKvHeads: Hkv,
    ffnSize,
    gated,
    activation,
    maxPositions: c.max_position_embeddings ?? c.seq_length,
    posEmb,
    rotaryPct: c.rotary_pct,
    rotaryBase: c.rotary_emb_base,
    norm,
    normEps: norm === 'rmsnorm' ? c.rms_norm_epsilon : norm === 'scalenorm' ? c.scalenorm_epsilon : c.layernorm_epsilon,
    normBias: c.use_bias_in_norms ?? true,
    parallelResidual: c.gpt_j_residual,
    gptJTied: c.gpt_j_tied ?? false,
    tiedEmbeddings: !c.no_weight_tying,
    attnBias: c.use_bias_in_attn_linear ?? true,
    mlpBias: c.use_bias_in_mlp ?? true,
    hiddenDropout: c.hidden_dropout,
    attentionDropout: c.attention_dropout,
    // GPT-NeoX passes window_size=(w, -1) to flash-attn, which keeps keys with pos_q − pos_k ≤ w:
    // w + 1 keys in our (Mistral-style, pos_q − pos_k < window) convention.
    slidingWindow: c.sliding_window_width ? c.sliding_window_width + 1 : 0,
    initMethod: c.init_method as InitMethod,
    outputInitMethod: c.output_layer_init_method as InitMethod,
    initStd: c.init_method_std,
    seed: c.seed,
  };
}
