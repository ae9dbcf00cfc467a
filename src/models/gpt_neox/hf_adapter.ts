// Hugging Face GPTNeoXForCausalLM (Pythia, GPT-NeoX-20B) ⇄ NeoX.ts: the tensor table, both
// directions, and which of our features the HF class can express. The adapter types and the
// row-run layout helpers shared with models/llama and models/mistral live here too.
//
// defines: HFArchitecture, RowRun, TensorRule, HFAdapter    what an adapter is
//          ourParameters, ourParameterNames   our parameters (and shapes) for a config, in
//                                GPTNeoX.namedParameters order
//          partRows, joinRows, splitRows   HF tensors → ours and back by whole rows (any dtype, exact)
//          hfActivation, activationFromHF  hidden_act names (tanh GELU exports as gelu_new)
//          gptNeoXAdapter
//
// Our names are HF GPT-NeoX's without the `gpt_neox.` prefix (the output head is a bare parameter,
// `embed_out`, HF `embed_out.weight`), and our fused QKV is HF GPT-NeoX's per-head [q ‖ k ‖ v]
// layout, so for this class every rule is a rename. The output head is
// `embed_out.weight` on disk in every transformers version (transformers ≥ 5.14 calls the module
// `lm_head` and renames on load and save), so import accepts both spellings and export writes
// `embed_out.weight`. Old checkpoints also hold buffers (`attention.bias`, `attention.masked_bias`,
// `rotary_emb.inv_freq`), skipped on import.

import type { HostTensor } from '../../checkpoint/safetensors.js';
import { tensorByteSize } from '../../checkpoint/safetensors.js';
import type { ActivationKind } from '../../tensor/kernels.js';
import type { GPTNeoXConfig } from './config.js';

export type HFArchitecture = 'neox' | 'llama' | 'mistral';

/** `count` rows of HF tensor number `part` (an index into TensorRule.hf), from row `start`. */
export type RowRun = readonly [part: number, start: number, count: number];

/** One of our parameters and the HF tensor(s) it is made of. */
export interface TensorRule {
  ours: string;
  /** The HF tensors, by name (one for a plain rename). */
  hf: readonly string[];
  /** Our rows as runs of the HF tensors' rows, in order; absent: the one HF tensor, unchanged. */
  rows?: readonly RowRun[];
}

export interface HFAdapter {
  readonly architecture: HFArchitecture;
  /** config.json `model_type`. */
  readonly modelType: string;
  /** config.json `architectures[0]`. */
  readonly hfClass: string;
  /** What `cfg` uses that this class cannot express, each naming the feature and its NeoX key. */
  unsupported(cfg: GPTNeoXConfig): string[];
  /** Every one of our parameters, in our order, from HF tensors. */
  rules(cfg: GPTNeoXConfig): TensorRule[];
  /** The HF tensor names in the HF model's state-dict order (the order save_pretrained shards in). */
  hfNames(cfg: GPTNeoXConfig): string[];
  /** Other spellings accepted on import → the name in hfNames. */
  readonly aliases: Readonly<Record<string, string>>;
  /** HF tensors that are buffers, not weights: skipped on import. */
  readonly skipOnImport: readonly RegExp[];
  /** The input embedding and the output head, by HF name (a tied model may still carry the head). */
  readonly embedName: string;
  readonly headName: string;
}

/** Our parameters for `cfg` with their shapes, in the order GPTNeoX.namedParameters() lists them. */
export function ourParameters(cfg: GPTNeoXConfig): [string, number[]][] {
  const { hiddenSize: C, numHeads: H, numKvHeads: Hkv, ffnSize: F, vocabSize: V } = cfg;
  const out: [string, number[]][] = [['embed_in.weight', [V, C]]];
  if (cfg.posEmb === 'learned') out.push(['embed_pos.weight', [cfg.maxPositions, C]]);
  const norm = (p: string): void => {
    if (cfg.norm === 'scalenorm') out.push([`${p}.g`, [1]]);
    else {
      out.push([`${p}.weight`, [C]]);
      if (cfg.norm === 'layernorm' && cfg.normBias) out.push([`${p}.bias`, [C]]);
    }
  };
  const linear = (p: string, rows: number, cols: number, bias: boolean): void => {
    out.push([`${p}.weight`, [rows, cols]]);
    if (bias) out.push([`${p}.bias`, [rows]]);
  };
  const D = C / H;
  for (let i = 0; i < cfg.numLayers; i++) {
    const l = `layers.${i}`;
    norm(`${l}.input_layernorm`);
    if (!(cfg.parallelResidual && cfg.gptJTied)) norm(`${l}.post_attention_layernorm`);
    linear(`${l}.attention.query_key_value`, D * (H + 2 * Hkv), C, cfg.attnBias);
    linear(`${l}.attention.dense`, C, C, cfg.attnBias);
    linear(`${l}.mlp.dense_h_to_4h`, cfg.gated ? 2 * F : F, C, cfg.mlpBias);
    linear(`${l}.mlp.dense_4h_to_h`, C, F, cfg.mlpBias);
  }
  norm('final_layer_norm');
  if (!cfg.tiedEmbeddings) out.push(['embed_out', [V, C]]); // a bare parameter in GPTNeoX, so no `.weight`
  return out;
}

/** Our parameter names for `cfg`, in the order GPTNeoX.namedParameters() lists them. */
export function ourParameterNames(cfg: GPTNeoXConfig): string[] {
  return ourParameters(cfg).map(([n]) => n);
}

// ─── row runs ────────────────────────────────────────────────────────────────────────────────────

/** Rows of each HF part that a rule's runs use; the runs must tile each part exactly. */
export function partRows(rule: TensorRule): number[] {
  const rows = rule.hf.map(() => 0);
  for (const [p, start, count] of rule.rows ?? []) {
    if (start !== rows[p]) throw new Error(`${rule.ours}: runs of ${rule.hf[p]} are not in order`);
    rows[p] = start + count;
  }
  return rows;
}

function rowBytes(t: { dtype: HostTensor['dtype']; shape: readonly number[] }): number {
  return tensorByteSize(t.dtype, [1, ...t.shape.slice(1)]);
}

/** Our tensor from its HF parts (all of one dtype; rows keep their bytes, so this is exact). */
export function joinRows(rule: TensorRule, parts: readonly HostTensor[]): HostTensor {
  if (!rule.rows) return parts[0]!;
  const want = partRows(rule);
  const first = parts[0]!;
  const tail = first.shape.slice(1);
  parts.forEach((t, p) => {
    if (t.dtype !== first.dtype || t.shape.length !== first.shape.length || t.shape.slice(1).join() !== tail.join() ||
        t.shape[0] !== want[p]) {
      throw new Error(`${rule.hf[p]} is ${t.dtype} [${t.shape}]; expected ${first.dtype} [${[want[p], ...tail]}] to build ${rule.ours}`);
    }
  });
  const rb = rowBytes(first);
  const total = want.reduce((a, b) => a + b, 0);
  const data = new Uint8Array(total * rb);
  let at = 0;
  for (const [p, start, count] of rule.rows) {
    data.set(parts[p]!.data.subarray(start * rb, (start + count) * rb), at);
    at += count * rb;
  }
  return { dtype: first.dtype, shape: [total, ...tail], data };
}

/** The HF parts of our tensor (the inverse of joinRows). */
export function splitRows(rule: TensorRule, t: HostTensor): HostTensor[] {
  if (!rule.rows) return [t];
  const want = partRows(rule);
  const total = want.reduce((a, b) => a + b, 0);
  if (t.shape[0] !== total) throw new Error(`${rule.ours} has ${t.shape[0]} rows; its HF parts need ${total}`);
  const rb = rowBytes(t);
  const tail = t.shape.slice(1);
  const parts = want.map((rows) => ({ dtype: t.dtype, shape: [rows, ...tail], data: new Uint8Array(rows * rb) }));
  let at = 0;
  for (const [p, start, count] of rule.rows) {
    parts[p]!.data.set(t.data.subarray(at * rb, (at + count) * rb), start * rb);
    at += count;
  }
  return parts;
}

// ─── activations ─────────────────────────────────────────────────────────────────────────────────

const TO_HF_ACT: Record<string, string> = { gelu: 'gelu', gelu_tanh: 'gelu_new', relu: 'relu', silu: 'silu' };
const FROM_HF_ACT: Record<string, ActivationKind> = {
  gelu: 'gelu', gelu_new: 'gelu_tanh', gelu_pytorch_tanh: 'gelu_tanh', gelu_fast: 'gelu_tanh', relu: 'relu', silu: 'silu', swish: 'silu',
};

/** HF `hidden_act` for our activation: exact GELU is `gelu`, the tanh form `gelu_new`. */
export function hfActivation(a: ActivationKind): string | undefined {
  return TO_HF_ACT[a];
}

/** Our activation for an HF `hidden_act` (the tanh GELU spellings all map to gelu_tanh). */
export function activationFromHF(name: string): ActivationKind | undefined {
  return FROM_HF_ACT[name];
}

// ─── GPT-NeoX ────────────────────────────────────────────────────────────────────────────────────

/** Ours → HF GPT-NeoX: the `gpt_neox.` prefix, and the head (our bare `embed_out`) is `embed_out.weight`. */
function neoxName(ours: string): string {
  return ours === 'embed_out' ? 'embed_out.weight' : `gpt_neox.${ours}`;
}

export const gptNeoXAdapter: HFAdapter = {
  architecture: 'neox',
  modelType: 'gpt_neox',
  hfClass: 'GPTNeoXForCausalLM',
  aliases: { 'lm_head.weight': 'embed_out.weight' },
  skipOnImport: [/\.attention\.bias$/, /\.attention\.masked_bias$/, /rotary_emb\.inv_freq$/],
  embedName: 'gpt_neox.embed_in.weight',
  headName: 'embed_out.weight',

  unsupported(cfg) {
    const out: string[] = [];
    if (cfg.posEmb !== 'rotary') out.push(`pos_emb ${cfg.posEmb}: GPTNeoXForCausalLM has rotary positions only`);
    if (cfg.norm !== 'layernorm') out.push(`norm ${cfg.norm}: GPTNeoXForCausalLM uses LayerNorm`);
    else if (!cfg.normBias) out.push('use_bias_in_norms false: GPTNeoXForCausalLM LayerNorms have biases');
    if (cfg.gated) out.push(`activation ${cfg.activation} gated (swiglu/geglu): GPTNeoXForCausalLM has a plain MLP; use --architecture llama`);
    if (!hfActivation(cfg.activation)) out.push(`activation ${cfg.activation}`);
    if (cfg.numKvHeads !== cfg.numHeads) {
      out.push(`num_kv_heads ${cfg.numKvHeads} < num_attention_heads ${cfg.numHeads} (GQA/MQA): GPTNeoXForCausalLM has full multi-head attention`);
    }
    if (cfg.parallelResidual && cfg.gptJTied) out.push('gpt_j_tied (one norm shared by attention and MLP)');
    if (!cfg.mlpBias) out.push('use_bias_in_mlp false: GPTNeoXForCausalLM MLPs have biases');
    if (cfg.slidingWindow > 0) out.push(`sliding_window_width: GPTNeoXForCausalLM has no sliding window; use --architecture mistral`);
    return out;
  },

  rules(cfg) {
    return ourParameterNames(cfg).map((ours) => ({ ours, hf: [neoxName(ours)] }));
  },

  hfNames(cfg) {
    return ourParameterNames(cfg).map(neoxName);
  },
};
