// NCCL (libnccl.so.2). Only the version query for now (`neox doctor`); collectives (shared/NCCL.md)
// add their symbols here, each declared once.

import { type LoadedLibrary, type StatusType, bindLibrary, defineAliases } from './lib.js';
import { loadLibrary } from './find.js';

defineAliases({ ncclResult_t: 'int' });

export interface Nccl {
  ncclGetVersion(version: [number]): void;
  ncclGetErrorString(code: number): string;
}

const PROTOS = {
  ncclGetVersion: 'ncclResult_t ncclGetVersion(_Out_ int *version)',
  ncclGetErrorString: 'const char *ncclGetErrorString(int result)',
} as const satisfies Record<keyof Nccl, string>;

let bound: { lib: LoadedLibrary; api: Nccl } | null = null;

export const ncclStatus: StatusType = {
  library: 'NCCL',
  typeName: 'ncclResult_t',
  success: 0,
  describe: (code) => ({ name: `ncclResult_t ${code}`, text: bound?.api.ncclGetErrorString(code) ?? 'unknown error' }),
};

export function nccl(): Nccl {
  if (bound) return bound.api;
  const lib = loadLibrary('nccl');
  bound = { lib, api: bindLibrary<Nccl>(lib, ncclStatus, PROTOS) };
  return bound.api;
}

export function ncclPath(): string | null {
  return bound?.lib.path ?? null;
}

/** ncclGetVersion() as `major.minor.patch` (2.27.3 is 22703). */
export function ncclVersion(): string {
  const v: [number] = [0];
  nccl().ncclGetVersion(v);
  const n = v[0];
  return `${Math.floor(n / 10000)}.${Math.floor((n % 10000) / 100)}.${n % 100}`;
}
