// Parameter count of a resolved model config, computed from the shapes alone (nothing allocated),
// so that configs of models too big to build (12B, 20B, 70B) can be checked against published sizes.
//
// defines: countParameters (total), ParameterCount (the same split by part)
//
// It mirrors the constructors in model.ts: embed_in, embed_pos (learned positions), per layer
// input_layernorm, post_attention_layernorm (absent when gpt_j_residual with gpt_j_tied),
// attention.query_key_value and dense, mlp.dense_h_to_4h and dense_4h_to_h, then
// final_layer_norm and embed_out (absent when tied). tests/configs.test.ts checks that it equals
// GPTNeoX.numParameters().

import type { GPTNeoXConfig } from './config.js';

export interface ParameterCount {
  /** embed_in, plus the learned position table. */
  embedding: number;
  /** All transformer layers together. */
  layers: number;
  /** One transformer layer. */
  perLayer: number;
  /** final_layer_norm. */
  finalNorm: number;
  /** embed_out; 0 when tied to embed_in. */
  head: number;
  total: number;
}

type ShapeKeys = Pick<GPTNeoXConfig,
  | 'vocabSize' | 'hiddenSize' | 'numLayers' | 'numHeads' | 'numKvHeads' | 'ffnSize' | 'gated'
  | 'maxPositions' | 'posEmb' | 'norm' | 'normBias' | 'parallelResidual' | 'gptJTied'
  | 'tiedEmbeddings' | 'attnBias' | 'mlpBias'>;

/** Parameters of a Norm over C (LayerNorm: weight and optional bias; RMSNorm: weight; ScaleNorm: one scalar). */
function normParameters(cfg: ShapeKeys): number {
  const C = cfg.hiddenSize;
  if (cfg.norm === 'scalenorm') return 1;
  return C + (cfg.norm === 'layernorm' && cfg.normBias ? C : 0);
}

/** A Linear(in, out): weight in × out, bias out. */
function linear(inFeatures: number, outFeatures: number, bias: boolean): number {
  return inFeatures * outFeatures + (bias ? outFeatures : 0);
}

/** The parameter count of GPTNeoX(cfg), by part. */
export function parameterCount(cfg: ShapeKeys): ParameterCount {
  const { vocabSize: V, hiddenSize: C, numHeads: H, numKvHeads: Hkv, ffnSize: F } = cfg;
  const headDim = C / H;
  const norm = normParameters(cfg);
  const attention = linear(C, headDim * (H + 2 * Hkv), cfg.attnBias) + linear(C, C, cfg.attnBias);
  const mlp = linear(C, cfg.gated ? 2 * F : F, cfg.mlpBias) + linear(F, C, cfg.mlpBias);
  const norms = cfg.parallelResidual && cfg.gptJTied ? norm : 2 * norm;
  const perLayer = norms + attention + mlp;
  const embedding = V * C + (cfg.posEmb === 'learned' ? cfg.maxPositions * C : 0);
  const head = cfg.tiedEmbeddings ? 0 : V * C;
  const layers = perLayer * cfg.numLayers;
  return { embedding, layers, perLayer, finalNorm: norm, head, total: embedding + layers + norm + head };
}

/** The number of parameters GPTNeoX(cfg) has, without building it. */
export function countParameters(cfg: ShapeKeys): number {
  return parameterCount(cfg).total;
}
