// A GEMM worker thread: computes the rows it is sent, then bumps the shared done counter.

import { parentPort, workerData } from 'node:worker_threads';
import { type GemmArgs, gemmRows } from './gemm.js';

const done = new Int32Array(workerData.done as SharedArrayBuffer);

parentPort!.on('message', ({ g, r0, r1 }: { g: GemmArgs; r0: number; r1: number }) => {
  gemmRows(g, r0, r1);
  Atomics.add(done, 0, 1);
  Atomics.notify(done, 0);
});
