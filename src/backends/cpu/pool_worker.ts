// A CPU pool worker thread: computes the GEMM rows or the task range it is sent, then bumps the
// shared done counter (always, so the main thread never waits forever; a task's error is left in
// errFlag / errText for the main thread to throw).

import { parentPort, workerData } from 'node:worker_threads';
import { type GemmArgs, gemmRows } from './gemm.js';
import { TASKS } from './tasks.js';
import './attention_bshd.js'; // adds the bshd attention tasks to TASKS

const done = new Int32Array(workerData.done as SharedArrayBuffer);
const errFlag = new Int32Array(workerData.errFlag as SharedArrayBuffer);
const errText = new Uint8Array(workerData.errText as SharedArrayBuffer);

type Message =
  | { g: GemmArgs; r0: number; r1: number; task?: undefined }
  | { task: string; args: Record<string, unknown>; start: number; end: number };

parentPort!.on('message', (msg: Message) => {
  try {
    if (msg.task === undefined) gemmRows(msg.g, msg.r0, msg.r1);
    else {
      const fn = TASKS[msg.task];
      if (!fn) throw new Error(`unknown task '${msg.task}'`);
      fn(msg.args, msg.start, msg.end);
    }
  } catch (e) {
    if (Atomics.compareExchange(errFlag, 0, 0, 1) === 0) {
      const text = new TextEncoder().encode(e instanceof Error ? e.message : String(e));
      errText.set(text.subarray(0, errText.length));
    }
  } finally {
    Atomics.add(done, 0, 1);
    Atomics.notify(done, 0);
  }
});
