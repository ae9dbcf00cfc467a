// The NCCL bindings and process group. Everywhere: the unique id's koffi struct keeps NUL bytes
// (uint8_t[128], not char), the id's trip through the store (rank 0 makes it, every rank gets the
// same 128 bytes, a wrong length fails), dtype/op enum values (checked against nccl.h when
// /work/vendor-headers has it), error sentences, the watchdog's bookkeeping with fake CUDA/NCCL
// hooks, and the 'nccl' backend's error without a GPU. On a GPU: a one-rank NCCL group's
// collectives (a communicator of one is legal). Without one they report `skipped: no CUDA device`.
// Two ranks: tests/nccl_multi.test.ts.

import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import koffi from 'koffi';
import type { CudaBackend } from '../src/backends/cuda/backend.js';
import { NCCL_UNIQUE_ID_BYTES, NcclUniqueId, formatNcclError, ncclDataType, ncclDataTypeOf, ncclRedOp, ncclRedOpOf, ncclResult, ncclResultName, ncclStatus } from '../src/backends/cuda/ffi/nccl.js';
import { CudaError, check } from '../src/backends/cuda/ffi/lib.js';
import { initCuda } from '../src/backends/cuda/index.js';
import { CommWatchdog, type InFlightOp, createNcclGroup, decodeUniqueId, shareUniqueId } from '../src/backends/cuda/nccl_group.js';
import { HOST_WATCHDOG_EXIT_CODE } from '../src/parallel/host_watchdog.js';
import { CollectiveError, Store, StoreServer, createProcessGroup } from '../src/parallel/index.js';
import { tensor } from '../src/tensor/index.js';

const gpu = initCuda() as CudaBackend | null;
const noGpu = gpu ? false : 'skipped: no CUDA device';

// ---------------------------------------------------------------------------------------------
// Everywhere

test('unique id struct: 128 uint8_t bytes, NULs preserved (not a C string)', () => {
  assert.equal(koffi.sizeof(NcclUniqueId), NCCL_UNIQUE_ID_BYTES);
  const id = new Uint8Array(128);
  for (let i = 0; i < 128; i++) id[i] = i % 3 === 0 ? 0 : (i * 37) & 0xff; // NULs throughout, as real ids have
  const buf = Buffer.alloc(128, 0xee);
  koffi.encode(buf, NcclUniqueId, { internal: id });
  assert.deepEqual(new Uint8Array(buf), id);
  const back = koffi.decode(buf, NcclUniqueId) as { internal: Uint8Array };
  assert.equal(back.internal.length, 128);
  assert.deepEqual(new Uint8Array(back.internal), id);
});

test('unique id through the store: rank 0 makes it once, 3 ranks get the same 128 bytes', async () => {
  const server = await StoreServer.listen('127.0.0.1', 0);
  const W = 3;
  const stores = await Promise.all(Array.from({ length: W }, (_, r) => Store.connect('127.0.0.1', server.port, { rank: r, timeoutMs: 5000 })));
  try {
    const id = new Uint8Array(128);
    id.set([0, 0, 2, 0, 255, 0, 10, 13], 0); // NULs, 0xff, \n, \r
    id[127] = 0x7f;
    let made = 0;
    const make = () => {
      made++;
      return id;
    };
    // The others ask first: get waits until rank 0 has set it.
    const got = await Promise.all([2, 1, 0].map((r) => shareUniqueId(stores[r]!, r, W, 'nccl/uid', 5000, make)));
    assert.equal(made, 1);
    for (const g of got) assert.deepEqual(g, id);
    // A subgroup's key is separate; a wrong-length value fails naming the key and the lengths.
    await stores[0]!.set('nccl/uid/bad', new Uint8Array(127));
    await assert.rejects(shareUniqueId(stores[1]!, 1, 2, 'nccl/uid/bad', 1000, make),
      /the NCCL unique id under 'nccl\/uid\/bad' in the store has 127 bytes, expected 128/);
    assert.throws(() => decodeUniqueId(new Uint8Array(200), 'k'), /has 200 bytes, expected 128/);
  } finally {
    for (const s of stores) await s.close();
    await server.close();
  }
});

test('enums: NeoX dtypes and reduce ops map to nccl.h values', () => {
  assert.deepEqual(ncclDataTypeOf('f32', true), { type: 7, scale: 1 });
  assert.deepEqual(ncclDataTypeOf('bf16', true), { type: 9, scale: 1 });
  assert.deepEqual(ncclDataTypeOf('f16', true), { type: 6, scale: 1 });
  assert.deepEqual(ncclDataTypeOf('f64', true), { type: 8, scale: 1 });
  assert.deepEqual(ncclDataTypeOf('i32', true), { type: 2, scale: 1 });
  assert.deepEqual(ncclDataTypeOf('u8', true), { type: 1, scale: 1 });
  // u16 has no NCCL type: copied as bytes, refused for reductions.
  assert.deepEqual(ncclDataTypeOf('u16', false), { type: 1, scale: 2 });
  assert.throws(() => ncclDataTypeOf('u16', true), /no 16-bit unsigned integer type/);
  assert.deepEqual(['sum', 'avg', 'max', 'min'].map((o) => ncclRedOpOf(o as 'sum')), [0, 4, 2, 3]);
  assert.equal(ncclResult.ncclRemoteError, 6);
});

const HEADER = '/work/vendor-headers/usr/include/nccl.h';
test('enums: every value equals the one in nccl.h', { skip: existsSync(HEADER) ? false : `skipped: no ${HEADER}` }, () => {
  const h = readFileSync(HEADER, 'utf8');
  const value = (name: string): number => {
    const m = new RegExp(`\\b${name}\\s*=\\s*(-?\\d+)`).exec(h);
    assert.ok(m, `${name} in nccl.h`);
    return Number(m[1]);
  };
  for (const table of [ncclResult, ncclDataType, ncclRedOp]) for (const [k, v] of Object.entries(table)) assert.equal(v, value(k), k);
  assert.match(h, /#define NCCL_UNIQUE_ID_BYTES 128\b/);
});

test('errors: the function, the enum name, NCCL\'s text and its last error', () => {
  assert.deepEqual(formatNcclError(6, 'remote process exited or there was a network error', 'NET/IB : Got completion from peer 10.0.0.2 with error 12'), {
    name: 'ncclRemoteError',
    text: 'remote process exited or there was a network error; last error: NET/IB : Got completion from peer 10.0.0.2 with error 12',
  });
  // No library loaded: the header's own sentence; an empty or repeated last error is left out.
  assert.deepEqual(formatNcclError(5, null, ''), { name: 'ncclInvalidUsage', text: 'invalid usage (run with NCCL_DEBUG=WARN for details)' });
  assert.deepEqual(formatNcclError(3, 'internal error', 'internal error'), { name: 'ncclInternalError', text: 'internal error' });
  assert.equal(ncclResultName(42), 'ncclResult_t 42');
  // Through check(), as every bound ncclResult_t function is.
  assert.doesNotThrow(() => check(ncclStatus, 'ncclAllReduce', 0));
  try {
    check(ncclStatus, 'ncclAllReduce', 4);
    assert.fail('no throw');
  } catch (e) {
    assert.ok(e instanceof CudaError);
    assert.equal(e.library, 'NCCL');
    assert.equal(e.fn, 'ncclAllReduce');
    assert.match(e.message, /^ncclAllReduce failed: ncclInvalidArgument \(NCCL error 4\): invalid argument/);
  }
});

/** A watchdog over fake events: `doneUpTo` ops have completed; the clock and async error are settable. */
function fakeWatchdog(timeoutMs: number) {
  const state = { now: 0, doneUpTo: 0, asyncError: 0, aborted: 0, released: [] as string[] };
  const wd = new CommWatchdog(1, timeoutMs, {
    isDone: (op) => Number(op.done) <= state.doneUpTo,
    asyncError: () => state.asyncError,
    describe: (code) => formatNcclError(code, null, code === 6 ? 'peer 0 closed the connection' : null),
    abort: () => void state.aborted++,
    release: (op) => void state.released.push(op.label),
    now: () => state.now,
  });
  let n = 0;
  const issue = (name: string): InFlightOp => {
    n++;
    const op: InFlightOp = { label: `${name} #${n}`, name, issued: state.now, done: BigInt(n), state: 'pending', error: null };
    wd.track(op);
    return op;
  };
  return { wd, state, issue };
}

test('watchdog: retires completed ops in order and resolves host waits', async () => {
  const { wd, state, issue } = fakeWatchdog(1000);
  const a = issue('allReduce');
  const b = issue('barrier');
  const waitB = wd.waitHost(b);
  state.doneUpTo = 1;
  wd.poll();
  assert.equal(a.state, 'done');
  assert.equal(b.state, 'pending');
  state.doneUpTo = 2;
  state.now = 5000; // past the timeout, but it completed: no failure
  wd.poll();
  await waitB;
  assert.equal(wd.pending, 0);
  assert.equal(state.aborted, 0);
  assert.deepEqual(state.released, ['allReduce #1', 'barrier #2']);
  await wd.waitHost(a); // already done
});

test('watchdog: a timeout aborts the communicator and names the operation and the rank', async () => {
  const { wd, state, issue } = fakeWatchdog(300_000);
  const a = issue('allReduce');
  const b = issue('allGather');
  const waitA = wd.waitHost(a);
  const waitB = wd.waitHost(b);
  state.now = 299_000;
  wd.poll();
  assert.equal(state.aborted, 0);
  state.now = 300_001;
  wd.poll();
  assert.equal(state.aborted, 1);
  await assert.rejects(waitA, (e: Error) => e instanceof CollectiveError &&
    /^allReduce #1 on rank 1: did not complete within 300 s \(a peer is stuck, has exited, or is not calling allReduce\); the communicator was aborted$/.test(e.message));
  await assert.rejects(waitB, /allGather #2 on rank 1: the group failed earlier: allReduce #1 on rank 1: did not complete/);
  assert.equal(wd.pending, 0);
  wd.poll(); // once failed, it stays failed and quiet
  assert.equal(state.aborted, 1);
});

test('watchdog: an asynchronous NCCL error aborts with NCCL\'s message', async () => {
  const { wd, state, issue } = fakeWatchdog(300_000);
  const a = issue('reduceScatter');
  state.asyncError = 6;
  wd.poll();
  assert.equal(state.aborted, 1);
  assert.equal(a.state, 'failed');
  assert.match(a.error!.message, /^reduceScatter #1 on rank 1: NCCL reported ncclRemoteError: remote process exited or there was a network error; last error: peer 0 closed the connection; the communicator was aborted$/);
  await assert.rejects(wd.waitHost(a), /NCCL reported ncclRemoteError/);
});

test('the nccl backend is registered; without the CUDA backend it says so', { skip: gpu ? 'skipped: a CUDA device is present' : false }, async () => {
  const server = await StoreServer.listen('127.0.0.1', 0);
  const store = await Store.connect('127.0.0.1', server.port, { rank: 0, timeoutMs: 2000 });
  try {
    await assert.rejects(createProcessGroup('nccl', { store, rank: 0, size: 2, timeoutMs: 2000 }),
      /^NeoxError: init \(nccl\) on rank 0: the NCCL process group needs the CUDA backend; it is not initialised/);
  } finally {
    await store.close();
    await server.close();
  }
});

// ---------------------------------------------------------------------------------------------
// On a GPU: a communicator of one rank (every collective is then a copy, but the bindings, the
// stream/event ordering, the watchdog and destroy all run).

test('one-rank NCCL group: all-reduce, reduce-scatter, all-gather, broadcast, coalesced, barrier', { skip: noGpu }, async () => {
  const be = gpu!;
  const server = await StoreServer.listen('127.0.0.1', 0);
  const store = await Store.connect('127.0.0.1', server.port, { rank: 0, timeoutMs: 30_000 });
  const g = await createNcclGroup({ store, rank: 0, size: 1, timeoutMs: 30_000 });
  try {
    const x = tensor([1, 2, 3, 4.5], [4], 'f32', be).keep();
    await g.allReduce(x, 'sum');
    assert.deepEqual(Array.from(x.toArray()), [1, 2, 3, 4.5]);
    await g.allReduce(x, 'avg');
    assert.deepEqual(Array.from(x.toArray()), [1, 2, 3, 4.5]);
    const y = tensor([7, 8], [2], 'bf16', be).keep();
    await g.allReduceCoalesced([x, x], 'max');
    const out = tensor([0, 0, 0, 0], [4], 'f32', be).keep();
    await g.reduceScatter(out, x, 'sum');
    assert.deepEqual(Array.from(out.toArray()), [1, 2, 3, 4.5]);
    const gathered = tensor([0, 0], [2], 'bf16', be).keep();
    await g.allGather(gathered, y);
    assert.deepEqual(Array.from(gathered.toFloat32()), [7, 8]); // bf16: toArray() would give the raw 16-bit words
    await g.broadcast(y, 0);
    await g.barrier();
    // Misuse fails with the operation named, and breaks the group.
    await assert.rejects(g.reduceScatter(tensor([0], [1], 'f32', be), x).wait(), /reduceScatter #\d+ on rank 0: input .* must hold size × output = 1 × 1/);
    await assert.rejects(g.allReduce(x).wait(), /allReduce #\d+ on rank 0: the group failed earlier/);
    for (const t of [x, y, out, gathered]) t.dispose();
  } finally {
    await g.destroy();
    await store.close();
    await server.close();
  }
});

// The worker-thread watchdog (src/parallel/host_watchdog.ts) with a real communicator, in a child
// process (tests/helpers/nccl_blocked_child.ts) since it ends the process it guards.
test('a host blocked behind a collective that does not complete is ended by the watchdog thread, naming it; a busy host whose collective completed is not', { skip: noGpu }, async () => {
  const { spawnSync } = await import('node:child_process');
  const child = join(dirname(fileURLToPath(import.meta.url)), 'helpers', 'nccl_blocked_child.js');
  const stuck = spawnSync(process.execPath, [child, 'stuck'], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(stuck.status, HOST_WATCHDOG_EXIT_CODE, `exit ${stuck.status}\n${stuck.stdout}\n${stuck.stderr}`);
  assert.match(stuck.stderr, /neox: allReduce #1 on rank 0: in flight for [\d.]+ s \(timeout 0.3 s\) while this process's main thread has not run for [\d.]+ s/);
  assert.doesNotMatch(stuck.stdout, /survived/);
  const busy = spawnSync(process.execPath, [child, 'busy'], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(busy.status, 0, `exit ${busy.status}\n${busy.stdout}\n${busy.stderr}`);
  assert.match(busy.stdout, /survived/);
});
