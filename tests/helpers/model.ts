// A small GPT-NeoX's model keys for tests (override any of them).
import type { NeoXModelKeys } from '../../src/models/gpt_neox/index.js';

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
