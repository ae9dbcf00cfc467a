// A small GPT-NeoX on CUDA against the CPU: loss and every parameter gradient from identical
// weights, and 50 training steps following the CPU's loss curve (f32 and bf16 compute).
// Without a GPU each test reports `skipped: no CUDA device`.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import '../src/backends/cpu/index.js';
import { initCuda } from '../src/backends/cuda/index.js';
import { GPTNeoX, resolveModelConfig, type NeoXModelKeys } from '../src/models/gpt_neox/index.js';
import { AdamW, gradNormAndClip } from '../src/optim/index.js';
import type { Backend } from '../src/tensor/index.js';
import { backward, getBackend, noGrad, scope, tensor } from '../src/tensor/index.js';
import { rng } from './helpers/check.js';

const gpu = initCuda();
const skip = gpu ? false : 'skipped: no CUDA device';

function keys(over: Partial<NeoXModelKeys> = {}): NeoXModelKeys {
  return {
    hidden_size: 64, num_layers: 2, num_attention_heads: 4, num_kv_heads: null, intermediate_size: null,
    max_position_embeddings: 64, seq_length: 64, pos_emb: 'rotary', rotary_pct: 0.25, rotary_emb_base: 10000,
    norm: 'layernorm', layernorm_epsilon: 1e-5, rms_norm_epsilon: 1e-6, scalenorm_epsilon: 1e-5, activation: 'gelu',
    bias_gelu_fusion: false, gpt_j_residual: true, gpt_j_tied: false, no_weight_tying: true, use_bias_in_attn_linear: true,
    use_bias_in_mlp: true, hidden_dropout: 0.1, attention_dropout: 0, sliding_window_width: null, init_method: 'small_init',
    output_layer_init_method: 'wang_init', init_method_std: 0.02, seed: 11, ...over,
  };
}

const V = 128, B = 4, T = 64;
function batches(n: number) {
  const r = rng(3);
  return Array.from({ length: n }, () => {
    // A learnable pattern: each token predicts the next of a noisy arithmetic sequence.
    const ids = new Int32Array(B * T);
    for (let b = 0; b < B; b++) {
      let t0 = Math.floor(r() * V);
      for (let t = 0; t < T; t++) ids[b * T + t] = (t0 = (t0 + 3 + (r() < 0.1 ? 1 : 0)) % V);
    }
    const labels = Int32Array.from(ids, (_, i) => ((i + 1) % T === 0 ? ids[i]! : ids[i + 1]!));
    return { ids, labels };
  });
}

function lossAndGrads(model: GPTNeoX, be: Backend, data: { ids: Int32Array; labels: Int32Array }) {
  return scope(() => {
    model.setDropoutSeed(5);
    const loss = model.loss(tensor(data.ids, [B, T], 'i32', be), tensor(data.labels, [B, T], 'i32', be), tensor(new Float32Array(B * T).fill(1), [B, T], 'f32', be));
    backward(loss);
    const grads = new Map(model.namedParameters().map(([n, p]) => [n, p.grad!.toFloat32()] as const));
    for (const p of model.parameters()) { p.grad?.dispose(); p.grad = null; }
    return { loss: loss.item(), grads };
  });
}

function relErr(a: Float32Array, b: Float32Array): number {
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) { num += (a[i]! - b[i]!) ** 2; den += b[i]! ** 2; }
  return Math.sqrt(num / Math.max(den, 1e-30));
}

// bias_gelu_fusion routes the MLP's up-projection through linearGelu (cuBLASLt's GELU epilogue on CUDA).
const VARIANTS: [string, Partial<NeoXModelKeys>][] = [
  ['', {}],
  [', bias_gelu_fusion', { bias_gelu_fusion: true }],
  [', bias_gelu_fusion without MLP bias', { bias_gelu_fusion: true, use_bias_in_mlp: false }],
];

for (const compute of ['f32', 'bf16'] as const) {
  for (const [what, over] of VARIANTS) test(`loss and every gradient on CUDA match the CPU (${compute} compute${what})`, { skip }, () => {
    const data = batches(1)[0]!;
    const cpuModel = new GPTNeoX(resolveModelConfig(keys(over), V), getBackend('cpu'));
    const gpuModel = new GPTNeoX(resolveModelConfig(keys(over), V), gpu!);
    gpuModel.setComputeDtype(compute);
    const ref = lossAndGrads(cpuModel, getBackend('cpu'), data);
    const got = lossAndGrads(gpuModel, gpu!, data);
    const tol = compute === 'f32' ? 1e-4 : 3e-2;
    assert.ok(Math.abs(got.loss - ref.loss) <= tol * Math.abs(ref.loss), `loss ${got.loss} vs CPU ${ref.loss}`);
    for (const [name, g] of ref.grads) {
      const e = relErr(got.grads.get(name)!, g);
      assert.ok(e <= (compute === 'f32' ? 1e-3 : 6e-2), `${name}: relative error ${e}`);
    }
  });

  test(`50 training steps on CUDA follow the CPU loss curve (${compute} compute)`, { skip }, () => {
    const data = batches(50);
    const curve = (be: Backend, dtype: 'f32' | 'bf16') => {
      const model = new GPTNeoX(resolveModelConfig(keys(), V), be);
      model.setComputeDtype(dtype);
      const opt = new AdamW([{ params: model.parameters(), weightDecay: 0.01 }], { betas: [0.9, 0.95], eps: 1e-8 });
      return data.map((d, i) => {
        const loss = scope(() => {
          model.setDropoutSeed(i);
          const l = model.loss(tensor(d.ids, [B, T], 'i32', be), tensor(d.labels, [B, T], 'i32', be), tensor(new Float32Array(B * T).fill(1), [B, T], 'f32', be));
          backward(l);
          return l.item();
        });
        const { scale } = gradNormAndClip(model.parameters(), 1.0);
        noGrad(() => opt.update(3e-3, scale));
        opt.zeroGrad();
        return loss;
      });
    };
    const ref = curve(getBackend('cpu'), 'f32');
    const got = curve(gpu!, compute);
    assert.ok(ref[49]! < ref[0]! - 1, `the CPU run should learn: ${ref[0]} → ${ref[49]}`);
    const tol = compute === 'f32' ? 2e-3 : 5e-2;
    got.forEach((l, i) => assert.ok(Math.abs(l - ref[i]!) <= tol * Math.max(1, Math.abs(ref[i]!)), `step ${i}: CUDA ${l} vs CPU ${ref[i]}`));
  });
}
