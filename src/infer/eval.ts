// Log-likelihood evaluation: lm-evaluation-harness's tasks on local files (tasks.ts), perplexity
// of a preprocessed dataset, and a hook for the training loop (eval_tasks).
//
// defines: evaluateTasks (specs → results per task), runEvalTasks (flat metrics for the trainer),
//          loglikelihoods (the harness's loglikelihood request type), encodePair, taskMetrics,
//          datasetPerplexity (`neox eval --perplexity PREFIX`), formatResults (a table)
//
// Requests are scored as the harness's HF model does: whitespace at the end of the context moves
// to the continuation; context = [eod] when empty; context + continuation keeps its last
// contextLength + 1 tokens; the model reads all but the last, and the continuation's log-
// likelihood is the sum of its tokens' log-probabilities; is_greedy when each continuation token
// is the argmax. Requests are sorted longest first and run in right-padded batches.

import { IndexedDataset } from '../data/indexed_dataset.js';
import type { Tokenizer } from '../data/tokenizer.js';
import type { GPTNeoX } from '../models/gpt_neox/model.js';
import * as ops from '../ops/index.js';
import { noGrad, scope, tensor } from '../tensor/engine.js';
import { argmax, logitsRows, logSoftmax } from './logprobs.js';
import { loadTask, resolveTaskSpec, type LoglikelihoodRequest, type TaskDef, type TaskDoc } from './tasks.js';

export interface EvalOptions {
  /** Folder of {task}.jsonl files for specs without a path (default data/eval). */
  taskDir?: string;
  /** At most this many documents per task. */
  limit?: number;
  /** Sequences per forward (default 8). */
  batchSize?: number;
  /** Most tokens the model reads (default: the model's max positions). */
  contextLength?: number;
  /** Progress messages. */
  log?: (message: string) => void;
}

export interface TaskResult {
  task: string;
  file: string;
  samples: number;
  /** acc, acc_stderr, acc_norm, acc_norm_stderr, perplexity, as the task reports them. */
  metrics: Record<string, number>;
}

export interface LoglikelihoodResult {
  /** Σ log p(continuation token | prefix). */
  logprob: number;
  /** Every continuation token is the argmax of its distribution. */
  greedy: boolean;
}

/** The harness's context/continuation split into tokens (trailing context whitespace moves to the continuation). */
export function encodePair(tokenizer: Tokenizer, context: string, continuation: string): { context: number[]; continuation: number[] } {
  const spaces = context.length - context.trimEnd().length;
  if (spaces > 0) {
    continuation = context.slice(context.length - spaces) + continuation;
    context = context.slice(0, context.length - spaces);
  }
  if (context === '') return { context: [tokenizer.eodId], continuation: tokenizer.encode(continuation) };
  const whole = tokenizer.encode(context + continuation);
  const ctx = tokenizer.encode(context);
  return { context: ctx.length > 0 ? ctx : [tokenizer.eodId], continuation: whole.slice(ctx.length) };
}

/** Scores `requests` in batches; results in request order. */
export function loglikelihoods(model: GPTNeoX, tokenizer: Tokenizer, requests: readonly LoglikelihoodRequest[], opts: EvalOptions = {}): LoglikelihoodResult[] {
  const maxLen = opts.contextLength ?? model.cfg.maxPositions;
  const batchSize = Math.max(1, opts.batchSize ?? 8);
  const items = requests.map((r, i) => {
    const { context, continuation } = encodePair(tokenizer, r.context, r.continuation);
    if (continuation.length === 0) throw new Error(`request ${i}: the continuation ${JSON.stringify(r.continuation)} has no tokens`);
    if (continuation.length > maxLen) throw new Error(`request ${i}: the continuation has ${continuation.length} tokens; the context holds ${maxLen}`);
    const all = [...context, ...continuation].slice(-(maxLen + 1));
    return { i, input: all.slice(0, -1), targets: continuation };
  });
  items.sort((a, b) => b.input.length - a.input.length || a.i - b.i);
  const out: LoglikelihoodResult[] = new Array(requests.length);
  for (let s = 0; s < items.length; s += batchSize) {
    const chunk = items.slice(s, s + batchSize);
    const positions = chunk.map(({ input, targets }) => targets.map((_, j) => input.length - targets.length + j));
    const rows = logitsRows(model, chunk.map((c) => c.input), positions, tokenizer.padId);
    chunk.forEach(({ i, targets }, b) => {
      let logprob = 0;
      let greedy = true;
      targets.forEach((tok, j) => {
        const logits = rows[b]![j]!;
        logprob += logSoftmax(logits)[tok]!;
        if (argmax(logits) !== tok) greedy = false;
      });
      out[i] = { logprob, greedy };
    });
  }
  return out;
}

/** mean and the harness's standard error of the mean (sample standard deviation / √n). */
function meanStderr(xs: readonly number[]): [number, number] {
  const n = xs.length;
  const mean = xs.reduce((a, b) => a + b, 0) / n;
  if (n < 2) return [mean, NaN];
  const v = xs.reduce((a, x) => a + (x - mean) ** 2, 0) / (n - 1);
  return [mean, Math.sqrt(v / n)];
}

/** A task's metrics from its docs and the results of their requests (in doc order, requests flattened). */
export function taskMetrics(def: TaskDef, docs: readonly TaskDoc[], results: readonly LoglikelihoodResult[]): Record<string, number> {
  const metrics: Record<string, number> = {};
  if (def.kind === 'loglikelihood') {
    const lls = results.map((r) => r.logprob);
    metrics.perplexity = Math.exp(-lls.reduce((a, b) => a + b, 0) / lls.length);
    [metrics.acc, metrics.acc_stderr] = meanStderr(results.map((r) => (r.greedy ? 1 : 0)));
    return metrics;
  }
  const acc: number[] = [];
  const accNorm: number[] = [];
  let k = 0;
  for (const doc of docs) {
    const lls = doc.requests.map(() => results[k++]!.logprob);
    acc.push(argmax(lls) === doc.gold ? 1 : 0);
    accNorm.push(argmax(lls.map((ll, c) => ll / [...doc.choices[c]!].length)) === doc.gold ? 1 : 0);
  }
  [metrics.acc, metrics.acc_stderr] = meanStderr(acc);
  if (def.metrics.includes('acc_norm')) [metrics.acc_norm, metrics.acc_norm_stderr] = meanStderr(accNorm);
  return metrics;
}

/** Evaluates each task spec ("name" or "name=path.jsonl"). */
export function evaluateTasks(model: GPTNeoX, tokenizer: Tokenizer, specs: readonly string[], opts: EvalOptions = {}): TaskResult[] {
  const resolved = specs.map((s) => resolveTaskSpec(s, opts.taskDir));
  return resolved.map((spec) => {
    const docs = loadTask(spec, opts.limit);
    const requests = docs.flatMap((d) => d.requests);
    const t0 = performance.now();
    const results = loglikelihoods(model, tokenizer, requests, opts);
    opts.log?.(`${spec.name}: ${docs.length} documents, ${requests.length} requests in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    return { task: spec.name, file: spec.file, samples: docs.length, metrics: taskMetrics(spec.def, docs, results) };
  });
}

/**
 * The training loop's eval_tasks hook: flat metrics named "{task}/{metric}" (stderr left out),
 * e.g. {"piqa/acc": 0.61, "piqa/acc_norm": 0.62, "lambada_openai/perplexity": 41.3}.
 */
export function runEvalTasks(model: GPTNeoX, tokenizer: Tokenizer, tasks: readonly string[], opts: EvalOptions = {}): Record<string, number> {
  const flat: Record<string, number> = {};
  for (const r of evaluateTasks(model, tokenizer, tasks, opts)) {
    for (const [m, v] of Object.entries(r.metrics)) if (!m.endsWith('_stderr')) flat[`${r.task}/${m}`] = v;
  }
  return flat;
}

export interface PerplexityResult {
  /** Tokens predicted. */
  tokens: number;
  /** Mean negative log-likelihood per token (nats). */
  loss: number;
  perplexity: number;
  windows: number;
}

/**
 * Perplexity of a preprocessed dataset (Megatron .bin/.idx prefix): its documents in order as one
 * token stream, cut into windows of contextLength + 1 tokens that share one token (as training
 * samples are), each window predicting its last contextLength tokens.
 */
export function datasetPerplexity(model: GPTNeoX, prefix: string, opts: { contextLength?: number; batchSize?: number; maxTokens?: number; log?: (m: string) => void } = {}): PerplexityResult {
  const ds = new IndexedDataset(prefix);
  const ctx = opts.contextLength ?? model.cfg.maxPositions;
  const batchSize = Math.max(1, opts.batchSize ?? 8);
  const budget = opts.maxTokens ?? Infinity;
  // The token stream, read a document at a time; `pos` is the first token of the next window.
  let stream = new Int32Array(0);
  let pos = 0;
  let doc = 0;
  const available = (n: number): number => {
    while (stream.length - pos < n && doc < ds.length) {
      const next = ds.get(doc++);
      const grown = new Int32Array(stream.length - pos + next.length);
      grown.set(stream.subarray(pos));
      grown.set(next, stream.length - pos);
      stream = grown;
      pos = 0;
    }
    return stream.length - pos;
  };
  let tokens = 0;
  let planned = 0;
  let nll = 0;
  let windows = 0;
  const wasTraining = model.training;
  model.eval();
  try {
    for (;;) {
      const batch: Int32Array[] = [];
      while (batch.length < batchSize && planned < budget) {
        const n = Math.min(available(ctx + 1), ctx + 1, budget - planned + 1);
        if (n < 2) break;
        batch.push(stream.slice(pos, pos + n)); // (n): n − 1 inputs and n − 1 targets
        pos += n - 1; // windows share one token
        planned += n - 1;
      }
      if (batch.length === 0) break;
      const B = batch.length;
      const T = Math.max(...batch.map((w) => w.length)) - 1;
      const ids = new Int32Array(B * T); // (B, T)
      const labels = new Int32Array(B * T).fill(-1); // (B, T); −1 is padding (loss 0)
      batch.forEach((w, b) => {
        ids.set(w.subarray(0, -1), b * T);
        labels.set(w.subarray(1), b * T);
      });
      const losses = noGrad(() => scope(() => {
        const logits = model.forward(tensor(ids, [B, T], 'i32', model.backend)); // (B, T, V)
        const V = logits.dim(-1);
        const { loss } = ops.crossEntropy(ops.reshape(logits, [B * T, V]), tensor(labels, [B * T], 'i32', model.backend)); // (B·T)
        return loss.toFloat32();
      }));
      for (let j = 0; j < losses.length; j++) {
        if (labels[j]! < 0) continue;
        nll += losses[j]!;
        tokens++;
      }
      windows += B;
      opts.log?.(`${windows} windows, ${tokens} tokens, loss ${(nll / tokens).toFixed(4)}`);
    }
  } finally {
    model.train(wasTraining);
    ds.close();
  }
  if (tokens === 0) throw new Error(`${prefix}: no tokens to evaluate (a window needs at least two tokens)`);
  const loss = nll / tokens;
  return { tokens, loss, perplexity: Math.exp(loss), windows };
}

/** Results as a table: task, metric, value, stderr, samples. */
export function formatResults(results: readonly TaskResult[]): string {
  const rows: string[][] = [['Task', 'Metric', 'Value', '± Stderr', 'Samples']];
  for (const r of results) {
    for (const [m, v] of Object.entries(r.metrics)) {
      if (m.endsWith('_stderr')) continue;
      const se = r.metrics[`${m}_stderr`];
      rows.push([r.task, m, v.toFixed(4), se === undefined || Number.isNaN(se) ? '' : se.toFixed(4), String(r.samples)]);
    }
  }
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((row) => row[c]!.length)));
  const line = (row: string[]) => `| ${row.map((cell, c) => (c >= 2 ? cell.padStart(widths[c]!) : cell.padEnd(widths[c]!))).join(' | ')} |`;
  return [line(rows[0]!), `|${widths.map((w, c) => (c >= 2 ? `${'-'.repeat(w + 1)}:` : `${'-'.repeat(w + 2)}`)).join('|')}|`, ...rows.slice(1).map(line)].join('\n');
}
