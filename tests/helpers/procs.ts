// Shared by the distributed tests: a free loopback port for a rendezvous, `neox launch` of two CPU
// ranks, W CPU process groups in this process, and how many CUDA devices this machine has (for
// tests that need several GPUs).
import { execFile } from 'node:child_process';
import { createServer } from 'node:net';
import { createCpuGroup } from '../../src/parallel/cpu_group.js';
import type { ProcessGroup } from '../../src/parallel/process_group.js';
import { Store, StoreServer } from '../../src/parallel/store.js';

export { visibleDeviceCount as gpuCount } from '../../src/backends/cuda/ffi/driver.js';

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

/** `neox launch --nproc-per-node 2 ARGS…` on a free port (test files run in parallel); its stdout, or an error with all output. */
export async function launchTwo(args: string[], timeoutMs = 120_000): Promise<string> {
  const port = await freePort();
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ['bin/neox.js', 'launch', '--nproc-per-node', '2', '--master-port', String(port), ...args], { timeout: timeoutMs }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${err.message}\n${stdout}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

/** Runs fn over W CPU process groups of this process (ranks 0 … W−1, one store), then tears them down. */
export async function withGroups(W: number, fn: (groups: ProcessGroup[]) => Promise<void>, timeoutMs = 10_000): Promise<void> {
  const server = await StoreServer.listen('127.0.0.1', 0);
  const stores = await Promise.all(Array.from({ length: W }, (_, r) => Store.connect('127.0.0.1', server.port, { rank: r, timeoutMs })));
  const groups = await Promise.all(stores.map((store, rank) => createCpuGroup({ store, rank, size: W, timeoutMs })));
  try {
    await fn(groups);
  } finally {
    for (const g of groups) await g.destroy();
    for (const s of stores) await s.close();
    await server.close();
  }
}
