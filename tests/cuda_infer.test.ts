// Inference on CUDA: KV-cached decoding gives the recompute path's tokens and the CPU's tokens
// (f32, identical weights), batched prompts of different lengths give what each gives alone,
// bf16 cached logits follow the recompute path's, log-likelihood scoring matches the CPU, and
// decoding frees every device tensor it makes.
// Without a GPU each test reports `skipped: no CUDA device`.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import '../src/backends/cpu/index.js';
import { initCuda } from '../src/backends/cuda/index.js';
import { CharLevelTokenizer } from '../src/data/tokenizer.js';
import { type DecodeOptions, generateTokens, loglikelihoods } from '../src/infer/index.js';
import { GPTNeoX, resolveModelConfig, type NeoXModelKeys } from '../src/models/gpt_neox/index.js';
import type { Backend } from '../src/tensor/index.js';
import { getBackend } from '../src/tensor/index.js';
import { assertClose, rng } from './helpers/check.js';
import { decodeWithLogits } from './helpers/model.js';

const gpu = initCuda();
const skip = gpu ? false : 'skipped: no CUDA device';

function keys(over: Partial<NeoXModelKeys> = {}): NeoXModelKeys {
  return {
    hidden_size: 64, num_layers: 2, num_attention_heads: 4, num_kv_heads: null, intermediate_size: null,
    max_position_embeddings: 64, seq_length: 64, pos_emb: 'rotary', rotary_pct: 0.5, rotary_emb_base: 10000,
    norm: 'layernorm', layernorm_epsilon: 1e-5, rms_norm_epsilon: 1e-6, scalenorm_epsilon: 1e-5,
    activation: 'gelu', bias_gelu_fusion: false, gpt_j_residual: false, gpt_j_tied: false, no_weight_tying: true,
    use_bias_in_attn_linear: true, use_bias_in_mlp: true, hidden_dropout: 0, attention_dropout: 0,
    sliding_window_width: null, init_method: 'normal', output_layer_init_method: 'scaled_normal', init_method_std: 0.25, seed: 11,
    ...over,
  };
}

const V = 64;
const model = (backend: Backend, over: Partial<NeoXModelKeys> = {}, vocab = V) => new GPTNeoX(resolveModelConfig(keys(over), vocab), backend);

function randomPrompt(n: number, seed: number, vocab = V): number[] {
  const r = rng(seed);
  return Array.from({ length: n }, () => Math.floor(r() * vocab));
}

const VARIANTS: [string, Partial<NeoXModelKeys>][] = [
  ['rotary, sequential residual', {}],
  ['Pythia-style parallel residual', { gpt_j_residual: true, rotary_pct: 0.25 }],
  ['GQA, RMSNorm, SwiGLU', { num_kv_heads: 2, norm: 'rmsnorm', activation: 'swiglu', rotary_pct: 1 }],
  ['sliding window shorter than the generation', { num_kv_heads: 1, sliding_window_width: 4, rotary_pct: 1 }],
  ['ALiBi', { pos_emb: 'alibi' }],
  ['learned positions', { pos_emb: 'learned' }],
];

for (const [name, over] of VARIANTS) {
  test(`CUDA f32: cached greedy decoding equals recompute and the CPU: ${name}`, { skip }, () => {
    const onGpu = model(gpu!, over);
    const onCpu = model(getBackend('cpu'), over);
    const prompt = randomPrompt(7, 3);
    const o: DecodeOptions = { maxNewTokens: 14, temperature: 0 };
    const cached = decodeWithLogits(onGpu, [prompt], o);
    const recomputed = decodeWithLogits(onGpu, [prompt], { ...o, recompute: true });
    const cpu = decodeWithLogits(onCpu, [prompt], o);
    assert.deepEqual(cached.tokens, recomputed.tokens, 'cache vs recompute');
    assert.deepEqual(cached.tokens, cpu.tokens, 'CUDA vs CPU');
    assert.equal(cached.tokens[0]!.length, 14);
    cached.logits[0]!.forEach((l, i) => assertClose(l, cpu.logits[0]![i]!, { rtol: 1e-3, atol: 1e-4 }, `step ${i} logits vs CPU`));
  });
}

test('CUDA: batched prompts of different lengths give what each gives alone; seeded sampling repeats', { skip }, () => {
  const m = model(gpu!, { num_kv_heads: 2 });
  const prompts = [randomPrompt(3, 21), randomPrompt(9, 22), randomPrompt(1, 23), randomPrompt(6, 24)];
  for (const recompute of [false, true]) {
    const o: DecodeOptions = { maxNewTokens: 8, recompute };
    const batched = generateTokens(m, prompts, o).map((r) => r.tokens);
    const alone = prompts.map((p) => generateTokens(m, [p], o)[0]!.tokens);
    assert.deepEqual(batched, alone, `recompute=${recompute}`);
  }
  const sampled = (seed: number) => generateTokens(m, prompts, { maxNewTokens: 10, temperature: 0.9, topP: 0.95, seed }).map((r) => r.tokens);
  assert.deepEqual(sampled(5), sampled(5));
});

test('CUDA bf16: cached logits follow the recompute path within bf16 rounding', { skip }, () => {
  const m = model(gpu!, { gpt_j_residual: true });
  m.setComputeDtype('bf16');
  const prompt = randomPrompt(6, 9);
  const o: DecodeOptions = { maxNewTokens: 10, temperature: 0 };
  const cached = decodeWithLogits(m, [prompt], o);
  // Compared while the two greedy paths agree (a near tie may round either way in bf16).
  const forced = decodeWithLogits(m, [prompt], { ...o, recompute: true });
  const steps = Math.min(cached.tokens[0]!.length, forced.tokens[0]!.length);
  let same = 0;
  while (same < steps && cached.tokens[0]![same] === forced.tokens[0]![same]) same++;
  assert.ok(same >= 1, 'the first greedy token agrees');
  for (let i = 0; i < same; i++) {
    const a = cached.logits[0]![i]!, b = forced.logits[0]![i]!;
    const scale = Math.max(...Array.from(b, Math.abs));
    assertClose(a, b, { rtol: 0, atol: 0.03 * scale }, `bf16 step ${i}`);
  }
});

test('CUDA: log-likelihood scoring matches the CPU, and decoding frees its device memory', { skip }, () => {
  const tok = new CharLevelTokenizer();
  const vocab = Math.ceil(tok.vocabSize / 64) * 64;
  const onGpu = model(gpu!, { max_position_embeddings: 64 }, vocab);
  const onCpu = model(getBackend('cpu'), { max_position_embeddings: 64 }, vocab);
  const requests = [
    { context: 'The cat sat on the', continuation: ' mat' },
    { context: 'abc', continuation: 'def' },
    { context: '', continuation: 'hello' },
    { context: 'a much longer context than the others, to pad the batch', continuation: ' end' },
  ];
  const g = loglikelihoods(onGpu, tok, requests, { batchSize: 3 });
  const c = loglikelihoods(onCpu, tok, requests, { batchSize: 3 });
  assertClose(g.map((r) => r.logprob), c.map((r) => r.logprob), { rtol: 1e-4, atol: 1e-4 }, 'logprobs');
  assert.deepEqual(g.map((r) => r.greedy), c.map((r) => r.greedy));
  const prompts = [randomPrompt(5, 1, vocab), randomPrompt(2, 2, vocab)];
  generateTokens(onGpu, prompts, { maxNewTokens: 3 }); // warm
  const before = gpu!.memoryStats().allocated;
  generateTokens(onGpu, prompts, { maxNewTokens: 9 });
  generateTokens(onGpu, prompts, { maxNewTokens: 9, recompute: true, temperature: 1, seed: 3 });
  loglikelihoods(onGpu, tok, requests);
  assert.equal(gpu!.memoryStats().allocated, before);
});
