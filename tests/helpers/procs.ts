// Shared by the tests that start processes: a free loopback port for a rendezvous, and how many
// CUDA devices this machine has (0 without a driver), for tests that need several GPUs.
import { createServer } from 'node:net';
import { driver } from '../../src/backends/cuda/ffi/driver.js';

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

/** CUDA devices visible to this process (0 when there is no driver). */
export function gpuCount(): number {
  try {
    const d = driver();
    d.cuInit(0);
    const n: [number] = [0];
    d.cuDeviceGetCount(n);
    return n[0];
  } catch {
    return 0;
  }
}
