// Hugging Face LlamaForCausalLM (Llama 1, 2, 3) ⇄ NeoX.ts. Llama is a configuration of our GPT-NeoX
// blocks (RMSNorm, gated MLP, rotary over whole heads, GQA, no biases), so the adapter is a table:
//
//   ours                                      HF (under model.layers.N.)
//   embed_in.weight                           model.embed_tokens.weight
//   layers.N.input_layernorm.weight           input_layernorm.weight
//   layers.N.post_attention_layernorm.weight  post_attention_layernorm.weight
//   layers.N.attention.query_key_value.*      self_attn.{q,k,v}_proj.*: per query head h, rows
//                                             [q_h (D) ‖ k rows h·D·Hkv/H.. (D·Hkv/H) ‖ v likewise]
//   layers.N.attention.dense.*                self_attn.o_proj.*
//   layers.N.mlp.dense_h_to_4h.*              [mlp.up_proj ‖ mlp.gate_proj] (GPT-NeoX's fused [up ‖ gate])
//   layers.N.mlp.dense_4h_to_h.*              mlp.down_proj.*
//   final_layer_norm.weight                   model.norm.weight
//   embed_out                                 lm_head.weight (absent when tied)
//
// HF Llama applies rotate-half RoPE, as we do, so q and k rows need no permutation (Meta's raw
// checkpoints would). Biases (attention_bias, mlp_bias) are optional in HF Llama and map when present.
//
// defines: LlamaStyle, llamaStyleAdapter (shared with models/mistral), llamaAdapter

import type { GPTNeoXConfig } from '../gpt_neox/config.js';
import { hfActivation, ourParameterNames, type HFAdapter, type HFArchitecture, type RowRun, type TensorRule } from '../gpt_neox/hf_adapter.js';

export interface LlamaStyle {
  architecture: HFArchitecture;
  modelType: string;
  hfClass: string;
  /** The class has attention_bias / mlp_bias switches. */
  biases: boolean;
  /** The class has a sliding window (`sliding_window`). */
  slidingWindow: boolean;
}

function runs(cfg: GPTNeoXConfig): { qkv: RowRun[]; mlp: RowRun[] } {
  const { numHeads: H, numKvHeads: Hkv, hiddenSize: C, ffnSize: F } = cfg;
  const D = C / H;
  const kvWidth = (D * Hkv) / H;
  const qkv: RowRun[] = [];
  for (let h = 0; h < H; h++) qkv.push([0, h * D, D], [1, h * kvWidth, kvWidth], [2, h * kvWidth, kvWidth]);
  return { qkv, mlp: [[0, 0, F], [1, 0, F]] };
}

function ruleFor(ours: string, r: { qkv: RowRun[]; mlp: RowRun[] }): TensorRule {
  if (ours === 'embed_in.weight') return { ours, hf: ['model.embed_tokens.weight'] };
  if (ours === 'final_layer_norm.weight') return { ours, hf: ['model.norm.weight'] };
  if (ours === 'embed_out') return { ours, hf: ['lm_head.weight'] };
  const m = /^layers\.(\d+)\.(.+)\.(weight|bias)$/.exec(ours);
  if (!m) throw new Error(`no Llama tensor for ${ours}`);
  const [, i, mod, kind] = m;
  const l = `model.layers.${i}`;
  switch (mod) {
    case 'input_layernorm': case 'post_attention_layernorm': return { ours, hf: [`${l}.${mod}.${kind}`] };
    case 'attention.query_key_value': return { ours, hf: ['q', 'k', 'v'].map((x) => `${l}.self_attn.${x}_proj.${kind}`), rows: r.qkv };
    case 'attention.dense': return { ours, hf: [`${l}.self_attn.o_proj.${kind}`] };
    case 'mlp.dense_h_to_4h': return { ours, hf: [`${l}.mlp.up_proj.${kind}`, `${l}.mlp.gate_proj.${kind}`], rows: r.mlp };
    case 'mlp.dense_4h_to_h': return { ours, hf: [`${l}.mlp.down_proj.${kind}`] };
  }
  throw new Error(`no Llama tensor for ${ours}`);
}

export function llamaStyleAdapter(s: LlamaStyle): HFAdapter {
  const cls = s.hfClass;
  return {
    architecture: s.architecture,
    modelType: s.modelType,
    hfClass: cls,
    aliases: {},
    skipOnImport: [/rotary_emb\.inv_freq$/],
    embedName: 'model.embed_tokens.weight',
    headName: 'lm_head.weight',

    unsupported(cfg) {
      const out: string[] = [];
      if (cfg.posEmb !== 'rotary') out.push(`pos_emb ${cfg.posEmb}: ${cls} has rotary positions only`);
      else if (cfg.rotaryPct !== 1) out.push(`rotary_pct ${cfg.rotaryPct}: ${cls} rotates whole heads (rotary_pct 1)`);
      if (cfg.norm !== 'rmsnorm') out.push(`norm ${cfg.norm}: ${cls} uses RMSNorm`);
      if (!cfg.gated) out.push(`activation ${cfg.activation} (not gated): ${cls}'s MLP is gated; use swiglu or geglu`);
      else if (!hfActivation(cfg.activation)) out.push(`activation ${cfg.activation} gated`);
      if (cfg.parallelResidual) out.push(`gpt_j_residual (parallel attention and MLP): ${cls} is sequential`);
      if (!s.biases && cfg.attnBias) out.push(`use_bias_in_attn_linear true: ${cls} has no attention biases`);
      if (!s.biases && cfg.mlpBias) out.push(`use_bias_in_mlp true: ${cls} has no MLP biases`);
      if (!s.slidingWindow && cfg.slidingWindow > 0) out.push(`sliding_window_width: ${cls} has no sliding window; use --architecture mistral`);
      return out;
    },

    rules(cfg) {
      const r = runs(cfg);
      return ourParameterNames(cfg).map((n) => ruleFor(n, r));
    },

    hfNames(cfg) {
      const names = ['model.embed_tokens.weight'];
      const lin = (p: string, bias: boolean): string[] => [`${p}.weight`, ...(bias ? [`${p}.bias`] : [])];
      for (let i = 0; i < cfg.numLayers; i++) {
        const l = `model.layers.${i}`;
        for (const x of ['q', 'k', 'v', 'o']) names.push(...lin(`${l}.self_attn.${x}_proj`, cfg.attnBias));
        for (const x of ['gate', 'up', 'down']) names.push(...lin(`${l}.mlp.${x}_proj`, cfg.mlpBias));
        names.push(`${l}.input_layernorm.weight`, `${l}.post_attention_layernorm.weight`);
      }
      names.push('model.norm.weight');
      if (!cfg.tiedEmbeddings) names.push('lm_head.weight');
      return names;
    },
  };
}

export const llamaAdapter: HFAdapter = llamaStyleAdapter({
  architecture: 'llama', modelType: 'llama', hfClass: 'LlamaForCausalLM', biases: true, slidingWindow: false,
});
