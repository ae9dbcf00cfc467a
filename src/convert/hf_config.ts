// Hugging Face config.json ⇄ GPT-NeoX config keys, for GPTNeoXForCausalLM, LlamaForCausalLM and
// MistralForCausalLM.
//
// defines: ConvertError                        every conversion failure (name 'NeoxError')
//          HFModelSpec, readHFConfig            config.json (either form) → a checked, normalized spec
//          neoxModelKeys                        spec → the GPT-NeoX model keys for neox.yml
//          hfConfigJson, generationConfigJson   our model → config.json / generation_config.json
//          adapterFor, inferArchitecture        the HF adapter of a model_type or of a model
//          pythonJson                           JSON with sorted keys and indent 2, as transformers writes
//
// Reading. config.json comes in two forms and both are read:
//   transformers 4 (most published checkpoints): `rotary_pct`, `rotary_emb_base` (GPT-NeoX),
//     `rope_theta`, `rope_scaling: null` (Llama, Mistral), `torch_dtype`;
//   transformers 5: `rope_parameters: {rope_type, rope_theta, partial_rotary_factor}`, `dtype`.
// When both are present `rope_parameters` wins, as transformers 5 does. Absent keys take the HF
// class's default (GPT-NeoX rotary_pct 0.25, Mistral sliding_window 4096, ...), except the sizes
// (vocab, hidden, layers, heads, intermediate), which must be there. A key that changes the
// network and that NeoX.ts cannot express (rope scaling, head_dim ≠ hidden/heads, attention
// dropout, quantization, ...) is an error naming it; so is any key this file does not know.
// Keys every PretrainedConfig carries (generation defaults, labels, token ids, ...) are ignored.
//
// Writing. config.json is written in the transformers 4 form, which transformers 5 also reads
// (checked on the GPU host: tools/make_hf_fixtures.py load_checks), with `rotary_pct` always
// present (recent transformers assume 0.25 without it) and the tanh GELU as `gelu_new`.
//
// Sizes. Our gated MLP width is GPT-NeoX's: ceil(floor(floor(2·I/3)/2) / m) · m per half for
// intermediate_size I and mlp_multiple_of m. HF's intermediate_size is that width itself, so
// import writes intermediate_size 3·W and mlp_multiple_of 1, which gives exactly W. The padded
// vocabulary must equal HF's vocab_size whatever the tokenizer's size, so import sets
// make_vocab_size_divisible_by to vocab_size: any tokenizer with at most that many ids pads to it.
// Sliding window: HF Mistral's W keeps keys with pos_q − pos_k < W; GPT-NeoX's
// sliding_window_width w keeps w + 1 keys; so W ⇄ w = W − 1.

import type { GPTNeoXConfig } from '../models/gpt_neox/config.js';
import {
  activationFromHF, gptNeoXAdapter, hfActivation, type HFAdapter, type HFArchitecture,
} from '../models/gpt_neox/hf_adapter.js';
import { llamaAdapter } from '../models/llama/hf_adapter.js';
import { mistralAdapter } from '../models/mistral/hf_adapter.js';
import type { ActivationKind } from '../tensor/kernels.js';

export class ConvertError extends Error {
  override name = 'NeoxError';
}

export type HFDType = 'float32' | 'float16' | 'bfloat16';

const ADAPTERS: Record<HFArchitecture, HFAdapter> = { neox: gptNeoXAdapter, llama: llamaAdapter, mistral: mistralAdapter };

export function adapterFor(architecture: HFArchitecture): HFAdapter {
  return ADAPTERS[architecture];
}

/** The HF class a model fits: Mistral with a sliding window, Llama for RMSNorm + gated MLP, else GPT-NeoX. */
export function inferArchitecture(cfg: GPTNeoXConfig): HFArchitecture {
  if (cfg.norm === 'rmsnorm' && cfg.gated) return cfg.slidingWindow > 0 ? 'mistral' : 'llama';
  return 'neox';
}

/** A config.json, checked and normalized. */
export interface HFModelSpec {
  architecture: HFArchitecture;
  modelType: string;
  /** 'transformers5' when the rope settings came from `rope_parameters`. */
  form: 'transformers4' | 'transformers5';
  vocabSize: number;
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  /** HF intermediate_size: the MLP width (per half when gated). */
  intermediateSize: number;
  activation: ActivationKind;
  gated: boolean;
  norm: 'layernorm' | 'rmsnorm';
  normEps: number;
  rotaryPct: number;
  ropeTheta: number;
  maxPositions: number;
  parallelResidual: boolean;
  tied: boolean;
  attnBias: boolean;
  mlpBias: boolean;
  /** HF's window: keys with pos_q − pos_k < slidingWindow; 0 = full causal attention. */
  slidingWindow: number;
  hiddenDropout: number;
  initStd: number | null;
  /** `dtype` / `torch_dtype`, when given. */
  dtype: HFDType | null;
  bosTokenId: number | number[] | null;
  eosTokenId: number | number[] | null;
}

/** Keys every PretrainedConfig may carry; none changes the network. */
const GENERIC_KEYS = new Set(`
  _name_or_path _commit_hash _attn_implementation_autoset transformers_version architectures model_type
  torch_dtype dtype use_cache initializer_range bos_token_id eos_token_id pad_token_id sep_token_id
  decoder_start_token_id return_dict output_hidden_states output_attentions torchscript use_bfloat16
  tf_legacy_loss pruned_heads chunk_size_feed_forward is_encoder_decoder is_decoder
  cross_attention_hidden_size add_cross_attention tie_encoder_decoder max_length min_length do_sample
  early_stopping num_beams num_beam_groups diversity_penalty temperature top_k top_p typical_p
  repetition_penalty length_penalty no_repeat_ngram_size encoder_no_repeat_ngram_size bad_words_ids
  num_return_sequences output_scores return_dict_in_generate forced_bos_token_id forced_eos_token_id
  remove_invalid_values exponential_decay_length_penalty suppress_tokens begin_suppress_tokens
  finetuning_task id2label label2id num_labels tokenizer_class prefix task_specific_params problem_type
`.trim().split(/\s+/));

const SIZE_KEYS = ['vocab_size', 'hidden_size', 'num_hidden_layers', 'num_attention_heads', 'intermediate_size'];
const ROPE_KEYS = ['rope_scaling', 'rope_parameters'];

/** Per model_type: the keys read, and the HF class defaults for absent ones. */
const KNOWN: Record<string, { architecture: HFArchitecture; keys: string[]; defaults: Record<string, unknown> }> = {
  gpt_neox: {
    architecture: 'neox',
    keys: [...SIZE_KEYS, ...ROPE_KEYS, 'hidden_act', 'rotary_pct', 'rotary_emb_base', 'max_position_embeddings',
      'layer_norm_eps', 'use_parallel_residual', 'tie_word_embeddings', 'attention_bias', 'attention_dropout',
      'hidden_dropout', 'classifier_dropout'],
    defaults: { hidden_act: 'gelu', rotary_pct: 0.25, rotary_emb_base: 10000, max_position_embeddings: 2048,
      layer_norm_eps: 1e-5, use_parallel_residual: true, tie_word_embeddings: false, attention_bias: true,
      attention_dropout: 0, hidden_dropout: 0 },
  },
  llama: {
    architecture: 'llama',
    keys: [...SIZE_KEYS, ...ROPE_KEYS, 'hidden_act', 'num_key_value_heads', 'head_dim', 'rope_theta',
      'max_position_embeddings', 'rms_norm_eps', 'tie_word_embeddings', 'attention_bias', 'mlp_bias',
      'attention_dropout', 'pretraining_tp'],
    defaults: { hidden_act: 'silu', rope_theta: 10000, max_position_embeddings: 2048, rms_norm_eps: 1e-6,
      tie_word_embeddings: false, attention_bias: false, mlp_bias: false, attention_dropout: 0 },
  },
  mistral: {
    architecture: 'mistral',
    keys: [...SIZE_KEYS, ...ROPE_KEYS, 'hidden_act', 'num_key_value_heads', 'head_dim', 'rope_theta',
      'max_position_embeddings', 'rms_norm_eps', 'tie_word_embeddings', 'sliding_window', 'attention_dropout'],
    defaults: { hidden_act: 'silu', num_key_value_heads: 8, rope_theta: 10000, max_position_embeddings: 4096 * 32,
      rms_norm_eps: 1e-6, tie_word_embeddings: false, sliding_window: 4096, attention_dropout: 0 },
  },
};

/** Reads a parsed config.json; `where` names it in errors. Throws ConvertError. */
export function readHFConfig(json: unknown, where: string): HFModelSpec {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new ConvertError(`${where}: not a JSON object`);
  const c = json as Record<string, unknown>;
  const fail = (msg: string): never => {
    throw new ConvertError(`${where}: ${msg}`);
  };
  const modelType = c['model_type'];
  if (typeof modelType !== 'string') fail('no `model_type`');
  const known = KNOWN[modelType as string];
  if (!known) fail(`model_type ${JSON.stringify(modelType)} is not supported; NeoX.ts converts gpt_neox, llama and mistral`);
  const adapter = ADAPTERS[known!.architecture];
  const archs = c['architectures'];
  if (Array.isArray(archs) && archs.length > 0 && !archs.includes(adapter.hfClass)) {
    fail(`architectures ${JSON.stringify(archs)}: only ${adapter.hfClass} (the causal LM) converts`);
  }
  const unknown = Object.keys(c).filter((k) => !GENERIC_KEYS.has(k) && !known!.keys.includes(k));
  if (unknown.length) {
    fail(`unsupported key${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => `\`${k}\``).join(', ')} for model_type ${modelType}`);
  }

  const get = (k: string): unknown => (c[k] === undefined ? known!.defaults[k] : c[k]);
  const int = (k: string, min = 1): number => {
    const v = get(k);
    if (v === undefined) fail(`no \`${k}\``);
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min) fail(`\`${k}\` is ${JSON.stringify(v)}, not an integer ≥ ${min}`);
    return v as number;
  };
  const num = (k: string): number => {
    const v = get(k);
    if (typeof v !== 'number' || !Number.isFinite(v)) fail(`\`${k}\` is ${JSON.stringify(v)}, not a number`);
    return v as number;
  };
  const bool = (k: string): boolean => {
    const v = get(k);
    if (typeof v !== 'boolean') fail(`\`${k}\` is ${JSON.stringify(v)}, not true or false`);
    return v as boolean;
  };

  const hiddenSize = int('hidden_size');
  const numHeads = int('num_attention_heads');
  if (hiddenSize % numHeads !== 0) fail(`hidden_size ${hiddenSize} is not divisible by num_attention_heads ${numHeads}`);
  const headDim = c['head_dim'];
  if (headDim !== undefined && headDim !== null && headDim !== hiddenSize / numHeads) {
    fail(`\`head_dim\` ${JSON.stringify(headDim)} differs from hidden_size / num_attention_heads = ${hiddenSize / numHeads}; NeoX.ts heads are hidden_size / heads wide`);
  }
  const isNeoX = known!.architecture === 'neox';
  const numKvHeads = isNeoX ? numHeads : (get('num_key_value_heads') === null || get('num_key_value_heads') === undefined ? numHeads : int('num_key_value_heads'));
  if (numHeads % numKvHeads !== 0) fail(`num_attention_heads ${numHeads} is not a multiple of num_key_value_heads ${numKvHeads}`);

  // Rotary: rope_parameters (transformers 5) first, then the transformers 4 keys, then defaults.
  const scaling = c['rope_scaling'];
  if (scaling !== undefined && scaling !== null) {
    fail(`\`rope_scaling\` ${JSON.stringify(scaling)} is not supported (NeoX.ts rotary embeddings are unscaled)`);
  }
  const rp = c['rope_parameters'];
  let form: HFModelSpec['form'] = 'transformers4';
  let theta: unknown = isNeoX ? get('rotary_emb_base') : get('rope_theta');
  let pct: unknown = isNeoX ? get('rotary_pct') : 1;
  if (rp !== undefined && rp !== null) {
    if (typeof rp !== 'object' || Array.isArray(rp)) fail('`rope_parameters` is not an object');
    form = 'transformers5';
    const r = rp as Record<string, unknown>;
    const extra = Object.keys(r).filter((k) => !['rope_type', 'rope_theta', 'partial_rotary_factor'].includes(k));
    if (extra.length) fail(`unsupported key${extra.length > 1 ? 's' : ''} ${extra.map((k) => `\`rope_parameters.${k}\``).join(', ')} (RoPE scaling)`);
    if (r['rope_type'] !== undefined && r['rope_type'] !== 'default') {
      fail(`\`rope_parameters.rope_type\` ${JSON.stringify(r['rope_type'])} is not supported (only "default": NeoX.ts rotary embeddings are unscaled)`);
    }
    if (r['rope_theta'] !== undefined) theta = r['rope_theta'];
    if (r['partial_rotary_factor'] !== undefined) pct = r['partial_rotary_factor'];
  }
  if (typeof theta !== 'number' || !Number.isInteger(theta) || theta < 1) {
    fail(`rope theta ${JSON.stringify(theta)} is not a positive integer (NeoX.ts's rotary_emb_base is an integer)`);
  }
  if (typeof pct !== 'number' || !(pct > 0 && pct <= 1)) fail(`partial rotary factor ${JSON.stringify(pct)} is not in (0, 1]`);
  if (!isNeoX && pct !== 1) fail(`\`rope_parameters.partial_rotary_factor\` ${pct}: ${adapter.hfClass} rotates whole heads`);

  const hiddenAct = get('hidden_act');
  const activation = typeof hiddenAct === 'string' ? activationFromHF(hiddenAct) : undefined;
  if (!activation) fail(`\`hidden_act\` ${JSON.stringify(hiddenAct)} is not supported (gelu, gelu_new, gelu_pytorch_tanh, gelu_fast, relu, silu)`);
  const gated = !isNeoX;
  if (gated && activation !== 'silu' && activation !== 'gelu' && activation !== 'gelu_tanh') {
    fail(`\`hidden_act\` ${hiddenAct} in a gated MLP is not supported (silu = SwiGLU, gelu = GeGLU)`);
  }
  if (num('attention_dropout') !== 0) fail(`\`attention_dropout\` ${get('attention_dropout')} is not supported (NeoX.ts attention has no dropout)`);

  let slidingWindow = 0;
  if (known!.architecture === 'mistral') {
    const w = get('sliding_window');
    if (w !== null) {
      slidingWindow = int('sliding_window');
      if (slidingWindow < 2) fail('`sliding_window` 1 (each token sees only itself) is not supported');
    }
  }
  const hiddenDropout = isNeoX ? num('hidden_dropout') : 0;
  if (!(hiddenDropout >= 0 && hiddenDropout < 1)) fail(`\`hidden_dropout\` ${hiddenDropout} is not in [0, 1)`);

  const dt = c['dtype'] ?? c['torch_dtype'] ?? null;
  const dtype: HFDType | null = dt === null ? null
    : dt === 'float32' || dt === 'float16' || dt === 'bfloat16' ? dt : dt === 'float64' ? 'float32' : fail(`dtype ${JSON.stringify(dt)} is not supported`);
  const tokenId = (k: string): number | number[] | null => {
    const v = c[k];
    if (typeof v === 'number' && Number.isInteger(v)) return v;
    if (Array.isArray(v) && v.every((x) => Number.isInteger(x))) return v as number[];
    return null;
  };
  const initStd = typeof c['initializer_range'] === 'number' ? c['initializer_range'] as number : null;

  return {
    architecture: known!.architecture,
    modelType: modelType as string,
    form,
    vocabSize: int('vocab_size'),
    hiddenSize,
    numLayers: int('num_hidden_layers'),
    numHeads,
    numKvHeads,
    intermediateSize: int('intermediate_size'),
    activation: activation!,
    gated,
    norm: isNeoX ? 'layernorm' : 'rmsnorm',
    normEps: num(isNeoX ? 'layer_norm_eps' : 'rms_norm_eps'),
    rotaryPct: pct as number,
    ropeTheta: theta as number,
    maxPositions: int('max_position_embeddings'),
    parallelResidual: isNeoX ? bool('use_parallel_residual') : false,
    tied: bool('tie_word_embeddings'),
    attnBias: known!.architecture === 'mistral' ? false : bool('attention_bias'),
    mlpBias: isNeoX ? true : known!.architecture === 'llama' ? bool('mlp_bias') : false,
    slidingWindow,
    hiddenDropout,
    initStd,
    dtype,
    bosTokenId: tokenId('bos_token_id'),
    eosTokenId: tokenId('eos_token_id'),
  };
}

/** GPT-NeoX model keys (neox.yml) that resolve to exactly this HF model. */
export function neoxModelKeys(s: HFModelSpec): Record<string, unknown> {
  const keys: Record<string, unknown> = {
    num_layers: s.numLayers,
    hidden_size: s.hiddenSize,
    num_attention_heads: s.numHeads,
    num_kv_heads: s.numKvHeads,
    // Gated: GPT-NeoX takes 2/3 of intermediate_size over both halves; 3·W with multiple 1 gives W.
    intermediate_size: s.gated ? 3 * s.intermediateSize : s.intermediateSize,
    mlp_multiple_of: 1,
    seq_length: Math.min(s.maxPositions, 2048),
    max_position_embeddings: s.maxPositions,
    pos_emb: 'rotary',
    rotary_pct: s.rotaryPct,
    rotary_emb_base: s.ropeTheta,
    norm: s.norm,
    [s.norm === 'rmsnorm' ? 'rms_norm_epsilon' : 'layernorm_epsilon']: s.normEps,
    activation: s.gated ? (s.activation === 'silu' ? 'swiglu' : 'geglu') : s.activation === 'gelu_tanh' ? 'gelu' : s.activation,
    bias_gelu_fusion: s.activation === 'gelu_tanh',
    gpt_j_residual: s.parallelResidual,
    no_weight_tying: !s.tied,
    use_bias_in_attn_linear: s.attnBias,
    use_bias_in_mlp: s.mlpBias,
    use_bias_in_norms: s.norm === 'layernorm',
  };
  if (s.slidingWindow > 0) keys['sliding_window_width'] = s.slidingWindow - 1;
  keys['hidden_dropout'] = s.hiddenDropout;
  keys['attention_dropout'] = 0;
  keys['make_vocab_size_divisible_by'] = s.vocabSize;
  if (s.initStd !== null && s.initStd >= 0) keys['init_method_std'] = s.initStd;
  return keys;
}

export interface HFConfigExtras {
  dtype: HFDType;
  maxPositions: number;
  initStd: number;
  bosTokenId: number | number[] | null;
  eosTokenId: number | number[] | null;
}

/** config.json for `cfg` as `adapter`'s class (transformers 4 form, which transformers 5 reads too). */
export function hfConfigJson(cfg: GPTNeoXConfig, adapter: HFAdapter, x: HFConfigExtras): Record<string, unknown> {
  const common: Record<string, unknown> = {
    architectures: [adapter.hfClass],
    model_type: adapter.modelType,
    vocab_size: cfg.vocabSize,
    hidden_size: cfg.hiddenSize,
    num_hidden_layers: cfg.numLayers,
    num_attention_heads: cfg.numHeads,
    intermediate_size: cfg.ffnSize,
    hidden_act: hfActivation(cfg.activation),
    max_position_embeddings: x.maxPositions,
    tie_word_embeddings: cfg.tiedEmbeddings,
    attention_dropout: 0.0,
    initializer_range: x.initStd,
    use_cache: true,
    bos_token_id: x.bosTokenId,
    eos_token_id: x.eosTokenId,
    torch_dtype: x.dtype,
    rope_scaling: null,
  };
  if (adapter.architecture === 'neox') {
    return {
      ...common,
      rotary_pct: cfg.rotaryPct,
      rotary_emb_base: cfg.rotaryBase,
      layer_norm_eps: cfg.normEps,
      use_parallel_residual: cfg.parallelResidual,
      attention_bias: cfg.attnBias,
      hidden_dropout: cfg.hiddenDropout,
    };
  }
  const llamaLike: Record<string, unknown> = {
    ...common,
    num_key_value_heads: cfg.numKvHeads,
    head_dim: cfg.hiddenSize / cfg.numHeads,
    rms_norm_eps: cfg.normEps,
    rope_theta: cfg.rotaryBase,
  };
  if (adapter.architecture === 'llama') {
    return { ...llamaLike, attention_bias: cfg.attnBias, mlp_bias: cfg.mlpBias, pretraining_tp: 1 };
  }
  return { ...llamaLike, sliding_window: cfg.slidingWindow > 0 ? cfg.slidingWindow : null };
}

/** generation_config.json as save_pretrained writes it from a model config. */
export function generationConfigJson(bos: number | number[] | null, eos: number | number[] | null): Record<string, unknown> {
  const g: Record<string, unknown> = { _from_model_config: true };
  if (bos !== null) g['bos_token_id'] = bos;
  if (eos !== null) g['eos_token_id'] = eos;
  return g;
}

/** JSON with keys sorted and indent 2 (transformers' to_json_string), plus a final newline. */
export function pythonJson(value: unknown): string {
  const sort = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(sort);
    if (v !== null && typeof v === 'object') {
      return Object.fromEntries(Object.keys(v).sort().map((k) => [k, sort((v as Record<string, unknown>)[k])]));
    }
    return v;
  };
  return `${JSON.stringify(sort(value), null, 2)}\n`;
}
