// fp16 dynamic loss scaling (src/train/loss_scaler.ts) against DeepSpeed's DynamicLossScaler rules,
// step by step, and its checkpointed state.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LossScaler } from '../src/train/index.js';

const fp16 = { loss_scale: 0, initial_scale_power: 12, loss_scale_window: 4, hysteresis: 2, min_loss_scale: 256 };

/** Feeds outcomes (true: finite) and returns [skipped?, scale after] per step. */
function run(s: LossScaler, outcomes: boolean[]): [boolean, number][] {
  return outcomes.map((ok) => [!s.update(ok), s.scale]);
}

test('dynamic scale: hysteresis delays the first halving, then every overflow halves until a window of good steps restores it', () => {
  const s = new LossScaler(fp16);
  assert.equal(s.scale, 4096);
  assert.deepEqual(run(s, [false, false, false]), [[true, 4096], [true, 2048], [true, 1024]]);
  // 4 good steps since the last overflow: doubled, hysteresis back to 2.
  assert.deepEqual(run(s, [true, true, true, true]), [[false, 1024], [false, 1024], [false, 1024], [false, 2048]]);
  assert.deepEqual(run(s, [false, false]), [[true, 2048], [true, 1024]]);
  // An overflow restarts the window count; doubling repeats every window while steps stay good.
  assert.deepEqual(run(s, [true, true, true, false, true, true, true, true, true, true, true, true]).map(([, x]) => x),
    [1024, 1024, 1024, 512, 512, 512, 512, 1024, 1024, 1024, 1024, 2048]);
});

test('the scale never goes below min_loss_scale, and an overflow there is an error; a static loss_scale never changes but overflows are still skipped', () => {
  const s = new LossScaler({ ...fp16, hysteresis: 1, initial_scale_power: 9 });
  assert.deepEqual(run(s, [false]), [[true, 256]]);
  assert.throws(() => s.update(false), /gradient overflow with the loss scale already at its minimum \(fp16.min_loss_scale 256\).*Lower the learning rate/);
  // With hysteresis left, an overflow at the minimum only uses it up.
  const h = new LossScaler({ ...fp16, initial_scale_power: 8 });
  assert.deepEqual(run(h, [false]), [[true, 256]]);
  assert.throws(() => h.update(false), /already at its minimum/);
  const fixed = new LossScaler({ ...fp16, loss_scale: 128 });
  assert.deepEqual(run(fixed, [true, false, true, true, true, true]), [[false, 128], [true, 128], [false, 128], [false, 128], [false, 128], [false, 128]]);
});

test('state() and load(): a restored scaler continues exactly as the original; bad state is refused', () => {
  const a = new LossScaler(fp16);
  run(a, [false, true, true, false, false, true]);
  const b = new LossScaler(fp16);
  b.load(JSON.parse(JSON.stringify(a.state())));
  const rest = [true, true, false, true, true, true, true, true, false, false];
  assert.deepEqual(run(b, rest), run(a, rest));
  assert.throws(() => b.load({ scale: Number.NaN, sinceOverflow: 0, hysteresis: 2 }), /loss scaler state: scale must be a finite number/);
});
