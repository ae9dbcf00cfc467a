// cuBLASLt (libcublasLt.so.13 / .12): GEMMs with epilogues, each symbol declared once.
// Bindings and enum values as measured in shared/CUBLASLT.md (cuBLAS 13.1 header on the H200 host).

import { type LoadedLibrary, type StatusType, bindLibrary, defineAliases } from './lib.js';
import { loadLibrary } from './find.js';

defineAliases({
  cublasStatus_t: 'int',
});

type Out<T> = [T];
type H = bigint; // an opaque handle or descriptor

export interface CublasLt {
  cublasLtGetVersion(): number | bigint;
  cublasLtGetStatusName?(status: number): string;
  cublasLtGetStatusString?(status: number): string;
  cublasLtCreate(handle: Out<H | null>): void;
  cublasLtDestroy(handle: H): void;
  cublasLtMatmulDescCreate(desc: Out<H | null>, computeType: number, scaleType: number): void;
  cublasLtMatmulDescDestroy(desc: H): void;
  cublasLtMatmulDescSetAttribute(desc: H, attr: number, buf: Buffer, size: number): void;
  cublasLtMatrixLayoutCreate(layout: Out<H | null>, type: number, rows: number, cols: number, ld: number): void;
  cublasLtMatrixLayoutDestroy(layout: H): void;
  cublasLtMatrixLayoutSetAttribute(layout: H, attr: number, buf: Buffer, size: number): void;
  cublasLtMatmulPreferenceCreate(pref: Out<H | null>): void;
  cublasLtMatmulPreferenceDestroy(pref: H): void;
  cublasLtMatmulPreferenceSetAttribute(pref: H, attr: number, buf: Buffer, size: number): void;
  cublasLtMatmulAlgoGetHeuristic(
    handle: H, desc: H, a: H, b: H, c: H, d: H, pref: H, requested: number, results: bigint, returned: Out<number>,
  ): void;
  cublasLtMatmul(
    handle: H, desc: H, alpha: bigint, A: number, Adesc: H, B: number, Bdesc: H, beta: bigint,
    C: number, Cdesc: H, D: number, Ddesc: H, algo: bigint, workspace: number, workspaceBytes: number, stream: H,
  ): void;
}

const PROTOS = {
  cublasLtGetVersion: 'size_t cublasLtGetVersion()',
  cublasLtGetStatusName: 'const char *cublasLtGetStatusName(int status)',
  cublasLtGetStatusString: 'const char *cublasLtGetStatusString(int status)',
  cublasLtCreate: 'cublasStatus_t cublasLtCreate(_Out_ void **handle)',
  cublasLtDestroy: 'cublasStatus_t cublasLtDestroy(void *handle)',
  cublasLtMatmulDescCreate: 'cublasStatus_t cublasLtMatmulDescCreate(_Out_ void **desc, int computeType, int scaleType)',
  cublasLtMatmulDescDestroy: 'cublasStatus_t cublasLtMatmulDescDestroy(void *desc)',
  cublasLtMatmulDescSetAttribute: 'cublasStatus_t cublasLtMatmulDescSetAttribute(void *desc, int attr, const void *buf, size_t sizeInBytes)',
  cublasLtMatrixLayoutCreate: 'cublasStatus_t cublasLtMatrixLayoutCreate(_Out_ void **layout, int type, uint64_t rows, uint64_t cols, int64_t ld)',
  cublasLtMatrixLayoutDestroy: 'cublasStatus_t cublasLtMatrixLayoutDestroy(void *layout)',
  cublasLtMatrixLayoutSetAttribute: 'cublasStatus_t cublasLtMatrixLayoutSetAttribute(void *layout, int attr, const void *buf, size_t sizeInBytes)',
  cublasLtMatmulPreferenceCreate: 'cublasStatus_t cublasLtMatmulPreferenceCreate(_Out_ void **pref)',
  cublasLtMatmulPreferenceDestroy: 'cublasStatus_t cublasLtMatmulPreferenceDestroy(void *pref)',
  cublasLtMatmulPreferenceSetAttribute: 'cublasStatus_t cublasLtMatmulPreferenceSetAttribute(void *pref, int attr, const void *buf, size_t sizeInBytes)',
  cublasLtMatmulAlgoGetHeuristic:
    'cublasStatus_t cublasLtMatmulAlgoGetHeuristic(void *handle, void *operationDesc, void *Adesc, void *Bdesc, void *Cdesc, ' +
    'void *Ddesc, void *preference, int requestedAlgoCount, void *heuristicResultsArray, _Out_ int *returnAlgoCount)',
  cublasLtMatmul:
    'cublasStatus_t cublasLtMatmul(void *handle, void *computeDesc, void *alpha, uint64_t A, void *Adesc, uint64_t B, void *Bdesc, ' +
    'void *beta, uint64_t C, void *Cdesc, uint64_t D, void *Ddesc, void *algo, uint64_t workspace, size_t workspaceSizeInBytes, void *stream)',
} as const satisfies Record<keyof CublasLt, string>;

// Enum values (cublasLt.h / library_types.h, cuBLAS 13.1; see shared/CUBLASLT.md §1).
export const CUBLAS_COMPUTE_32F = 68;
export const CUDA_R_32F = 0;
export const CUDA_R_16F = 2;
export const CUDA_R_16BF = 14;
export const CUBLAS_OP_N = 0;
export const CUBLAS_OP_T = 1;
export const DESC = {
  TRANSA: 3, TRANSB: 4, EPILOGUE: 7, BIAS_POINTER: 8, EPILOGUE_AUX_POINTER: 11, EPILOGUE_AUX_LD: 12, EPILOGUE_AUX_DATA_TYPE: 22,
  BIAS_DATA_TYPE: 26,
} as const;
export const EPILOGUE = { DEFAULT: 1, BIAS: 4, GELU_AUX: 160, GELU_AUX_BIAS: 164 } as const;
export const LAYOUT = { BATCH_COUNT: 5, STRIDED_BATCH_OFFSET: 6 } as const;
export const PREF_MAX_WORKSPACE_BYTES = 1;
/** sizeof(cublasLtMatmulHeuristicResult_t); the algo is its first 64 bytes, workspaceSize at 64. */
export const HEURISTIC_RESULT_BYTES = 96;
export const HEURISTIC_WORKSPACE_OFFSET = 64;
export const CUBLAS_STATUS_NOT_SUPPORTED = 15;

const STATUS_NAMES: Record<number, string> = {
  0: 'CUBLAS_STATUS_SUCCESS', 1: 'CUBLAS_STATUS_NOT_INITIALIZED', 3: 'CUBLAS_STATUS_ALLOC_FAILED',
  7: 'CUBLAS_STATUS_INVALID_VALUE', 8: 'CUBLAS_STATUS_ARCH_MISMATCH', 11: 'CUBLAS_STATUS_MAPPING_ERROR',
  13: 'CUBLAS_STATUS_EXECUTION_FAILED', 14: 'CUBLAS_STATUS_INTERNAL_ERROR', 15: 'CUBLAS_STATUS_NOT_SUPPORTED',
};

let bound: { lib: LoadedLibrary; api: CublasLt } | null = null;

export const cublasStatus: StatusType = {
  library: 'cuBLASLt',
  typeName: 'cublasStatus_t',
  success: 0,
  describe(code) {
    const api = bound?.api;
    return {
      name: api?.cublasLtGetStatusName?.(code) ?? STATUS_NAMES[code] ?? `cublasStatus_t ${code}`,
      text: api?.cublasLtGetStatusString?.(code) ?? 'see the cuBLAS documentation for this status',
    };
  },
};

export function cublasLt(): CublasLt {
  if (bound) return bound.api;
  const lib = loadLibrary('cublasLt');
  const api = bindLibrary<CublasLt>(lib, cublasStatus, PROTOS, ['cublasLtGetStatusName', 'cublasLtGetStatusString']);
  bound = { lib, api };
  return api;
}

export function cublasLtPath(): string | null {
  return bound?.lib.path ?? null;
}

/** cublasLtGetVersion() as a number (e.g. 130100 for 13.1.0). */
export function cublasLtVersion(): number {
  return Number(cublasLt().cublasLtGetVersion());
}
