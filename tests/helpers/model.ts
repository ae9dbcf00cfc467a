// For model tests: a small GPT-NeoX's model keys (override any of them), and decoding that keeps
// every step's logits.
import { type DecodeOptions, decodeSteps } from '../../src/infer/generate.js';
import type { GPTNeoX, NeoXModelKeys } from '../../src/models/gpt_neox/index.js';

export function modelKeys(over: Partial<NeoXModelKeys> = {}): NeoXModelKeys {
  return {
    hidden_size: 16, num_layers: 3, num_attention_heads: 4, num_kv_heads: null, intermediate_size: null,
    max_position_embeddings: 16, seq_length: 8, pos_emb: 'rotary', rotary_pct: 0.5, rotary_emb_base: 10000,
    norm: 'layernorm', layernorm_epsilon: 1e-5, rms_norm_epsilon: 1e-6, scalenorm_epsilon: 1e-5,
    activation: 'gelu', bias_gelu_fusion: false, gpt_j_residual: false, gpt_j_tied: false, no_weight_tying: false,
    use_bias_in_attn_linear: true, use_bias_in_mlp: true, hidden_dropout: 0.1, attention_dropout: 0,
    sliding_window_width: null, init_method: 'normal', output_layer_init_method: 'scaled_normal', init_method_std: 0.3, seed: 7,
    ...over,
  };
}

/** Greedy or sampled decoding of `prompts`: the final tokens and every step's logits, per row. */
export function decodeWithLogits(model: GPTNeoX, prompts: number[][], o: DecodeOptions): { tokens: number[][]; logits: Float32Array[][] } {
  const logits: Float32Array[][] = prompts.map(() => []);
  const it = decodeSteps(model, prompts, o);
  for (let s = it.next(); ; s = it.next()) {
    if (s.done) return { tokens: s.value.map((r) => r.tokens), logits };
    for (const p of s.value.produced) logits[p.row]!.push(Float32Array.from(p.logits));
  }
}
