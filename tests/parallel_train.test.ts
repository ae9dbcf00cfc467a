// Data parallelism end to end in separate processes started by `neox launch`: parameters stay
// identical across 2 ranks (checksums), 2 ranks × micro-batch m follow 1 rank × 2m (same global
// batch) within float tolerance, ZeRO-1 matches plain data parallelism, gradient buckets reduced
// during backward (several buckets) give the bits of syncGradients() after it, and the launcher stops a
// job whose rank crashes (naming it) or that it is told to stop. Ports are free 127.0.0.1 ports;
// every process is bounded by a timeout and reaped.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type WorkerResult, dpTrain } from './parallel_worker.js';
import { freePort } from './helpers/procs.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..'); // dist/tests → repo root
const NEOX = join(ROOT, 'bin', 'neox.js');
const WORKER = join(ROOT, 'dist', 'tests', 'parallel_worker.js');


interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  child: ChildProcess;
}

/** Runs `neox ARGS` with a hard timeout; `onStdout` sees output as it comes. */
function neox(args: string[], timeoutMs: number, onStdout?: (text: string, child: ChildProcess) => void): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [NEOX, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
      onStdout?.(stdout, child);
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`neox ${args.join(' ')} timed out\nstdout:\n${stdout}\nstderr:\n${stderr}`));
    }, timeoutMs);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, child });
    });
  });
}

function config(dir: string, name: string, extra: Record<string, unknown>): string {
  const file = join(dir, `${name}.yml`);
  writeFileSync(file, JSON.stringify({
    num_layers: 2, hidden_size: 32, num_attention_heads: 4, seq_length: 16, max_position_embeddings: 16,
    pos_emb: 'rotary', rotary_pct: 0.5, gpt_j_residual: true, no_weight_tying: true, hidden_dropout: 0, attention_dropout: 0,
    optimizer: { type: 'Adam', params: { lr: 0.01, betas: [0.9, 0.95], eps: 1e-8 } }, lr_decay_style: 'cosine', min_lr: 0.001,
    weight_decay: 0.01, gradient_clipping: 1.0, train_iters: 4, seed: 7, device: 'cpu', ...extra,
  }));
  return file;
}

const STEPS = 4;

test('2 ranks by neox launch: identical parameters, the 1-rank loss curve of the same global batch, ZeRO-1 = DP', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'neox-dp-'));
  // Global batch 8 = micro 2 × accumulation 2 × 2 ranks = micro 4 × accumulation 2 × 1 rank.
  const two = config(dir, 'two', { train_micro_batch_size_per_gpu: 2, gradient_accumulation_steps: 2 });
  const one = config(dir, 'one', { train_micro_batch_size_per_gpu: 4, gradient_accumulation_steps: 2 });
  const noClip = config(dir, 'noclip', { train_micro_batch_size_per_gpu: 2, gradient_accumulation_steps: 2, gradient_clipping: 0 });

  const port = await freePort();
  const run = await neox(['launch', '--nproc-per-node', '2', '--master-port', String(port), '--exec', '--',
    process.execPath, WORKER, two, join(dir, 'dp'), String(STEPS), 'perturb'], 60_000);
  assert.equal(run.code, 0, run.stderr);
  const ranks = [0, 1].map((r) => JSON.parse(readFileSync(join(dir, `dp.rank${r}.json`), 'utf8')) as WorkerResult);
  assert.equal(ranks[0]!.checksum, ranks[1]!.checksum, 'parameters differ across ranks');
  assert.deepEqual(ranks[0]!.losses, ranks[1]!.losses);
  // Each rank read its half of every loader step: rank 0 rows 0-1, rank 1 rows 2-3.
  assert.deepEqual(ranks[0]!.samples[0], [0, 1]);
  assert.deepEqual(ranks[1]!.samples[0], [2, 3]);
  assert.deepEqual(ranks[1]!.samples[1], [6, 7]);

  const single = await dpTrain(one, STEPS, { env: {} });
  assert.deepEqual(single.samples[0], [0, 1, 2, 3]);
  assert.ok(single.losses[STEPS - 1]! < single.losses[0]!, `loss should fall: ${single.losses}`);
  single.losses.forEach((l, i) => {
    const d = Math.abs(l - ranks[0]!.losses[i]!);
    assert.ok(d <= 1e-4 * Math.abs(l), `step ${i + 1}: 1 rank ${l} vs 2 ranks ${ranks[0]!.losses[i]} (|Δ| ${d})`);
  });

  // ZeRO-1 vs plain data parallelism, both without clipping: the same bits.
  const port2 = await freePort();
  const runs = await Promise.all([
    neox(['launch', '--nproc-per-node', '2', '--master-port', String(port2), '--exec', '--', process.execPath, WORKER, noClip, join(dir, 'z'), String(STEPS), 'zero'], 60_000),
  ]);
  assert.equal(runs[0]!.code, 0, runs[0]!.stderr);
  const port3 = await freePort();
  const plain = await neox(['launch', '--nproc-per-node', '2', '--master-port', String(port3), '--exec', '--', process.execPath, WORKER, noClip, join(dir, 'p'), String(STEPS)], 60_000);
  assert.equal(plain.code, 0, plain.stderr);
  const z = JSON.parse(readFileSync(join(dir, 'z.rank1.json'), 'utf8')) as WorkerResult;
  const p = JSON.parse(readFileSync(join(dir, 'p.rank1.json'), 'utf8')) as WorkerResult;
  assert.equal(z.checksum, p.checksum);
  assert.deepEqual(z.losses, p.losses);
  assert.ok(Math.abs(z.stateBytes / p.stateBytes - 0.5) < 0.01, `ZeRO-1 state ${z.stateBytes} B vs ${p.stateBytes} B`);
});

test('2 ranks: gradient buckets all-reduced during backward give the bits of syncGradients() after it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'neox-overlap-'));
  // Small buckets, so that there are several and some complete while backward still runs.
  const cfg = config(dir, 'buckets', { train_micro_batch_size_per_gpu: 2, gradient_accumulation_steps: 2, zero_optimization: { stage: 0, reduce_bucket_size: 3000 } });
  const results: WorkerResult[][] = [];
  for (const mode of ['overlap', 'sync']) {
    const port = await freePort();
    const run = await neox(['launch', '--nproc-per-node', '2', '--master-port', String(port), '--exec', '--',
      process.execPath, WORKER, cfg, join(dir, mode), String(STEPS), ...(mode === 'sync' ? ['sync'] : [])], 60_000);
    assert.equal(run.code, 0, run.stderr);
    results.push([0, 1].map((r) => JSON.parse(readFileSync(join(dir, `${mode}.rank${r}.json`), 'utf8')) as WorkerResult));
  }
  const [overlap, sync] = results as [WorkerResult[], WorkerResult[]];
  assert.ok(overlap[0]!.buckets >= 4, `${overlap[0]!.buckets} buckets`);
  for (const r of [0, 1]) {
    assert.equal(overlap[r]!.checksum, sync[r]!.checksum, `rank ${r}: parameters differ between overlapped and after-backward reduction`);
    assert.deepEqual(overlap[r]!.losses, sync[r]!.losses);
    // Per step, at least one bucket went out before backward returned (and none did with syncGradients).
    assert.ok(overlap[r]!.earlyBuckets >= STEPS, `rank ${r}: ${overlap[r]!.earlyBuckets} buckets issued during backward in ${STEPS} steps`);
    assert.equal(sync[r]!.earlyBuckets, 0);
  }
});

test('neox launch: a crashing rank stops the job; the exit names the rank, its code and its last stderr', async () => {
  const port = await freePort();
  const ready = join(mkdtempSync(join(tmpdir(), 'neox-crash-')), 'rank0-ready');
  // Rank 1 crashes once rank 0 is up and has printed (a file says so).
  const script = `const fs = require("fs"); const ready = ${JSON.stringify(ready)};` +
    'if (process.env.RANK === "1") { const t = setInterval(() => { if (!fs.existsSync(ready)) return; clearInterval(t); ' +
    'console.error("loading shard 7"); console.error("Error: boom on rank " + process.env.RANK); process.exit(3); }, 20); } ' +
    'else { console.log("rank 0 waiting"); setTimeout(() => fs.writeFileSync(ready, "1"), 100); setInterval(() => {}, 1000); }';
  const t0 = Date.now();
  const run = await neox(['launch', '--nproc-per-node', '2', '--master-port', String(port), '--kill-timeout', '2', '--exec', '--', process.execPath, '-e', script], 20_000);
  assert.equal(run.code, 3);
  assert.match(run.stderr, /neox launch: rank 1 \(pid \d+\) failed: it exited with code 3 after [\d.]+ s; stopped the other 1 process/);
  assert.match(run.stderr, /last lines of rank 1's stderr:\n {2}loading shard 7\n {2}Error: boom on rank 1/);
  assert.match(run.stdout, /\[rank 0\] rank 0 waiting/);
  assert.ok(Date.now() - t0 < 15_000);
});

test('neox launch: SIGTERM is forwarded to every rank and the launcher exits 143', async () => {
  const port = await freePort();
  const script = 'console.log("pid " + process.pid); setInterval(() => {}, 1000);';
  let sent = false;
  const run = await neox(['launch', '--nproc-per-node', '2', '--master-port', String(port), '--exec', '--', process.execPath, '-e', script], 20_000, (out, child) => {
    if (!sent && (out.match(/pid \d+/g) ?? []).length === 2) {
      sent = true;
      child.kill('SIGTERM');
    }
  });
  assert.equal(run.code, 143, run.stderr);
  assert.match(run.stderr, /stopped by SIGTERM/);
  for (const m of run.stdout.matchAll(/pid (\d+)/g)) {
    assert.throws(() => process.kill(Number(m[1]), 0), /ESRCH/, `rank process ${m[1]} is still alive`);
  }
});
