// Choosing the device: CUDA when a GPU is found (or asked for), else the CPU.

import { getBackend } from '../tensor/engine.js';
import type { Backend } from '../tensor/backend.js';
import '../backends/cpu/index.js';

export class DeviceError extends Error {
  override name = 'NeoxError';
}

/** Resolves `auto | cpu | cuda` to a registered backend. */
export async function selectBackend(device: string): Promise<Backend> {
  if (device === 'cpu') return getBackend('cpu');
  if (device === 'cuda' || device === 'auto') {
    const cuda = await tryCuda();
    if (cuda) return cuda;
    if (device === 'cuda') {
      throw new DeviceError('device: cuda was requested, but the CUDA backend is not available on this machine (run `neox doctor` to see why); use --device cpu');
    }
    return getBackend('cpu');
  }
  throw new DeviceError(`unknown device '${device}'; use auto, cpu or cuda`);
}

async function tryCuda(): Promise<Backend | null> {
  // The CUDA backend registers itself when its module loads and finds a GPU.
  try {
    const mod = (await import('../backends/cuda/index.js')) as { initCuda?: () => Backend | null };
    return mod.initCuda?.() ?? null;
  } catch {
    return null;
  }
}
