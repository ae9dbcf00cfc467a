// Parallel building blocks on CPU: environment parsing for every launcher, Slurm node lists,
// hostfiles with include/exclude, the pdsh/srun/mpirun command lines, the rendezvous store, the
// CPU process group's collectives (several ranks in this one process), data-parallel gradient
// averaging (after backward, and overlapped with it: same bits, bucket order, misuse errors) and
// ZeRO-1. Sockets bind 127.0.0.1 on free ports; every wait is bounded.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import '../src/backends/cpu/index.js';
import { AdamW } from '../src/optim/index.js';
import {
  type ProcessGroup, type ReduceOp, DataParallel, Store, StoreServer, ZeroOptimizer, buildBuckets, expandNodelist,
  parameterChecksum, parseTasksPerNode, readDistEnv, shardRange,
} from '../src/parallel/index.js';
import { filterResources, parseHostfile } from '../src/parallel/hostfile.js';
import { parseLaunchArgs } from '../src/parallel/launcher.js';
import { collectExports, mpirunCommand, pdshCommands, shellJoin, shellQuote, srunCommand } from '../src/parallel/runners.js';
import { type Tensor, backward, getBackend, scope, tensor } from '../src/tensor/index.js';
import { GPTNeoX, resolveModelConfig } from '../src/models/gpt_neox/index.js';
import { rng } from './helpers/check.js';
import { modelKeys } from './helpers/model.js';
import { freePort, withGroups } from './helpers/procs.js';

const cpu = getBackend('cpu');

// ---------------------------------------------------------------------------------------------
// Environment

test('env: torchrun variables (what neox launch sets)', () => {
  const e = readDistEnv({ RANK: '3', WORLD_SIZE: '8', LOCAL_RANK: '1', LOCAL_WORLD_SIZE: '2', GROUP_RANK: '1', MASTER_ADDR: 'node0', MASTER_PORT: '1234' });
  assert.deepEqual(e, { source: 'torchrun', rank: 3, worldSize: 8, localRank: 1, localWorldSize: 2, nodeRank: 1, masterAddr: 'node0', masterPort: 1234, hosts: null });
  const single = readDistEnv({});
  assert.equal(single.source, 'single');
  assert.equal(single.worldSize, 1);
  assert.equal(single.masterAddr, '127.0.0.1');
  assert.equal(single.masterPort, 29500);
  // Config values fill in what the environment lacks; the environment wins.
  assert.equal(readDistEnv({ RANK: '0', WORLD_SIZE: '2' }, { masterAddr: 'cfg-host', masterPort: 4000 }).masterAddr, 'cfg-host');
  assert.equal(readDistEnv({ RANK: '0', WORLD_SIZE: '2', MASTER_PORT: '5000' }, { masterPort: 4000 }).masterPort, 5000);
});

test('env: bad values fail with the variable name', () => {
  assert.throws(() => readDistEnv({ RANK: 'x', WORLD_SIZE: '2' }), /RANK='x' is not an integer/);
  assert.throws(() => readDistEnv({ RANK: '2', WORLD_SIZE: '2' }), /rank 2 is not below the world size 2/);
  assert.throws(() => readDistEnv({ RANK: '0', WORLD_SIZE: '2', MASTER_PORT: '70000' }), /MASTER_PORT 70000/);
});

test('env: Slurm task started by srun; a bare allocation shell is a single process', () => {
  const task = {
    SLURM_PROCID: '5', SLURM_LOCALID: '1', SLURM_NODEID: '2', SLURM_NTASKS: '8', SLURM_STEP_ID: '0',
    SLURM_STEP_NUM_TASKS: '6', SLURM_STEP_TASKS_PER_NODE: '2(x3)', SLURM_STEP_NODELIST: 'gpu[07-09]', SLURM_NODELIST: 'gpu[01-12]',
  };
  const e = readDistEnv(task);
  assert.equal(e.source, 'slurm');
  assert.deepEqual([e.rank, e.worldSize, e.localRank, e.localWorldSize, e.nodeRank], [5, 6, 1, 2, 2]);
  assert.deepEqual(e.hosts, ['gpu07', 'gpu08', 'gpu09']);
  assert.equal(e.masterAddr, 'gpu07'); // the step's first node hosts rank 0
  assert.equal(readDistEnv({ ...task, MASTER_ADDR: '10.0.0.1' }).masterAddr, '10.0.0.1');
  const { SLURM_STEP_ID: _, ...batchShell } = task;
  assert.equal(readDistEnv(batchShell).source, 'single');
  // Without the step variables: the job's.
  const e2 = readDistEnv({ SLURM_PROCID: '0', SLURM_STEPID: '1', SLURM_NTASKS: '4', SLURM_TASKS_PER_NODE: '3,1', SLURM_NODEID: '1', SLURM_LOCALID: '0', SLURM_JOB_NODELIST: 'a,b' });
  assert.deepEqual([e2.worldSize, e2.localWorldSize, e2.masterAddr], [4, 1, 'a']);
});

test('env: Open MPI, MVAPICH and PMI ranks', () => {
  const o = readDistEnv({ OMPI_COMM_WORLD_RANK: '3', OMPI_COMM_WORLD_SIZE: '4', OMPI_COMM_WORLD_LOCAL_RANK: '1', OMPI_COMM_WORLD_LOCAL_SIZE: '2', OMPI_COMM_WORLD_NODE_RANK: '1', MASTER_ADDR: 'h0' });
  assert.deepEqual([o.source, o.rank, o.worldSize, o.localRank, o.localWorldSize, o.nodeRank, o.masterAddr], ['openmpi', 3, 4, 1, 2, 1, 'h0']);
  const m = readDistEnv({ MV2_COMM_WORLD_RANK: '1', MV2_COMM_WORLD_SIZE: '2', MV2_COMM_WORLD_LOCAL_RANK: '1', MV2_COMM_WORLD_LOCAL_SIZE: '2' });
  assert.deepEqual([m.source, m.rank, m.localRank], ['mvapich', 1, 1]);
  const p = readDistEnv({ PMI_RANK: '2', PMI_SIZE: '3', MPI_LOCALRANKID: '0', MPI_LOCALNRANKS: '1' });
  assert.deepEqual([p.source, p.rank, p.worldSize, p.localRank, p.localWorldSize], ['pmi', 2, 3, 0, 1]);
  // torchrun variables take precedence (neox launch inside an MPI job).
  assert.equal(readDistEnv({ RANK: '0', WORLD_SIZE: '1', PMI_RANK: '2', PMI_SIZE: '3' }).source, 'torchrun');
});

test('Slurm node lists and tasks per node expand like scontrol show hostnames', () => {
  assert.deepEqual(expandNodelist('gpu[01-03,07]'), ['gpu01', 'gpu02', 'gpu03', 'gpu07']);
  assert.deepEqual(expandNodelist('node1'), ['node1']);
  assert.deepEqual(expandNodelist('a[08-10],b,c[1]'), ['a08', 'a09', 'a10', 'b', 'c1']);
  assert.deepEqual(expandNodelist('a[8-10]'), ['a8', 'a9', 'a10']);
  assert.deepEqual(expandNodelist('r[1-2]n[1,3]'), ['r1n1', 'r1n3', 'r2n1', 'r2n3']);
  assert.deepEqual(expandNodelist('x[9-11]-ib'), ['x9-ib', 'x10-ib', 'x11-ib']);
  assert.throws(() => expandNodelist('gpu[01-03'), /unbalanced/);
  assert.throws(() => expandNodelist('gpu[3-1]'), /backwards/);
  assert.throws(() => expandNodelist('gpu[a-b]'), /not a number/);
  assert.deepEqual(parseTasksPerNode('2(x3),1'), [2, 2, 2, 1]);
  assert.deepEqual(parseTasksPerNode('4'), [4]);
  assert.throws(() => parseTasksPerNode('2(3)'), /cannot read/);
});

// ---------------------------------------------------------------------------------------------
// Hostfiles, filters and command lines

const HOSTFILE = `# the cluster
worker-0 slots=4
worker-1 slots=4   # a comment

worker-2 slots=2
`;

test('hostfile: host slots=N lines; errors name the line', () => {
  assert.deepEqual([...parseHostfile(HOSTFILE)], [['worker-0', 4], ['worker-1', 4], ['worker-2', 2]]);
  assert.throws(() => parseHostfile('a slots=2\nb 4\n', 'hf'), /hf line 2: expected 'hostname slots=N'/);
  assert.throws(() => parseHostfile('a slots=2\na slots=1\n', 'hf'), /hf line 2: host a is listed twice/);
  assert.throws(() => parseHostfile('# nothing\n', 'hf'), /hf lists no hosts/);
});

test('include/exclude (DeepSpeed syntax), num_nodes, num_gpus', () => {
  const pool = parseHostfile(HOSTFILE);
  const show = (f: Parameters<typeof filterResources>[1]) => Object.fromEntries(filterResources(pool, f));
  assert.deepEqual(show({}), { 'worker-0': [0, 1, 2, 3], 'worker-1': [0, 1, 2, 3], 'worker-2': [0, 1] });
  assert.deepEqual(show({ include: 'worker-0@worker-1:0,2' }), { 'worker-0': [0, 1, 2, 3], 'worker-1': [0, 2] });
  assert.deepEqual(show({ include: 'worker-2@worker-0:1' }), { 'worker-0': [1], 'worker-2': [0, 1] }); // hostfile order
  assert.deepEqual(show({ exclude: 'worker-1:0@worker-2' }), { 'worker-0': [0, 1, 2, 3], 'worker-1': [1, 2, 3] });
  assert.deepEqual(show({ numNodes: 2 }), { 'worker-0': [0, 1, 2, 3], 'worker-1': [0, 1, 2, 3] });
  assert.deepEqual(show({ numGpus: 2, numNodes: -1 }), { 'worker-0': [0, 1], 'worker-1': [0, 1], 'worker-2': [0, 1] });
  assert.throws(() => show({ include: 'worker-9' }), /host 'worker-9' is not in the hostfile/);
  assert.throws(() => show({ include: 'worker-2:5' }), /worker-2 has no slot 5/);
  assert.throws(() => show({ include: 'worker-0', exclude: 'worker-1' }), /cannot both be set/);
  assert.throws(() => show({ include: 'worker-0', numGpus: 1 }), /cannot be combined/);
  assert.throws(() => show({ numGpus: 3 }), /worker-2 has 2 slot/);
  assert.throws(() => show({ exclude: 'worker-0@worker-1@worker-2' }), /no hosts left/);
});

const RUNNER = { command: ['train', 'configs/a.yml', 'configs/b b.yml'], masterAddr: 'worker-0', masterPort: 29500, cwd: '/work/run', nodePath: '/usr/bin/node', neoxBin: '/opt/neox/bin/neox.js' };

test('pdsh: one command per node with its node rank, rank offset and GPUs', () => {
  const active = filterResources(parseHostfile(HOSTFILE), { include: 'worker-0:0,1@worker-2' });
  const cmds = pdshCommands(active, { ...RUNNER, exports: { NCCL_DEBUG: 'INFO', NEOX_X: "it's" } });
  assert.equal(cmds.length, 2);
  assert.deepEqual(cmds[0]!.argv.slice(0, 6), ['pdsh', '-S', '-f', '1024', '-w', 'worker-0']);
  assert.equal(cmds[0]!.argv[6], "export NCCL_DEBUG=INFO; export NEOX_X='it'\\''s'; cd /work/run; /usr/bin/node /opt/neox/bin/neox.js launch " +
    '--nproc-per-node 2 --nnodes 2 --node-rank 0 --rank-offset 0 --world-size 4 --master-addr worker-0 --master-port 29500 ' +
    "--devices 0,1 -- train configs/a.yml 'configs/b b.yml'");
  assert.equal(cmds[1]!.host, 'worker-2');
  assert.match(cmds[1]!.argv[6]!, /--nproc-per-node 2 --nnodes 2 --node-rank 1 --rank-offset 2 --world-size 4 .* --devices 0,1 --/);
});

test('srun and mpirun lines', () => {
  const pool = parseHostfile(HOSTFILE);
  const two = filterResources(pool, { numNodes: 2 });
  assert.equal(shellJoin(srunCommand(two, RUNNER)),
    "srun --nodes=2 --ntasks-per-node=4 --ntasks=8 --nodelist=worker-0,worker-1 --kill-on-bad-exit=1 env MASTER_ADDR=worker-0 MASTER_PORT=29500 " +
    "/usr/bin/node /opt/neox/bin/neox.js train configs/a.yml 'configs/b b.yml'");
  assert.equal(shellJoin(srunCommand(null, { ...RUNNER, numNodes: 4, gpusPerNode: 8 })),
    "srun --nodes=4 --ntasks-per-node=8 --ntasks=32 --kill-on-bad-exit=1 env MASTER_PORT=29500 /usr/bin/node /opt/neox/bin/neox.js train configs/a.yml 'configs/b b.yml'");
  // The same GPU subset everywhere is expressible; different counts per node are not.
  assert.match(shellJoin(srunCommand(filterResources(pool, { include: 'worker-0:1,3@worker-1:1,3' }), RUNNER)), /--ntasks-per-node=2 .* CUDA_VISIBLE_DEVICES=1,3 /);
  assert.throws(() => srunCommand(filterResources(pool, {}), RUNNER), /same number of ranks on every node.*worker-2: 2/);
  assert.throws(() => srunCommand(null, RUNNER), /needs num_nodes and num_gpus/);

  assert.equal(shellJoin(mpirunCommand(filterResources(pool, {}), { ...RUNNER, exports: { NCCL_NVLS_ENABLE: '0' } })),
    'mpirun -np 10 -H worker-0:4,worker-1:4,worker-2:2 --map-by slot --bind-to none -x MASTER_ADDR=worker-0 -x MASTER_PORT=29500 ' +
    "-x NCCL_NVLS_ENABLE=0 /usr/bin/node /opt/neox/bin/neox.js train configs/a.yml 'configs/b b.yml'");
  assert.throws(() => mpirunCommand(filterResources(pool, { include: 'worker-0:1@worker-1:2' }), RUNNER), /different GPU lists/);
  // --exec runs the program itself.
  assert.deepEqual(srunCommand(null, { ...RUNNER, exec: true, command: ['hostname'], numNodes: 1, gpusPerNode: 1 }).slice(-1), ['hostname']);
});

test('exports: prefixed variables, NVLink multicast off unless set; shell quoting', () => {
  const ex = collectExports({ NCCL_IB_HCA: 'mlx5', PATH: '/bin', NEOX_DEBUG: '1', NCCL_NVLS_ENABLE: '1' }, []);
  assert.deepEqual(ex, { NCCL_IB_HCA: 'mlx5', NEOX_DEBUG: '1', NCCL_NVLS_ENABLE: '1', TORCH_SYMM_MEM_DISABLE_MULTICAST: '1', NVSHMEM_DISABLE_NVLS: '1' });
  assert.equal(shellQuote('a/b-c.yml'), 'a/b-c.yml');
  assert.equal(shellQuote('a b'), "'a b'");
  assert.equal(shellQuote(''), "''");
});

test('neox launch arguments: options end at the command', () => {
  const a = parseLaunchArgs(['--nproc-per-node', '2', '--master_port=1234', '--devices', '0,2', 'train', 'x.yml', '--device', 'cpu']);
  assert.deepEqual([a.nprocPerNode, a.masterPort, a.devices, a.command], [2, 1234, [0, 2], ['train', 'x.yml', '--device', 'cpu']]);
  const b = parseLaunchArgs(['--exec', '--', 'node', '-e', '1']);
  assert.deepEqual([b.exec, b.command], [true, ['node', '-e', '1']]);
  assert.throws(() => parseLaunchArgs(['--nproc-per-node', 'two', 'train']), /must be an integer/);
  assert.throws(() => parseLaunchArgs(['--bogus', 'train']), /unknown option --bogus/);
});

// ---------------------------------------------------------------------------------------------
// Store

async function withStore<T>(fn: (server: StoreServer, connect: (rank: number, timeoutMs?: number) => Promise<Store>) => Promise<T>): Promise<T> {
  const server = await StoreServer.listen('127.0.0.1', 0);
  const clients: Store[] = [];
  try {
    return await fn(server, async (rank, timeoutMs = 5000) => {
      const s = await Store.connect('127.0.0.1', server.port, { rank, timeoutMs });
      clients.push(s);
      return s;
    });
  } finally {
    for (const c of clients) await c.close();
    await server.close();
  }
}

test('store: set/get/wait/add/check/delete; get waits for a later set', async () => {
  await withStore(async (_server, connect) => {
    const [a, b] = await Promise.all([connect(0), connect(1)]);
    const pending = b.get('id'); // set later by a
    await a.set('id', new Uint8Array([0, 1, 0, 255])); // NUL bytes survive
    assert.deepEqual([...(await pending)], [0, 1, 0, 255]);
    assert.equal(await a.add('count', 2), 2);
    assert.equal(await b.add('count', 3), 5);
    assert.equal(await a.getString('count'), '5');
    const waiting = a.wait(['x', 'y']);
    await b.set('x', '1');
    await b.set('y', '2');
    await waiting;
    assert.deepEqual(await a.check(['x', 'nope']), [true, false]);
    assert.equal(await a.delete('x'), true);
    assert.deepEqual(await a.check(['x']), [false]);
  });
});

test('store: timeouts name the missing keys and the ranks that never arrived', async () => {
  await withStore(async (_server, connect) => {
    const [r0, r1] = await Promise.all([connect(0, 300), connect(1, 300)]);
    await r0.set('a', '1');
    await assert.rejects(r0.wait(['a', 'b', 'c']), /rank 0: timed out after 300 ms waiting for 'b', 'c'/);
    await assert.rejects(r1.get('never'), /rank 1: key 'never' was not set within 300 ms/);
    // Ranks 0 and 1 of 4 arrive; 2 and 3 never do.
    const results = await Promise.allSettled([r0.barrier('init', 0, 4), r1.barrier('init', 1, 4)]);
    for (const r of results) {
      assert.equal(r.status, 'rejected');
      assert.match(String((r as PromiseRejectedResult).reason.message), /barrier 'init' timed out after 300 ms: ranks 2, 3 never arrived \(of 4\)/);
    }
    // A barrier everyone reaches passes, and the next one of the same name is a new one.
    await Promise.all([r0.barrier('step', 0, 2), r1.barrier('step', 1, 2)]);
    await Promise.all([r0.barrier('step', 0, 2), r1.barrier('step', 1, 2)]);
  });
});

test('store: no server (rank 0 never started) and a port in use fail clearly', async () => {
  const port = await freePort();
  await assert.rejects(Store.connect('127.0.0.1', port, { rank: 2, timeoutMs: 200 }),
    /rank 2: could not reach the rendezvous store at 127\.0\.0\.1:\d+ within 200 ms .*hosted by rank 0, which never arrived/);
  const server = await StoreServer.listen('127.0.0.1', 0);
  try {
    await assert.rejects(StoreServer.listen('127.0.0.1', server.port), /port \d+ is in use .*--master-port/);
  } finally {
    await server.close();
  }
  // A client whose server goes away fails its pending operations instead of hanging.
  const s2 = await StoreServer.listen('127.0.0.1', 0);
  const c = await Store.connect('127.0.0.1', s2.port, { rank: 1, timeoutMs: 5000 });
  const failed = assert.rejects(c.get('k'), /rank 1: lost the connection to the rendezvous store .*did rank 0 exit/);
  await s2.close();
  await failed;
  await c.close();
});


// ---------------------------------------------------------------------------------------------
// CPU process group, W ranks in this process


/** Values that make f32 sums order-dependent. */
function awkward(rank: number, n: number): Float32Array {
  return Float32Array.from({ length: n }, (_, i) => (i % 3 === 0 ? 1e8 : 1) * Math.sin(rank * 31 + i * 0.7) + (rank === 1 ? 1e-3 : 0));
}

test('cpu group: all-reduce sums in rank order, bitwise identical on every rank, any size', async () => {
  await withGroups(3, async (gs) => {
    for (const n of [1, 2, 3, 7, 1000]) {
      const ts = gs.map((_, r) => tensor(awkward(r, n), [n], 'f32', cpu).keep());
      await Promise.all(gs.map((g, r) => g.allReduce(ts[r]!, 'sum')));
      const expected = new Float32Array(n);
      for (let i = 0; i < n; i++) expected[i] = Math.fround(Math.fround(awkward(0, n)[i]! + awkward(1, n)[i]!) + awkward(2, n)[i]!);
      for (const t of ts) assert.deepEqual(t.toArray(), expected);
      ts.forEach((t) => t.dispose());
    }
    // avg, max, min; f64 and i32
    const f = (r: number) => tensor([r + 1, 1 - r, 2 * r], [3], 'f64', cpu).keep();
    const avg = gs.map((_, r) => f(r));
    await Promise.all(gs.map((g, r) => g.allReduce(avg[r]!, 'avg')));
    assert.deepEqual([...avg[2]!.toArray()], [2, 0, 2]);
    const mx = gs.map((_, r) => f(r));
    await Promise.all(gs.map((g, r) => g.allReduce(mx[r]!, 'max')));
    assert.deepEqual([...mx[0]!.toArray()], [3, 1, 4]);
    const ints = gs.map((_, r) => tensor([r, 10 * r], [2], 'i32', cpu).keep());
    await Promise.all(gs.map((g, r) => g.allReduce(ints[r]!, 'min')));
    assert.deepEqual([...ints[1]!.toArray()], [0, 0]);
  });
});

test('cpu group: coalesced all-reduce, reduce-scatter, all-gather, broadcast, send/recv, barrier, bf16', async () => {
  await withGroups(2, async (gs) => {
    const a = gs.map((_, r) => tensor([r, r + 1, r + 2, r + 3], [2, 2], 'f32', cpu).keep());
    const b = gs.map((_, r) => tensor([10 * r], [1], 'f32', cpu).keep());
    await Promise.all(gs.map((g, r) => g.allReduceCoalesced([a[r]!, b[r]!], 'sum')));
    assert.deepEqual([...a[1]!.toArray()], [1, 3, 5, 7]);
    assert.deepEqual([...b[0]!.toArray()], [10]);

    const input = gs.map((_, r) => tensor([1 + r, 2 + r, 3 + r, 4 + r], [4], 'f32', cpu).keep());
    const out = gs.map(() => tensor([0, 0], [2], 'f32', cpu).keep());
    await Promise.all(gs.map((g, r) => g.reduceScatter(out[r]!, input[r]!, 'sum')));
    assert.deepEqual([...out[0]!.toArray()], [3, 5]); // chunk 0 → rank 0
    assert.deepEqual([...out[1]!.toArray()], [7, 9]);

    const gathered = gs.map(() => tensor([0, 0, 0, 0], [4], 'f32', cpu).keep());
    await Promise.all(gs.map((g, r) => g.allGather(gathered[r]!, out[r]!)));
    for (const t of gathered) assert.deepEqual([...t.toArray()], [3, 5, 7, 9]);

    const bc = gs.map((_, r) => tensor([r + 5, r + 6], [2], 'f32', cpu).keep());
    await Promise.all(gs.map((g, r) => g.broadcast(bc[r]!, 1)));
    assert.deepEqual([...bc[0]!.toArray()], [6, 7]);

    const msg = tensor([42, 43], [2], 'f32', cpu).keep();
    const box = tensor([0, 0], [2], 'f32', cpu).keep();
    await Promise.all([gs[0]!.send(msg, 1), gs[1]!.recv(box, 0)]);
    assert.deepEqual([...box.toArray()], [42, 43]);

    await Promise.all(gs.map((g) => g.barrier()));

    const h = gs.map((_, r) => tensor([1.5 + r, -2], [2], 'bf16', cpu).keep());
    await Promise.all(gs.map((g, r) => g.allReduce(h[r]!, 'avg')));
    assert.deepEqual([...h[0]!.toFloat32()], [2, -2]);

    // Operations issued back to back run in order; their handles resolve in order.
    const x = gs.map(() => tensor([1], [1], 'f32', cpu).keep());
    const works = gs.flatMap((g, r) => [g.allReduce(x[r]!, 'sum'), g.allReduce(x[r]!, 'sum'), g.allReduce(x[r]!, 'sum')]);
    await Promise.all(works.map((w) => w.wait()));
    assert.deepEqual([...x[0]!.toArray()], [8]);
    assert.ok(works.every((w) => w.completed));
  });
});

test('cpu group: sub-groups talk among their members only', async () => {
  await withGroups(3, async (gs) => {
    const subs = gs.map((g) => g.newGroup([2, 0]));
    assert.equal(subs[1], null);
    assert.deepEqual([subs[0]!.rank, subs[2]!.rank, subs[0]!.ranks], [1, 0, [2, 0]]);
    const t = [tensor([1], [1], 'f32', cpu).keep(), tensor([4], [1], 'f32', cpu).keep()];
    const w = [gs[0]!, gs[1]!, gs[2]!].map((g, r) => g.allReduce(tensor([r], [1], 'f32', cpu).keep(), 'sum'));
    await Promise.all([subs[0]!.allReduce(t[0]!, 'sum'), subs[2]!.allReduce(t[1]!, 'sum'), ...w.map((x) => x.wait())]);
    assert.deepEqual([t[0]!.toArray()[0], t[1]!.toArray()[0]], [5, 5]);
  });
});

test('cpu group: mismatched collectives, a silent rank and a dead rank fail naming them', async () => {
  await withGroups(2, async (gs) => {
    const t = gs.map(() => tensor([1, 2], [2], 'f32', cpu).keep());
    const out = tensor([0, 0, 0, 0], [4], 'f32', cpu).keep();
    const [r0, r1] = await Promise.allSettled([gs[0]!.allReduce(t[0]!).wait(), gs[1]!.allGather(out, t[1]!).wait()]);
    assert.match(String((r0 as PromiseRejectedResult).reason), /allReduce #1 on rank 0: rank 1 sent allGather #1 while this rank is in allReduce #1: every rank must call the same collectives in the same order/);
    assert.equal(r1.status, 'rejected');
    // The group is broken now: later calls fail at once.
    await assert.rejects(gs[0]!.barrier().wait(), /failed earlier/);
  });
  await withGroups(3, async (gs) => {
    const t = gs.map(() => tensor([1], [1], 'f32', cpu).keep());
    // Rank 2 never calls.
    const res = await Promise.allSettled([gs[0]!.allReduce(t[0]!).wait(), gs[1]!.allReduce(t[1]!).wait()]);
    for (const r of res) assert.match(String((r as PromiseRejectedResult).reason), /allReduce #1 on rank \d: timed out after 0.3 s waiting for rank 2 \(stuck, or not calling allReduce\)/);
  }, 300);
  await withGroups(2, async (gs) => {
    const pending = gs[0]!.allReduce(tensor([1], [1], 'f32', cpu).keep()).wait();
    await gs[1]!.destroy(); // rank 1 goes away
    await assert.rejects(pending, /allReduce #1 on rank 0: rank 1 closed its connection .*it probably exited/);
  });
});

// ---------------------------------------------------------------------------------------------
// Data parallel and ZeRO-1 (in-process ranks, toy parameters)

function toyParams(rank: number): Tensor[] {
  return [
    tensor(Float32Array.from({ length: 6 }, (_, i) => 0.1 * i - rank), [2, 3], 'f32', cpu).keep(),
    tensor([0.5, -0.5, 0.25], [3], 'f32', cpu).keep(),
    tensor(Float32Array.from({ length: 5 }, (_, i) => Math.cos(i)), [5], 'f32', cpu).keep(),
  ].map((p) => { p.requiresGrad = true; return p; });
}

function setToyGrads(params: Tensor[], rank: number, step: number): void {
  for (const [j, p] of params.entries()) {
    p.grad?.dispose();
    p.grad = tensor(Float32Array.from({ length: p.numel }, (_, i) => Math.sin(rank * 7 + j * 3 + i + step) * (1 + rank)), p.shape, 'f32', cpu).keep();
  }
}

test('buckets: reverse parameter order, bounded size, one dtype each', () => {
  const ps = toyParams(0); // 6, 3, 5 elements
  assert.deepEqual(buildBuckets(ps, 8).map((b) => b.map((p) => p.numel)), [[5, 3], [6]]);
  assert.deepEqual(buildBuckets(ps, 1).map((b) => b.map((p) => p.numel)), [[5], [3], [6]]);
  assert.deepEqual(buildBuckets(ps, 1e9).map((b) => b.length), [3]);
});

test('data parallel: broadcast from rank 0, averaged gradients, zero gradients for missing ones', async () => {
  await withGroups(2, async (gs) => {
    const params = gs.map((_, r) => toyParams(r));
    const dps = gs.map((g, r) => new DataParallel(g, params[r]!, { bucketElements: 4 }));
    await Promise.all(dps.map((d) => d.broadcastParameters()));
    assert.equal(parameterChecksum(params[0]!), parameterChecksum(params[1]!));
    setToyGrads(params[0]!, 0, 0);
    setToyGrads(params[1]!, 1, 0);
    const expected = params[0]!.map((p, j) => Float32Array.from(p.grad!.toFloat32(), (v, i) => (v + params[1]![j]!.grad!.toFloat32()[i]!) / 2));
    params[1]![1]!.grad!.dispose();
    params[1]![1]!.grad = null; // rank 1 has no gradient for parameter 1: it counts as zeros
    expected[1] = Float32Array.from(params[0]![1]!.grad!.toFloat32(), (v) => v / 2);
    await Promise.all(dps.map((d) => d.syncGradients()));
    for (const r of [0, 1]) params[r]!.forEach((p, j) => assert.deepEqual(p.grad!.toFloat32(), expected[j]));
  });
});

/** `g`, logging each allReduceCoalesced it issues (as the index of the bucket holding its first tensor). */
function logIssues(g: ProcessGroup, dp: () => DataParallel, log: string[]): ProcessGroup {
  return new Proxy(g, {
    get(target, key) {
      if (key === 'allReduceCoalesced') {
        return (ts: Tensor[], op?: ReduceOp) => {
          log.push(`bucket ${dp().buckets.findIndex((b) => b.some((p) => p.grad === ts[0]))}`);
          return target.allReduceCoalesced(ts, op);
        };
      }
      const v = Reflect.get(target, key) as unknown;
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
}

test('data parallel: buckets all-reduced during backward (checkpointing, tied embeddings, accumulation) = syncGradients() bit for bit, in bucket order', async () => {
  const V = 13, B = 2, T = 6;
  await withGroups(2, async (gs) => {
    const run = (mode: 'overlap' | 'sync') => {
      const logs: string[][] = [[], []];
      const ranks = gs.map((g, r) => {
        const model = new GPTNeoX(resolveModelConfig(modelKeys(), V), cpu);
        model.setActivationCheckpointing(1);
        const params = model.parameters();
        const dp: DataParallel = new DataParallel(logIssues(g, () => dp, logs[r]!), params, { bucketElements: 600 });
        return { model, params, dp };
      });
      return { ranks, logs, mode };
    };
    const results = [];
    for (const { ranks, logs, mode } of [run('overlap'), run('sync')]) {
      ranks.forEach(({ model, dp }, r) => {
        // Two micro-batches of this rank's data; only the second one's backward reduces.
        for (let m = 0; m < 2; m++) {
          const rand = rng(100 * r + m);
          const ids = Int32Array.from({ length: B * T }, () => Math.floor(rand() * V));
          const labels = Int32Array.from({ length: B * T }, () => Math.floor(rand() * V));
          model.setDropoutSeed(m);
          scope(() => {
            const loss = model.loss(tensor(ids, [B, T], 'i32', cpu), tensor(labels, [B, T], 'i32', cpu), tensor(new Float32Array(B * T).fill(1), [B, T], 'f32', cpu));
            const hook = mode === 'overlap' && m === 1 ? dp.beginBackward() : null;
            backward(loss, tensor([0.5], [], 'f32', cpu), { onGradReady: hook ? (leaf) => { logs[r]!.push('ready'); hook(leaf); } : undefined });
          });
          if (m === 1) logs[r]!.push('backward returned');
        }
      });
      await Promise.all(ranks.map(({ dp }) => (mode === 'overlap' ? dp.finish() : dp.syncGradients())));
      const n = ranks[0]!.dp.buckets.length;
      assert.ok(n >= 4, `${n} buckets`);
      for (const log of logs) {
        const issued = log.filter((e) => e.startsWith('bucket'));
        assert.deepEqual(issued, Array.from({ length: n }, (_, k) => `bucket ${k}`), 'each bucket once, in bucket order');
        const returned = log.indexOf('backward returned');
        if (mode === 'overlap') {
          // The first bucket went out while backward still had gradients to produce.
          assert.ok(log.indexOf('bucket 0') < log.lastIndexOf('ready'), log.join(', '));
          // Every parameter got its gradient in backward, so every bucket went out before it returned.
          assert.ok(log.slice(returned).every((e) => !e.startsWith('bucket')), log.join(', '));
        } else {
          assert.equal(returned, 0);
        }
      }
      results.push(ranks.map(({ params }) => params.map((p) => Array.from(p.grad!.toArray()))));
    }
    const [overlap, sync] = results as [number[][][], number[][][]];
    assert.deepEqual(overlap[0], overlap[1], 'ranks agree');
    assert.deepEqual(overlap[0], sync[0], 'overlapped = after backward, bit for bit');
  });
});

test('data parallel: a parameter reported ready twice, or after finish(), fails naming it', async () => {
  await withGroups(2, async (gs) => {
    const params = gs.map((_, r) => toyParams(r));
    const dps = gs.map((g, r) => new DataParallel(g, params[r]!, { bucketElements: 4, names: ['w', 'b', 'c'] }));
    setToyGrads(params[0]!, 0, 0);
    setToyGrads(params[1]!, 1, 0);
    const hooks = dps.map((d) => d.beginBackward());
    assert.throws(() => dps[0]!.beginBackward(), /previous round is not finished/);
    hooks[0]!(params[0]![2]!); // bucket 0 ([c]) goes out
    assert.equal(dps[0]!.issuedBuckets, 1);
    assert.throws(() => hooks[0]!(params[0]![2]!), /parameter 'c' \(shape \[5\]\) was reported ready twice in one backward, after its bucket was already reduced: .*activation-checkpointed segments.*syncGradients\(\)/);
    hooks[0]!(tensor([1], [1], 'f32', cpu)); // not one of its parameters: ignored
    await Promise.all(dps.map((d) => d.finish()));
    assert.throws(() => hooks[1]!(params[1]![0]!), /parameter 'w' \(shape \[2, 3\]\) reported its gradient ready after finish\(\)/);
    await assert.rejects(dps[0]!.finish(), /no round in progress/);
  });
});

test('ZeRO-1: sharded AdamW equals data-parallel AdamW bit for bit, with 1/W of the state; its checkpoint state loads at another world size', async () => {
  const betas: [number, number] = [0.9, 0.95];
  let saved: { name: string; shape: readonly number[]; data: Float32Array }[] = [];
  await withGroups(2, async (gs) => {
    const dpParams = gs.map(() => toyParams(0)); // same start on both ranks
    const zParams = gs.map(() => toyParams(0));
    const groupsOf = (ps: Tensor[]) => [{ params: [ps[0]!], weightDecay: 0.1 }, { params: [ps[1]!, ps[2]!], weightDecay: 0 }];
    const adams = dpParams.map((ps) => new AdamW(groupsOf(ps), { betas, eps: 1e-8 }));
    const zeros = gs.map((g, r) => new ZeroOptimizer(g, groupsOf(zParams[r]!), { betas, eps: 1e-8 }));
    const dps = gs.map((g, r) => new DataParallel(g, dpParams[r]!));
    for (let step = 0; step < 3; step++) {
      for (const r of [0, 1]) {
        setToyGrads(dpParams[r]!, r, step);
        setToyGrads(zParams[r]!, r, step);
      }
      await Promise.all(dps.map((d) => d.syncGradients()));
      adams.forEach((a) => a.update(0.01, 1));
      adams.forEach((a) => a.zeroGrad());
      await Promise.all(zeros.map((z) => z.update(0.01, 0)));
      zeros.forEach((z) => z.zeroGrad());
    }
    for (const r of [0, 1]) assert.equal(parameterChecksum(zParams[r]!), parameterChecksum(dpParams[0]!));
    // 14 parameters: shards of 7 elements, 8 bytes of moments each.
    assert.deepEqual(zeros.map((z) => z.stateBytes()), [56, 56]);
    assert.deepEqual(shardRange(14, 4, 3), { shardSize: 4, padded: 16, start: 12, end: 14 });
    // The gathered state is AdamW's, name by name.
    const names = new Map(zParams[0]!.map((p, i) => [p, `p${i}`] as const));
    const names1 = new Map(zParams[1]!.map((p, i) => [p, `p${i}`] as const));
    const [full] = await Promise.all([zeros[0]!.fullState(names), zeros[1]!.fullState(names1)]);
    const dpNames = new Map(dpParams[0]!.map((p, i) => [p, `p${i}`] as const));
    const adamState = new Map(adams[0]!.stateTensors(dpNames).map(([n, t]) => [n, t.toFloat32()] as const));
    assert.equal(full!.length, 6);
    for (const e of full!) assert.deepEqual(e.data, adamState.get(e.name), e.name);
    // Loading it back (here into the same layout) restores every rank's slice.
    const lookup = new Map(full!.map((e) => [e.name, e.data] as const));
    const fresh = new ZeroOptimizer(gs[1]!, groupsOf(zParams[1]!), { betas, eps: 1e-8 });
    fresh.loadFullState((n) => lookup.get(n), names1, 3);
    const [again] = await Promise.all([zeros[0]!.fullState(names), fresh.fullState(names1)]);
    assert.deepEqual(again, full);
    saved = full!;
  });
  // The state saved by 2 ranks loads on 3 (shards of 5 elements, the last with one of padding) and gathers back unchanged.
  await withGroups(3, async (gs) => {
    const ps = gs.map(() => toyParams(0));
    const names = ps.map((p) => new Map(p.map((t, i) => [t, `p${i}`] as const)));
    const lookup = new Map(saved.map((e) => [e.name, e.data] as const));
    const zs = gs.map((g, r) => new ZeroOptimizer(g, [{ params: [ps[r]![0]!], weightDecay: 0.1 }, { params: [ps[r]![1]!, ps[r]![2]!], weightDecay: 0 }], { betas, eps: 1e-8 }));
    zs.forEach((z, r) => z.loadFullState((n) => lookup.get(n), names[r]!, 3));
    assert.deepEqual(zs.map((z) => z.stateBytes()), [40, 40, 40]); // allocated: 14 elements padded to 3 × 5
    const gathered = await Promise.all(zs.map((z, r) => z.fullState(names[r]!)));
    for (const g of gathered) assert.deepEqual(g, saved);
  });
});

test('each launched process takes the GPU of its local rank (torchrun, Slurm, Open MPI variables)', async () => {
  const { localDeviceOrdinal } = await import('../src/train/device.js');
  assert.equal(localDeviceOrdinal({}), 0);
  assert.equal(localDeviceOrdinal({ LOCAL_RANK: '3' }), 3);
  assert.equal(localDeviceOrdinal({ SLURM_LOCALID: '1' }), 1);
  assert.equal(localDeviceOrdinal({ OMPI_COMM_WORLD_LOCAL_RANK: '2' }), 2);
  assert.equal(localDeviceOrdinal({ LOCAL_RANK: '1', SLURM_LOCALID: '5' }), 1, 'LOCAL_RANK wins');
  assert.throws(() => localDeviceOrdinal({ LOCAL_RANK: 'x' }), /local rank 'x' is not a non-negative integer/);
  const { deviceOrdinal } = await import('../src/train/device.js');
  assert.equal(deviceOrdinal(2, 4), 2);
  assert.equal(deviceOrdinal(3, 1), 0, 'one GPU bound to the task (Slurm --gpus-per-task): use it');
  assert.throws(() => deviceOrdinal(2, 2), /local rank 2 needs GPU 2, but only 2 GPU\(s\) are visible/);
});
