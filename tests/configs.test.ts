// The model configs in configs/ (GPT-NeoX's own, see configs/local_setup.yml): each loads through
// loadConfig merged with configs/local_setup.yml, and each describes the published model, checked by
// parameter count. countParameters (src/models/gpt_neox/params.ts) computes the count without
// allocating; it is first checked against GPTNeoX.numParameters() on small random architectures.
// quickstart.yml has its own tests (quickstart.test.ts).
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { loadConfig, padVocabSize } from '../src/config/index.js';
import { GPTNeoX, countParameters, resolveModelConfig, type NeoXModelKeys } from '../src/models/gpt_neox/index.js';
import { cpu, rng } from './helpers/check.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CONFIGS = join(ROOT, 'configs');
const LOCAL_SETUP = join(CONFIGS, 'local_setup.yml');
/** Training settings for the architecture-only LLaMA-style configs, as GPT-NeoX's llama/README.md uses it. */
const LLAMA_TRAIN = join(CONFIGS, 'llama/train_config.yml');
const ARCHITECTURE_ONLY = /^(llama|llama2|mistral)\//;

/** Every .yml under configs/, as paths relative to it ("pythia/160M.yml"). */
function configFiles(dir = CONFIGS): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return configFiles(path);
    return e.isFile() && e.name.endsWith('.yml') ? [relative(CONFIGS, path)] : [];
  }).sort();
}

/** The files a run of this config gives `neox train`, in order. */
function filesFor(name: string): string[] {
  if (name === 'llama/train_config.yml') return [join(CONFIGS, 'llama/7B.yml'), LLAMA_TRAIN, LOCAL_SETUP];
  const model = join(CONFIGS, name);
  return ARCHITECTURE_ONLY.test(name) ? [model, LLAMA_TRAIN, LOCAL_SETUP] : [model, LOCAL_SETUP];
}

// The tokenizers' own vocabulary sizes; configs pad them (make_vocab_size_divisible_by).
const NEOX_20B_TOKENIZER = 50277; // Pythia and GPT-NeoX-20B: 20B_tokenizer.json
const LLAMA_TOKENIZER = 32000; // LLaMA, Llama 2, Mistral 7B v0.1, Code Llama 34B
const CODELLAMA_7B_TOKENIZER = 32016; // Code Llama 7B adds 16 infilling tokens

/** Published parameter counts (the Hugging Face checkpoints) and the tokenizer each model uses. */
const PUBLISHED: Record<string, { params: number; tokenizerVocab: number; paddedVocab: number }> = {
  'pythia/14M.yml': { params: 14_067_712, tokenizerVocab: NEOX_20B_TOKENIZER, paddedVocab: 50304 },
  'pythia/31M.yml': { params: 30_494_720, tokenizerVocab: NEOX_20B_TOKENIZER, paddedVocab: 50304 },
  'pythia/70M.yml': { params: 70_426_624, tokenizerVocab: NEOX_20B_TOKENIZER, paddedVocab: 50304 },
  'pythia/160M.yml': { params: 162_322_944, tokenizerVocab: NEOX_20B_TOKENIZER, paddedVocab: 50304 },
  'pythia/410M.yml': { params: 405_334_016, tokenizerVocab: NEOX_20B_TOKENIZER, paddedVocab: 50304 },
  'pythia/1B.yml': { params: 1_011_781_632, tokenizerVocab: NEOX_20B_TOKENIZER, paddedVocab: 50304 },
  'pythia/1-4B.yml': { params: 1_414_647_808, tokenizerVocab: NEOX_20B_TOKENIZER, paddedVocab: 50304 },
  'pythia/2-8B.yml': { params: 2_775_208_960, tokenizerVocab: NEOX_20B_TOKENIZER, paddedVocab: 50304 },
  'pythia/6-9B.yml': { params: 6_857_302_016, tokenizerVocab: NEOX_20B_TOKENIZER, paddedVocab: 50432 },
  'pythia/12B.yml': { params: 11_846_072_320, tokenizerVocab: NEOX_20B_TOKENIZER, paddedVocab: 50688 },
  '20B.yml': { params: 20_554_567_680, tokenizerVocab: NEOX_20B_TOKENIZER, paddedVocab: 50432 },
  'llama/7B.yml': { params: 6_738_415_616, tokenizerVocab: LLAMA_TOKENIZER, paddedVocab: 32000 },
  'llama/13B.yml': { params: 13_015_864_320, tokenizerVocab: LLAMA_TOKENIZER, paddedVocab: 32000 },
  'llama/30B.yml': { params: 32_528_943_616, tokenizerVocab: LLAMA_TOKENIZER, paddedVocab: 32000 },
  'llama/65B.yml': { params: 65_285_660_672, tokenizerVocab: LLAMA_TOKENIZER, paddedVocab: 32000 },
  'llama2/7B.yml': { params: 6_738_415_616, tokenizerVocab: LLAMA_TOKENIZER, paddedVocab: 32000 },
  'llama2/13B.yml': { params: 13_015_864_320, tokenizerVocab: LLAMA_TOKENIZER, paddedVocab: 32000 },
  'llama2/70B.yml': { params: 68_976_648_192, tokenizerVocab: LLAMA_TOKENIZER, paddedVocab: 32000 },
  'llama2/codellama_7B.yml': { params: 6_738_546_688, tokenizerVocab: CODELLAMA_7B_TOKENIZER, paddedVocab: 32016 },
  'llama2/codellama_34B.yml': { params: 33_743_970_304, tokenizerVocab: LLAMA_TOKENIZER, paddedVocab: 32000 },
  'mistral/7B.yml': { params: 7_241_732_096, tokenizerVocab: LLAMA_TOKENIZER, paddedVocab: 32000 },
};

/** Configs that are not a model: merged into the others. */
const NOT_MODELS = new Set(['local_setup.yml', 'llama/train_config.yml']);

test('every config in configs/ loads merged with configs/local_setup.yml', () => {
  const names = configFiles().filter((n) => n !== 'quickstart.yml');
  for (const name of Object.keys(PUBLISHED)) assert.ok(names.includes(name), `configs/${name} is missing`);
  for (const name of names) {
    if (name === 'local_setup.yml') continue; // merged into every other one
    const files = filesFor(name);
    let loaded;
    try {
      loaded = loadConfig(files);
    } catch (err) {
      assert.fail(`${files.map((f) => relative(ROOT, f)).join(' + ')}: ${(err as Error).message}`);
    }
    const c = loaded.config;
    // local_setup.yml supplies the machine-specific part.
    assert.equal(c.data_path, 'data/enwik8/enwik8_text_document', name);
    assert.equal(c.save, 'runs/neox/checkpoints', name);
    assert.equal(c.log_dir, 'runs/neox/logs', name);
    if (!NOT_MODELS.has(name)) assert.ok(name in PUBLISHED, `configs/${name}: add its published parameter count to PUBLISHED`);
    // Nothing they set is silently dropped: what is not acted on is reported, with its file and line.
    for (const i of loaded.ignored) assert.ok(i.line !== null && files.includes(i.file), `${name}: ${i.key}`);
  }
});

test('pythia/1B.yml trains in bfloat16: its fp16 block has type bfloat16 (GPT-NeoX 1.x form)', () => {
  const { config, ignored } = loadConfig(filesFor('pythia/1B.yml'));
  assert.equal(config.precision, 'bfloat16');
  assert.equal(config.bf16.enabled, true);
  assert.ok(!ignored.some((i) => i.key === 'fp16.type'), 'fp16.type is acted on, not ignored');
  // Every other Pythia config trains in fp16.
  assert.equal(loadConfig(filesFor('pythia/1-4B.yml')).config.precision, 'fp16');
});

test('`neox config show MODEL local_setup.yml` sees the model from the first file and the paths from the second', () => {
  const { config, ignored } = loadConfig([join(CONFIGS, 'pythia/160M.yml'), LOCAL_SETUP]);
  assert.equal(config.hidden_size, 768);
  assert.equal(config.tokenizer_type, 'HFTokenizer');
  assert.equal(config.vocab_file, 'data/20B_tokenizer.json');
  assert.equal(config.tensorboard_dir, 'runs/neox/tensorboard');
  assert.equal(config.train_batch_size, 32);
  assert.deepEqual(ignored.filter((i) => i.file === LOCAL_SETUP).map((i) => i.key), ['checkpoint_validation_with_forward_pass']);
});

// ---------------------------------------------------------------------------------------------
// countParameters

function keys(over: Partial<NeoXModelKeys> = {}): NeoXModelKeys {
  return {
    hidden_size: 16, num_layers: 2, num_attention_heads: 4, num_kv_heads: null, intermediate_size: null,
    max_position_embeddings: 16, seq_length: 8, pos_emb: 'rotary', rotary_pct: 0.5, rotary_emb_base: 10000,
    norm: 'layernorm', layernorm_epsilon: 1e-5, rms_norm_epsilon: 1e-6, scalenorm_epsilon: 1e-5, use_bias_in_norms: true,
    activation: 'gelu', bias_gelu_fusion: false, gpt_j_residual: false, gpt_j_tied: false, no_weight_tying: true,
    use_bias_in_attn_linear: true, use_bias_in_mlp: true, hidden_dropout: 0, attention_dropout: 0,
    sliding_window_width: null, mlp_multiple_of: 1, expansion_factor: null,
    init_method: 'normal', output_layer_init_method: 'scaled_normal', init_method_std: 0.02, seed: 7,
    ...over,
  };
}

test('countParameters equals GPTNeoX.numParameters() on small random architectures', () => {
  const r = rng(2024);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const seen = new Set<string>();
  for (let i = 0; i < 40; i++) {
    const heads = pick([2, 4, 8]);
    const headDim = pick([4, 8]);
    const over: Partial<NeoXModelKeys> = {
      hidden_size: heads * headDim,
      num_layers: pick([1, 2, 3]),
      num_attention_heads: heads,
      // GPT-NeoX's fused QKV layout needs head_dim × num_kv_heads divisible by num_attention_heads.
      num_kv_heads: pick([null, heads, heads / 2, 1].filter((kv) => kv === null || (headDim * kv) % heads === 0)),
      pos_emb: pick(['rotary', 'learned', 'sinusoidal', 'alibi', 'none']),
      rotary_pct: 1,
      max_position_embeddings: pick([16, 24]),
      norm: pick(['layernorm', 'rmsnorm', 'scalenorm']),
      use_bias_in_norms: r() < 0.5,
      activation: pick(['gelu', 'relu', 'silu', 'swiglu', 'geglu']),
      intermediate_size: pick([null, 40, 64, 96]),
      mlp_multiple_of: pick([1, 8, 16]),
      gpt_j_residual: r() < 0.5,
      gpt_j_tied: r() < 0.5,
      no_weight_tying: r() < 0.5,
      use_bias_in_attn_linear: r() < 0.5,
      use_bias_in_mlp: r() < 0.5,
    };
    const V = pick([37, 64, 100]);
    const cfg = resolveModelConfig(keys(over), V);
    const model = new GPTNeoX(cfg, cpu());
    assert.equal(countParameters(cfg), model.numParameters(), JSON.stringify({ ...over, V }));
    seen.add(`${cfg.posEmb}/${cfg.norm}/${cfg.gated}/${cfg.numKvHeads < cfg.numHeads}/${cfg.tiedEmbeddings}`);
  }
  assert.ok(seen.size >= 20, `only ${seen.size} distinct architectures`);
});

test('countParameters covers each option: learned positions, tied head, SwiGLU, GQA, no biases, gpt_j_tied', () => {
  const cases: Partial<NeoXModelKeys>[] = [
    { pos_emb: 'learned' },
    { no_weight_tying: false },
    { activation: 'swiglu', intermediate_size: 96, mlp_multiple_of: 8 },
    { num_kv_heads: 2 },
    { num_kv_heads: 1, hidden_size: 64, num_attention_heads: 8 },
    { use_bias_in_attn_linear: false, use_bias_in_mlp: false, use_bias_in_norms: false },
    { norm: 'rmsnorm' },
    { norm: 'scalenorm' },
    { gpt_j_residual: true, gpt_j_tied: true },
    { gpt_j_residual: true, gpt_j_tied: false },
  ];
  for (const over of cases) {
    const cfg = resolveModelConfig(keys(over), 50);
    assert.equal(countParameters(cfg), new GPTNeoX(cfg, cpu()).numParameters(), JSON.stringify(over));
  }
});

test('each config describes the published model: parameter count with its padded vocabulary', () => {
  for (const [name, want] of Object.entries(PUBLISHED)) {
    const { config } = loadConfig(filesFor(name));
    // As the trainer pads the tokenizer's vocabulary (src/train/trainer.ts).
    const vocab = padVocabSize(want.tokenizerVocab, config.make_vocab_size_divisible_by, config.model_parallel_size);
    assert.equal(vocab, want.paddedVocab, `${name}: padded vocabulary`);
    const got = countParameters(resolveModelConfig(config, vocab));
    assert.equal(got, want.params, `${name}: ${got.toLocaleString('en-US')} parameters, published ${want.params.toLocaleString('en-US')}`);
  }
});
