// Binding native libraries from prototype tables, and the one check() every native call goes through.
//
//   bindLibrary(loaded, status, protos)  a typed object of functions from a table of C prototypes
//   check(status, fn, code)              throws CudaError naming the function, the error name and text
//   CudaError                            library, function, numeric code, name; `message` says it all
//
// Each library module (driver.ts, nvrtc.ts, cublaslt.ts, ...) declares its symbols once, as a table
// of C prototypes in the header's own words. A function whose return type is the library's status
// type (CUresult, nvrtcResult, cublasStatus_t, ...) is wrapped so that a non-success status throws;
// every other function (version queries, error strings) is returned as koffi made it.

import koffi, { type LibraryHandle } from 'koffi';

type NativeFunction = ReturnType<LibraryHandle['func']>;

/** How one library reports errors: its status type name, success value and a decoder. */
export interface StatusType {
  /** The library's name in messages ('CUDA driver', 'NVRTC', 'cuBLASLt'). */
  readonly library: string;
  /** The C return type that marks a checked function, e.g. 'CUresult'. */
  readonly typeName: string;
  readonly success: number;
  /** The error's symbolic name and its sentence; must not throw. */
  describe(code: number): { name: string; text: string };
}

export class CudaError extends Error {
  override name = 'CudaError';
  constructor(
    readonly library: string,
    readonly fn: string,
    readonly code: number,
    readonly codeName: string,
    text: string,
  ) {
    super(`${fn} failed: ${codeName} (${library} error ${code}): ${text}`);
  }
}

/** Throws a CudaError when `code` is not the library's success value. */
export function check(status: StatusType, fn: string, code: number): void {
  if (code === status.success) return;
  let d: { name: string; text: string };
  try {
    d = status.describe(code);
  } catch {
    d = { name: `error ${code}`, text: 'no description available' };
  }
  throw new CudaError(status.library, fn, code, d.name, d.text);
}

/** A loaded shared library: the koffi handle and where it came from. */
export interface LoadedLibrary {
  readonly handle: LibraryHandle;
  readonly path: string;
}

/** A table of C prototypes, one per symbol; keys must equal the C function names. */
export type Prototypes<T> = { readonly [K in keyof T]: string };

/**
 * Binds every prototype of `protos` from `lib`. Functions returning `status.typeName` are wrapped
 * with check(); `optional` names may be missing from the library (they are then undefined).
 */
export function bindLibrary<T>(lib: LoadedLibrary, status: StatusType | null, protos: Prototypes<T>, optional: readonly (keyof T)[] = []): T {
  const out: Record<string, unknown> = {};
  for (const name of Object.keys(protos) as (keyof T & string)[]) {
    const proto = protos[name];
    let raw: NativeFunction;
    try {
      raw = lib.handle.func(proto);
    } catch (e) {
      if (optional.includes(name)) continue;
      throw new Error(`${lib.path}: cannot bind ${name} (${(e as Error).message})`);
    }
    if (raw.info.name !== name) throw new Error(`prototype table entry ${name} declares ${raw.info.name}`);
    const checked = status !== null && proto.trimStart().startsWith(status.typeName + ' ');
    out[name] = checked
      ? (...args: unknown[]): void => {
          const code = raw(...args) as number;
          if (code !== status.success) check(status, name, code);
        }
      : raw;
  }
  return out as T;
}

const aliases = new Set<string>();

/** Declares koffi type aliases once per process (koffi rejects a second declaration). */
export function defineAliases(table: Record<string, string>): void {
  for (const [name, type] of Object.entries(table)) {
    if (aliases.has(name)) continue;
    koffi.alias(name, type);
    aliases.add(name);
  }
}

defineAliases({
  // Opaque handles come back from koffi as BigInt; device pointers are plain numbers (below 2^53).
  CUdeviceptr: 'uint64_t',
});

/** A device pointer as returned through an `_Out_ uint64_t *` (number or BigInt) → number. */
export function devicePointer(v: unknown): number {
  const n = typeof v === 'bigint' ? Number(v) : (v as number);
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`device pointer ${String(v)} does not fit in a JS number`);
  return n;
}
