// Hugging Face interop (src/convert, models/*/hf_adapter.ts): parity with transformers on golden
// fixtures, exact round trips, both config.json forms, and errors that name what does not fit.
//
// Fixtures (tests/fixtures/hf/, made by tools/make_hf_fixtures.py with transformers 5.17 / torch
// 2.11 on CPU in fp32, eager attention; see summary.json there):
//   gpt_neox/  GPTNeoXForCausalLM, rotary_pct 0.25, parallel residual, exact GELU, untied, fp32
//   llama/     LlamaForCausalLM, GQA 4/2, rope_theta 50000, tied, intermediate 48, fp32, 2 shards
//   mistral/   MistralForCausalLM, MQA 4/1, sliding_window 4 < T = 12, untied, bf16 weights
// each with reference.safetensors: input_ids [2, 12], logits, loss and a few gradients (HF names).
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import {
  SafetensorsFile, ShardedSafetensors, hostArrayOf, hostTensor, readShardedIndex, saveCheckpoint, writeSharded, type HostTensor,
} from '../src/checkpoint/index.js';
import { parseSize } from '../src/cli/commands/convert.js';
import { loadConfig, padVocabSize } from '../src/config/index.js';
import {
  castHost, convertFromHF, convertToHF, loadNeoXModel, neoxModelKeys, pythonJson, readHFConfig,
} from '../src/convert/index.js';
import { GPTNeoX, resolveModelConfig, type NeoXModelKeys } from '../src/models/gpt_neox/index.js';
import * as ops from '../src/ops/index.js';
import { gptNeoXAdapter, joinRows, ourParameters, splitRows, type HFAdapter } from '../src/models/gpt_neox/hf_adapter.js';
import { llamaAdapter } from '../src/models/llama/hf_adapter.js';
import { mistralAdapter } from '../src/models/mistral/hf_adapter.js';
import { backward, noGrad, scope, tensor } from '../src/tensor/index.js';
import { train } from '../src/train/index.js';
import { generate } from '../src/train/sample.js';
import { cpu, rng } from './helpers/check.js';

const FIX = fileURLToPath(new URL('../../tests/fixtures/hf/', import.meta.url));
const MODELS = ['gpt_neox', 'llama', 'mistral'] as const;
const ADAPTER: Record<(typeof MODELS)[number], HFAdapter> = { gpt_neox: gptNeoXAdapter, llama: llamaAdapter, mistral: mistralAdapter };

const made: string[] = [];
const tmp = (what: string): string => {
  const d = mkdtempSync(join(tmpdir(), `neox-convert-${what}-`));
  made.push(d);
  return d;
};
after(() => {
  for (const d of made) rmSync(d, { recursive: true, force: true });
});

/** max |a − e| / max |e|: relative to the tensor's scale, so near-zero entries do not dominate. */
function relErr(a: ArrayLike<number>, e: ArrayLike<number>): number {
  assert.equal(a.length, e.length);
  let d = 0, s = 0;
  for (let i = 0; i < e.length; i++) {
    d = Math.max(d, Math.abs(a[i]! - e[i]!));
    s = Math.max(s, Math.abs(e[i]!));
  }
  return d / s;
}

function reference(model: string): { ids: Int32Array; B: number; T: number; logits: Float32Array; loss: number; grads: Map<string, Float32Array> } {
  const f = new SafetensorsFile(join(FIX, model, 'reference.safetensors'));
  const ids = f.read('input_ids');
  const grads = new Map<string, Float32Array>();
  for (const n of f.names()) if (n.startsWith('grad.')) grads.set(n.slice(5), hostArrayOf(f.read(n)).data as Float32Array);
  return {
    ids: hostArrayOf(ids).data as Int32Array, B: ids.shape[0]!, T: ids.shape[1]!,
    logits: hostArrayOf(f.read('logits')).data as Float32Array, loss: (hostArrayOf(f.read('loss')).data as Float32Array)[0]!, grads,
  };
}

/** All tensors of an HF folder as name → tensor. */
function hfTensors(dir: string): Map<string, HostTensor> {
  const st = new ShardedSafetensors(dir);
  return new Map(st.names().map((n) => [n, st.read(n)]));
}

const imported = new Map<string, Promise<string>>();
/** The fixture converted once per test run (from-hf into a temp folder). */
function importFixture(model: string): Promise<string> {
  if (!imported.has(model)) {
    const out = tmp(model);
    imported.set(model, convertFromHF(join(FIX, model), out).then(() => out));
  }
  return imported.get(model)!;
}

// ─── the tables ──────────────────────────────────────────────────────────────────────────────────

function keys(over: Partial<NeoXModelKeys> = {}): NeoXModelKeys {
  return {
    hidden_size: 16, num_layers: 2, num_attention_heads: 4, num_kv_heads: null, intermediate_size: null,
    max_position_embeddings: 16, seq_length: 8, pos_emb: 'rotary', rotary_pct: 1, rotary_emb_base: 10000,
    norm: 'layernorm', layernorm_epsilon: 1e-5, rms_norm_epsilon: 1e-6, scalenorm_epsilon: 1e-5,
    activation: 'gelu', bias_gelu_fusion: false, gpt_j_residual: false, gpt_j_tied: false, no_weight_tying: true,
    use_bias_in_attn_linear: true, use_bias_in_mlp: true, hidden_dropout: 0, attention_dropout: 0,
    sliding_window_width: null, init_method: 'normal', output_layer_init_method: 'scaled_normal', init_method_std: 0.02, seed: 7,
    ...over,
  };
}

const LLAMA_KEYS = { norm: 'rmsnorm', activation: 'swiglu', num_kv_heads: 2, use_bias_in_attn_linear: false, use_bias_in_mlp: false } as const;

describe('HF adapter tables', () => {
  const variants: [string, Partial<NeoXModelKeys>][] = [
    ['Pythia-like', { gpt_j_residual: true, rotary_pct: 0.5, bias_gelu_fusion: true }],
    ['Llama-like GQA, tied', { ...LLAMA_KEYS, no_weight_tying: false }],
    ['Llama with biases, MQA', { ...LLAMA_KEYS, num_kv_heads: 1, use_bias_in_attn_linear: true, use_bias_in_mlp: true }],
    ['learned positions, ScaleNorm, gpt_j_tied', { pos_emb: 'learned', norm: 'scalenorm', gpt_j_residual: true, gpt_j_tied: true }],
  ];
  for (const [name, over] of variants) {
    test(`ourParameters lists GPTNeoX.namedParameters with shapes: ${name}`, () => {
      const cfg = resolveModelConfig(keys(over), 11);
      const model = new GPTNeoX(cfg, cpu());
      assert.deepEqual(ourParameters(cfg), model.namedParameters().map(([n, p]) => [n, [...p.shape]]));
    });
  }

  test('each adapter uses every HF tensor once; split then join gives back the bytes', () => {
    const r = rng(1);
    const cases: [HFAdapter, Partial<NeoXModelKeys>][] = [
      [gptNeoXAdapter, {}], [llamaAdapter, { ...LLAMA_KEYS, use_bias_in_attn_linear: true, use_bias_in_mlp: true }],
      [mistralAdapter, { ...LLAMA_KEYS, num_kv_heads: 1, sliding_window_width: 3 }],
    ];
    for (const [adapter, over] of cases) {
      const cfg = resolveModelConfig(keys(over), 11);
      const rules = adapter.rules(cfg);
      assert.deepEqual(rules.map((x) => x.ours), ourParameters(cfg).map(([n]) => n));
      const used = rules.flatMap((x) => x.hf);
      assert.deepEqual([...used].sort(), [...adapter.hfNames(cfg)].sort(), adapter.hfClass);
      assert.equal(new Set(used).size, used.length);
      const shapes = new Map(ourParameters(cfg));
      for (const rule of rules) {
        const shape = shapes.get(rule.ours)!;
        const t = hostTensor('f32', shape, Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => r()));
        assert.deepEqual(joinRows(rule, splitRows(rule, t)), t, rule.ours);
      }
    }
  });

  test('GQA QKV: per query head h, [q_h ‖ rows h·D·Hkv/H of k ‖ same rows of v]', () => {
    // H = 4, Hkv = 2, D = 4: kv width per query head 2. Rows labelled by source: q 0.., k 100.., v 200..
    const cfg = resolveModelConfig(keys({ ...LLAMA_KEYS }), 11);
    const rule = llamaAdapter.rules(cfg).find((x) => x.ours === 'layers.0.attention.query_key_value.weight')!;
    const rows = (n: number, base: number): HostTensor => hostTensor('f32', [n, 1], Float32Array.from({ length: n }, (_, i) => base + i));
    const fused = hostArrayOf(joinRows(rule, [rows(16, 0), rows(8, 100), rows(8, 200)])).data;
    assert.deepEqual([...fused].slice(0, 16), [0, 1, 2, 3, 100, 101, 200, 201, 4, 5, 6, 7, 102, 103, 202, 203]);
  });
});

// ─── config.json ─────────────────────────────────────────────────────────────────────────────────

/** The transformers 4 spelling of a transformers 5 config.json. */
function toT4(cfg: Record<string, unknown>): Record<string, unknown> {
  const c = { ...cfg };
  const rp = (c['rope_parameters'] ?? {}) as Record<string, unknown>;
  delete c['rope_parameters'];
  if (c['model_type'] === 'gpt_neox') {
    c['rotary_pct'] = rp['partial_rotary_factor'];
    c['rotary_emb_base'] = rp['rope_theta'];
  } else c['rope_theta'] = rp['rope_theta'];
  c['rope_scaling'] = null;
  c['torch_dtype'] = c['dtype'];
  delete c['dtype'];
  return c;
}

const fixtureConfig = (m: string): Record<string, unknown> => JSON.parse(readFileSync(join(FIX, m, 'config.json'), 'utf8'));

describe('config.json', () => {
  for (const m of MODELS) {
    test(`${m}: the transformers 4 and 5 forms read the same`, () => {
      const t5 = readHFConfig(fixtureConfig(m), 't5');
      const t4 = readHFConfig(toT4(fixtureConfig(m)), 't4');
      assert.equal(t5.form, 'transformers5');
      assert.equal(t4.form, 'transformers4');
      assert.deepEqual({ ...t4, form: null }, { ...t5, form: null });
    });
  }

  test('what the fixtures say, normalized', () => {
    const neox = readHFConfig(fixtureConfig('gpt_neox'), 'x');
    assert.equal(neox.rotaryPct, 0.25);
    assert.equal(neox.parallelResidual, true);
    assert.equal(neox.activation, 'gelu');
    const llama = readHFConfig(fixtureConfig('llama'), 'x');
    assert.deepEqual([llama.numKvHeads, llama.ropeTheta, llama.tied, llama.intermediateSize], [2, 50000, true, 48]);
    const mistral = readHFConfig(fixtureConfig('mistral'), 'x');
    assert.deepEqual([mistral.slidingWindow, mistral.dtype, mistral.numKvHeads], [4, 'bfloat16', 1]);
  });

  test('neox keys resolve to exactly the HF sizes: gated width, window, vocabulary', () => {
    for (const I of [48, 11008, 14336, 8192, 1]) {
      const spec = { ...readHFConfig(fixtureConfig('llama'), 'x'), intermediateSize: I, vocabSize: 32001 };
      const k = neoxModelKeys(spec);
      const cfg = resolveModelConfig({ ...keys(), ...k } as unknown as NeoXModelKeys, 32001);
      assert.equal(cfg.ffnSize, I);
      assert.equal(k['make_vocab_size_divisible_by'], 32001);
    }
    const m = neoxModelKeys(readHFConfig(fixtureConfig('mistral'), 'x'));
    assert.equal(m['sliding_window_width'], 3); // HF window 4 = keys with q − k < 4 = GPT-NeoX width 3
    assert.equal(resolveModelConfig({ ...keys(), ...m } as unknown as NeoXModelKeys, 96).slidingWindow, 4);
    const n = neoxModelKeys(readHFConfig({ ...fixtureConfig('gpt_neox'), hidden_act: 'gelu_new' }, 'x'));
    assert.equal(resolveModelConfig({ ...keys(), ...n } as unknown as NeoXModelKeys, 96).activation, 'gelu_tanh');
  });

  test('unsupported keys and values are errors naming them', () => {
    const neox = fixtureConfig('gpt_neox');
    const llama = fixtureConfig('llama');
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ ...neox, foo_bar: 1 }, /unsupported key `foo_bar`/],
      [{ ...llama, quantization_config: { bits: 4 } }, /unsupported key `quantization_config`/],
      [{ ...llama, sliding_window: 8 }, /unsupported key `sliding_window` for model_type llama/],
      [{ ...toT4(llama), rope_scaling: { rope_type: 'llama3', factor: 8 } }, /`rope_scaling` .*llama3/],
      [{ ...llama, rope_parameters: { rope_type: 'yarn', rope_theta: 1e4, factor: 4 } }, /`rope_parameters.factor`/],
      [{ ...llama, rope_parameters: { rope_type: 'linear', rope_theta: 1e4 } }, /rope_type` "linear"/],
      [{ ...llama, head_dim: 16 }, /`head_dim` 16/],
      [{ ...llama, attention_dropout: 0.1 }, /`attention_dropout`/],
      [{ ...neox, hidden_act: 'quick_gelu' }, /`hidden_act` "quick_gelu"/],
      [{ ...neox, model_type: 'gpt2' }, /model_type "gpt2" is not supported/],
      [{ ...neox, architectures: ['GPTNeoXForSequenceClassification'] }, /only GPTNeoXForCausalLM/],
      [{ ...neox, rope_parameters: { rope_theta: 10000.5 } }, /rope theta 10000.5/],
    ];
    for (const [c, re] of cases) assert.throws(() => readHFConfig(c, 'config.json'), re);
  });
});

// ─── parity with transformers ────────────────────────────────────────────────────────────────────

/** Our logits, loss and gradients (as HF tensors) on the fixture's inputs. */
function ours(model: GPTNeoX, adapter: HFAdapter, ref: ReturnType<typeof reference>) {
  const { B, T, ids } = ref;
  const labels = new Int32Array(B * T);
  const mask = new Float32Array(B * T);
  for (let b = 0; b < B; b++) for (let t = 0; t < T - 1; t++) {
    labels[b * T + t] = ids[b * T + t + 1]!;
    mask[b * T + t] = 1;
  }
  model.eval();
  const logits = noGrad(() => scope(() => model.forward(tensor(ids, [B, T], 'i32')).toFloat32().slice()));
  const loss = scope(() => {
    const l = model.loss(tensor(ids, [B, T], 'i32'), tensor(labels, [B, T], 'i32'), tensor(mask, [B, T], model.dtype));
    backward(l);
    return l.item();
  });
  const grads = new Map<string, Float32Array>();
  const byName = new Map(model.namedParameters());
  for (const rule of adapter.rules(model.cfg)) {
    const p = byName.get(rule.ours)!;
    const parts = splitRows(rule, hostTensor('f32', p.shape, p.grad!.toFloat32()));
    rule.hf.forEach((n, i) => grads.set(n, hostArrayOf(parts[i]!).data as Float32Array));
  }
  for (const p of byName.values()) p.grad = null;
  return { logits, loss, grads };
}

describe('parity with transformers (fixtures)', () => {
  for (const m of MODELS) {
    for (const dtype of ['f32', 'f64'] as const) {
      test(`${m}: from-hf, then our ${dtype} forward matches HF logits (1e-4), loss and gradients`, async (t) => {
        const out = await importFixture(m);
        const ref = reference(m);
        const { model } = loadNeoXModel(out, { backend: cpu(), dtype });
        const got = ours(model, ADAPTER[m], ref);
        const e = relErr(got.logits, ref.logits);
        t.diagnostic(`logits rel err ${e.toExponential(2)}, loss ${got.loss} vs ${ref.loss}`);
        assert.ok(e < 1e-4, `logits relative error ${e}`);
        assert.ok(Math.abs(got.loss - ref.loss) <= 1e-5 * ref.loss, `loss ${got.loss} vs HF ${ref.loss}`);
        for (const [name, g] of ref.grads) {
          const mine = got.grads.get(ADAPTER[m].aliases[name] ?? name);
          assert.ok(mine, `no gradient for ${name}`);
          const ge = relErr(mine, g);
          t.diagnostic(`grad ${name} rel err ${ge.toExponential(2)}`);
          assert.ok(ge < 1e-4, `${name} gradient relative error ${ge}`);
        }
      });
    }
  }

  test('mistral: the window matters (full attention gives other logits from position 4 on)', async () => {
    const out = await importFixture('mistral');
    const { model } = loadNeoXModel(out, { backend: cpu() });
    const ref = reference('mistral');
    const full = new GPTNeoX({ ...model.cfg, slidingWindow: 0 }, cpu());
    const src = new Map(model.namedParameters());
    noGrad(() => {
      for (const [n, p] of full.namedParameters()) {
        ops.scaleInPlace(p, 0);
        ops.addInPlace(p, src.get(n)!);
      }
    });
    full.eval();
    const logits = noGrad(() => scope(() => full.forward(tensor(ref.ids, [ref.B, ref.T], 'i32')).toFloat32().slice()));
    const V = 96;
    const at = (x: Float32Array, t: number): Float32Array => x.slice(t * V, (t + 1) * V); // batch 0, position t
    assert.ok(relErr(at(logits, 3), at(ref.logits, 3)) < 1e-4, 'positions before the window edge agree');
    assert.ok(relErr(at(logits, 4), at(ref.logits, 4)) > 1e-2, 'position 4 sees one key fewer with the window');
  });
});

// ─── round trips ─────────────────────────────────────────────────────────────────────────────────

function assertSameTensors(got: Map<string, HostTensor>, want: Map<string, HostTensor>, what: string): void {
  assert.deepEqual([...got.keys()].sort(), [...want.keys()].sort(), `${what}: tensor names`);
  for (const [n, w] of want) {
    const g = got.get(n)!;
    assert.equal(g.dtype, w.dtype, `${what}: ${n} dtype`);
    assert.deepEqual(g.shape, w.shape, `${what}: ${n} shape`);
    assert.ok(Buffer.from(g.data).equals(Buffer.from(w.data)), `${what}: ${n} bytes differ`);
  }
}

describe('round trips', () => {
  for (const m of MODELS) {
    test(`${m}: from-hf then to-hf reproduces every tensor exactly, and config.json reads back the same`, async () => {
      const out = await importFixture(m);
      const back = tmp(`${m}-back`);
      const r = await convertToHF(out, back, m === 'llama' ? { maxShardBytes: 40000 } : {});
      assert.equal(r.hfClass, ADAPTER[m].hfClass); // architecture inferred from the model
      assertSameTensors(hfTensors(back), hfTensors(join(FIX, m)), m);
      const again = readHFConfig(JSON.parse(readFileSync(join(back, 'config.json'), 'utf8')), 'exported');
      assert.deepEqual({ ...again, form: null }, { ...readHFConfig(fixtureConfig(m), 'fixture'), form: null });
      // The HF generation_config.json kept in OUT/hf by from-hf comes back as it was.
      assert.equal(readFileSync(join(back, 'generation_config.json'), 'utf8'), readFileSync(join(FIX, m, 'generation_config.json'), 'utf8'));
      const cfg = JSON.parse(readFileSync(join(back, 'config.json'), 'utf8'));
      if (m === 'gpt_neox') assert.equal(cfg.rotary_pct, 0.25); // always written
      if (m === 'llama') {
        // Sharded as save_pretrained shards: state-dict order, same split, same index.
        const mine = readShardedIndex(back);
        const theirs = readShardedIndex(join(FIX, m));
        assert.deepEqual(Object.fromEntries(mine.weightMap), Object.fromEntries(theirs.weightMap));
        assert.deepEqual(mine.metadata, theirs.metadata);
      }
    });
  }

  test('the transformers 4 config form converts to the same checkpoint', async () => {
    const hf = tmp('t4');
    for (const f of readdirSync(join(FIX, 'gpt_neox'))) copyFileSync(join(FIX, 'gpt_neox', f), join(hf, f));
    writeFileSync(join(hf, 'config.json'), JSON.stringify(toT4(fixtureConfig('gpt_neox'))));
    const out = tmp('t4-out');
    const r = await convertFromHF(hf, out);
    assert.equal(r.spec.form, 'transformers4');
    const a = loadNeoXModel(out).model.namedParameters();
    const b = new Map(loadNeoXModel(await importFixture('gpt_neox')).model.namedParameters());
    for (const [n, p] of a) assert.deepEqual(p.toFloat32(), b.get(n)!.toFloat32(), n);
  });

  test('fp16 weights: from-hf keeps fp16 as the precision, to-hf auto writes the same fp16 bytes', async () => {
    const hf = tmp('f16');
    const tensors = new Map([...hfTensors(join(FIX, 'llama'))].map(([n, t]) => [n, castHost(t, 'F16', n)] as const));
    writeSharded(hf, tensors, 1 << 30);
    writeFileSync(join(hf, 'config.json'), JSON.stringify({ ...fixtureConfig('llama'), dtype: 'float16' }));
    const out = tmp('f16-out');
    await convertFromHF(hf, out);
    assert.match(readFileSync(join(out, 'neox.yml'), 'utf8'), /^precision: "fp16"$/m);
    const back = tmp('f16-back');
    const r = await convertToHF(out, back);
    assert.equal(r.dtype, 'float16');
    assertSameTensors(hfTensors(back), tensors, 'fp16');
  });

  test('--precision bf16 rounds to nearest even; --max-shard-size splits with an index', async () => {
    const out = await importFixture('gpt_neox');
    const back = tmp('bf16');
    const r = await convertToHF(out, back, { precision: 'bf16', maxShardBytes: 30000 });
    assert.ok(r.files.length > 1 && existsSync(join(back, 'model.safetensors.index.json')));
    const want = new Map([...hfTensors(join(FIX, 'gpt_neox'))].map(([n, t]) => [n, castHost(t, 'BF16', n)] as const));
    assertSameTensors(hfTensors(back), want, 'bf16');
    assert.equal(JSON.parse(readFileSync(join(back, 'config.json'), 'utf8')).torch_dtype, 'bfloat16');
    assert.equal(parseSize('5GB'), 5e9);
    assert.equal(parseSize('2GiB'), 2 ** 31);
  });
});

/** A random model of ours saved as a checkpoint (no training), with a config as `neox train` loads it. */
function nativeCheckpoint(over: Record<string, unknown>): { dir: string; model: GPTNeoX } {
  const dir = tmp('native');
  const file = join(dir, 'model.yml');
  writeFileSync(file, JSON.stringify({
    num_layers: 2, hidden_size: 32, num_attention_heads: 4, seq_length: 16, pos_emb: 'rotary', train_micro_batch_size_per_gpu: 1,
    init_method_std: 0.3, seed: 5, tokenizer_type: 'CharLevelTokenizer', ...over,
  }));
  const config = loadConfig([file]).config;
  const model = new GPTNeoX(resolveModelConfig(config, padVocabSize(512, config.make_vocab_size_divisible_by)), cpu());
  saveCheckpoint(join(dir, 'ckpt'), 1, {
    model: model.namedParameters().map(([n, p]) => [n, hostTensor('f32', p.shape, p.toFloat32())] as const),
    state: { iteration: 1 }, config,
  });
  return { dir, model };
}

describe('our checkpoints out and back', () => {
  const cases: [string, Record<string, unknown>, Record<string, unknown>][] = [
    ['Pythia-style, tied, tanh GELU → GPTNeoXForCausalLM',
      { gpt_j_residual: true, rotary_pct: 0.25, bias_gelu_fusion: true, no_weight_tying: false },
      { architectures: ['GPTNeoXForCausalLM'], hidden_act: 'gelu_new', tie_word_embeddings: true, rotary_pct: 0.25, use_parallel_residual: true }],
    ['GeGLU with biases, GQA → LlamaForCausalLM',
      { norm: 'rmsnorm', activation: 'geglu', num_kv_heads: 2, intermediate_size: 96, no_weight_tying: true },
      { architectures: ['LlamaForCausalLM'], hidden_act: 'gelu', attention_bias: true, mlp_bias: true, intermediate_size: 32, num_key_value_heads: 2 }],
    ['MQA with sliding_window_width 5 → MistralForCausalLM',
      { norm: 'rmsnorm', activation: 'swiglu', num_kv_heads: 1, sliding_window_width: 5, use_bias_in_attn_linear: false, use_bias_in_mlp: false, rotary_emb_base: 500000 },
      { architectures: ['MistralForCausalLM'], sliding_window: 6, rope_theta: 500000, tie_word_embeddings: true }],
  ];
  for (const [name, over, want] of cases) {
    test(name, async () => {
      const { dir, model } = nativeCheckpoint(over);
      const hf = join(dir, 'hf');
      await convertToHF(join(dir, 'ckpt'), hf);
      const cfg = JSON.parse(readFileSync(join(hf, 'config.json'), 'utf8'));
      for (const [k, v] of Object.entries(want)) assert.deepEqual(cfg[k], v, k);
      if (cfg.tie_word_embeddings) assert.ok(!new ShardedSafetensors(hf).names().some((n) => /embed_out|lm_head/.test(n)));
      const out = join(dir, 'back');
      await convertFromHF(hf, out);
      const back = new Map(loadNeoXModel(out).model.namedParameters());
      for (const [n, p] of model.namedParameters()) assert.deepEqual(back.get(n)!.toFloat32(), p.toFloat32(), n);
    });
  }
});

// ─── what does not fit ───────────────────────────────────────────────────────────────────────────

describe('errors name what does not fit', () => {
  test('to-hf into a class that cannot express the model', async () => {
    const llama = await importFixture('llama');
    await assert.rejects(convertToHF(llama, tmp('x'), { architecture: 'neox' }),
      /does not fit GPTNeoXForCausalLM[^]*norm rmsnorm[^]*gated[^]*num_kv_heads 2 < num_attention_heads 4[^]*use_bias_in_mlp false/);
    const mistral = await importFixture('mistral');
    await assert.rejects(convertToHF(mistral, tmp('x'), { architecture: 'llama' }), /LlamaForCausalLM[^]*sliding_window_width[^]*--architecture mistral/);
    const neox = await importFixture('gpt_neox');
    await assert.rejects(convertToHF(neox, tmp('x'), { architecture: 'mistral' }),
      /MistralForCausalLM[^]*rotary_pct 0.25[^]*norm layernorm[^]*not gated[^]*gpt_j_residual[^]*use_bias_in_attn_linear true/);
  });

  test('from-hf: extra or missing weights are named; buffers and the transformers ≥ 5.14 head name are accepted', async () => {
    const base = hfTensors(join(FIX, 'gpt_neox'));
    const one = base.get('gpt_neox.final_layer_norm.bias')!;
    const variant = async (edit: (m: Map<string, HostTensor>) => void): Promise<string> => {
      const hf = tmp('w');
      const m = new Map(base);
      edit(m);
      writeSharded(hf, m, 1 << 30);
      copyFileSync(join(FIX, 'gpt_neox', 'config.json'), join(hf, 'config.json'));
      return hf;
    };
    await assert.rejects(convertFromHF(await variant((m) => m.set('gpt_neox.layers.0.attention.extra.weight', one)), tmp('o')),
      /not part of a GPTNeoXForCausalLM with this config: gpt_neox.layers.0.attention.extra.weight/);
    await assert.rejects(convertFromHF(await variant((m) => m.delete('gpt_neox.layers.1.mlp.dense_4h_to_h.bias')), tmp('o')),
      /missing gpt_neox.layers.1.mlp.dense_4h_to_h.bias/);
    await assert.rejects(convertFromHF(await variant((m) => m.set('gpt_neox.layers.0.mlp.dense_4h_to_h.bias', { ...one, shape: [4, 8] })), tmp('o')),
      /dense_4h_to_h.bias \[4,8\] do not make layers.0.mlp.dense_4h_to_h.bias \[32\]/);
    const ok = await variant((m) => {
      m.set('gpt_neox.layers.0.attention.masked_bias', one);
      m.set('gpt_neox.layers.0.attention.rotary_emb.inv_freq', one);
      m.set('lm_head.weight', m.get('embed_out.weight')!);
      m.delete('embed_out.weight');
    });
    const out = tmp('o');
    await convertFromHF(ok, out);
    const a = loadNeoXModel(out).model.namedParameters();
    const b = new Map(loadNeoXModel(await importFixture('gpt_neox')).model.namedParameters());
    for (const [n, p] of a) assert.deepEqual(p.toFloat32(), b.get(n)!.toFloat32(), n);
    assert.throws(() => loadNeoXModel(join(ok, 'nope')), /no checkpoint folder/);

    // A tied Llama that still carries lm_head: fine when it equals the embedding.
    const llama = hfTensors(join(FIX, 'llama'));
    const tiedWith = async (head: HostTensor): Promise<string> => {
      const hf = tmp('tied');
      writeSharded(hf, new Map([...llama, ['lm_head.weight', head]]), 1 << 30);
      copyFileSync(join(FIX, 'llama', 'config.json'), join(hf, 'config.json'));
      return hf;
    };
    const embed = llama.get('model.embed_tokens.weight')!;
    await convertFromHF(await tiedWith(embed), tmp('o'));
    const other = { ...embed, data: embed.data.map((b, i) => (i === 0 ? b ^ 1 : b)) };
    await assert.rejects(convertFromHF(await tiedWith(other), tmp('o')), /tie_word_embeddings true, but lm_head.weight differs/);
  });
});

// ─── tokenizer files, fine-tuning, generation ────────────────────────────────────────────────────

describe('around the weights', () => {
  test('tokenizer files travel both ways; bos/eos come from them', async () => {
    const hf = tmp('tok');
    for (const f of ['config.json', 'model.safetensors']) copyFileSync(join(FIX, 'gpt_neox', f), join(hf, f));
    const tokenizer = { version: '1.0', added_tokens: [{ id: 3, content: '<|endoftext|>' }, { id: 4, content: '<s>' }], model: { type: 'BPE', vocab: { a: 0 } } };
    writeFileSync(join(hf, 'tokenizer.json'), JSON.stringify(tokenizer));
    writeFileSync(join(hf, 'tokenizer_config.json'), JSON.stringify({ bos_token: { content: '<s>' }, eos_token: '<|endoftext|>' }));
    const out = tmp('tok-out');
    const r = await convertFromHF(hf, out);
    assert.deepEqual(r.notes, []);
    const yml = readFileSync(join(out, 'neox.yml'), 'utf8');
    assert.match(yml, /^tokenizer_type: "HFTokenizer"$/m);
    assert.ok(yml.includes(`vocab_file: ${JSON.stringify(join(out, 'hf', 'tokenizer.json'))}`));
    const back = tmp('tok-back');
    await convertToHF(out, back);
    assert.deepEqual(JSON.parse(readFileSync(join(back, 'tokenizer.json'), 'utf8')), tokenizer);
    assert.ok(existsSync(join(back, 'tokenizer_config.json')));
    const gen = JSON.parse(readFileSync(join(back, 'generation_config.json'), 'utf8'));
    assert.deepEqual([gen.bos_token_id, gen.eos_token_id], [4, 3]);
    const cfg = JSON.parse(readFileSync(join(back, 'config.json'), 'utf8'));
    assert.deepEqual([cfg.bos_token_id, cfg.eos_token_id], [4, 3]);
    assert.equal(pythonJson(cfg), readFileSync(join(back, 'config.json'), 'utf8')); // sorted keys, indent 2
  });

  test('a trained checkpoint → to-hf → from-hf → `neox train` fine-tunes it; generation loads it', async () => {
    const dir = tmp('ft');
    const text = Array.from({ length: 40 }, (_, i) => `Line ${i}: the quick brown fox jumps over the lazy dog.\n`).join('');
    writeFileSync(join(dir, 'doc.txt'), text);
    const trainKeys = {
      train_micro_batch_size_per_gpu: 2, gradient_accumulation_steps: 1, train_iters: 2, log_interval: 100,
      optimizer: { type: 'Adam', params: { lr: 0.003 } }, eval_interval: 100, eval_iters: 0, split: '100,0,0',
      tokenizer_type: 'CharLevelTokenizer', data_path: join(dir, 'data', 'c_text_document'), preprocess_inputs: [join(dir, 'doc.txt')],
      device: 'cpu', log_dir: join(dir, 'logs'),
    };
    const modelKeys = {
      num_layers: 2, hidden_size: 32, num_attention_heads: 4, num_kv_heads: 2, seq_length: 16, pos_emb: 'rotary',
      rotary_pct: 1, norm: 'rmsnorm', rms_norm_epsilon: 1e-6, activation: 'swiglu', intermediate_size: 96, mlp_multiple_of: 8,
      use_bias_in_attn_linear: false, use_bias_in_mlp: false, no_weight_tying: true, seed: 3,
    };
    writeFileSync(join(dir, 'run.yml'), JSON.stringify({ ...modelKeys, ...trainKeys, save: join(dir, 'ckpt'), checkpoint_factor: 2 }));
    const quiet = { print: () => {} };
    const run = await train(loadConfig([join(dir, 'run.yml')]), quiet);

    const hf = join(dir, 'hf');
    const exported = await convertToHF(join(dir, 'ckpt'), hf);
    assert.equal(exported.hfClass, 'LlamaForCausalLM');
    assert.equal(JSON.parse(readFileSync(join(hf, 'config.json'), 'utf8')).intermediate_size, run.model.cfg.ffnSize);
    const out = join(dir, 'imported');
    await convertFromHF(hf, out);
    const { model } = loadNeoXModel(out);
    const trained = new Map(run.model.namedParameters());
    for (const [n, p] of model.namedParameters()) assert.deepEqual(p.toFloat32(), trained.get(n)!.toFloat32(), n);
    const opts = { maxNewTokens: 6, temperature: 0, topK: 0, topP: 0, seed: 1, contextLength: 16 };
    assert.deepEqual(generate(model, [76, 105], opts), generate(run.model, [76, 105], opts));

    // Fine-tune: neox.yml (model, load, finetune) + the training keys in a second file.
    writeFileSync(join(dir, 'finetune.yml'), JSON.stringify({ ...trainKeys, save: join(dir, 'ft'), checkpoint_factor: 2 }));
    const tuned = await train(loadConfig([join(out, 'neox.yml'), join(dir, 'finetune.yml')]), quiet);
    assert.equal(tuned.losses.length, 2);
    assert.ok(tuned.losses.every(Number.isFinite));
    assert.ok(existsSync(join(dir, 'ft', 'global_step2', 'model.safetensors')));
  });
});
