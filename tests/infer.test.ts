// Generation: the KV-cached path gives the recompute path's tokens (and logits) for every
// position scheme and attention variant; batched prompts of different lengths give what each
// prompt gives alone; seeded sampling is reproducible; GPT-NeoX's records, modes and CLI.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';
import { saveCheckpoint, hostTensor } from '../src/checkpoint/index.js';
import { loadConfig } from '../src/config/index.js';
import { CharLevelTokenizer } from '../src/data/tokenizer.js';
import {
  buildModel, decodeSteps, generateSamples, generateTokens, KVCache, loadModel, logitsRows, readGenerationKeys, readPrompts,
  runInteractive, type DecodeOptions, type TextGenSettings,
} from '../src/infer/index.js';
import { GPTNeoX, resolveModelConfig, type NeoXModelKeys } from '../src/models/gpt_neox/index.js';
import { noGrad, scope, tensor } from '../src/tensor/index.js';
import { generate as trainerGenerate } from '../src/train/sample.js';
import { assertClose, cpu, rng } from './helpers/check.js';
import { decodeWithLogits } from './helpers/model.js';

function keys(over: Partial<NeoXModelKeys> = {}): NeoXModelKeys {
  return {
    hidden_size: 32, num_layers: 2, num_attention_heads: 4, num_kv_heads: null, intermediate_size: null,
    max_position_embeddings: 64, seq_length: 64, pos_emb: 'rotary', rotary_pct: 0.5, rotary_emb_base: 10000,
    norm: 'layernorm', layernorm_epsilon: 1e-5, rms_norm_epsilon: 1e-6, scalenorm_epsilon: 1e-5,
    activation: 'gelu', bias_gelu_fusion: false, gpt_j_residual: false, gpt_j_tied: false, no_weight_tying: true,
    use_bias_in_attn_linear: true, use_bias_in_mlp: true, hidden_dropout: 0, attention_dropout: 0,
    sliding_window_width: null, init_method: 'normal', output_layer_init_method: 'scaled_normal', init_method_std: 0.25, seed: 11,
    ...over,
  };
}

const V = 40;
const tiny = (over: Partial<NeoXModelKeys> = {}, vocab = V) => new GPTNeoX(resolveModelConfig(keys(over), vocab), cpu());

function randomPrompt(n: number, seed: number, vocab = V): number[] {
  const r = rng(seed);
  return Array.from({ length: n }, () => Math.floor(r() * vocab));
}

const VARIANTS: [string, Partial<NeoXModelKeys>][] = [
  ['rotary (partial), sequential residual', {}],
  ['Pythia-style parallel residual', { gpt_j_residual: true, rotary_pct: 0.25 }],
  ['GQA, RMSNorm, SwiGLU, full rotary', { num_kv_heads: 2, norm: 'rmsnorm', activation: 'swiglu', rotary_pct: 1 }],
  ['MQA with a sliding window shorter than the generation', { num_kv_heads: 1, sliding_window_width: 4, rotary_pct: 1 }],
  ['ALiBi', { pos_emb: 'alibi' }],
  ['learned positions', { pos_emb: 'learned' }],
  ['sinusoidal positions', { pos_emb: 'sinusoidal' }],
];

for (const [name, over] of VARIANTS) {
  test(`cached and recompute greedy decoding agree: ${name}`, () => {
    const model = tiny(over);
    const prompt = randomPrompt(7, 3);
    const o: DecodeOptions = { maxNewTokens: 14, temperature: 0 };
    const cached = decodeWithLogits(model, [prompt], o);
    const recomputed = decodeWithLogits(model, [prompt], { ...o, recompute: true });
    assert.deepEqual(cached.tokens, recomputed.tokens);
    assert.equal(cached.tokens[0]!.length, 14);
    cached.logits[0]!.forEach((l, i) => assertClose(l, recomputed.logits[0]![i]!, { rtol: 1e-4, atol: 1e-5 }, `step ${i} logits`));
  });
}

test('decoding and scoring free every tensor they make (only the parameters stay allocated)', () => {
  const model = tiny({ sliding_window_width: 3, pos_emb: 'sinusoidal' });
  const prompts = [randomPrompt(5, 1), randomPrompt(2, 2)];
  generateTokens(model, prompts, { maxNewTokens: 3 }); // warm caches (the sinusoid table is kept by the model)
  const before = cpu().memoryStats().allocated;
  generateTokens(model, prompts, { maxNewTokens: 9 });
  generateTokens(model, prompts, { maxNewTokens: 9, recompute: true, temperature: 1, seed: 3 });
  const it = decodeSteps(model, prompts, { maxNewTokens: 20 });
  it.next();
  it.next();
  it.return([]); // abandoned midway: the cache is released too
  logitsRows(model, prompts, [[0, 4], [1]], 0);
  assert.equal(cpu().memoryStats().allocated, before);
});

test('the recompute path gives the trainer sampler\'s greedy tokens', () => {
  const model = tiny();
  const prompt = randomPrompt(5, 8);
  const ours = generateTokens(model, [prompt], { maxNewTokens: 10, recompute: true })[0]!.tokens;
  const theirs = trainerGenerate(model, prompt, { maxNewTokens: 10, temperature: 0, topK: 0, topP: 0, seed: 0, contextLength: 64 });
  assert.deepEqual(ours, theirs);
});

test('a sliding-window cache holds only window − 1 positions per layer', () => {
  const model = tiny({ sliding_window_width: 3 }); // 4 keys per query
  const cache = new KVCache(model.cfg.numLayers, { window: model.cfg.slidingWindow });
  noGrad(() => scope(() => {
    model.forward(tensor(Int32Array.from(randomPrompt(6, 1)), [1, 6], 'i32'), { cache });
    model.forward(tensor(Int32Array.from([3]), [1, 1], 'i32'), { cache });
  }));
  assert.equal(cache.length, 7);
  assert.equal(cache.heldPositions(0), 3);
  assert.equal(cache.heldPositions(1), 3);
  cache.dispose();
  assert.equal(cache.length, 0);
});

test('cached forward logits equal a full forward at every position (chunked prefill)', () => {
  const model = tiny({ num_kv_heads: 2 });
  const ids = randomPrompt(9, 4);
  const full = noGrad(() => scope(() => model.forward(tensor(Int32Array.from(ids), [1, 9], 'i32')).toFloat32()));
  const cache = new KVCache(model.cfg.numLayers);
  const parts = [ids.slice(0, 4), ids.slice(4, 5), ids.slice(5, 9)];
  const pieces = parts.map((p) => noGrad(() => scope(() => model.forward(tensor(Int32Array.from(p), [1, p.length], 'i32'), { cache }).toFloat32())));
  const joined = new Float32Array(full.length);
  let at = 0;
  for (const p of pieces) {
    joined.set(p, at);
    at += p.length;
  }
  assertClose(joined, full, { rtol: 1e-4, atol: 1e-5 }, 'logits');
  cache.dispose();
});

test('batched prompts of different lengths give the tokens each gives alone (cache and recompute)', () => {
  for (const over of [{}, { pos_emb: 'learned' }, { pos_emb: 'alibi', num_kv_heads: 2 }] as Partial<NeoXModelKeys>[]) {
    const model = tiny(over);
    const prompts = [randomPrompt(3, 21), randomPrompt(9, 22), randomPrompt(1, 23), randomPrompt(6, 24)];
    for (const recompute of [false, true]) {
      const o: DecodeOptions = { maxNewTokens: 8, recompute };
      const batched = generateTokens(model, prompts, o).map((r) => r.tokens);
      const alone = prompts.map((p) => generateTokens(model, [p], o)[0]!.tokens);
      assert.deepEqual(batched, alone, `${JSON.stringify(over)} recompute=${recompute}`);
      assert.ok(batched.every((t) => t.length === 8));
    }
  }
});

test('seeded sampling is reproducible, differs across seeds, and does not depend on the batch', () => {
  const model = tiny();
  const prompts = [randomPrompt(4, 31), randomPrompt(7, 32)];
  const o: DecodeOptions = { maxNewTokens: 12, temperature: 1.0, topK: 20, topP: 0.95, seed: 5 };
  const a = generateTokens(model, prompts, o).map((r) => r.tokens);
  const b = generateTokens(model, prompts, o).map((r) => r.tokens);
  assert.deepEqual(a, b);
  const c = generateTokens(model, prompts, { ...o, seed: 6 }).map((r) => r.tokens);
  assert.notDeepEqual(a, c);
  const alone = generateTokens(model, [prompts[1]!], { ...o, seeds: [6] })[0]!.tokens; // row 1 of the batch used seed 5 + 1
  assert.deepEqual(alone, a[1]);
  const recomputed = generateTokens(model, prompts, { ...o, recompute: true }).map((r) => r.tokens);
  assert.deepEqual(recomputed, a);
  // GPT-NeoX's rule: temperature 0 with top_k > 0 samples (at temperature 1), it is not greedy.
  const greedy = generateTokens(model, prompts, { maxNewTokens: 12 }).map((r) => r.tokens);
  const topK = generateTokens(model, prompts, { maxNewTokens: 12, topK: V, seed: 1 }).map((r) => r.tokens);
  assert.notDeepEqual(topK, greedy);
});

test('eos, stop sequences and the context limit end rows', () => {
  const model = tiny();
  const prompt = randomPrompt(5, 41);
  const free = generateTokens(model, [prompt], { maxNewTokens: 10 })[0]!;
  assert.equal(free.reason, 'length');
  const eos = free.tokens[3]!;
  const first = free.tokens.indexOf(eos);
  const r1 = generateTokens(model, [prompt], { maxNewTokens: 10, eosId: eos })[0]!;
  assert.deepEqual(r1, { tokens: free.tokens.slice(0, first), reason: 'eos' });
  const seq = free.tokens.slice(4, 6);
  const r2 = generateTokens(model, [prompt], { maxNewTokens: 10, stopSequences: [seq] })[0]!;
  assert.equal(r2.reason, 'stop');
  assert.deepEqual([...r2.tokens, ...seq], free.tokens.slice(0, r2.tokens.length + 2));
  // The model reads at most contextLength tokens: a 5-token prompt with context 8 gets 4 new tokens.
  const r3 = generateTokens(model, [prompt], { maxNewTokens: 10, contextLength: 8 })[0]!;
  assert.deepEqual(r3, { tokens: free.tokens.slice(0, 4), reason: 'length' });
  assert.throws(() => generateTokens(model, [[]], { maxNewTokens: 1 }), /empty/);
  assert.throws(() => generateTokens(model, [randomPrompt(9, 1)], { maxNewTokens: 1, contextLength: 8 }), /context holds 8/);
  // Learned positions cannot go past max_position_embeddings, even through the cache.
  const learned = tiny({ pos_emb: 'learned', max_position_embeddings: 6 });
  assert.throws(() => generateTokens(learned, [prompt], { maxNewTokens: 3, contextLength: 10 }), /max_position_embeddings/);
});

// ---------------------------------------------------------------------------------------------
// GPT-NeoX's modes over a checkpoint

const tok = new CharLevelTokenizer();

function settings(over: Partial<TextGenSettings> = {}): TextGenSettings {
  return {
    text_gen_type: 'input-file', temperature: 0, top_k: 0, top_p: 0, maximum_tokens: 6, prompt_end: '\n',
    sample_input_file: null, sample_output_file: null, num_samples: 2, recompute: false, stop_tokens: [], seed: 1,
    batch_size: 2, context_length: 64, ...over,
  };
}

test('generateSamples yields GPT-NeoX records in order, the same at any batch size', () => {
  const model = tiny({}, 512);
  const prompts = ['Hello', 'a longer prompt here', 'x'];
  const one = [...generateSamples(model, tok, prompts, settings({ batch_size: 1 }))];
  const two = [...generateSamples(model, tok, prompts, settings({ batch_size: 2 }))];
  assert.deepEqual(one.map((r) => [r.context, r.text, r.length, r.finished]), two.map((r) => [r.context, r.text, r.length, r.finished]));
  for (const r of one) {
    assert.deepEqual(Object.keys(r), ['context', 'text', 'length', 'finished', 'message', 'duration_seconds']);
    assert.equal(typeof r.duration_seconds, 'number');
  }
  const expected = generateTokens(model, [tok.encode('Hello')], { maxNewTokens: 6, eosId: 0 })[0]!;
  assert.equal(one[0]!.text, expected.tokens.length ? tok.decode(expected.tokens) : null);
  assert.equal(one[0]!.length, expected.tokens.length);
  // Unconditional: an empty context starts from the end-of-document token.
  const unc = [...generateSamples(model, tok, ['', ''], settings({ temperature: 0.9, seed: 3 }))];
  assert.equal(unc[0]!.context, '');
  const fromEod = generateTokens(model, [[0]], { maxNewTokens: 6, temperature: 0.9, seed: 3, eosId: 0 })[0]!;
  assert.equal(unc[0]!.length, fromEod.tokens.length);
  // Streaming: onText sees the growing text.
  const seen: string[] = [];
  [...generateSamples(model, tok, ['Hello'], settings(), { onText: (_, t) => seen.push(t) })];
  assert.ok(seen.length > 0 && seen.every((t, i) => i === 0 || t.startsWith(seen[i - 1]!)));
});

test('prompt files split on prompt_end; interactive mode streams answers', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'neox-gen-'));
  const file = join(dir, 'prompts.txt');
  writeFileSync(file, 'first prompt\n\n  second  \nthird');
  assert.deepEqual(readPrompts(file, '\n'), ['first prompt', 'second', 'third']);
  writeFileSync(file, 'a\nb<END>c<END>');
  assert.deepEqual(readPrompts(file, '<END>'), ['a\nb', 'c']);

  const model = tiny({}, 512);
  const input = new PassThrough();
  const output = new PassThrough();
  let shown = '';
  output.on('data', (d: Buffer) => (shown += d.toString()));
  input.end('Hello\nWorld\n');
  const records = await runInteractive(model, tok, settings(), input, output);
  assert.deepEqual(records.map((r) => r.context), ['Hello', 'World']);
  assert.ok(shown.startsWith('Context prompt >>> Generated Text: '));
  assert.ok(shown.includes(records[0]!.text ?? ''));
  // prompt_end other than a newline joins lines until it appears.
  const input2 = new PassThrough();
  input2.end('line one\nline two;; ignored\n');
  const r2 = await runInteractive(model, tok, settings({ prompt_end: ';;' }), input2, new PassThrough());
  assert.deepEqual(r2.map((r) => r.context), ['line one\nline two']);
});

test('generation keys come from YAML files, spelled either way', () => {
  const dir = mkdtempSync(join(tmpdir(), 'neox-gen-'));
  const a = join(dir, 'model.yml');
  const b = join(dir, 'text_generation.yml');
  writeFileSync(a, 'hidden_size: 64\nload: ckpt/here\ntemperature: 0.5\n');
  writeFileSync(b, 'text-gen-type: input-file\nmaximum_tokens: 12\ntemperature: 0.0\nrecompute: True\nstop_tokens: ["\\n\\n"]\n');
  assert.deepEqual(readGenerationKeys([a, b]), {
    load: 'ckpt/here', temperature: 0, text_gen_type: 'input-file', maximum_tokens: 12, recompute: true, stop_tokens: ['\n\n'],
  });
  writeFileSync(b, 'top_k: -1\n');
  assert.throws(() => readGenerationKeys([b]), /top_k` must be a non-negative number/);
});

// ---------------------------------------------------------------------------------------------
// Checkpoints and the CLI

/** A checkpoint of a fresh random model, saved as the trainer saves one. */
function makeCheckpoint(dir: string): { save: string; config: ReturnType<typeof loadConfig>['config'] } {
  const yml = join(dir, 'model.yml');
  writeFileSync(yml, JSON.stringify({
    num_layers: 2, hidden_size: 32, num_attention_heads: 4, num_kv_heads: 2, seq_length: 48, max_position_embeddings: 48,
    pos_emb: 'rotary', rotary_pct: 0.5, no_weight_tying: true, init_method_std: 0.2, tokenizer_type: 'CharLevelTokenizer',
    train_micro_batch_size_per_gpu: 1, train_iters: 1, device: 'cpu', seed: 3,
  }));
  const config = loadConfig([yml]).config;
  const { model } = buildModel(config, cpu());
  const save = join(dir, 'ckpt');
  saveCheckpoint(save, 7, {
    model: model.namedParameters().map(([n, p]) => [n, hostTensor(p.dtype, p.shape, p.toArray())] as const),
    state: { iteration: 7 }, config: config as unknown as object,
  });
  return { save, config };
}

test('loadModel rebuilds the saved model: same logits as the model that was saved', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'neox-load-'));
  const { save, config } = makeCheckpoint(dir);
  const loaded = await loadModel(save, { device: 'cpu' });
  assert.equal(loaded.step, 7);
  assert.equal(loaded.contextLength, 48);
  assert.equal(loaded.tokenizer.name, 'CharLevelTokenizer');
  const original = buildModel(config, cpu()).model; // same seed → same initial weights
  const ids = tensor(Int32Array.from(tok.encode('checkpoint')), [1, 10], 'i32');
  const a = noGrad(() => scope(() => loaded.model.forward(ids).toFloat32()));
  const b = noGrad(() => scope(() => original.forward(ids).toFloat32()));
  assert.deepEqual(a, b);
});

test('`neox generate CKPT` writes GPT-NeoX JSONL records for an input file', { timeout: 60_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'neox-cli-gen-'));
  const { save } = makeCheckpoint(dir);
  const prompts = join(dir, 'prompts.txt');
  const out = join(dir, 'out.jsonl');
  writeFileSync(prompts, 'The quick\nbrown fox\n');
  const stdout = execFileSync(process.execPath, ['bin/neox.js', 'generate', save, '--sample-input-file', prompts,
    '--sample-output-file', out, '--maximum-tokens', '5', '--batch-size', '2', '--device', 'cpu'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const records = readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.deepEqual(records.map((r) => r.context), ['The quick', 'brown fox']);
  assert.equal(stdout.trim().split('\n').length, 2);
  for (const r of records) assert.ok(r.length <= 5 && typeof r.finished === 'boolean' && 'message' in r);
});
