// Finding NVIDIA's shared libraries at run time (no compile step at install).
//
// For each library the candidates are tried in this order, and the first that loads wins:
//   1. $CUDA_HOME, then $CUDA_PATH:   lib64/, targets/<arch>-linux/lib/, lib/
//   2. /usr/local/cuda:               lib64/, targets/<arch>-linux/lib/
//   3. the loader path:               the bare soname (LD_LIBRARY_PATH, ldconfig cache, rpath)
//   4. Python wheels (pip's nvidia-*): <site-packages>/nvidia/<pkg>/lib/
// The driver (libcuda.so.1) belongs to the display driver, not the toolkit: it is looked up on the
// loader path and in the usual driver folders only, never in a toolkit's stubs/ folder (the stub
// loads but cannot run anything).

import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import koffi from 'koffi';
import type { LoadedLibrary } from './lib.js';

export type LibraryKey = 'driver' | 'nvrtc' | 'cublasLt' | 'cudnn' | 'nccl';

export interface LibrarySpec {
  readonly key: LibraryKey;
  /** What people call it ('CUDA driver', 'NVRTC', ...). */
  readonly label: string;
  /** Sonames, newest first. */
  readonly sonames: readonly string[];
  /** Whether the toolkit folders apply (false for the driver). */
  readonly toolkit: boolean;
  /** Folders under site-packages/nvidia/ that pip wheels put it in. */
  readonly wheels: readonly string[];
}

export const LIBRARIES: Record<LibraryKey, LibrarySpec> = {
  driver: { key: 'driver', label: 'CUDA driver', sonames: ['libcuda.so.1', 'libcuda.so'], toolkit: false, wheels: [] },
  nvrtc: { key: 'nvrtc', label: 'NVRTC', sonames: ['libnvrtc.so.13', 'libnvrtc.so.12', 'libnvrtc.so'], toolkit: true, wheels: ['cu13', 'cuda_nvrtc', 'cu12'] },
  cublasLt: { key: 'cublasLt', label: 'cuBLASLt', sonames: ['libcublasLt.so.13', 'libcublasLt.so.12', 'libcublasLt.so'], toolkit: true, wheels: ['cu13', 'cublas', 'cu12'] },
  cudnn: { key: 'cudnn', label: 'cuDNN', sonames: ['libcudnn.so.9', 'libcudnn.so'], toolkit: true, wheels: ['cudnn'] },
  nccl: { key: 'nccl', label: 'NCCL', sonames: ['libnccl.so.2', 'libnccl.so'], toolkit: true, wheels: ['nccl'] },
};

const DRIVER_DIRS = ['/usr/local/nvidia/lib64', '/usr/lib/x86_64-linux-gnu', '/usr/lib64', '/usr/lib/wsl/lib'];

function targetDir(): string {
  return process.arch === 'arm64' ? 'sbsa-linux' : 'x86_64-linux';
}

/** Toolkit roots: $CUDA_HOME, $CUDA_PATH, /usr/local/cuda (deduplicated, existing only). */
export function toolkitRoots(): string[] {
  const roots = [process.env.CUDA_HOME, process.env.CUDA_PATH, '/usr/local/cuda'].filter((r): r is string => !!r);
  return [...new Set(roots)].filter((r) => existsSync(r));
}

/** Folders that may hold toolkit libraries, in search order (before the loader path). */
function toolkitLibDirs(): string[] {
  const dirs: string[] = [];
  for (const root of toolkitRoots()) dirs.push(join(root, 'lib64'), join(root, 'targets', targetDir(), 'lib'), join(root, 'lib'));
  return dirs;
}

let sitePackagesCache: string[] | null = null;

/** Python site-packages folders that exist: common layouts first, then python3 itself if it runs. */
export function sitePackages(): string[] {
  if (sitePackagesCache) return sitePackagesCache;
  const found = new Set<string>();
  const roots = [process.env.VIRTUAL_ENV, process.env.CONDA_PREFIX, join(homedir(), '.local'), '/usr/local', '/usr'].filter((r): r is string => !!r);
  for (const root of roots) {
    const lib = join(root, 'lib');
    let names: string[] = [];
    try {
      names = readdirSync(lib).filter((n) => /^python3(\.\d+)?$/.test(n));
    } catch {
      continue;
    }
    for (const n of names) for (const sub of ['site-packages', 'dist-packages']) {
      const d = join(lib, n, sub);
      if (existsSync(join(d, 'nvidia'))) found.add(d);
    }
  }
  try {
    const out = execFileSync('python3', ['-c', 'import site,sys; print("\\n".join(site.getsitepackages() + [site.getusersitepackages()]))'], {
      encoding: 'utf8', timeout: 5000, stdio: ['ignore', 'pipe', 'ignore'],
    });
    for (const d of out.split('\n').map((s) => s.trim()).filter(Boolean)) if (existsSync(join(d, 'nvidia'))) found.add(d);
  } catch {
    // no python3: wheels are simply not a source
  }
  sitePackagesCache = [...found];
  return sitePackagesCache;
}

/** Every place `spec` is looked for, in order: absolute paths, and bare sonames for the loader. */
export function candidates(spec: LibrarySpec, withWheels = true): string[] {
  const out: string[] = [];
  if (spec.toolkit) for (const d of toolkitLibDirs()) for (const s of spec.sonames) out.push(join(d, s));
  for (const s of spec.sonames) out.push(s); // the loader path
  if (!spec.toolkit) for (const d of DRIVER_DIRS) for (const s of spec.sonames) out.push(join(d, s));
  if (withWheels) for (const sp of sitePackages()) for (const w of spec.wheels) for (const s of spec.sonames) out.push(join(sp, 'nvidia', w, 'lib', s));
  return out;
}

export class LibraryNotFoundError extends Error {
  override name = 'LibraryNotFoundError';
  constructor(readonly spec: LibrarySpec, readonly folders: string[], readonly failures: string[]) {
    super(
      `${spec.label} (${spec.sonames[0]}) not found: looked in ${folders.length ? folders.join(', ') + ' and ' : ''}the loader path` +
        (failures.length ? `; found but failed to load: ${failures.join('; ')}` : ''),
    );
  }
}

const loaded = new Map<LibraryKey, LoadedLibrary>();

/** Loads a library (once per process), trying `candidates(spec)` in order. */
export function loadLibrary(key: LibraryKey): LoadedLibrary {
  const hit = loaded.get(key);
  if (hit) return hit;
  const spec = LIBRARIES[key];
  const tried: string[] = [];
  const attempt = (path: string): LoadedLibrary | null => {
    const absolute = path.includes('/');
    if (absolute && !existsSync(path)) return null; // not worth listing: most candidates are absent
    try {
      const lib = { handle: koffi.load(path), path };
      loaded.set(key, lib);
      return lib;
    } catch (e) {
      const msg = firstLine((e as Error).message);
      // "cannot open shared object file" on a bare soname only means: not on the loader path.
      if (absolute || !/cannot open shared object file/.test(msg)) tried.push(`${path} (${msg})`);
      return null;
    }
  };
  // Wheels last, and only if nothing else loads (finding them may start python3).
  for (const path of candidates(spec, false)) {
    const lib = attempt(path);
    if (lib) return lib;
  }
  for (const path of candidates(spec, true).slice(candidates(spec, false).length)) {
    const lib = attempt(path);
    if (lib) return lib;
  }
  const folders = [...new Set(candidates(spec, true).filter((p) => p.includes('/')).map((p) => p.slice(0, p.lastIndexOf('/'))))];
  throw new LibraryNotFoundError(spec, folders.filter((d) => existsSync(d)), tried);
}

function firstLine(s: string): string {
  return s.split('\n')[0]!.slice(0, 200);
}
