// Data parallelism on GPUs end to end, through the CLI: `neox launch --nproc-per-node 2 train`
// (NCCL, one GPU per rank, gradient buckets all-reduced during backward) against `neox train` on
// one GPU with the same global batch (micro-batch 2 × 2 ranks = 4 × 1), in f32 and bf16: the
// ranks' parameters stay identical (the trainer checks checksums at the end and says so) and the
// loss curves agree; ZeRO-1, ZeRO-2 and ZeRO-3 follow the same curve and log their per-rank memory
// (the dry run on CPU ranks checks instead that stage 3 is refused there, saying why).
// Skips (`skipped: needs 2 CUDA devices`) with fewer than 2 GPUs.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { freePort, gpuCount } from './helpers/procs.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..'); // dist/tests → repo root
const NEOX = join(ROOT, 'bin', 'neox.js');

// NEOX_DP_TEST_DEVICE=cpu runs the same checks on CPU ranks (a dry run of this file's logic).
const device = process.env.NEOX_DP_TEST_DEVICE ?? 'cuda';
const skip = device === 'cpu' || gpuCount() >= 2 ? false : 'skipped: needs 2 CUDA devices';


function neox(args: string[], timeoutMs: number): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [NEOX, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`neox ${args.join(' ')} timed out\nstdout:\n${stdout}\nstderr:\n${stderr}`));
    }, timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

const ITERS = 30;

/** A small Pythia-style model on character tokens of the repository's docs (built on first use). */
function config(dir: string, name: string, extra: Record<string, unknown>): string {
  const file = join(dir, `${name}.yml`);
  writeFileSync(file, JSON.stringify({
    num_layers: 2, hidden_size: 128, num_attention_heads: 4, seq_length: 128, max_position_embeddings: 128,
    pos_emb: 'rotary', rotary_pct: 0.25, gpt_j_residual: true, no_weight_tying: true, hidden_dropout: 0, attention_dropout: 0,
    make_vocab_size_divisible_by: 128, optimizer: { type: 'Adam', params: { lr: 0.003, betas: [0.9, 0.95], eps: 1e-8 } },
    lr_decay_style: 'cosine', min_lr: 0.0003, warmup: 0.1, weight_decay: 0.01, gradient_clipping: 1.0, train_iters: ITERS,
    gradient_accumulation_steps: 2, log_interval: 10, eval_iters: 0, seed: 1234, tokenizer_type: 'CharLevelTokenizer',
    data_path: join(dir, 'data', 'docs_text_document'), preprocess_inputs: ['README.md', 'docs/**/*.md'], split: '1000,0,0',
    save: null, load: null, log_dir: join(dir, name), device, ...extra,
  }));
  return file;
}

function losses(dir: string, name: string): number[] {
  return readFileSync(join(dir, name, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { kind: string; loss?: number })
    .filter((r) => r.kind === 'train').map((r) => r.loss!);
}

for (const precision of ['fp32', 'bfloat16', 'fp16'] as const) {
  test(`2 GPUs (NCCL) follow 1 GPU with the same global batch, ${precision}; ZeRO-1/2/3 too; ranks stay identical`, { skip, timeout: 600_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), `neox-gpu-dp-${precision}-`));
    const one = config(dir, 'one', { precision, train_micro_batch_size_per_gpu: 4 });
    const single = await neox(['train', one], 180_000); // also builds the dataset, before the ranks read it
    assert.equal(single.code, 0, single.stderr);
    const ref = losses(dir, 'one');
    assert.equal(ref.length, ITERS);
    assert.ok(ref.at(-1)! < ref[0]! - 0.5, `the loss should fall: ${ref[0]} → ${ref.at(-1)}`);
    // f32 differs only by the order of the cross-rank sum; bf16 and fp16 (dynamic loss scaling,
    // with ZeRO too) also by rounding of the smaller batches' matmuls.
    const tol = precision === 'fp32' ? 1e-4 : 2e-2;
    for (const stage of [0, 1, 2, 3]) {
      const name = `two-zero${stage}`;
      const cfg = config(dir, name, { precision, train_micro_batch_size_per_gpu: 2, zero_optimization: { stage, reduce_bucket_size: 50_000 } });
      const run = await neox(['launch', '--nproc-per-node', '2', '--master-port', String(await freePort()), 'train', cfg], 180_000);
      if (stage === 3 && device === 'cpu') {
        assert.notEqual(run.code, 0, 'stage 3 on CPU ranks must be refused');
        assert.match(run.stderr + run.stdout, /zero_optimization\.stage 3 needs the NCCL group \(device cuda\).*use stage 1 or 2 on CPU ranks/, name);
        continue;
      }
      assert.equal(run.code, 0, `${name}: ${run.stderr}\n${run.stdout}`);
      // Stage 3: each rank holds its own parameter shard, so the trainer has no whole copies to compare.
      if (stage !== 3) assert.match(run.stdout, /parameters identical on all 2 ranks/, name);
      if (stage > 0) assert.match(run.stdout, new RegExp(`ZeRO-${stage}: .*optimizer state on this rank \\(1/2 of`), name);
      const got = losses(dir, name);
      assert.equal(got.length, ITERS, name);
      got.forEach((l, i) => {
        const d = Math.abs(l - ref[i]!);
        assert.ok(d <= tol * Math.abs(ref[i]!), `${name} step ${i + 1}: 2 GPUs ${l} vs 1 GPU ${ref[i]} (|Δ| ${d.toExponential(2)})`);
      });
    }
  });
}

test('bench/train_bench.ts --zero 3 on CPU ranks is refused, saying it needs synchronous collectives (NCCL)', { timeout: 120_000 }, async () => {
  const run = await neox(['launch', '--nproc-per-node', '2', '--master-port', String(await freePort()), '--exec', 'node', 'dist/bench/train_bench.js', 'tiny',
    '--device', 'cpu', '--zero', '3', '--steps', '1', '--warmup', '0'], 100_000);
  assert.notEqual(run.code, 0);
  assert.match(run.stderr + run.stdout, /stage 3 gathers parameters inside forward and backward and needs a process group with synchronous collectives \(the NCCL group, device cuda/);
});
