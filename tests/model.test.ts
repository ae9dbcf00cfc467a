// The GPT-NeoX model: loss at initialisation, full-model gradients against finite differences
// for every architectural variant, and overfitting one batch.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { GPTNeoX, resolveModelConfig, type NeoXModelKeys } from '../src/models/gpt_neox/index.js';
import { AdamW } from '../src/optim/index.js';
import { backward, noGrad, scope, tensor } from '../src/tensor/index.js';
import { cpu, rng } from './helpers/check.js';

function keys(over: Partial<NeoXModelKeys> = {}): NeoXModelKeys {
  return {
    hidden_size: 16, num_layers: 2, num_attention_heads: 4, num_kv_heads: null, intermediate_size: null,
    max_position_embeddings: 16, seq_length: 8, pos_emb: 'rotary', rotary_pct: 0.5, rotary_emb_base: 10000,
    norm: 'layernorm', layernorm_epsilon: 1e-5, rms_norm_epsilon: 1e-6, scalenorm_epsilon: 1e-5,
    activation: 'gelu', bias_gelu_fusion: false, gpt_j_residual: false, gpt_j_tied: false, no_weight_tying: true,
    use_bias_in_attn_linear: true, use_bias_in_mlp: true, hidden_dropout: 0, attention_dropout: 0,
    sliding_window_width: null, init_method: 'normal', output_layer_init_method: 'scaled_normal', init_method_std: 0.02, seed: 7,
    ...over,
  };
}

function batch(B: number, T: number, V: number, seed: number) {
  const r = rng(seed);
  const ids = Int32Array.from({ length: B * T }, () => Math.floor(r() * V));
  const labels = Int32Array.from({ length: B * T }, () => Math.floor(r() * V));
  return { ids, labels, mask: new Float32Array(B * T).fill(1) };
}

test('loss at initialisation is near ln(vocab)', () => {
  const V = 256;
  const model = new GPTNeoX(resolveModelConfig(keys({ hidden_size: 32, init_method_std: 0.02 }), V), cpu());
  const { ids, labels, mask } = batch(4, 8, V, 1);
  const loss = noGrad(() => scope(() => model.loss(tensor(ids, [4, 8], 'i32'), tensor(labels, [4, 8], 'i32'), tensor(mask, [4, 8])).item()));
  assert.ok(Math.abs(loss - Math.log(V)) < 0.05, `initial loss ${loss}, ln(V) = ${Math.log(V)}`);
});

const VARIANTS: [string, Partial<NeoXModelKeys>][] = [
  ['rotary, sequential residual, exact GELU, untied', {}],
  ['Pythia-style: parallel residual, rotary_pct 0.25, tanh GELU', { gpt_j_residual: true, rotary_pct: 0.25, bias_gelu_fusion: true, hidden_size: 32 }],
  ['parallel residual with one shared norm (gpt_j_tied)', { gpt_j_residual: true, gpt_j_tied: true }],
  ['LLaMA-style: RMSNorm, SwiGLU, GQA, no biases, tied', { norm: 'rmsnorm', activation: 'swiglu', num_kv_heads: 2, use_bias_in_attn_linear: false, use_bias_in_mlp: false, no_weight_tying: false, rotary_pct: 1 }],
  ['Mistral-style: sliding window, MQA', { norm: 'rmsnorm', activation: 'swiglu', num_kv_heads: 1, sliding_window_width: 2, rotary_pct: 1 }],
  ['ALiBi, ScaleNorm, ReLU', { pos_emb: 'alibi', norm: 'scalenorm', activation: 'relu' }],
  ['learned positions, GeGLU', { pos_emb: 'learned', activation: 'geglu' }],
  ['sinusoidal positions, SiLU, LayerNorm without bias', { pos_emb: 'sinusoidal', activation: 'silu', use_bias_in_norms: false }],
  ['no positions, hidden dropout', { pos_emb: 'none', hidden_dropout: 0.3 }],
];

for (const [name, over] of VARIANTS) {
  test(`full-model gradients match finite differences in f64: ${name}`, () => {
    const V = 11, B = 2, T = 5;
    const model = new GPTNeoX(resolveModelConfig(keys({ init_method_std: 0.3, ...over }), V), cpu(), 'f64');
    model.setDropoutSeed(3);
    const { ids, labels } = batch(B, T, V, 2);
    const mask = Float64Array.from({ length: B * T }, (_, i) => (i % 3 === 1 ? 0 : 1));
    const lossOf = (): number => noGrad(() => scope(() => {
      model.setDropoutSeed(3);
      return model.loss(tensor(ids, [B, T], 'i32'), tensor(labels, [B, T], 'i32'), tensor(mask, [B, T], 'f64')).item();
    }));
    scope(() => {
      model.setDropoutSeed(3);
      backward(model.loss(tensor(ids, [B, T], 'i32'), tensor(labels, [B, T], 'i32'), tensor(mask, [B, T], 'f64')));
    });
    const r = rng(5);
    for (const [pname, p] of model.namedParameters()) {
      assert.ok(p.grad, `${pname} got no gradient`);
      const g = p.grad.toArray() as Float64Array;
      const data = (p.storage as unknown as { data: Float64Array }).data;
      for (let trial = 0; trial < 3; trial++) {
        const j = Math.floor(r() * p.numel);
        const orig = data[j]!;
        const eps = 1e-6;
        data[j] = orig + eps;
        const up = lossOf();
        data[j] = orig - eps;
        const down = lossOf();
        data[j] = orig;
        const numeric = (up - down) / (2 * eps);
        assert.ok(Math.abs(g[j]! - numeric) <= 1e-7 + 1e-5 * Math.abs(numeric), `${pname}[${j}]: analytic ${g[j]}, numeric ${numeric}`);
      }
      p.grad.dispose();
      p.grad = null;
    }
  });
}

test('a small model overfits one batch to near-zero loss', () => {
  const V = 32, B = 4, T = 16;
  const model = new GPTNeoX(resolveModelConfig(keys({ hidden_size: 32, seq_length: T, max_position_embeddings: T, init_method_std: 0.05 }), V), cpu());
  const { ids, labels, mask } = batch(B, T, V, 9);
  const opt = new AdamW([{ params: model.parameters(), weightDecay: 0 }], { betas: [0.9, 0.99], eps: 1e-8 });
  let loss = Infinity;
  for (let step = 0; step < 200 && loss > 0.02; step++) {
    loss = scope(() => {
      const l = model.loss(tensor(ids, [B, T], 'i32'), tensor(labels, [B, T], 'i32'), tensor(mask, [B, T]));
      backward(l);
      return l.item();
    });
    noGrad(() => opt.update(3e-3));
    opt.zeroGrad();
  }
  assert.ok(loss < 0.05, `loss after overfitting: ${loss}`);
});

test('unsupported model choices fail naming the key', () => {
  assert.throws(() => resolveModelConfig(keys({ activation: 'mish' }), 10), /activation 'mish' is not supported/);
  assert.throws(() => resolveModelConfig(keys({ num_kv_heads: 3 }), 10), /num_kv_heads/);
  assert.throws(() => resolveModelConfig(keys({ attention_dropout: 0.1 }), 10), /attention_dropout/);
  assert.throws(() => resolveModelConfig(keys({ pos_emb: 'rpe' }), 10), /pos_emb 'rpe'/);
  assert.throws(() => resolveModelConfig(keys({ rotary_pct: 0.25 }), 10), /rotary_pct 0.25 × head dim 4 gives 1 rotary dims; it must be even/);
});

test('gated MLP width follows GPT-NeoX: Llama-2-7B sizes give 11008', () => {
  const c = resolveModelConfig(keys({ hidden_size: 4096, num_attention_heads: 32, activation: 'swiglu', intermediate_size: 32768, mlp_multiple_of: 256 }), 32000);
  assert.equal(c.ffnSize, 11008);
  assert.equal(resolveModelConfig(keys({ hidden_size: 64 }), 10).ffnSize, 256);
});

test('activation checkpointing gives the same loss and gradients (with dropout, 1 and 2 layers per group)', () => {
  const V = 11, B = 2, T = 6;
  const { ids, labels } = batch(B, T, V, 4);
  const mask = new Float64Array(B * T).fill(1);
  const run = (every: number) => {
    const model = new GPTNeoX(resolveModelConfig(keys({ num_layers: 3, hidden_dropout: 0.2, init_method_std: 0.3 }), V), cpu(), 'f64');
    model.setActivationCheckpointing(every);
    const loss = scope(() => {
      model.setDropoutSeed(9);
      const l = model.loss(tensor(ids, [B, T], 'i32'), tensor(labels, [B, T], 'i32'), tensor(mask, [B, T], 'f64'));
      backward(l);
      return l.item();
    });
    return { loss, grads: model.namedParameters().map(([n, p]) => [n, Array.from(p.grad!.toArray())] as const) };
  };
  const plain = run(0);
  for (const every of [1, 2]) {
    const ckpt = run(every);
    assert.equal(ckpt.loss, plain.loss);
    ckpt.grads.forEach(([n, g], i) => {
      const ref = plain.grads[i]![1];
      g.forEach((v, j) => assert.ok(Math.abs(v - ref[j]!) <= 1e-12 * (1 + Math.abs(ref[j]!)), `${n}[${j}] (every ${every}): ${v} vs ${ref[j]}`));
    });
  }
});

test('the chunked output head gives the same loss and gradients (tied and untied embeddings, masked tokens)', () => {
  const V = 13, B = 2, T = 7;
  const { ids, labels } = batch(B, T, V, 6);
  const mask = Float64Array.from({ length: B * T }, (_, i) => (i % 4 === 2 ? 0 : 1));
  for (const tied of [false, true]) {
    const run = (chunk: number) => {
      const model = new GPTNeoX(resolveModelConfig(keys({ no_weight_tying: !tied, init_method_std: 0.3 }), V), cpu(), 'f64');
      model.setLossChunk(chunk);
      const loss = scope(() => {
        const l = model.loss(tensor(ids, [B, T], 'i32'), tensor(labels, [B, T], 'i32'), tensor(mask, [B, T], 'f64'));
        backward(l);
        return l.item();
      });
      return { loss, grads: model.namedParameters().map(([n, p]) => [n, Array.from(p.grad!.toArray())] as const) };
    };
    const plain = run(0);
    const chunked = run(4); // 14 tokens → chunks of 4, 4, 4, 2
    assert.ok(Math.abs(chunked.loss - plain.loss) <= 1e-12 * Math.abs(plain.loss), `loss ${chunked.loss} vs ${plain.loss}`);
    chunked.grads.forEach(([n, g], i) => {
      const ref = plain.grads[i]![1];
      g.forEach((v, j) => assert.ok(Math.abs(v - ref[j]!) <= 1e-12 * (1 + Math.abs(ref[j]!)), `${n}[${j}] (tied ${tied}): ${v} vs ${ref[j]}`));
    });
  }
});
