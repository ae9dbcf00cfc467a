// The Pythia shapes the benchmarks train (../shared/bench/README.md: seq 2048, untied head,
// rotary_pct 0.25, parallel residual, the reference's micro-batch), as GPT-NeoX model keys.

import type { NeoXModelKeys } from '../src/models/gpt_neox/index.js';

export interface Shape { layers: number; hidden: number; heads: number; mb: number }
export const SHAPES: Record<string, Shape> = {
  'pythia-160m': { layers: 12, hidden: 768, heads: 12, mb: 16 },
  'pythia-410m': { layers: 24, hidden: 1024, heads: 16, mb: 16 },
  'pythia-1.4b': { layers: 24, hidden: 2048, heads: 16, mb: 8 },
  tiny: { layers: 2, hidden: 64, heads: 4, mb: 4 }, // a CPU smoke test of the harness
};

export function pythiaKeys(s: Shape, seq: number): NeoXModelKeys {
  return {
    hidden_size: s.hidden, num_layers: s.layers, num_attention_heads: s.heads, num_kv_heads: null, intermediate_size: null,
    max_position_embeddings: seq, seq_length: seq, pos_emb: 'rotary', rotary_pct: 0.25, rotary_emb_base: 10000,
    norm: 'layernorm', layernorm_epsilon: 1e-5, rms_norm_epsilon: 1e-6, scalenorm_epsilon: 1e-5, activation: 'gelu',
    bias_gelu_fusion: false, gpt_j_residual: true, gpt_j_tied: false, no_weight_tying: true, use_bias_in_attn_linear: true,
    use_bias_in_mlp: true, hidden_dropout: 0, attention_dropout: 0, sliding_window_width: null, init_method: 'small_init',
    output_layer_init_method: 'wang_init', init_method_std: 0.02, seed: 1234,
  };
}
