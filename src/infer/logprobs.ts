// Log-probabilities for scoring: one batched forward over token sequences, the logits rows that
// are wanted gathered on the device, log-softmax on the host in f64.
//
// defines: logitsRows (forward + gather), logSoftmax, argmax, topLogprobs
//
// Sequences of different lengths are right-padded: causal attention means a position never sees
// the padding after it, so every real position's logits equal those of the sequence alone.
// Rows are gathered with the embedding op (a row lookup in the (B·T, V) logits), so only the
// rows asked for leave the device.

import type { GPTNeoX } from '../models/gpt_neox/model.js';
import * as ops from '../ops/index.js';
import { noGrad, scope, tensor } from '../tensor/engine.js';

/**
 * Runs `seqs` (each 1 … contextLength tokens) as one right-padded batch and returns the logits
 * (V values each) at `positions[i]` of `seqs[i]`, in order: result[i][j] is the row predicting
 * the token after seqs[i][positions[i][j]].
 */
export function logitsRows(model: GPTNeoX, seqs: readonly (readonly number[])[], positions: readonly (readonly number[])[], padId: number): Float32Array[][] {
  const B = seqs.length;
  if (B === 0) return [];
  const T = Math.max(...seqs.map((s) => s.length));
  const V = model.cfg.vocabSize;
  const ids = new Int32Array(B * T).fill(padId); // (B, T)
  const rows: number[] = [];
  seqs.forEach((s, b) => {
    if (s.length === 0) throw new Error(`sequence ${b} is empty`);
    ids.set(s, b * T);
    for (const p of positions[b] ?? []) {
      if (!(p >= 0 && p < s.length)) throw new Error(`position ${p} is outside sequence ${b} (${s.length} tokens)`);
      rows.push(b * T + p);
    }
  });
  if (rows.length === 0) return seqs.map(() => []);
  const wasTraining = model.training;
  model.eval();
  let host: Float32Array;
  try {
    host = noGrad(() => scope(() => {
      const logits = model.forward(tensor(ids, [B, T], 'i32', model.backend)); // (B, T, V)
      const flat = ops.reshape(logits, [B * T, V]); // (B·T, V)
      const picked = ops.embedding(tensor(Int32Array.from(rows), [rows.length], 'i32', model.backend), flat); // (N, V)
      return picked.toFloat32(); // (N·V) on the host
    }));
  } finally {
    model.train(wasTraining);
  }
  let n = 0;
  return positions.map((ps) => ps.map(() => host.subarray(V * n, V * ++n)));
}

/** log-softmax of one logits row, in f64 (the single buffer both a token's logprob and the top-k read). */
export function logSoftmax(logits: ArrayLike<number>): Float64Array {
  let m = -Infinity;
  for (let j = 0; j < logits.length; j++) if (logits[j]! > m) m = logits[j]!;
  let s = 0;
  for (let j = 0; j < logits.length; j++) s += Math.exp(logits[j]! - m);
  const lse = m + Math.log(s);
  const out = new Float64Array(logits.length);
  for (let j = 0; j < logits.length; j++) out[j] = logits[j]! - lse;
  return out;
}

/** Index of the largest value (the first on ties, as torch.argmax). */
export function argmax(x: ArrayLike<number>): number {
  let best = 0;
  for (let j = 1; j < x.length; j++) if (x[j]! > x[best]!) best = j;
  return best;
}

/** The n largest entries of a log-softmax row, largest first (lower index first on ties). */
export function topLogprobs(lp: Float64Array, n: number): { id: number; logprob: number }[] {
  const k = Math.max(0, Math.min(n, lp.length));
  const top: { id: number; logprob: number }[] = [];
  for (let j = 0; j < lp.length; j++) {
    const v = lp[j]!;
    if (top.length === k && (k === 0 || v <= top[k - 1]!.logprob)) continue;
    let i = top.length;
    while (i > 0 && top[i - 1]!.logprob < v) i--;
    top.splice(i, 0, { id: j, logprob: v });
    if (top.length > k) top.pop();
  }
  return top;
}
