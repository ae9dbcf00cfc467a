// Sampling from a model by recomputing the full context each token (greedy, temperature, top-k,
// top-p). The KV-cache generator of `neox generate` builds on the same choices.

import type { GPTNeoX } from '../models/gpt_neox/model.js';
import { noGrad, scope, tensor } from '../tensor/engine.js';
import { uniform } from '../tensor/philox.js';

export interface SampleOptions {
  maxNewTokens: number;
  temperature: number; // 0 = greedy
  topK: number; // 0 = off
  topP: number; // 0 = off
  seed: number;
  contextLength: number;
  stopTokens?: number[];
}

/** Continues `prompt`, returning only the new token ids. */
export function generate(model: GPTNeoX, prompt: number[], o: SampleOptions): number[] {
  const wasTraining = model.training;
  model.eval();
  const ids = [...prompt];
  const out: number[] = [];
  const V = model.cfg.vocabSize;
  for (let i = 0; i < o.maxNewTokens; i++) {
    const ctx = ids.slice(-o.contextLength);
    const logits = noGrad(() => scope(() => {
      const y = model.forward(tensor(Int32Array.from(ctx), [1, ctx.length], 'i32', model.backend)); // (1, T, V)
      return Float32Array.from(y.toFloat32().subarray((ctx.length - 1) * V, ctx.length * V));
    }));
    const next = pick(logits, o, i);
    ids.push(next);
    out.push(next);
    if (o.stopTokens?.includes(next)) break;
  }
  model.train(wasTraining);
  return out;
}

/** Chooses a token from one row of logits. */
export function pick(logits: Float32Array, o: Pick<SampleOptions, 'temperature' | 'topK' | 'topP' | 'seed'>, step: number): number {
  if (o.temperature <= 0) {
    let best = 0;
    for (let j = 1; j < logits.length; j++) if (logits[j]! > logits[best]!) best = j;
    return best;
  }
  const order = Array.from(logits.keys()).sort((a, b) => logits[b]! - logits[a]!);
  let keep = o.topK > 0 ? order.slice(0, o.topK) : order;
  const max = logits[keep[0]!]!;
  let probs = keep.map((j) => Math.exp((logits[j]! - max) / o.temperature));
  let total = probs.reduce((a, b) => a + b, 0);
  if (o.topP > 0 && o.topP < 1) {
    let cum = 0;
    let n = 0;
    while (n < probs.length && cum < o.topP * total) cum += probs[n++]!;
    keep = keep.slice(0, n);
    probs = probs.slice(0, n);
    total = cum;
  }
  const u = uniform(o.seed, step, 1)[0]! * total;
  let acc = 0;
  for (let j = 0; j < keep.length; j++) {
    acc += probs[j]!;
    if (u < acc) return keep[j]!;
  }
  return keep[keep.length - 1]!;
}
