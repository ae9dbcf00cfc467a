// `neox doctor`'s CUDA section: which libraries were found where, their versions, and the GPUs.
//
//   findLibraries()  one entry per library: path and version, or why it is missing
//   doctorReport()   the same as text, plus the driver's devices (never throws)

import { cublasLtPath, cublasLtVersion } from './ffi/cublaslt.js';
import { cudnnPath, cudnnVersion } from './ffi/cudnn.js';
import { CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, driver, driverPath } from './ffi/driver.js';
import { LIBRARIES, type LibraryKey } from './ffi/find.js';
import { ncclPath, ncclVersion } from './ffi/nccl.js';
import { nvrtcPath, nvrtcVersion } from './ffi/nvrtc.js';
import { cacheDir, gemmTuningDir, kernelsDir } from './compiler.js';
import { fmtBytes } from './allocator.js';

export interface LibraryReport {
  key: LibraryKey;
  label: string;
  path: string | null;
  version: string | null;
  /** Why it could not be used (null when it loaded). */
  error: string | null;
}

function cudaVersion(v: number): string {
  return `${Math.floor(v / 1000)}.${Math.floor((v % 1000) / 10)}`;
}

const PROBES: Record<LibraryKey, () => { path: string | null; version: string }> = {
  driver: () => {
    const v: [number] = [0];
    driver().cuDriverGetVersion(v);
    return { path: driverPath(), version: `CUDA ${cudaVersion(v[0])}` };
  },
  nvrtc: () => ({ version: nvrtcVersion(), path: nvrtcPath() }),
  cublasLt: () => {
    const v = cublasLtVersion();
    return { path: cublasLtPath(), version: `${Math.floor(v / 10000)}.${Math.floor((v % 10000) / 100)}.${v % 100}` };
  },
  cudnn: () => ({ version: cudnnVersion(), path: cudnnPath() }),
  nccl: () => ({ version: ncclVersion(), path: ncclPath() }),
};

/** Loads each library (driver, NVRTC, cuBLASLt, cuDNN, NCCL) and asks its version. */
export function findLibraries(): LibraryReport[] {
  return (Object.keys(LIBRARIES) as LibraryKey[]).map((key) => {
    const label = LIBRARIES[key].label;
    try {
      const { path, version } = PROBES[key]();
      return { key, label, path, version, error: null };
    } catch (e) {
      return { key, label, path: null, version: null, error: (e as Error).message };
    }
  });
}

function devices(): string[] {
  const drv = driver();
  drv.cuInit(0);
  const count: [number] = [0];
  drv.cuDeviceGetCount(count);
  const lines: string[] = [];
  for (let i = 0; i < count[0]; i++) {
    const dev: [number] = [0];
    drv.cuDeviceGet(dev, i);
    const name = Buffer.alloc(256);
    drv.cuDeviceGetName(name, 256, dev[0]);
    const major: [number] = [0];
    const minor: [number] = [0];
    drv.cuDeviceGetAttribute(major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev[0]);
    drv.cuDeviceGetAttribute(minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev[0]);
    const total: [number] = [0];
    drv.cuDeviceTotalMem_v2(total, dev[0]);
    lines.push(`  GPU ${i}: ${name.toString('utf8', 0, Math.max(0, name.indexOf(0)))}, compute capability ${major[0]}.${minor[0]}, ${fmtBytes(total[0])}`);
  }
  return lines.length ? lines : ['  no CUDA device visible (CUDA_VISIBLE_DEVICES?)'];
}

/** A human-readable report of the CUDA setup; never throws. */
export function doctorReport(): string {
  const libs = findLibraries();
  const lines = ['CUDA libraries:'];
  const w = Math.max(...libs.map((l) => l.label.length));
  for (const l of libs) {
    lines.push(l.error ? `  ${l.label.padEnd(w)}  missing: ${l.error}` : `  ${l.label.padEnd(w)}  ${l.version}  ${l.path}`);
  }
  lines.push('CUDA devices:');
  if (libs.find((l) => l.key === 'driver')?.error) lines.push('  unknown (no driver)');
  else {
    try {
      lines.push(...devices());
    } catch (e) {
      lines.push(`  none usable: ${(e as Error).message}`);
    }
  }
  try {
    lines.push(`Kernel sources: ${kernelsDir()}`);
  } catch (e) {
    lines.push(`Kernel sources: ${(e as Error).message}`);
  }
  lines.push(`Kernel cache: ${cacheDir()}`);
  lines.push(`GEMM tuning files: ${gemmTuningDir()}${process.env.NEOX_GEMM_AUTOTUNE === '0' ? ' (autotuning off: NEOX_GEMM_AUTOTUNE=0)' : ''}`);
  const needed = libs.filter((l) => l.error && (l.key === 'driver' || l.key === 'nvrtc' || l.key === 'cublasLt'));
  lines.push(needed.length ? `CUDA backend: unavailable (needs ${needed.map((l) => l.label).join(', ')})` : 'CUDA backend: available');
  return lines.join('\n');
}
