// Config loading: merging, error messages with file and line, spellings, derived values,
// GPT-NeoX's own configs loading unchanged, formatConfig round trip, and docs/config.md current.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import {
  ConfigError, IGNORED_KEYS, SCHEMA, SCHEMA_BY_KEY, assertTrainable, formatConfig, loadConfig, padVocabSize,
} from '../src/config/index.js';
import type { LoadOptions } from '../src/config/index.js';
import { CONFIG_DOCS_PATH, renderConfigDocs } from '../tools/gen_config_docs.js';

const FIXTURES = fileURLToPath(new URL('../../tests/fixtures/config/', import.meta.url));
const PYTHIA_160M = join(FIXTURES, 'pythia-160M.yml');
const NEOX_20B = join(FIXTURES, '20B.yml');
const TINY = join(FIXTURES, 'tiny.yml');

/** Writes each file into a fresh temp dir; returns their paths in order. */
function write(files: Record<string, string>): string[] {
  const dir = mkdtempSync(join(tmpdir(), 'neox-config-'));
  return Object.entries(files).map(([name, text]) => {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  });
}

const MODEL = `# model
num_layers: 2
hidden_size: 64
num_attention_heads: 4
seq_length: 128
`;

/** Loads MODEL plus `extra` (one more file) and returns the loaded config. */
function loadWith(extra: string, opts?: LoadOptions) {
  return loadConfig(write({ 'model.yml': MODEL, 'extra.yml': extra }), opts);
}

/** Asserts that fn throws a ConfigError whose message matches every pattern. */
function throwsConfig(fn: () => unknown, ...patterns: (RegExp | string)[]): ConfigError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof ConfigError, `expected a ConfigError, got ${String(caught)}`);
  for (const p of patterns) {
    if (typeof p === 'string') assert.ok(caught.message.includes(p), `message ${JSON.stringify(caught.message)} lacks ${JSON.stringify(p)}`);
    else assert.match(caught.message, p);
  }
  return caught;
}

test('two files merge in order and sources lists them', () => {
  const files = write({
    'model.yml': MODEL,
    'train.yml': 'train_micro_batch_size_per_gpu: 8\ntrain_iters: 50\n"optimizer": {"type": "Adam", "params": {"lr": 3.0e-4}}\n',
  });
  const { config, sources, ignored } = loadConfig(files);
  assert.deepEqual(sources, files);
  assert.equal(config.hidden_size, 64);
  assert.equal(config.train_iters, 50);
  assert.equal(config.optimizer.type, 'adam');
  assert.equal(config.lr, 3.0e-4);
  assert.deepEqual(config.optimizer.params.betas, [0.9, 0.999]);
  assert.equal(config.lr_decay_iters, 50);
  assert.equal(config.max_position_embeddings, 128);
  assert.equal(config.num_kv_heads, 4);
  assert.equal(config.precision, 'fp32');
  assert.equal(config.norm, 'layernorm');
  assert.equal(config.seed, 1234);
  assert.deepEqual(ignored, []);
});

test('a key set in two files is an error naming both files and lines', () => {
  const [a, b] = write({ 'a.yml': MODEL, 'b.yml': '\ntrain_micro_batch_size_per_gpu: 1\nhidden_size: 128\n' });
  const err = throwsConfig(() => loadConfig([a!, b!]),
    `${b} line 3: \`hidden_size\` is already set in ${a} line 3`);
  assert.equal(err.name, 'NeoxError');
  assert.equal(err.file, b);
  assert.equal(err.line, 3);
  assert.equal(err.key, 'hidden_size');
});

test('dash and underscore spellings of one key in one file are a duplicate', () => {
  throwsConfig(() => loadWith('train_micro_batch_size_per_gpu: 1\nlog-dir: a\nlog_dir: b\n'),
    'extra.yml line 3: `log_dir` is already set in line 2 (as `log-dir`)');
});

test('an unknown key names file and line and suggests the closest key', () => {
  const [file] = write({ 'x.yml': '# comment\nnum_layers: 2\nnum_attention_heads: 4\nhidden_szie: 64\n' });
  const err = throwsConfig(() => loadConfig([file!]));
  assert.equal(err.message, `${file} line 4: unknown key \`hidden_szie\`; did you mean \`hidden_size\`?`);
  throwsConfig(() => loadWith('completely_unrelated_thing: 1\n'),
    /extra\.yml line 1: unknown key `completely_unrelated_thing`$/);
});

test('a value of the wrong type names file, line, key, expectation and value', () => {
  const [file] = write({ 'x.yml': MODEL.replace('num_layers: 2', 'hidden_dropout: 0.1\n\n\n\nnum_layers: twelve') });
  const err = throwsConfig(() => loadConfig([file!]));
  assert.equal(err.message, `${file} line 6: \`num_layers\` must be a positive integer, got "twelve"`);
  throwsConfig(() => loadWith('train_micro_batch_size_per_gpu: 0\n'),
    'extra.yml line 1: `train_micro_batch_size_per_gpu` must be a positive integer, got 0');
  throwsConfig(() => loadWith('train_micro_batch_size_per_gpu: 1\nrotary_pct: 1.5\n'),
    'extra.yml line 2: `rotary_pct` must be a number in [0, 1], got 1.5');
  throwsConfig(() => loadWith('train_micro_batch_size_per_gpu: 1\nno_weight_tying: "yes please"\n'),
    'extra.yml line 2: `no_weight_tying` must be true or false, got "yes please"');
  throwsConfig(() => loadWith('train_micro_batch_size_per_gpu: 1\ntrain_data_paths: data/a\n'),
    'extra.yml line 2: `train_data_paths` must be a list of strings, got "data/a"');
});

test('an enum value outside the allowed list shows the list and a suggestion', () => {
  throwsConfig(() => loadWith('train_micro_batch_size_per_gpu: 1\n\npos_emb: rotery\n'),
    'extra.yml line 3: `pos_emb` must be one of: learned, rotary, sinusoidal, rpe, alibi, none; got "rotery" (did you mean `rotary`?)');
  // Enums match case-insensitively and are stored in GPT-NeoX's spelling.
  const { config } = loadWith('train_micro_batch_size_per_gpu: 1\ntokenizer_type: hftokenizer\nactivation: SwiGLU\n');
  assert.equal(config.tokenizer_type, 'HFTokenizer');
  assert.equal(config.activation, 'swiglu');
});

test('values inside blocks are checked with their line and dotted key', () => {
  throwsConfig(() => loadWith('train_micro_batch_size_per_gpu: 1\noptimizer:\n  type: Adam\n  params:\n    lr: fast\n'),
    'extra.yml line 5: `optimizer.params.lr` must be a non-negative number, got "fast"');
  throwsConfig(() => loadWith('train_micro_batch_size_per_gpu: 1\nfp16:\n  enabeld: true\n'),
    'extra.yml line 3: unknown key `enabeld` in `fp16`; did you mean `enabled`?');
  throwsConfig(() => loadWith('train_micro_batch_size_per_gpu: 1\noptimizer: {type: Adamm, params: {lr: 0.1}}\n'),
    'extra.yml line 2: `optimizer.type` must be one of: adam, onebitadam', '(did you mean `adam`?)');
  throwsConfig(() => loadWith('train_micro_batch_size_per_gpu: 1\noptimizer: {params: {betas: [0.9]}}\n'),
    '`optimizer.params.betas` must be a list of 2 numbers in [0, 1], got a list');
  throwsConfig(() => loadWith('train_micro_batch_size_per_gpu: 1\nzero_optimization: {stage: 4}\n'),
    '`zero_optimization.stage` must be an integer from 0 to 3, got 4');
});

test('keys may be spelled with - or _, and save_interval is checkpoint_factor', () => {
  const { config } = loadConfig(write({
    'model.yml': MODEL.replace('hidden_size', 'hidden-size').replace('num_attention_heads', '"num-attention-heads"'),
    'extra.yml': 'train-micro-batch-size-per-gpu: 2\ntensorboard-dir: ./tb\nsave: ./ckpt\nsave_interval: 500\n'
      + 'zero_optimization: {reduce-bucket-size: 1000}\n',
  }));
  assert.equal(config.hidden_size, 64);
  assert.equal(config.num_attention_heads, 4);
  assert.equal(config.train_micro_batch_size_per_gpu, 2);
  assert.equal(config.tensorboard_dir, './tb');
  assert.equal(config.checkpoint_factor, 500);
  assert.equal(config.zero_optimization.reduce_bucket_size, 1000);
  throwsConfig(() => loadWith('train_micro_batch_size_per_gpu: 1\nsave_interval: 5\ncheckpoint_factor: 5\n'),
    'extra.yml line 3: `checkpoint_factor` is already set in line 2 (as `save_interval`)');
});

test('batch sizes: any two of micro batch, accumulation and total determine the third', () => {
  const batch = (yaml: string, worldSize?: number) => {
    const c = loadWith(yaml, { worldSize }).config;
    return [c.train_micro_batch_size_per_gpu, c.gradient_accumulation_steps, c.train_batch_size];
  };
  assert.deepEqual(batch('train_micro_batch_size_per_gpu: 4\n'), [4, 1, 4]);
  assert.deepEqual(batch('train_micro_batch_size_per_gpu: 4\ngradient_accumulation_steps: 8\n'), [4, 8, 32]);
  assert.deepEqual(batch('train_micro_batch_size_per_gpu: 4\ngradient_accumulation_steps: 8\n', 4), [4, 8, 128]);
  assert.deepEqual(batch('train_batch_size: 64\ntrain_micro_batch_size_per_gpu: 4\n', 2), [4, 8, 64]);
  assert.deepEqual(batch('train_batch_size: 64\ngradient_accumulation_steps: 2\n', 4), [8, 2, 64]);
  assert.deepEqual(batch('train_batch_size: 64\n', 8), [8, 1, 64]);
  // Tensor and pipeline parallel ranks do not add data-parallel replicas.
  assert.deepEqual(batch('train_micro_batch_size_per_gpu: 4\nmodel_parallel_size: 2\npipe_parallel_size: 2\n', 8), [4, 1, 8]);
  assert.deepEqual(batch('train_micro_batch_size_per_gpu: 4\npipe_parallel_size: 0\n', 3), [4, 1, 12]);
});

test('inconsistent batch sizes are an error naming the keys and where they were set', () => {
  throwsConfig(() => loadWith('train_batch_size: 64\ntrain_micro_batch_size_per_gpu: 4\ngradient_accumulation_steps: 2\n'),
    'inconsistent batch sizes: `train_batch_size` (', 'extra.yml line 1) = 64',
    '`train_micro_batch_size_per_gpu` (', 'extra.yml line 2)', '`gradient_accumulation_steps` (', 'extra.yml line 3)',
    '4 × 2 × 1 = 8');
  throwsConfig(() => loadWith('train_batch_size: 30\ntrain_micro_batch_size_per_gpu: 4\n'),
    'cannot derive `gradient_accumulation_steps`', '= 30 is not divisible by');
  throwsConfig(() => loadWith('gradient_accumulation_steps: 2\n'),
    'set `train_micro_batch_size_per_gpu` or `train_batch_size`');
  throwsConfig(() => loadWith('train_micro_batch_size_per_gpu: 1\nmodel_parallel_size: 2\n', { worldSize: 3 }),
    'world size 3 is not divisible by pipe_parallel_size × model_parallel_size = 1 × 2',
    '`model_parallel_size` (', 'extra.yml line 2)',
    'NeoX.ts does not implement tensor parallelism yet: to train, set both to 1',
    'a world size that is a multiple of 2 (neox config show --world-size N)');
});

test('precision is derived from the fp16 / bf16 blocks as GPT-NeoX does', () => {
  const mb = 'train_micro_batch_size_per_gpu: 1\n';
  assert.equal(loadWith(mb).config.precision, 'fp32');
  assert.equal(loadWith(`${mb}bf16: {enabled: true}\n`).config.precision, 'bfloat16');
  const fp16 = loadWith(`${mb}fp16: {enabled: true, initial_scale_power: 12}\n`).config;
  assert.equal(fp16.precision, 'fp16');
  assert.deepEqual(fp16.fp16, {
    enabled: true, type: null, loss_scale: 0, initial_scale_power: 12, loss_scale_window: 1000, hysteresis: 2, min_loss_scale: 1,
  });
  const explicit = loadWith(`${mb}precision: bfloat16\n`).config;
  assert.equal(explicit.bf16.enabled, true);
  assert.equal(explicit.fp16.enabled, false);
  throwsConfig(() => loadWith(`${mb}precision: bfloat16\nfp16:\n  enabled: true\n`),
    '`precision` (', 'extra.yml line 2) is bfloat16 but `fp16.enabled` (', 'extra.yml line 4) is true');
  throwsConfig(() => loadWith(`${mb}precision: fp32\nbf16: {enabled: true}\n`),
    '`precision` (', 'extra.yml line 2) is fp32 but `bf16.enabled` (', 'extra.yml line 3) is true');
  throwsConfig(() => loadWith(`${mb}fp16: {enabled: true}\nbf16: {enabled: true}\n`), 'are both true; enable one');
});

test('fp16 block with type bfloat16 means bf16 training, as in GPT-NeoX 1.x (Pythia-1B)', () => {
  const mb = 'train_micro_batch_size_per_gpu: 1\n';
  const block = 'fp16:\n  enabled: true\n  type: bfloat16\n  loss_scale: 0\n';
  const bf = loadWith(mb + block).config;
  assert.equal(bf.precision, 'bfloat16');
  assert.equal(bf.bf16.enabled, true);
  assert.equal(bf.fp16.type, 'bfloat16');
  // Agreeing keys are fine; so is `type: fp16` (fp16 as before), case-insensitively.
  assert.equal(loadWith(`${mb}precision: bfloat16\n${block}`).config.precision, 'bfloat16');
  assert.equal(loadWith(`${mb}${block}bf16: {enabled: true}\n`).config.precision, 'bfloat16');
  assert.equal(loadWith(`${mb}fp16: {enabled: true, type: FP16}\n`).config.precision, 'fp16');
  // An explicit precision that disagrees is an error, as GPT-NeoX asserts.
  throwsConfig(() => loadWith(`${mb}precision: fp16\n${block}`),
    '`precision` (', 'extra.yml line 2) is fp16 but `fp16.enabled` (', 'extra.yml line 4) is true with `fp16.type` (',
    'extra.yml line 5) bfloat16', 'make them agree');
  throwsConfig(() => loadWith(`${mb}precision: fp32\n${block}`), 'is fp32 but `fp16.enabled`');
  // type bfloat16 on a block that is not enabled: GPT-NeoX 1.x and 2.x disagree, so say which.
  throwsConfig(() => loadWith(`${mb}fp16: {enabled: false, type: bfloat16}\n`),
    '`fp16.type` (', 'extra.yml line 2) is bfloat16 but `fp16.enabled` is not true and no other key sets the precision',
    'say which you mean with `precision: bfloat16` or `precision: fp32`, or remove `fp16.type`');
  throwsConfig(() => loadWith(`${mb}precision: fp16\nfp16: {type: bfloat16}\n`), '`fp16.type` (', 'and `precision` (');
  assert.equal(loadWith(`${mb}precision: fp32\nfp16: {type: bfloat16}\n`).config.precision, 'fp32');
  assert.equal(loadWith(`${mb}bf16: {enabled: true}\nfp16: {type: bfloat16}\n`).config.precision, 'bfloat16');
  // Other spellings are not guessed at.
  throwsConfig(() => loadWith(`${mb}fp16: {enabled: true, type: bf16}\n`),
    'extra.yml line 2: `fp16.type` must be one of: fp16, bfloat16; got "bf16"');
  // The shown config loads back to the same one.
  const again = write({ 'shown.yml': formatConfig(loadWith(mb + block)) });
  assert.deepEqual(loadConfig(again).config, bf);
});

test('tensor and pipeline parallelism load and show, but training refuses them (assertTrainable)', () => {
  const mb = 'train_micro_batch_size_per_gpu: 4\n';
  // GPT-NeoX's derivation: 8 GPUs / (pipe 2 × model 2) = 2 replicas.
  const loaded = loadWith(`${mb}model_parallel_size: 2\npipe_parallel_size: 2\n`, { worldSize: 8 });
  assert.equal(loaded.config.train_batch_size, 8);
  assert.match(formatConfig(loaded), /^model_parallel_size: 2$/m);
  const err = throwsConfig(() => assertTrainable(loaded),
    /^model_parallel_size is 2 in \S*extra\.yml line 2: tensor parallelism is not implemented in NeoX\.ts yet; set it to 1 \(every GPU then holds the whole model and trains data-parallel\); /,
    'pipe_parallel_size is 2 in ', 'extra.yml line 3: pipeline parallelism is not implemented in NeoX.ts yet; set it to 1 or 0',
    'The data-parallel size then becomes 8 instead of 2');
  assert.equal(err.key, 'model_parallel_size');
  assert.equal(err.line, 2);
  throwsConfig(() => assertTrainable(loadWith(`${mb}pipe_parallel_size: 4\n`, { worldSize: 4 })),
    /^pipe_parallel_size is 4 in \S*extra\.yml line 2: pipeline parallelism is not implemented/);
  throwsConfig(() => assertTrainable(loadConfig([TINY], { overrides: { model_parallel_size: 2 }, worldSize: 2 })),
    'model_parallel_size is 2 in overrides: tensor parallelism');
  // GPT-NeoX's own 20B.yml (pipe 4, model 2) loads on 96 GPUs but cannot be trained.
  throwsConfig(() => assertTrainable(loadConfig([NEOX_20B], { worldSize: 96 })),
    'model_parallel_size is 2 in ', '20B.yml line ', 'pipe_parallel_size is 4 in ');
  // pipe_parallel_size 0 and 1 both mean no pipeline, as in GPT-NeoX.
  for (const pp of [0, 1]) assertTrainable(loadWith(`${mb}pipe_parallel_size: ${pp}\nmodel_parallel_size: 1\n`, { worldSize: 2 }));
  assertTrainable(loadWith(mb));
});

test('model values: defaults from other keys and divisibility checks', () => {
  const mb = 'train_micro_batch_size_per_gpu: 1\n';
  const gqa = loadWith(`${mb}num_kv_heads: 2\nmax_position_embeddings: 256\n`).config;
  assert.equal(gqa.num_kv_heads, 2);
  assert.equal(gqa.max_position_embeddings, 256);
  throwsConfig(() => loadWith(`${mb}num_kv_heads: 3\n`), '`num_kv_heads` (', ') = 3 must divide `num_attention_heads`');
  throwsConfig(() => loadConfig(write({ 'x.yml': `${MODEL.replace('64', '66')}${mb}` })),
    '`hidden_size` (', 'line 3) = 66 must be divisible by `num_attention_heads`');
  throwsConfig(() => loadWith(`${mb}max_position_embeddings: 64\n`), 'must be ≥ `seq_length`');
  throwsConfig(() => loadWith(`${mb}intermediate_size: 256\nexpansion_factor: 4\n`), 'not both');
  throwsConfig(() => loadWith('optimizer: {params: {lr: 0.001}}\nmin_lr: 0.01\n' + mb), '`min_lr` (', 'must be ≤ `optimizer.params.lr`');
  assert.equal(loadWith(`${mb}train_iters: 1000\nlr_decay_fraction: 0.5\n`).config.lr_decay_iters, 500);
  throwsConfig(() => loadConfig(write({ 'x.yml': 'num_layers: 2\nhidden_size: 8\n' })), 'missing required key `num_attention_heads`');
});

test('attention_config in GPT-NeoX form is expanded to one type per layer', () => {
  const mb = 'train_micro_batch_size_per_gpu: 1\n';
  assert.deepEqual(loadWith(mb).config.attention_config, ['global', 'global']);
  assert.deepEqual(loadWith(`${mb}attention_config: [[["flash"], 2]]\n`).config.attention_config, ['flash', 'flash']);
  assert.deepEqual(loadWith(`${mb}attention_config: [[["global", "flash"], "all"]]\n`).config.attention_config, ['global', 'flash']);
  assert.deepEqual(loadWith(`${mb}attention_config: [[["flash"], 1], [["global"], 1]]\n`).config.attention_config, ['flash', 'global']);
  assert.deepEqual(loadWith(`${mb}attention_config: ["global", "flash"]\n`).config.attention_config, ['global', 'flash']);
  throwsConfig(() => loadWith(`${mb}attention_config: [[["global"], 3]]\n`), 'expands to 3 layers but `num_layers`');
  throwsConfig(() => loadWith(`${mb}attention_config: [[["globl"], 2]]\n`), 'extra.yml line 2: `attention_config[0][0][0]` must be one of: global');
  // As GPT-NeoX's expand_attention_types: "all" repeats its pattern over every layer and ends the list.
  assert.deepEqual(loadWith(`${mb}attention_config: [[["global"], 5], [["flash"], "all"]]\n`).config.attention_config, ['flash', 'flash']);
  throwsConfig(() => loadWith(`${mb}attention_config: [[["global"], 1]]\n`),
    '`attention_config` (', 'extra.yml line 2) expands to 1 layers but `num_layers` (', 'line 2) = 2; the repeat counts must add up');
  throwsConfig(() => loadWith(`${mb}attention_config: [[["global", "flash", "global"], "all"]]\n`),
    'num_layers (2) is not divisible by the pattern length 3');
});

test('attention types other than global and flash are an error naming the layers', () => {
  const files = (spec: string, layers = 12) => write({
    'model.yml': MODEL.replace('num_layers: 2', `num_layers: ${layers}`), 'extra.yml': `train_micro_batch_size_per_gpu: 1\nattention_config: ${spec}\n`,
  });
  throwsConfig(() => loadConfig(files('[[["local"], 12]]')),
    /extra\.yml line 2\): layers 0–11 ask for 'local' attention, which NeoX\.ts does not implement/,
    "use 'global' or 'flash' there (and sliding_window_width for a sliding window over tokens");
  throwsConfig(() => loadConfig(files('[[["global", "local"], 6]]')), "layers 1, 3, 5, 7, 9, 11 ask for 'local' attention");
  throwsConfig(() => loadConfig(files('[[["flash"], 8], [["sparse_fixed"], 2], [["bigbird"], 1], [["global"], 1]]')),
    "layers 8, 9 ask for 'sparse_fixed' and layer 10 asks for 'bigbird' attention, which NeoX.ts does not implement");
  throwsConfig(() => loadConfig(files('["global", "mamba", "mamba", "mamba"]', 4)), "layers 1–3 ask for 'mamba' attention");
  for (const t of ['sparse_variable', 'bslongformer', 'gmlp', 'amlp', 'rwkv']) {
    throwsConfig(() => loadConfig(files(`[[["${t}"], "all"]]`, 4)), `layers 0–3 ask for '${t}' attention, which NeoX.ts does not implement`);
  }
});

test('data paths: weights default to 1.0 and must match; train/valid/test go together', () => {
  const mb = 'train_micro_batch_size_per_gpu: 1\n';
  const paths = 'train_data_paths: [a, b]\nvalid_data_paths: [c]\ntest_data_paths: [d]\n';
  const { config } = loadWith(mb + paths);
  assert.deepEqual(config.train_data_weights, [1.0, 1.0]);
  assert.deepEqual(config.valid_data_weights, [1.0]);
  throwsConfig(() => loadWith(`${mb + paths}train_data_weights: [1.0]\n`), 'has 1 entries but `train_data_paths`');
  throwsConfig(() => loadWith(`${mb}train_data_paths: [a]\n`), 'set, so `valid_data_paths` and `test_data_paths` must be set too');
  throwsConfig(() => loadWith(`${mb}split: "90,x,5"\n`), '`split` (');
});

test('overrides replace file values and reach into blocks with dotted keys', () => {
  const { config } = loadConfig([TINY], {
    overrides: { 'train-iters': 7, 'optimizer.params.lr': 0.01, seed: 5, 'fp16.enabled': true },
  });
  assert.equal(config.train_iters, 7);
  assert.equal(config.lr, 0.01);
  assert.deepEqual(config.optimizer.params.betas, [0.9, 0.95]);
  assert.equal(config.seed, 5);
  assert.equal(config.precision, 'fp16');
  throwsConfig(() => loadConfig([TINY], { overrides: { num_layers: 'two' } }),
    'overrides: `num_layers` must be a positive integer, got "two"');
});

test('YAML syntax errors and unreadable files name the file', () => {
  throwsConfig(() => loadWith('train_micro_batch_size_per_gpu: 1\nfoo: [1, 2\n'), /extra\.yml line \d: invalid YAML/);
  throwsConfig(() => loadConfig([join(tmpdir(), 'no-such-neox-config.yml')]), 'no-such-neox-config.yml: cannot read config file');
});

test("GPT-NeoX's pythia/160M.yml loads unchanged, its DeepSpeed keys reported as ignored", () => {
  const { config, ignored } = loadConfig([PYTHIA_160M]);
  assert.equal(config.hidden_size, 768);
  assert.equal(config.num_layers, 12);
  assert.equal(config.num_attention_heads, 12);
  assert.equal(config.seq_length, 2048);
  assert.equal(config.pos_emb, 'rotary');
  assert.equal(config.rotary_pct, 0.25);
  assert.equal(config.gpt_j_residual, true);
  assert.equal(config.no_weight_tying, true);
  assert.equal(config.bias_gelu_fusion, true);
  assert.equal(config.init_method, 'small_init');
  assert.equal(config.output_layer_init_method, 'wang_init');
  assert.deepEqual(config.attention_config, new Array(12).fill('flash'));
  assert.equal(config.precision, 'fp16');
  assert.equal(config.fp16.initial_scale_power, 12);
  assert.equal(config.optimizer.type, 'adam');
  assert.equal(config.lr, 0.0006);
  assert.deepEqual(config.optimizer.params.betas, [0.9, 0.95]);
  assert.equal(config.min_lr, 0.00006);
  assert.equal(config.zero_optimization.stage, 1);
  assert.equal(config.train_micro_batch_size_per_gpu, 32);
  assert.equal(config.train_batch_size, 32);
  assert.equal(config.lr_decay_style, 'cosine');
  assert.equal(config.checkpoint_factor, 1000);
  assert.deepEqual(config.extra_save_iters, [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512]);
  assert.equal(config.tokenizer_type, 'HFTokenizer');

  const at = new Map(ignored.map((i) => [i.key, i]));
  assert.deepEqual([...at.keys()].sort(), [
    'distributed_backend', 'fp16.fp16', 'num_workers', 'partition_activations',
    'scaled_upper_triang_masked_softmax_fusion', 'steps_per_print', 'synchronize_each_layer',
    'wall_clock_breakdown', 'zero_optimization.cpu_offload',
  ]);
  assert.deepEqual(at.get('wall_clock_breakdown'), {
    key: 'wall_clock_breakdown', file: PYTHIA_160M, line: 81, value: true,
    reason: 'DeepSpeed setting with no NeoX.ts counterpart',
  });
  assert.equal(at.get('zero_optimization.cpu_offload')!.line, 42);
  assert.equal(at.get('scaled_upper_triang_masked_softmax_fusion')!.line, 18);
});

test("GPT-NeoX's 20B.yml (Python True, trailing commas, dashed keys) loads on 96 GPUs", () => {
  const { config } = loadConfig([NEOX_20B], { worldSize: 96 });
  assert.equal(config.hidden_size, 6144);
  assert.equal(config.num_layers, 44);
  assert.equal(config.zero_optimization.overlap_comm, true);
  assert.equal(config.tensorboard_dir, './tensorboard');
  // 96 GPUs / (pipe 4 × model 2) = 12 replicas × micro batch 4 × accumulation 32.
  assert.equal(config.train_batch_size, 1536);
  throwsConfig(() => loadConfig([NEOX_20B]), 'world size 1 is not divisible by pipe_parallel_size × model_parallel_size = 4 × 2');
});

test('formatConfig prints YAML that loads back to the same config, then the ignored keys', () => {
  for (const [files, worldSize] of [[[PYTHIA_160M], 1], [[NEOX_20B], 96], [[TINY], 1]] as const) {
    const loaded = loadConfig([...files], { worldSize });
    const text = formatConfig(loaded);
    const [again] = write({ 'shown.yml': text });
    const reloaded = loadConfig([again!], { worldSize });
    assert.deepEqual(reloaded.config, loaded.config);
    assert.deepEqual(reloaded.ignored, []);
  }
  const text = formatConfig(loadConfig([PYTHIA_160M]));
  assert.match(text, /^hidden_size: 768$/m);
  assert.match(text, /^attention_config: \[\[\[flash\], 12\]\]$/m);
  assert.match(text, /^# Ignored keys/m);
  assert.match(text, /^# {3}wall_clock_breakdown: true {2}\(.*pythia-160M\.yml line 81\) - DeepSpeed setting/m);
});

test('padVocabSize matches GPT-NeoX (Pythia 50304, NeoX-20B 50432)', () => {
  assert.equal(padVocabSize(50277, 128), 50304);
  assert.equal(padVocabSize(50277, 128, 2), 50432);
  assert.equal(padVocabSize(50304, 128), 50304);
  assert.equal(padVocabSize(512, 128, 1), 512);
});

test('the schema covers the GPT-NeoX keys NeoX.ts acts on, plus its extensions', () => {
  const keys = `hidden_size num_layers num_attention_heads num_kv_heads intermediate_size seq_length
    max_position_embeddings pos_emb rotary_pct rotary_emb_base norm layernorm_epsilon rms_norm_epsilon
    scalenorm_epsilon activation bias_gelu_fusion gpt_j_residual gpt_j_tied no_weight_tying
    use_bias_in_attn_linear use_bias_in_mlp use_bias_in_norms init_method output_layer_init_method
    init_method_std hidden_dropout attention_dropout make_vocab_size_divisible_by sliding_window_width
    attention_config precision fp16 bf16 train_iters lr_decay_iters lr_decay_style warmup min_lr optimizer
    weight_decay gradient_clipping train_micro_batch_size_per_gpu gradient_accumulation_steps
    train_batch_size seed data_path train_data_paths valid_data_paths test_data_paths train_data_weights
    valid_data_weights test_data_weights weight_by_num_documents weighted_sampler_alpha split data_impl
    mmap_warmup tokenizer_type vocab_file merge_file eod_mask_loss train_epochs save load
    checkpoint_factor keep_last_n_checkpoints finetune no_load_optim no_load_rng eval_interval eval_iters
    log_interval tensorboard_dir log_dir use_wandb wandb_project checkpoint_activations curriculum_learning
    pipe_parallel_size model_parallel_size sequence_parallel zero_optimization launcher hostfile num_gpus
    num_nodes include exclude text_gen_type temperature top_k top_p maximum_tokens prompt_end
    sample_input_file sample_output_file num_samples recompute eval_tasks`.split(/\s+/);
  for (const key of keys) assert.ok(SCHEMA_BY_KEY.has(key), key);
  const extensions = ['device', 'preprocess_inputs', 'sample_after_training', 'loss_chunk_tokens'];
  for (const key of extensions) assert.equal(SCHEMA_BY_KEY.get(key)?.ext, true, key);
  assert.equal(SCHEMA.filter((s) => s.ext).length, extensions.length);
  for (const key of IGNORED_KEYS.keys()) assert.ok(!SCHEMA_BY_KEY.has(key), `${key} is both supported and ignored`);
  assert.equal(new Set(SCHEMA.map((s) => s.key)).size, SCHEMA.length);
});

test('docs/config.md is current (run npm run docs:config)', () => {
  const onDisk = readFileSync(CONFIG_DOCS_PATH, 'utf8');
  assert.ok(onDisk === renderConfigDocs(), 'docs/config.md is out of date: run npm run docs:config');
});
