// Learning-rate schedules (GPT-NeoX's AnnealingLR, with the cosine clamp documented in
// docs/architecture.md), gradient clipping, and the AdamW wrapper's groups.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AdamW, gradNormAndClip, learningRate } from '../src/optim/index.js';
import { parameter } from '../src/nn/index.js';
import { tensor } from '../src/tensor/index.js';
import { assertClose } from './helpers/check.js';

const o = { lr: 1.0, minLr: 0.1, warmupIters: 10, decayIters: 110 };

test('warmup rises linearly from 0 to lr over warmup · lr_decay_iters iterations', () => {
  for (const style of ['constant', 'linear', 'cosine', 'exponential'] as const) {
    assert.equal(learningRate(0, { ...o, style }), 0);
    assert.equal(learningRate(5, { ...o, style }), 0.5);
    assert.equal(learningRate(10, { ...o, style }), 1.0);
  }
});

test('decay styles follow GPT-NeoX after warmup, floored at min_lr', () => {
  // t = iteration − warmup over a span of 100
  assert.equal(learningRate(60, { ...o, style: 'constant' }), 1.0);
  assert.equal(learningRate(60, { ...o, style: 'linear' }), 0.5);
  assert.equal(learningRate(105, { ...o, style: 'linear' }), 0.1); // 0.05, floored at min_lr
  assertClose([learningRate(60, { ...o, style: 'cosine' })], [0.1 + 0.45 * (Math.cos(Math.PI / 2) + 1)], { rtol: 1e-12 });
  assertClose([learningRate(35, { ...o, style: 'cosine' })], [0.1 + 0.45 * (Math.cos(Math.PI / 4) + 1)], { rtol: 1e-12 });
  assertClose([learningRate(60, { ...o, style: 'exponential' })], [Math.exp(-0.693 * 0.5)], { rtol: 1e-12 });
});

test('past lr_decay_iters every schedule stays at its end value (cosine does not rise again)', () => {
  assert.equal(learningRate(110, { ...o, style: 'cosine' }), 0.1);
  assert.equal(learningRate(200, { ...o, style: 'cosine' }), 0.1);
  assert.equal(learningRate(500, { ...o, style: 'linear' }), 0.1);
  assertClose([learningRate(500, { ...o, style: 'exponential' })], [Math.max(0.1, Math.exp(-0.693))], { rtol: 1e-12 });
});

test('gradient clipping scales by max_norm / (norm + 1e-6) only when the global norm exceeds it', () => {
  const a = parameter(tensor([3, 0], [2])), b = parameter(tensor([0, 4], [2]));
  a.grad = tensor([3, 0], [2]).keep();
  b.grad = tensor([0, 4], [2]).keep();
  const big = gradNormAndClip([a, b], 1);
  assertClose([big.norm, big.scale], [5, 1 / (5 + 1e-6)], { rtol: 1e-6 });
  assert.deepEqual(gradNormAndClip([a, b], 10), { norm: 5, scale: 1 });
  assert.equal(gradNormAndClip([a, b], 0).scale, 1);
});

test('AdamW groups: weight decay applies only to its group; a parameter without a gradient is left alone', () => {
  const decayed = parameter(tensor([1], [1])), plain = parameter(tensor([1], [1])), idle = parameter(tensor([1], [1]));
  const opt = new AdamW([{ params: [decayed], weightDecay: 0.5 }, { params: [plain, idle], weightDecay: 0 }], { betas: [0.9, 0.999], eps: 1e-8 });
  decayed.grad = tensor([0], [1]).keep();
  plain.grad = tensor([0], [1]).keep();
  opt.update(0.1);
  assertClose(decayed.toArray(), [1 - 0.1 * 0.5], { rtol: 1e-6 }); // zero gradient: only the decay moves it
  assert.deepEqual(Array.from(plain.toArray()), [1]);
  assert.deepEqual(Array.from(idle.toArray()), [1]);
});
