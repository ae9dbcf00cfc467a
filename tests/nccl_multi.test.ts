// The NCCL group across 2 processes (one GPU each), started by `neox launch --nproc-per-node 2`:
// every collective (all-reduce sum/avg/max/min in f32 and bf16, coalesced, reduce-scatter,
// all-gather, broadcast, send/recv, barrier, a newGroup split) gives the same values as the CPU
// group on the same inputs. Inputs are small integers, so both sums are exact and must agree bit
// for bit. Then a hang: rank 1 never joins rank 0's all-reduce; rank 0, blocked in a download, is
// ended by its worker-thread watchdog naming the operation, and the launcher stops both.
// Skips (`skipped: needs 2 CUDA devices`) on a machine with fewer than 2 GPUs.
//
// This file is also the worker: with NEOX_NCCL_WORKER=1 it runs one rank and prints
// `nccl_worker rank R: ok (N checks)`. By hand, on kind nvidia-h200-x2:
//   npx tsc -p . && NEOX_NCCL_WORKER=1 node bin/neox.js launch --nproc-per-node 2 --exec -- node dist/tests/nccl_multi.test.js

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import '../src/backends/cpu/index.js';
import { initCuda } from '../src/backends/cuda/index.js';
import '../src/backends/cuda/nccl_group.js';
import { type ProcessGroup, type Work, connectStore, createProcessGroup, readDistEnv } from '../src/parallel/index.js';
import { type DType, type Tensor, getBackend, tensor } from '../src/tensor/index.js';
import { HOST_WATCHDOG_EXIT_CODE } from '../src/parallel/host_watchdog.js';
import { freePort, gpuCount } from './helpers/procs.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..'); // dist/tests → repo root
const NEOX = join(ROOT, 'bin', 'neox.js');
const SELF = join(ROOT, 'dist', 'tests', 'nccl_multi.test.js');


// ---------------------------------------------------------------------------------------------
// The worker (one rank)

async function worker(): Promise<void> {
  const env = readDistEnv(process.env);
  const be = initCuda(env.localRank); // ordinal mode: local rank r uses GPU r
  if (!be) throw new Error(`rank ${env.rank}: no CUDA device ${env.localRank}`);
  const cpu = getBackend('cpu');
  const timeoutMs = 120_000;
  const store = await connectStore(env.masterAddr, env.masterPort, env.rank, { timeoutMs });
  await store.barrier('init', env.rank, env.worldSize, timeoutMs);
  const init = { store, rank: env.rank, size: env.worldSize, timeoutMs, localRank: env.localRank };
  const cg = await createProcessGroup('cpu', init);
  const ng = await createProcessGroup('nccl', init);
  const W = env.worldSize;
  const r = env.rank;
  let checks = 0;

  /** The same values on both backends; `fill(i)` gives element i. */
  const pair = (n: number, dtype: DType, fill: (i: number) => number): [Tensor, Tensor] => {
    const v = Float64Array.from({ length: n }, (_, i) => fill(i));
    return [tensor(v, [n], dtype, cpu).keep(), tensor(v, [n], dtype, be).keep()];
  };
  const same = async (what: string, c: Tensor, g: Tensor, cw: Work | null, gw: Work | null): Promise<void> => {
    await Promise.all([cw?.wait(), gw?.wait()]);
    const a = c.toArray();
    const b = g.toArray();
    assert.equal(b.length, a.length, what);
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) throw new Error(`rank ${r}: ${what}: element ${i}: nccl ${b[i]} vs cpu ${a[i]}`);
    checks++;
  };
  const run = (f: (g: ProcessGroup, t: Tensor[]) => Work, c: Tensor[], g: Tensor[]): [Work, Work] => [f(cg, c), f(ng, g)];

  const N = 1_000_003; // odd, as in the recipe
  for (const dtype of ['f32', 'bf16'] as DType[]) {
    for (const op of ['sum', 'avg', 'max', 'min'] as const) {
      const [c, g] = pair(N, dtype, (i) => ((i * (r + 3)) % 17) - 8);
      const [cw, gw] = run((pg, [t]) => pg.allReduce(t!, op), [c], [g]);
      await same(`allReduce ${op} ${dtype}`, c, g, cw, gw);
    }
  }
  {
    const [c1, g1] = pair(4097, 'f32', (i) => (i % 5) + r);
    const [c2, g2] = pair(33, 'f32', (i) => i * (r + 1));
    const [cw, gw] = run((pg, ts) => pg.allReduceCoalesced(ts, 'sum'), [c1, c2], [g1, g2]);
    await same('allReduceCoalesced (1 of 2)', c1, g1, cw, gw);
    await same('allReduceCoalesced (2 of 2)', c2, g2, null, null);
  }
  {
    const n = 500_001;
    const [ci, gi] = pair(W * n, 'bf16', (i) => ((i + r) % 9) - 4);
    const [co, go] = pair(n, 'bf16', () => 0);
    const [cw, gw] = run((pg, [o, i]) => pg.reduceScatter(o!, i!, 'sum'), [co, ci], [go, gi]);
    await same('reduceScatter sum bf16', co, go, cw, gw);
  }
  {
    const n = 300_007;
    const [ci, gi] = pair(n, 'f32', (i) => i % 101 + 1000 * r);
    const [co, go] = pair(W * n, 'f32', () => -1);
    const [cw, gw] = run((pg, [o, i]) => pg.allGather(o!, i!), [co, ci], [go, gi]);
    await same('allGather f32', co, go, cw, gw);
  }
  {
    const [c, g] = pair(12_345, 'f32', (i) => i * 0.5 + r * 1000);
    const [cw, gw] = run((pg, [t]) => pg.broadcast(t!, W - 1), [c], [g]);
    await same(`broadcast from ${W - 1}`, c, g, cw, gw);
  }
  if (W >= 2 && r < 2) {
    const peer = 1 - r;
    const [cs, gs] = pair(7777, 'bf16', (i) => (i % 13) + 100 * r);
    const [cr, gr] = pair(7777, 'bf16', () => 0);
    // Rank 0 sends first and rank 1 receives first: one ordering NCCL must handle without a group.
    const order = r === 0 ? ['send', 'recv'] : ['recv', 'send'];
    for (const what of order) {
      const [cw, gw] = what === 'send' ? run((pg, [t]) => pg.send(t!, peer), [cs], [gs]) : run((pg, [t]) => pg.recv(t!, peer), [cr], [gr]);
      await Promise.all([cw.wait(), gw.wait()]);
    }
    await same('send/recv', cr, gr, null, null);
  }
  await ng.barrier();
  {
    // A subgroup with the ranks reversed: group rank 0 is world rank W-1.
    const members = Array.from({ length: W }, (_, i) => W - 1 - i);
    const sc = cg.newGroup(members)!;
    const sn = ng.newGroup(members)!;
    const [c, g] = pair(1000, 'f32', (i) => i + r);
    const [cw, gw] = run((pg, [t]) => pg.allReduce(t!, 'sum'), [c], [g]);
    await same('newGroup allReduce', c, g, cw, gw);
    await sn.destroy();
    await sc.destroy();
  }
  await store.barrier('done', r, W, timeoutMs);
  await ng.destroy();
  await cg.destroy();
  await store.close();
  console.log(`nccl_worker rank ${r}: ok (${checks} checks)`);
}

/**
 * A hung collective (NEOX_NCCL_WORKER=hang): rank 1 never joins rank 0's all-reduce and waits;
 * rank 0 blocks in the download of its result. Rank 0's worker-thread watchdog must end it (exit 3)
 * after the 2 s timeout, naming the operation, and the launcher then stops rank 1.
 */
async function hangWorker(): Promise<void> {
  const env = readDistEnv(process.env);
  const be = initCuda(env.localRank);
  if (!be) throw new Error(`rank ${env.rank}: no CUDA device ${env.localRank}`);
  const store = await connectStore(env.masterAddr, env.masterPort, env.rank, { timeoutMs: 60_000 });
  await store.barrier('init', env.rank, env.worldSize, 60_000);
  const ng = await createProcessGroup('nccl', { store, rank: env.rank, size: env.worldSize, timeoutMs: 2000, localRank: env.localRank });
  if (env.rank === 0) {
    const x = tensor([1, 2, 3], [3], 'f32', be).keep();
    await ng.allReduce(x).wait();
    x.toArray(); // blocks: rank 1 never joins
    console.log('hang_worker rank 0: the all-reduce completed (it should not have)');
  } else {
    await new Promise((r) => setTimeout(r, 120_000));
  }
}

// ---------------------------------------------------------------------------------------------
// The test (the launcher side)

function launchSelf(worker: string): Promise<{ code: number | null; out: string }> {
  return freePort().then((port) => new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [NEOX, 'launch', '--nproc-per-node', '2', '--master-port', String(port), '--exec', '--', process.execPath, SELF], {
      cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NEOX_NCCL_WORKER: worker },
    });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => { out += d; });
    child.stderr.setEncoding('utf8').on('data', (d: string) => { out += d; });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`timed out:\n${out}`));
    }, 300_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  }));
}

const role = process.env.NEOX_NCCL_WORKER;
if (role === '1' || role === 'hang') {
  (role === '1' ? worker() : hangWorker()).catch((e: Error) => {
    process.stderr.write(`nccl_worker: ${e.stack ?? e.message}\n`);
    process.exit(1);
  });
} else {
  const gpus = gpuCount();
  const skip = gpus >= 2 ? false : 'skipped: needs 2 CUDA devices';
  test('2 ranks under neox launch: every NCCL collective equals the CPU group\'s result', { skip }, async () => {
    const run = await launchSelf('1');
    assert.equal(run.code, 0, run.out);
    assert.match(run.out, /nccl_worker rank 0: ok \(\d+ checks\)/);
    assert.match(run.out, /nccl_worker rank 1: ok \(\d+ checks\)/);
  });

  test('a collective one rank never joins: the other, blocked on the device, is ended by its watchdog thread naming it, and the launcher stops both', { skip }, async () => {
    const run = await launchSelf('hang');
    assert.equal(run.code, HOST_WATCHDOG_EXIT_CODE, run.out);
    assert.match(run.out, /neox: allReduce #1 on rank 0: in flight for [\d.]+ s \(timeout 2 s\) while this process's main thread has not run for [\d.]+ s/);
    assert.match(run.out, /neox launch: rank 0 \(pid \d+\) failed: it exited with code 3/);
    assert.doesNotMatch(run.out, /it should not have/);
  });
}
