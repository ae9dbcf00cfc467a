// `neox eval`: requests built exactly as lm-evaluation-harness's task configs build them, metrics
// checked against log-likelihoods computed by hand from plain single-sequence forwards, dataset
// perplexity, the training hook and the CLI.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { hostTensor, saveCheckpoint } from '../src/checkpoint/index.js';
import { loadConfig } from '../src/config/index.js';
import { IndexedDatasetBuilder } from '../src/data/indexed_dataset.js';
import { CharLevelTokenizer } from '../src/data/tokenizer.js';
import {
  buildModel, datasetPerplexity, encodePair, evaluateTasks, formatResults, loadTask, resolveTaskSpec, runEvalTasks,
  TASKS, type TaskDoc,
} from '../src/infer/index.js';
import { GPTNeoX, resolveModelConfig, type NeoXModelKeys } from '../src/models/gpt_neox/index.js';
import { noGrad, scope, tensor } from '../src/tensor/index.js';
import { cpu } from './helpers/check.js';

const FIXTURES = 'tests/fixtures/eval';
const CONTEXT = 48; // shorter than some requests: the harness's left truncation is exercised
const tok = new CharLevelTokenizer();
const keys: NeoXModelKeys = {
  hidden_size: 32, num_layers: 2, num_attention_heads: 4, num_kv_heads: 2, intermediate_size: null,
  max_position_embeddings: CONTEXT, seq_length: CONTEXT, pos_emb: 'rotary', rotary_pct: 0.5, rotary_emb_base: 10000,
  norm: 'layernorm', layernorm_epsilon: 1e-5, rms_norm_epsilon: 1e-6, scalenorm_epsilon: 1e-5,
  activation: 'gelu', bias_gelu_fusion: false, gpt_j_residual: false, gpt_j_tied: false, no_weight_tying: true,
  use_bias_in_attn_linear: true, use_bias_in_mlp: true, hidden_dropout: 0, attention_dropout: 0,
  sliding_window_width: null, init_method: 'normal', output_layer_init_method: 'scaled_normal', init_method_std: 0.3, seed: 17,
};
const model = new GPTNeoX(resolveModelConfig(keys, 512), cpu());

/**
 * By hand, for the byte-level tokenizer and contexts without trailing whitespace: tokens are the
 * UTF-8 bytes; keep the last CONTEXT + 1; one forward of all but the last; sum the continuation's
 * log-softmax entries (f64); greedy when each is the row's maximum.
 */
function byHand(context: string, continuation: string): { ll: number; greedy: boolean } {
  const ctx = context === '' ? [0] : [...Buffer.from(context, 'utf8')];
  const cont = [...Buffer.from(continuation, 'utf8')];
  const all = [...ctx, ...cont].slice(-(CONTEXT + 1));
  const input = all.slice(0, -1);
  const logits = noGrad(() => scope(() => model.forward(tensor(Int32Array.from(input), [1, input.length], 'i32')).toFloat32()));
  let ll = 0;
  let greedy = true;
  for (let j = 0; j < cont.length; j++) {
    const p = input.length - cont.length + j;
    const row = Array.from(logits.subarray(p * 512, (p + 1) * 512));
    const m = Math.max(...row);
    const lse = m + Math.log(row.reduce((a, x) => a + Math.exp(x - m), 0));
    ll += row[cont[j]!]! - lse;
    if (row.indexOf(m) !== cont[j]) greedy = false;
  }
  return { ll, greedy };
}

const docsOf = (name: string): TaskDoc[] => loadTask(resolveTaskSpec(name, FIXTURES));

test('requests are built as the harness\'s task configs build them', () => {
  const piqa = docsOf('piqa');
  assert.deepEqual(piqa[0]!.requests, [
    { context: 'Question: How do I open a stuck jar?\nAnswer:', continuation: ' Run the lid under hot water, then twist it.' },
    { context: 'Question: How do I open a stuck jar?\nAnswer:', continuation: ' Put the jar in the freezer overnight.' },
  ]);
  assert.deepEqual(piqa.map((d) => d.gold), [0, 1, 0]);

  const hs = docsOf('hellaswag');
  assert.equal(hs[0]!.requests[0]!.context, 'Roof shingle removal: A man is sitting on a roof. He');
  assert.equal(hs[0]!.gold, 3);
  // WikiHow artifacts: " [title]" → ". ", [bracketed] removed, double spaces collapsed, ctx_b capitalized (rest lower-cased).
  assert.equal(hs[1]!.requests[0]!.context, 'Home and Garden: How to grow basil. Pick a sunny spot. basil likes six hours of light.');
  assert.deepEqual(hs[1]!.choices.slice(0, 2), [' Water it when the soil is dry.', 'Paint the pot blue. and wait.']);
  assert.equal(hs[1]!.requests[0]!.continuation, '  Water it when the soil is dry.');

  const arc = docsOf('arc_easy');
  assert.equal(arc[0]!.requests[1]!.context, 'Question: Which of these animals is a mammal?\nAnswer:');
  assert.equal(arc[0]!.requests[1]!.continuation, ' whale');
  assert.deepEqual(arc.map((d) => d.gold), [1, 0]);

  const sciq = docsOf('sciq');
  assert.ok(sciq[0]!.requests[0]!.context.startsWith('At sea level'));
  assert.ok(sciq[0]!.requests[0]!.context.endsWith('\nQuestion: What is the boiling point of water at sea level?\nAnswer:'));
  assert.equal(sciq[1]!.requests[3]!.context, '\nQuestion: Which gas do plants take in?\nAnswer:');
  assert.deepEqual(sciq[1]!.requests.map((r) => r.continuation), [' oxygen', ' neon', ' helium', ' carbon dioxide']);
  assert.equal(sciq[1]!.gold, 3);

  const wg = docsOf('winogrande');
  assert.deepEqual(wg[0]!.requests, [
    { context: "The trophy doesn't fit into the suitcase because the trophy", continuation: ' is too large.' },
    { context: "The trophy doesn't fit into the suitcase because the suitcase", continuation: ' is too large.' },
  ]);
  assert.deepEqual(wg.map((d) => d.gold), [0, 0, 1]);
  assert.deepEqual(TASKS.winogrande!.metrics, ['acc']);

  const lam = docsOf('lambada_openai');
  assert.deepEqual(lam[1]!.requests, [{ context: 'He picked up the phone and called his', continuation: ' mother' }]);

  // The harness moves a context's trailing whitespace onto the continuation.
  assert.deepEqual(encodePair(tok, 'abc  ', 'd'), { context: tok.encode('abc'), continuation: tok.encode('  d') });
  assert.deepEqual(encodePair(tok, '', 'xy'), { context: [0], continuation: tok.encode('xy') });
});

test('acc and acc_norm of every multiple-choice task match log-likelihoods computed by hand', () => {
  const names = ['piqa', 'hellaswag', 'arc_easy', 'sciq', 'winogrande'];
  const results = evaluateTasks(model, tok, names, { taskDir: FIXTURES, contextLength: CONTEXT, batchSize: 3 });
  assert.deepEqual(results.map((r) => r.task), names);
  for (const r of results) {
    const docs = docsOf(r.task);
    let acc = 0;
    let accNorm = 0;
    for (const d of docs) {
      const lls = d.requests.map((q) => byHand(q.context, q.continuation).ll);
      const best = lls.indexOf(Math.max(...lls));
      const norm = lls.map((ll, c) => ll / [...d.choices[c]!].length);
      const bestNorm = norm.indexOf(Math.max(...norm));
      acc += best === d.gold ? 1 : 0;
      accNorm += bestNorm === d.gold ? 1 : 0;
    }
    assert.equal(r.samples, docs.length);
    assert.equal(r.metrics.acc, acc / docs.length, `${r.task} acc`);
    if (r.task === 'winogrande') assert.equal(r.metrics.acc_norm, undefined);
    else assert.equal(r.metrics.acc_norm, accNorm / docs.length, `${r.task} acc_norm`);
    const p = acc / docs.length;
    assert.ok(Math.abs(r.metrics.acc_stderr! - Math.sqrt((p * (1 - p) * docs.length) / (docs.length - 1) / docs.length)) < 1e-12);
  }
  const table = formatResults(results);
  assert.match(table, /\| piqa +\| acc +\|/);
  assert.match(table, /acc_norm/);
});

test('lambada_openai: perplexity = exp(−mean log-likelihood) and acc = greedy match, by hand', () => {
  const [r] = evaluateTasks(model, tok, [`lambada_openai=${FIXTURES}/lambada_openai.jsonl`], { contextLength: CONTEXT, batchSize: 2 });
  const hand = docsOf('lambada_openai').map((d) => byHand(d.requests[0]!.context, d.requests[0]!.continuation));
  const ppl = Math.exp(-hand.reduce((a, h) => a + h.ll, 0) / hand.length);
  assert.ok(Math.abs(r!.metrics.perplexity! / ppl - 1) < 1e-5, `${r!.metrics.perplexity} vs ${ppl}`);
  assert.equal(r!.metrics.acc, hand.filter((h) => h.greedy).length / hand.length);
});

test('runEvalTasks gives flat task/metric numbers for the training loop; bad specs fail clearly', () => {
  const flat = runEvalTasks(model, tok, ['piqa', 'winogrande'], { taskDir: FIXTURES, contextLength: CONTEXT, limit: 2 });
  assert.deepEqual(Object.keys(flat).sort(), ['piqa/acc', 'piqa/acc_norm', 'winogrande/acc']);
  assert.throws(() => runEvalTasks(model, tok, ['mmlu'], { taskDir: FIXTURES }), /unknown task 'mmlu'; known tasks: lambada_openai/);
  assert.throws(() => runEvalTasks(model, tok, ['piqa'], { taskDir: '/nonexistent' }), /no data file \/nonexistent\/piqa.jsonl/);
  const dir = mkdtempSync(join(tmpdir(), 'neox-eval-'));
  writeFileSync(join(dir, 'piqa.jsonl'), '{"goal": "g", "sol1": "a", "sol2": "b", "label": 0}\n{"goal": "g", "sol1": "a"}\n');
  assert.throws(() => runEvalTasks(model, tok, ['piqa'], { taskDir: dir }), /piqa.jsonl line 2 \(piqa\): field "sol2" must be a string/);
});

test('dataset perplexity equals the mean loss over windows of context + 1 tokens, by hand', () => {
  const dir = mkdtempSync(join(tmpdir(), 'neox-ppl-'));
  const prefix = join(dir, 'corpus_text_document');
  const builder = new IndexedDatasetBuilder(prefix, 'u16');
  const docs = ['first document, short.', 'a second one that is rather longer than the first, to cross a window.', 'third'];
  for (const d of docs) {
    builder.addItem([...tok.encode(d), 0]);
    builder.endDocument();
  }
  builder.finalize();
  const stream = docs.flatMap((d) => [...tok.encode(d), 0]);
  const ctx = 16;
  let nll = 0;
  let count = 0;
  for (let start = 0; start + 1 < stream.length; start += ctx) {
    const w = stream.slice(start, start + ctx + 1);
    const n = w.length - 1;
    const loss = noGrad(() => scope(() => model.loss(
      tensor(Int32Array.from(w.slice(0, -1)), [1, n], 'i32'), tensor(Int32Array.from(w.slice(1)), [1, n], 'i32'), tensor(new Float32Array(n).fill(1), [1, n]),
    ).item()));
    nll += loss * n;
    count += n;
  }
  const r = datasetPerplexity(model, prefix, { contextLength: ctx, batchSize: 3 });
  assert.equal(r.tokens, stream.length - 1);
  assert.equal(r.tokens, count);
  assert.ok(Math.abs(r.loss - nll / count) < 1e-5, `${r.loss} vs ${nll / count}`);
  assert.ok(Math.abs(r.perplexity - Math.exp(r.loss)) < 1e-9);
  const capped = datasetPerplexity(model, prefix, { contextLength: ctx, maxTokens: 20 });
  assert.equal(capped.tokens, 20);
});

test('`neox eval CKPT --tasks ... --json` prints the results', { timeout: 60_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'neox-cli-eval-'));
  const yml = join(dir, 'model.yml');
  writeFileSync(yml, JSON.stringify({
    num_layers: 1, hidden_size: 16, num_attention_heads: 2, seq_length: 64, pos_emb: 'rotary', tokenizer_type: 'CharLevelTokenizer',
    train_micro_batch_size_per_gpu: 1, train_iters: 1, device: 'cpu',
  }));
  const config = loadConfig([yml]).config;
  const { model: m } = buildModel(config, cpu());
  saveCheckpoint(join(dir, 'ckpt'), 1, {
    model: m.namedParameters().map(([n, p]) => [n, hostTensor(p.dtype, p.shape, p.toArray())] as const), state: { iteration: 1 }, config: config as unknown as object,
  });
  const out = join(dir, 'results.json');
  const stdout = execFileSync(process.execPath, ['bin/neox.js', 'eval', join(dir, 'ckpt'), '--tasks', 'piqa,winogrande', '--task-dir', FIXTURES,
    '--json', '--output', out, '--device', 'cpu'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const report = JSON.parse(stdout);
  assert.equal(report.step, 1);
  assert.deepEqual(Object.keys(report.results), ['piqa', 'winogrande']);
  assert.equal(report.results.piqa.samples, 3);
  assert.ok(report.results.piqa.acc >= 0 && report.results.piqa.acc <= 1);
});
