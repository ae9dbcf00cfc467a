// Incremental decoding: a batch of prompts → new tokens, with a KV cache (or recomputing the
// whole prefix each step), greedy or sampled, stopping at eos, stop sequences or a length.
//
// defines: decodeSteps (a generator: one event per step, for streaming), generateTokens (to the
//          end), samplingOf (GPT-NeoX's greedy rule), DecodeOptions, DecodeStep, RowResult
//
// Prompts of different lengths (GPT-NeoX's stream_tokens scheme): rows share positions, so no
// padding mask is needed and the fused attention kernel serves every step. The first step runs
// the common prefix (the shortest prompt's length) through the model at once; after that every
// step feeds one token per row at the same position: a longer prompt's own next token while it
// is still being read (teacher forcing), its latest sampled token once it generates. Causality
// means a row never sees anything beyond its own tokens, so each row gets exactly the tokens it
// would get alone (up to GEMM rounding across batch sizes). Rows that finish are fed `padId`
// and ignored.
//
// Sampling: row r draws from its own Philox stream, seed `seeds[r]` (default seed + r), counter
// = how many tokens that row has produced, so results do not depend on the batch a prompt is in.
// Greedy iff temperature = top_k = top_p = 0 (as GPT-NeoX); temperature 0 with top_k or top_p
// samples at temperature 1, also as GPT-NeoX.

import type { GPTNeoX } from '../models/gpt_neox/model.js';
import * as ops from '../ops/index.js';
import { noGrad, scope, tensor } from '../tensor/engine.js';
import { pick, type SampleOptions } from '../train/sample.js';
import { KVCache } from './kv_cache.js';

export interface DecodeOptions {
  /** New tokens per row at most. */
  maxNewTokens: number;
  /** 0 (with topK = topP = 0) is greedy. */
  temperature?: number;
  topK?: number;
  topP?: number;
  /** Row r samples with seed `seeds[r]`, else `seed + r`. */
  seed?: number;
  seeds?: readonly number[];
  /** A row ends when it produces this token (not included in its tokens); null: never. */
  eosId?: number | null;
  /** A row ends when its new tokens end with one of these sequences (removed from its tokens). */
  stopSequences?: readonly (readonly number[])[];
  /** Called after each new token of a row; true ends the row (the token is kept: callers trim). */
  shouldStop?: (row: number, tokens: readonly number[]) => boolean;
  /** Recompute the whole prefix each step instead of using a KV cache. */
  recompute?: boolean;
  /** Most tokens the model reads to produce one (default: the model's max positions). */
  contextLength?: number;
  /** Fed for rows that have finished (default eosId, else 0). */
  padId?: number;
}

export type FinishReason = 'eos' | 'stop' | 'length';

export interface RowResult {
  /** New tokens (without the eos or stop sequence that ended the row). */
  tokens: number[];
  /** Why the row ended: eos token, stop sequence / shouldStop, or a length limit. */
  reason: FinishReason;
}

export interface DecodeStep {
  /** Position of the tokens produced in this step. */
  position: number;
  /** Rows that produced a token this step, with the logits (V) it was chosen from. */
  produced: { row: number; token: number; logits: Float32Array }[];
  /** Rows that ended in this step. */
  ended: number[];
}

/** GPT-NeoX's sampling rule as pick() options: greedy only when all three knobs are 0. */
export function samplingOf(o: Pick<DecodeOptions, 'temperature' | 'topK' | 'topP'>): { temperature: number; topK: number; topP: number } {
  const topK = o.topK ?? 0;
  const topP = o.topP ?? 0;
  let temperature = o.temperature ?? 0;
  if (temperature <= 0 && (topK > 0 || topP > 0)) temperature = 1;
  return { temperature, topK, topP };
}

/**
 * Decodes `prompts` as one batch, yielding after every model step; returns each row's result.
 * Every prompt needs at least one token and at most `contextLength`.
 */
export function* decodeSteps(model: GPTNeoX, prompts: readonly (readonly number[])[], o: DecodeOptions): Generator<DecodeStep, RowResult[], void> {
  const B = prompts.length;
  if (B === 0) return [];
  const ctx = o.contextLength ?? model.cfg.maxPositions;
  const lengths = prompts.map((p) => p.length);
  prompts.forEach((p, r) => {
    if (p.length === 0) throw new Error(`prompt ${r} is empty (give at least one token, e.g. the end-of-document id)`);
    if (p.length > ctx) throw new Error(`prompt ${r} has ${p.length} tokens; the context holds ${ctx}`);
  });
  if (!(o.maxNewTokens >= 0)) throw new Error(`maxNewTokens must be ≥ 0, got ${o.maxNewTokens}`);
  const sampling = samplingOf(o);
  const seeds = prompts.map((_, r) => o.seeds?.[r] ?? (o.seed ?? 0) + r);
  const eos = o.eosId ?? null;
  const pad = o.padId ?? eos ?? 0;
  const V = model.cfg.vocabSize;

  const seqs = prompts.map((p) => [...p]);
  const out: number[][] = prompts.map(() => []);
  const reason: (FinishReason | null)[] = prompts.map(() => null);
  // A row produces tokens while the context it reads fits: the token at position idx reads idx tokens.
  const limit = lengths.map((L) => Math.min(L + o.maxNewTokens, ctx + 1));
  lengths.forEach((L, r) => {
    if (L >= limit[r]!) reason[r] = 'length';
  });
  const tokenAt = (r: number, j: number): number => seqs[r]![j] ?? pad;

  const wasTraining = model.training;
  model.eval();
  const cache = o.recompute ? null : new KVCache(model.cfg.numLayers, { window: model.cfg.slidingWindow });
  try {
    let idx = Math.min(...lengths);
    while (reason.some((x) => x === null)) {
      // Tokens to feed: the prefix (first cached step, or every recompute step), else one column.
      const from = cache && cache.length > 0 ? idx - 1 : 0;
      const T = idx - from;
      const ids = new Int32Array(B * T); // (B, T)
      for (let r = 0; r < B; r++) for (let t = 0; t < T; t++) ids[r * T + t] = tokenAt(r, from + t);
      const last = noGrad(() => scope(() => {
        const logits = model.forward(tensor(ids, [B, T], 'i32', model.backend), cache ? { cache } : {}); // (B, T, V)
        const lastRow = T === 1 ? logits : ops.split(logits, [T - 1, 1], 1)[1]!; // (B, 1, V)
        return lastRow.toFloat32(); // (B·V) on the host
      }));
      const step: DecodeStep = { position: idx, produced: [], ended: [] };
      for (let r = 0; r < B; r++) {
        if (reason[r] !== null || idx < lengths[r]!) continue; // finished, or still reading its prompt
        const logits = last.subarray(r * V, (r + 1) * V);
        const token = pick(logits, { ...sampling, seed: seeds[r]! } satisfies Pick<SampleOptions, 'temperature' | 'topK' | 'topP' | 'seed'>, out[r]!.length);
        seqs[r]!.push(token);
        out[r]!.push(token);
        step.produced.push({ row: r, token, logits });
        const end = endOf(r, token);
        if (end) {
          reason[r] = end;
          step.ended.push(r);
        }
      }
      yield step;
      idx++;
    }
  } finally {
    cache?.dispose();
    model.train(wasTraining);
  }
  return out.map((tokens, r) => ({ tokens, reason: reason[r]! }));

  function endOf(r: number, token: number): FinishReason | null {
    const toks = out[r]!;
    if (eos !== null && token === eos) {
      toks.pop();
      return 'eos';
    }
    for (const s of o.stopSequences ?? []) {
      if (s.length > 0 && s.length <= toks.length && s.every((t, i) => toks[toks.length - s.length + i] === t)) {
        toks.length -= s.length;
        return 'stop';
      }
    }
    if (o.shouldStop?.(r, toks)) return 'stop';
    return seqs[r]!.length >= limit[r]! ? 'length' : null;
  }
}

/** Runs decodeSteps to the end. */
export function generateTokens(model: GPTNeoX, prompts: readonly (readonly number[])[], o: DecodeOptions): RowResult[] {
  const it = decodeSteps(model, prompts, o);
  for (;;) {
    const r = it.next();
    if (r.done) return r.value;
  }
}
