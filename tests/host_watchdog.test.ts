// The worker-thread watchdog (src/parallel/host_watchdog.ts), in child processes since it ends the
// process it guards: an operation in flight past the timeout while the main thread is blocked ends
// the process with exit code 3 and one line naming the operation and the rank; a main thread that
// keeps running (the event loop's own watchdog has that case) or that is blocked with nothing in
// flight is left alone. The CUDA case (the operation's event queried from the worker) is in
// tests/nccl.test.ts.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { HOST_WATCHDOG_EXIT_CODE } from '../src/parallel/host_watchdog.js';

const MODULE = new URL('../src/parallel/host_watchdog.js', import.meta.url).href;

function child(body: string) {
  const script = `
    import { HostWatchdog } from ${JSON.stringify(MODULE)};
    const w = new HostWatchdog({ rank: 3, timeoutMs: 300, pollMs: 20 });
    const block = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
    const op = { label: 'allReduce #7', issued: performance.now() };
    ${body}
    await w.stop();
    console.log('survived');`;
  const t0 = performance.now();
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30_000 });
  return { ...r, ms: performance.now() - t0 };
}

test('an operation in flight past the timeout while the main thread is blocked ends the process, naming it and the rank', () => {
  const r = child(`w.update(op); block(5000);`);
  assert.equal(r.status, HOST_WATCHDOG_EXIT_CODE, `exit ${r.status} ${r.signal ?? ''}\n${r.stderr}`);
  assert.match(r.stderr, /^neox: allReduce #7 on rank 3: in flight for [\d.]+ s \(timeout 0.3 s\) while this process's main thread has not run for [\d.]+ s \(blocked, most likely waiting on the device behind it: a peer is stuck, has exited, or is not calling it\); exiting\n$/);
  assert.doesNotMatch(r.stdout, /survived/);
  assert.ok(r.ms < 4500, `it should not wait out the 5 s block (took ${r.ms.toFixed(0)} ms)`);
});

test('a main thread that keeps running, or is blocked with nothing in flight, is left alone', () => {
  const alive = child(`w.update(op); const t = setInterval(() => w.update(op), 20); await new Promise((r) => setTimeout(r, 1000)); clearInterval(t);`);
  assert.equal(alive.status, 0, alive.stderr);
  assert.match(alive.stdout, /survived/);
  const idle = child(`w.update(op); w.update(null); block(1000);`);
  assert.equal(idle.status, 0, idle.stderr);
  assert.match(idle.stdout, /survived/);
});

test('the worker thread does not keep a finished process alive', () => {
  const unstopped = spawnSync(process.execPath, ['--input-type=module', '-e',
    `import { HostWatchdog } from ${JSON.stringify(MODULE)}; new HostWatchdog({ rank: 0, timeoutMs: 60_000 }); console.log('done');`],
  { encoding: 'utf8', timeout: 10_000 });
  assert.equal(unstopped.status, 0, unstopped.stderr);
  assert.match(unstopped.stdout, /done/);
});
