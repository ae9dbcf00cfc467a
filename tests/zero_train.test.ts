// ZeRO through the trainer: `neox launch --nproc-per-node 2 train` with zero_optimization.stage 2
// and gradient accumulation (several buckets, reduce-scattered during every micro-batch's backward)
// logs its memory per rank, keeps the parameters identical on both ranks and follows the
// one-process run of the same global batch; its checkpoint (whole moments gathered from the shards)
// resumes in one process (plain AdamW), which then continues as the uninterrupted one-process run
// does (within float tolerance: the world size changes the order of the sums). Stage 1 (the last
// micro-batch's buckets reduce-scattered during its backward) follows the one-process run too.
// Stage 3 on CPU ranks (the TCP group has no synchronous collectives) is refused with a clear
// error. Bit-level checks of the optimizer: tests/zero.test.ts,
// tests/zero_overlap.test.ts.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadConfig } from '../src/config/index.js';
import { train } from '../src/train/index.js';
import { launchTwo } from './helpers/procs.js';
import { tinyRun } from './helpers/tiny_run.js';

function setup(extra: Record<string, unknown>): { dir: string; file: string } {
  return tinyRun('neox-zero-train-', (dir) => ({
    num_layers: 2, hidden_size: 32, num_attention_heads: 4, seq_length: 32, max_position_embeddings: 32,
    pos_emb: 'rotary', rotary_pct: 0.5, gpt_j_residual: true, no_weight_tying: true, hidden_dropout: 0, attention_dropout: 0,
    optimizer: { type: 'Adam', params: { lr: 0.003, betas: [0.9, 0.95], eps: 1e-8 } }, lr_decay_style: 'cosine',
    warmup: 0.25, min_lr: 0.0003, weight_decay: 0.01, gradient_clipping: 1.0, lr_decay_iters: 4,
    train_micro_batch_size_per_gpu: 1, gradient_accumulation_steps: 2, train_iters: 4, eval_interval: 1000, eval_iters: 0,
    log_interval: 1, seed: 42, device: 'cpu', log_dir: join(dir, 'logs'),
    ...extra,
  }));
}

const quiet = { print: () => {} };

function trainLosses(logDir: string): number[] {
  return readFileSync(join(logDir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { kind: string; loss: number })
    .filter((l) => l.kind === 'train').map((l) => l.loss);
}

function assertNear(actual: number[], expected: number[], what: string): void {
  assert.equal(actual.length, expected.length, what);
  actual.forEach((l, i) => assert.ok(Math.abs(l - expected[i]!) <= 1e-4 * Math.abs(expected[i]!), `${what}, iteration ${i + 1}: ${l} vs ${expected[i]}`));
}

test('ZeRO-2 on 2 CPU ranks (accumulation 2): memory per rank logged, the 1-rank loss curve, and its checkpoint resumes on 1 rank', async () => {
  const a = setup({ zero_optimization: { stage: 2, reduce_bucket_size: 3000 } });
  const save = join(a.dir, 'ckpt');
  // Two ranks stop at iteration 2 of the 4-iteration schedule (lr_decay_iters fixes it) and save.
  const twoFile = join(a.dir, 'two.yml');
  writeFileSync(twoFile, JSON.stringify({ ...JSON.parse(readFileSync(a.file, 'utf8')), train_iters: 2, save, checkpoint_factor: 2 }));
  const out = await launchTwo(['train', twoFile]);
  assert.match(out, /ZeRO-2: [\d.]+k?B of optimizer state on this rank \(1\/2 of [\d.]+k?B\), [\d.]+k?B of gradients \(a 1\/2 shard\), [\d.]+k?B of f32 parameters \(all\); (\d+) buckets reduce-scattered during backward/);
  assert.ok(Number(/(\d+) buckets reduce-scattered/.exec(out)![1]) >= 5, out);
  assert.match(out, /data parallel: parameters identical on all 2 ranks/);
  assert.match(out, /peak mem [\d.]+ \/ [\d.]+ GiB \(ranks 0–1\)/, 'every rank\'s peak memory in the log line');
  const twoRanks = trainLosses(join(a.dir, 'logs'));
  assert.equal(twoRanks.length, 2);

  // The same global batch (2 rows × 2 micro-batches) on one process, uninterrupted.
  const one = { train_micro_batch_size_per_gpu: 2, train_iters: 4, zero_optimization: { stage: 2 } };
  const straight = await train(loadConfig([a.file], { overrides: { ...one, save: null, log_dir: join(a.dir, 'logs1') } }), quiet);
  assert.equal(straight.losses.length, 4);
  assertNear(twoRanks, straight.losses.slice(0, 2), '2 ranks with ZeRO-2 vs 1 rank');
  // One process resumes from the 2-rank checkpoint (ZeRO's gathered moments into plain AdamW).
  const resumed = await train(loadConfig([a.file], { overrides: { ...one, load: save, save: join(a.dir, 'ckpt1'), checkpoint_factor: 2, log_dir: join(a.dir, 'logs2') } }), quiet);
  assert.equal(resumed.iteration, 4);
  assertNear(resumed.losses, straight.losses.slice(2), 'resumed on 1 rank vs uninterrupted');
});

test('ZeRO-1 on 2 CPU ranks (accumulation 2, several buckets): the 1-rank loss curve', async () => {
  const a = setup({ zero_optimization: { stage: 1, reduce_bucket_size: 3000 }, train_iters: 3 });
  const out = await launchTwo(['train', a.file]);
  assert.match(out, /ZeRO-1: .* of gradients \(all\), .*; \d+ buckets reduce-scattered during backward/);
  assert.match(out, /data parallel: parameters identical on all 2 ranks/);
  const one = await train(loadConfig([a.file], { overrides: { train_micro_batch_size_per_gpu: 2, save: null, log_dir: join(a.dir, 'logs1') } }), quiet);
  assertNear(trainLosses(join(a.dir, 'logs')), one.losses, '2 ranks with ZeRO-1 vs 1 rank');
});

test('zero_optimization.stage 3 on CPU ranks fails clearly', async () => {
  const a = setup({ zero_optimization: { stage: 3 }, train_iters: 1 });
  await assert.rejects(launchTwo(['train', a.file]), /zero_optimization.stage 3 needs the NCCL group \(device cuda\)/);
});
