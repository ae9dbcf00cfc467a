// Choosing the device: CUDA when a GPU is found (or asked for), else the CPU. Under a launcher
// (neox launch, torchrun, Slurm, MPI: LOCAL_RANK or its equivalents), each process takes the GPU of
// its local rank among the visible ones, as torchrun scripts do with set_device(LOCAL_RANK), or
// the only one it sees when the launcher bound one GPU per task.

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

/** This process's GPU ordinal: its local rank under a launcher, else 0. */
export function localDeviceOrdinal(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.LOCAL_RANK ?? env.SLURM_LOCALID ?? env.OMPI_COMM_WORLD_LOCAL_RANK ?? env.MPI_LOCALRANKID ?? '0';
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0) throw new DeviceError(`the local rank '${raw}' is not a non-negative integer (LOCAL_RANK, SLURM_LOCALID or OMPI_COMM_WORLD_LOCAL_RANK)`);
  return n;
}

async function tryCuda(): Promise<Backend | null> {
  // The CUDA backend registers itself when its module loads and finds a GPU.
  let mod: { initCuda?: (ordinal?: number) => Backend | null; visibleDeviceCount?: () => number };
  try {
    mod = (await import('../backends/cuda/index.js')) as typeof mod;
  } catch {
    return null;
  }
  const count = mod.visibleDeviceCount?.() ?? 0;
  if (count === 0) return null;
  return mod.initCuda?.(deviceOrdinal(localDeviceOrdinal(), count)) ?? null;
}

/**
 * The GPU of local rank `local` among `count` visible ones: the local rank (torchrun's
 * set_device(LOCAL_RANK)), or 0 when the process sees a single GPU (Slurm and MPI launchers often
 * bind one GPU to each task through CUDA_VISIBLE_DEVICES while the local rank goes on counting).
 */
export function deviceOrdinal(local: number, count: number): number {
  if (local < count) return local;
  if (count === 1) return 0;
  throw new DeviceError(`local rank ${local} needs GPU ${local}, but only ${count} GPU(s) are visible: ` +
    'start at most one process per GPU (--nproc-per-node), or check CUDA_VISIBLE_DEVICES');
}
