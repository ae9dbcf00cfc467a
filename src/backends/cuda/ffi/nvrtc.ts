// NVRTC (libnvrtc.so.13 / .12): runtime compilation of the .cu kernels, each symbol declared once.

import { type LoadedLibrary, type StatusType, bindLibrary, defineAliases } from './lib.js';
import { loadLibrary } from './find.js';

defineAliases({
  nvrtcResult: 'int',
  nvrtcProgram: 'void *',
});

type Out<T> = [T];

export interface Nvrtc {
  nvrtcGetErrorString(code: number): string;
  nvrtcVersion(major: Out<number>, minor: Out<number>): void;
  nvrtcGetNumSupportedArchs(n: Out<number>): void;
  nvrtcGetSupportedArchs(archs: Int32Array): void;
  nvrtcCreateProgram(
    prog: Out<bigint | null>, src: string, name: string, numHeaders: number,
    headers: readonly string[] | null, includeNames: readonly string[] | null,
  ): void;
  nvrtcDestroyProgram(prog: Out<bigint | null>): void;
  nvrtcCompileProgram(prog: bigint, numOptions: number, options: readonly string[]): void;
  nvrtcGetProgramLogSize(prog: bigint, size: Out<number>): void;
  nvrtcGetProgramLog(prog: bigint, log: Buffer): void;
  nvrtcGetCUBINSize(prog: bigint, size: Out<number>): void;
  nvrtcGetCUBIN(prog: bigint, cubin: Buffer): void;
  nvrtcGetPTXSize(prog: bigint, size: Out<number>): void;
  nvrtcGetPTX(prog: bigint, ptx: Buffer): void;
}

const PROTOS = {
  nvrtcGetErrorString: 'const char *nvrtcGetErrorString(int result)',
  nvrtcVersion: 'nvrtcResult nvrtcVersion(_Out_ int *major, _Out_ int *minor)',
  nvrtcGetNumSupportedArchs: 'nvrtcResult nvrtcGetNumSupportedArchs(_Out_ int *numArchs)',
  nvrtcGetSupportedArchs: 'nvrtcResult nvrtcGetSupportedArchs(void *supportedArchs)',
  nvrtcCreateProgram:
    'nvrtcResult nvrtcCreateProgram(_Out_ nvrtcProgram *prog, const char *src, const char *name, int numHeaders, ' +
    'const char **headers, const char **includeNames)',
  nvrtcDestroyProgram: 'nvrtcResult nvrtcDestroyProgram(_Inout_ nvrtcProgram *prog)',
  nvrtcCompileProgram: 'nvrtcResult nvrtcCompileProgram(nvrtcProgram prog, int numOptions, const char **options)',
  nvrtcGetProgramLogSize: 'nvrtcResult nvrtcGetProgramLogSize(nvrtcProgram prog, _Out_ size_t *logSizeRet)',
  nvrtcGetProgramLog: 'nvrtcResult nvrtcGetProgramLog(nvrtcProgram prog, void *log)',
  nvrtcGetCUBINSize: 'nvrtcResult nvrtcGetCUBINSize(nvrtcProgram prog, _Out_ size_t *cubinSizeRet)',
  nvrtcGetCUBIN: 'nvrtcResult nvrtcGetCUBIN(nvrtcProgram prog, void *cubin)',
  nvrtcGetPTXSize: 'nvrtcResult nvrtcGetPTXSize(nvrtcProgram prog, _Out_ size_t *ptxSizeRet)',
  nvrtcGetPTX: 'nvrtcResult nvrtcGetPTX(nvrtcProgram prog, void *ptx)',
} as const satisfies Record<keyof Nvrtc, string>;

/** nvrtcResult values (nvrtc.h). */
export const NVRTC_ERROR_INVALID_OPTION = 5;
export const NVRTC_ERROR_COMPILATION = 6;

const NAMES = [
  'NVRTC_SUCCESS', 'NVRTC_ERROR_OUT_OF_MEMORY', 'NVRTC_ERROR_PROGRAM_CREATION_FAILURE', 'NVRTC_ERROR_INVALID_INPUT',
  'NVRTC_ERROR_INVALID_PROGRAM', 'NVRTC_ERROR_INVALID_OPTION', 'NVRTC_ERROR_COMPILATION', 'NVRTC_ERROR_BUILTIN_OPERATION_FAILURE',
  'NVRTC_ERROR_NO_NAME_EXPRESSIONS_AFTER_COMPILATION', 'NVRTC_ERROR_NO_LOWERED_NAMES_BEFORE_COMPILATION',
  'NVRTC_ERROR_NAME_EXPRESSION_NOT_VALID', 'NVRTC_ERROR_INTERNAL_ERROR',
];

let bound: { lib: LoadedLibrary; api: Nvrtc } | null = null;

export const nvrtcStatus: StatusType = {
  library: 'NVRTC',
  typeName: 'nvrtcResult',
  success: 0,
  describe(code) {
    return { name: NAMES[code] ?? `nvrtcResult ${code}`, text: bound?.api.nvrtcGetErrorString(code) ?? 'unknown error' };
  },
};

export function nvrtc(): Nvrtc {
  if (bound) return bound.api;
  const lib = loadLibrary('nvrtc');
  const api = bindLibrary<Nvrtc>(lib, nvrtcStatus, PROTOS);
  bound = { lib, api };
  return api;
}

export function nvrtcPath(): string | null {
  return bound?.lib.path ?? null;
}

/** NVRTC's version as `major.minor`. */
export function nvrtcVersion(): string {
  const major: Out<number> = [0];
  const minor: Out<number> = [0];
  nvrtc().nvrtcVersion(major, minor);
  return `${major[0]}.${minor[0]}`;
}

/** The real architectures NVRTC can emit code for (e.g. [75, 80, 86, 89, 90, 100, ...]). */
export function nvrtcSupportedArchs(): number[] {
  const n: Out<number> = [0];
  nvrtc().nvrtcGetNumSupportedArchs(n);
  const archs = new Int32Array(n[0]);
  nvrtc().nvrtcGetSupportedArchs(archs);
  return [...archs];
}
