// Kernel compilation: .cu sources → NVRTC → CUBIN for the device's architecture, cached on disk.
//
//   kernelsDir()                  where the .cu/.cuh sources are (they are not copied to dist/)
//   compile(file, target, defs)   { image, format, cached, ms }: the disk cache, else NVRTC
//   cacheDir()                    $NEOX_CACHE_DIR/kernels, else $XDG_CACHE_HOME or ~/.cache, /neox-ts/kernels
//   gemmTuningDir()               the sibling folder gemm/, where blas.ts keeps its tuned GEMM algorithms
//
// Options: --gpu-architecture=sm_XX (the device's compute capability), -default-device, -std=c++17,
// the CUDA include folder when one exists, and -D for compile-time constants. Every .cuh in the
// kernels folder is handed to NVRTC as an in-memory header. The cache key hashes the source, those
// headers, the options, NVRTC's version and the driver's version; entries are written to a temporary
// name and renamed, so concurrent processes (one per GPU) never read half a file.
// When NVRTC is older than the device (it cannot emit sm_XX), it emits PTX for the newest
// architecture it knows and the driver compiles that at load.

import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { toolkitRoots } from './ffi/find.js';
import { NVRTC_ERROR_COMPILATION, nvrtc, nvrtcSupportedArchs, nvrtcVersion } from './ffi/nvrtc.js';
import { CudaError } from './ffi/lib.js';

/** A marker file that identifies the kernels folder. */
const MARKER = 'common.cuh';
const RELATIVE = join('src', 'backends', 'cuda', 'kernels');

let kernelsDirCache: string | null = null;

/**
 * The folder of the .cu sources. Next to this module when running from src/; from
 * dist/src/backends/cuda/ the source tree is found by walking up to the folder that holds
 * src/backends/cuda/kernels/ (the package root, since npm ships src/).
 */
export function kernelsDir(from: string = fileURLToPath(import.meta.url)): string {
  if (kernelsDirCache && from === fileURLToPath(import.meta.url)) return kernelsDirCache;
  const here = dirname(from);
  const tried: string[] = [join(here, 'kernels')];
  for (let dir = here; ; ) {
    tried.push(join(dir, RELATIVE));
    const parent = dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  const hit = tried.find((d) => existsSync(join(d, MARKER)));
  if (!hit) throw new Error(`CUDA kernel sources not found (looked for ${MARKER} in ${tried.join(', ')})`);
  const dir = resolve(hit);
  if (from === fileURLToPath(import.meta.url)) kernelsDirCache = dir;
  return dir;
}

/** The on-disk cache folder for compiled kernels. */
export function cacheDir(): string {
  if (process.env.NEOX_CACHE_DIR) return join(process.env.NEOX_CACHE_DIR, 'kernels');
  const base = process.env.XDG_CACHE_HOME || join(homedir(), '.cache');
  return join(base, 'neox-ts', 'kernels');
}

/** The folder of cuBLASLt's per-device GEMM tuning files (blas.ts), beside the kernel cache. */
export function gemmTuningDir(): string {
  return join(dirname(cacheDir()), 'gemm');
}

export interface CompileTarget {
  /** Compute capability as major·10 + minor (90 for an H100/H200). */
  readonly arch: number;
  /** cuDriverGetVersion() (e.g. 13000). */
  readonly driverVersion: number;
}

export interface CompiledModule {
  readonly image: Buffer; // CUBIN, or NUL-terminated PTX
  readonly format: 'cubin' | 'ptx';
  readonly cached: boolean;
  readonly ms: number; // time to compile or read
  readonly key: string;
}

export type Defines = Readonly<Record<string, string | number>>;

/** All .cuh headers of the kernels folder, by include name. */
function headers(dir: string): [string, string][] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.cuh'))
    .sort()
    .map((f) => [f, readFileSync(join(dir, f), 'utf8')]);
}

function cudaIncludeDir(): string | null {
  for (const root of toolkitRoots()) {
    for (const d of [join(root, 'include'), join(root, 'targets', process.arch === 'arm64' ? 'sbsa-linux' : 'x86_64-linux', 'include')]) {
      if (existsSync(join(d, 'cuda_bf16.h'))) return d;
    }
  }
  return null;
}

/** The NVRTC options for a target (also used as part of the cache key). */
export function compileOptions(target: CompileTarget, defines: Defines = {}): { options: string[]; format: 'cubin' | 'ptx' } {
  const supported = nvrtcSupportedArchs();
  let arch = `sm_${target.arch}`;
  let format: 'cubin' | 'ptx' = 'cubin';
  if (!supported.includes(target.arch)) {
    const older = supported.filter((a) => a < target.arch);
    if (older.length === 0) {
      throw new Error(`NVRTC ${nvrtcVersion()} cannot compile for compute capability ${target.arch / 10} (it supports ${supported.join(', ')})`);
    }
    arch = `compute_${Math.max(...older)}`;
    format = 'ptx';
  }
  const options = [`--gpu-architecture=${arch}`, '-default-device', '-std=c++17'];
  const inc = cudaIncludeDir();
  if (inc) options.push(`--include-path=${inc}`);
  for (const [k, v] of Object.entries(defines).sort(([a], [b]) => (a < b ? -1 : 1))) options.push(`-D${k}=${v}`);
  return { options, format };
}

/** Compiles `file` (a name in kernelsDir()) for `target`, through the disk cache. */
export function compile(file: string, target: CompileTarget, defines: Defines = {}): CompiledModule {
  const t0 = performance.now();
  const dir = kernelsDir();
  const source = readFileSync(join(dir, file), 'utf8');
  const hdrs = headers(dir);
  const { options, format } = compileOptions(target, defines);
  const version = nvrtcVersion();
  const h = createHash('sha256');
  for (const part of [source, ...hdrs.flat(), ...options, `nvrtc ${version}`, `driver ${target.driverVersion}`]) h.update(part).update('\0');
  const key = h.digest('hex').slice(0, 24);
  const base = file.replace(/\.cu$/, '');
  const path = join(cacheDir(), `${base}-sm${target.arch}-${key}.${format}`);
  try {
    const image = readFileSync(path);
    return { image, format, cached: true, ms: performance.now() - t0, key };
  } catch {
    // not cached yet
  }
  const image = nvrtcCompile(source, file, hdrs, options, format);
  try {
    mkdirSync(dirname(path), { recursive: true });
    const tmp = `${path}.${process.pid}.tmp`;
    writeFileSync(tmp, image);
    renameSync(tmp, path);
  } catch {
    // An unwritable cache only costs a recompile next time.
  }
  return { image, format, cached: false, ms: performance.now() - t0, key };
}

function nvrtcCompile(source: string, name: string, hdrs: [string, string][], options: string[], format: 'cubin' | 'ptx'): Buffer {
  const api = nvrtc();
  const prog: [bigint | null] = [null];
  api.nvrtcCreateProgram(prog, source, name, hdrs.length, hdrs.map(([, text]) => text), hdrs.map(([n]) => n));
  const p = prog[0]!;
  try {
    try {
      api.nvrtcCompileProgram(p, options.length, options);
    } catch (e) {
      if (e instanceof CudaError && e.code === NVRTC_ERROR_COMPILATION) {
        throw new Error(`NVRTC failed to compile ${name} (${options.join(' ')}):\n${programLog(p)}`);
      }
      throw e;
    }
    const size: [number] = [0];
    if (format === 'cubin') {
      api.nvrtcGetCUBINSize(p, size);
      const out = Buffer.alloc(size[0]);
      api.nvrtcGetCUBIN(p, out);
      return out;
    }
    api.nvrtcGetPTXSize(p, size); // includes the terminating NUL, which cuModuleLoadData needs
    const out = Buffer.alloc(size[0]);
    api.nvrtcGetPTX(p, out);
    return out;
  } finally {
    api.nvrtcDestroyProgram(prog);
  }
}

function programLog(p: bigint): string {
  const api = nvrtc();
  const size: [number] = [0];
  api.nvrtcGetProgramLogSize(p, size);
  const log = Buffer.alloc(size[0]);
  api.nvrtcGetProgramLog(p, log);
  return log.toString('utf8').replace(/\0+$/, '').trim();
}

/** Every kernel source file (for the nvcc check and for warming the cache). */
export function kernelSources(): string[] {
  return readdirSync(kernelsDir()).filter((f) => f.endsWith('.cu')).sort();
}
