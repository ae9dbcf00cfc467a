// The training loop end to end on CPU: resume is bitwise identical to an uninterrupted run,
// checkpoints rotate, and a non-finite loss stops the run without touching the last checkpoint.
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadConfig } from '../src/config/index.js';
import { train } from '../src/train/index.js';
import { launchTwo } from './helpers/procs.js';
import { tinyRun } from './helpers/tiny_run.js';

function setup(extra: Record<string, unknown>): { dir: string; file: string } {
  return tinyRun('neox-train-', (dir) => ({
    num_layers: 2, hidden_size: 32, num_attention_heads: 4, seq_length: 32, max_position_embeddings: 32,
    pos_emb: 'rotary', rotary_pct: 0.5, gpt_j_residual: true, no_weight_tying: true, hidden_dropout: 0.1,
    optimizer: { type: 'Adam', params: { lr: 0.003, betas: [0.9, 0.95], eps: 1e-8 } }, lr_decay_style: 'cosine',
    warmup: 0.1, min_lr: 0.0003, weight_decay: 0.01, gradient_clipping: 1.0,
    train_micro_batch_size_per_gpu: 2, gradient_accumulation_steps: 2, train_iters: 6, eval_interval: 3, eval_iters: 2,
    log_interval: 100, seed: 42, device: 'cpu', log_dir: join(dir, 'logs'),
    ...extra,
  }));
}

const quiet = { print: () => {} };

test('resume_continues_identical_losses: stop at 3, resume to 6, same losses bit for bit', async () => {
  const a = setup({ save: 'SAVE', checkpoint_factor: 3 });
  const saveA = join(a.dir, 'ckpt');
  const straight = await train(loadConfig([a.file], { overrides: { save: saveA } }), quiet);
  assert.equal(straight.losses.length, 6);

  const b = setup({ save: 'SAVE', checkpoint_factor: 3 });
  const saveB = join(b.dir, 'ckpt');
  const first = await train(loadConfig([b.file], { overrides: { save: saveB } }), { ...quiet, stopAfter: 3 });
  assert.equal(first.iteration, 3);
  assert.equal(readFileSync(join(saveB, 'latest'), 'utf8').trim(), 'global_step3');
  const resumed = await train(loadConfig([b.file], { overrides: { save: saveB, load: saveB } }), quiet);
  assert.equal(resumed.iteration, 6);
  assert.deepEqual([...first.losses, ...resumed.losses], straight.losses);
  assert.equal(resumed.validLoss, straight.validLoss);
  // Metrics were appended as JSON lines.
  const lines = readFileSync(join(b.dir, 'logs', 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.ok(lines.some((l) => l.kind === 'valid' && l.iteration === 6));
});

test('finetune loads weights only and starts at iteration 0; keep_last_n_checkpoints prunes', async () => {
  const a = setup({ save: 'SAVE', checkpoint_factor: 2, keep_last_n_checkpoints: 2 });
  const save = join(a.dir, 'ckpt');
  await train(loadConfig([a.file], { overrides: { save } }), quiet);
  assert.deepEqual(readdirSync(save).filter((n) => n.startsWith('global_step')).sort(), ['global_step4', 'global_step6']);
  const tuned = await train(loadConfig([a.file], { overrides: { save: join(a.dir, 'ft'), load: save, finetune: true } }), quiet);
  assert.equal(tuned.losses.length, 6);
  // Starting from trained weights, the first loss is lower than a fresh model's.
  const fresh = await train(loadConfig([a.file], { overrides: { save: null, checkpoint_factor: null } }), quiet);
  assert.ok(tuned.losses[0]! < fresh.losses[0]!, `finetune first loss ${tuned.losses[0]} vs fresh ${fresh.losses[0]}`);
});

test('a non-finite loss stops the run, naming the iteration, and keeps the last checkpoint', async () => {
  const a = setup({ save: 'SAVE', checkpoint_factor: 1, train_iters: 30 });
  const save = join(a.dir, 'ckpt');
  const loaded = loadConfig([a.file], { overrides: { save, 'optimizer.params.lr': 1e38, min_lr: 0, warmup: 0, gradient_clipping: 0 } });
  await assert.rejects(train(loaded, quiet), /loss is (NaN|Infinity|-Infinity) at iteration \d+; stopping/);
  const latest = readFileSync(join(save, 'latest'), 'utf8').trim();
  assert.ok(existsSync(join(save, latest, 'manifest.json')));
});

test('neox launch --nproc-per-node 2 trains data-parallel on CPU with parameters identical on both ranks', async () => {
  // Small gradient buckets, so that several are all-reduced while backward runs.
  const a = setup({ save: 'SAVE', checkpoint_factor: 6, train_micro_batch_size_per_gpu: 1, zero_optimization: { stage: 0, reduce_bucket_size: 5000 } });
  const save = join(a.dir, 'ckpt');
  writeFileSync(a.file, readFileSync(a.file, 'utf8').replace('"SAVE"', JSON.stringify(save)));
  const out = await launchTwo(['train', a.file]);
  assert.match(out, /data parallel: parameters identical on all 2 ranks/);
  assert.ok(existsSync(join(save, 'global_step6', 'manifest.json')));
});

test('ZeRO-1 on 2 CPU ranks: parameters stay identical, the checkpoint holds whole moments, and 1 rank resumes from it', async () => {
  const a = setup({ save: 'SAVE', checkpoint_factor: 3, train_micro_batch_size_per_gpu: 1, zero_optimization: { stage: 1 } });
  const save = join(a.dir, 'ckpt');
  writeFileSync(a.file, readFileSync(a.file, 'utf8').replace('"SAVE"', JSON.stringify(save)));
  const out = await launchTwo(['train', a.file]);
  assert.match(out, /ZeRO-1: .* of optimizer state on this rank \(1\/2 of/);
  assert.match(out, /data parallel: parameters identical on all 2 ranks/);
  const { loadCheckpoint } = await import('../src/checkpoint/index.js');
  const ckpt = loadCheckpoint(save);
  for (const [name, t] of ckpt.model) assert.deepEqual(ckpt.optimizer!.get(`${name}.exp_avg`)!.shape, t.shape);
  // One process (ZeRO off) resumes from the 2-rank checkpoint: global batch 2 × 2 = 1 × 4 micro-batches.
  const resumed = await train(loadConfig([a.file], { overrides: { load: save, save: join(a.dir, 'ckpt1'), train_iters: 8, gradient_accumulation_steps: 4, zero_optimization: { stage: 0 } } }), quiet);
  assert.equal(resumed.iteration, 8);
  assert.equal(resumed.losses.length, 2);
});

test('tensor or pipeline parallelism is refused before any work: no data prepared, no logs written', async () => {
  for (const [extra, message] of [
    [{ model_parallel_size: 2 }, /^model_parallel_size is 2 in \S*config\.yml line \d+: tensor parallelism is not implemented in NeoX\.ts yet; set it to 1/],
    [{ pipe_parallel_size: 2 }, /^pipe_parallel_size is 2 in \S*config\.yml line \d+: pipeline parallelism is not implemented in NeoX\.ts yet; set it to 1 or 0/],
  ] as const) {
    const { dir, file } = setup(extra);
    // World size 2 so that GPT-NeoX's derivation (world / (pipe × model)) loads; train() then refuses.
    const loaded = loadConfig([file], { worldSize: 2 });
    await assert.rejects(train(loaded, quiet), (err: Error) => {
      assert.equal(err.name, 'NeoxError');
      assert.match(err.message, message);
      return true;
    });
    assert.equal(existsSync(join(dir, 'data')), false, 'preprocessing ran');
    assert.equal(existsSync(join(dir, 'logs')), false, 'logs were written');
  }
});
