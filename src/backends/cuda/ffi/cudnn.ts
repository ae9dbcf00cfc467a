// cuDNN 9 (libcudnn.so.9). Only the version query for now (`neox doctor`); the attention graph
// (shared/CUDNN-SDPA.md) adds its backend-API symbols here, each declared once.

import { type LoadedLibrary, bindLibrary } from './lib.js';
import { loadLibrary } from './find.js';

export interface Cudnn {
  cudnnGetVersion(): number | bigint;
}

const PROTOS = {
  cudnnGetVersion: 'size_t cudnnGetVersion()',
} as const satisfies Record<keyof Cudnn, string>;

let bound: { lib: LoadedLibrary; api: Cudnn } | null = null;

export function cudnn(): Cudnn {
  if (bound) return bound.api;
  const lib = loadLibrary('cudnn');
  bound = { lib, api: bindLibrary<Cudnn>(lib, null, PROTOS) };
  return bound.api;
}

export function cudnnPath(): string | null {
  return bound?.lib.path ?? null;
}

/** cudnnGetVersion() as `major.minor.patch` (9.14.0 is 91400). */
export function cudnnVersion(): string {
  const v = Number(cudnn().cudnnGetVersion());
  return `${Math.floor(v / 10000)}.${Math.floor((v % 10000) / 100)}.${v % 100}`;
}
