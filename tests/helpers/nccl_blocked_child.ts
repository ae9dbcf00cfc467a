// A one-rank NCCL group whose main thread then blocks in a device wait, for tests/nccl.test.ts's
// worker-thread watchdog cases (the group's timeout is 300 ms; the process prints `survived` if
// the watchdog let it live):
//   stuck  the compute stream holds ~2 s of GEMMs, an all-reduce is queued behind them, and the
//          host downloads its result: the operation is in flight while the host is blocked, so the
//          watchdog must end the process (exit 3) naming `allReduce #1` and rank 0.
//   busy   the all-reduce completes, then the host is blocked 1.5 s with the operation not yet
//          retired (no event-loop turn): its event has fired, so the watchdog must leave it alone.
import '../../src/backends/cpu/index.js';
import { initCuda } from '../../src/backends/cuda/index.js';
import { createNcclGroup } from '../../src/backends/cuda/nccl_group.js';
import { Store, StoreServer } from '../../src/parallel/index.js';
import { matmul } from '../../src/ops/index.js';
import { scope, tensor, zeros } from '../../src/tensor/index.js';

const mode = process.argv[2];
const be = initCuda();
if (!be) throw new Error('no CUDA device');
const server = await StoreServer.listen('127.0.0.1', 0);
const store = await Store.connect('127.0.0.1', server.port, { rank: 0, timeoutMs: 30_000 });
const g = await createNcclGroup({ store, rank: 0, size: 1, timeoutMs: 300 });
const x = tensor([1, 2, 3, 4], [4], 'f32', be).keep();
if (mode === 'stuck') {
  scope(() => {
    const a = zeros([8192, 8192], 'f32', be); // the values do not change a GEMM's time
    for (let i = 0; i < 100; i++) matmul(a, a).dispose(); // f32 GEMMs, ~20 ms each on an H200
  });
  void g.allReduce(x, 'sum'); // queued behind the GEMMs
  x.toArray(); // blocks the host until they are done
} else {
  await g.allReduce(x, 'sum').wait();
  x.toArray(); // done on the device; the group's watchdog has not had a turn to retire it
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1500);
}
console.log('survived');
await g.destroy();
await store.close();
await server.close();
