// cuDNN 9 (libcudnn.so.9): the version query (`neox doctor`) and the backend (graph) API that
// sdpa.ts builds fused attention with, each symbol declared once. Enum values are those of the
// cuDNN 9.14.0 header on the H200 host (cudnn_graph_v9.h; shared/CUDNN-SDPA.md §3).
//
//   cudnn()            the bound library; cudnnStatus_t results go through check() (CudaError)
//   cudnnVersion()     'major.minor.patch';  cudnnVersionNumber(): 91400 for 9.14.0
//   DESC, ATTR, TYPE, DATA, PW, REDUCE, HEUR   enum values, named as in the header without prefixes
//
// Pointer conventions (CUDNN-SDPA.md §2): SetAttribute/GetAttribute take their arrays as Buffers
// (int32 enums, int64 dims, 1-byte booleans, f32 scalars, 64-bit handles and addresses), and
// elementCount as an 8-byte Buffer. Descriptors and the handle are opaque `void *` (BigInt).

import { type LoadedLibrary, type StatusType, bindLibrary, defineAliases } from './lib.js';
import { loadLibrary } from './find.js';

defineAliases({
  cudnnStatus_t: 'int',
});

type Out<T> = [T];
type H = bigint; // cudnnHandle_t, cudnnBackendDescriptor_t

export interface Cudnn {
  cudnnGetVersion(): number | bigint;
  cudnnGetErrorString(status: number): string;
  cudnnGetLastErrorString?(message: Buffer, maxSize: number): void;
  cudnnCreate(handle: Out<H | null>): void;
  cudnnSetStream(handle: H, stream: H): void;
  cudnnBackendCreateDescriptor(type: number, desc: Out<H | null>): void;
  cudnnBackendDestroyDescriptor(desc: H): void;
  cudnnBackendFinalize(desc: H): void;
  cudnnBackendSetAttribute(desc: H, name: number, type: number, count: number, values: Buffer): void;
  cudnnBackendGetAttribute(desc: H, name: number, type: number, requested: number, count: Buffer, values: Buffer | null): void;
  cudnnBackendExecute(handle: H, plan: H, variantPack: H): void;
}

const PROTOS = {
  cudnnGetVersion: 'size_t cudnnGetVersion()',
  cudnnGetErrorString: 'const char *cudnnGetErrorString(int status)',
  cudnnGetLastErrorString: 'void cudnnGetLastErrorString(void *message, size_t max_size)',
  cudnnCreate: 'cudnnStatus_t cudnnCreate(_Out_ void **handle)',
  cudnnSetStream: 'cudnnStatus_t cudnnSetStream(void *handle, void *streamId)',
  cudnnBackendCreateDescriptor: 'cudnnStatus_t cudnnBackendCreateDescriptor(int descriptorType, _Out_ void **descriptor)',
  cudnnBackendDestroyDescriptor: 'cudnnStatus_t cudnnBackendDestroyDescriptor(void *descriptor)',
  cudnnBackendFinalize: 'cudnnStatus_t cudnnBackendFinalize(void *descriptor)',
  cudnnBackendSetAttribute:
    'cudnnStatus_t cudnnBackendSetAttribute(void *descriptor, int attributeName, int attributeType, int64_t elementCount, const void *arrayOfElements)',
  cudnnBackendGetAttribute:
    'cudnnStatus_t cudnnBackendGetAttribute(void *descriptor, int attributeName, int attributeType, int64_t requestedElementCount, ' +
    'void *elementCount, void *arrayOfElements)',
  cudnnBackendExecute: 'cudnnStatus_t cudnnBackendExecute(void *handle, void *executionPlan, void *variantPack)',
} as const satisfies Record<keyof Cudnn, string>;

/** cudnnBackendDescriptorType_t. */
export const DESC = {
  POINTWISE: 0, ENGINE: 2, ENGINECFG: 3, ENGINEHEUR: 4, EXECUTION_PLAN: 5, OPERATION_POINTWISE: 13, OPERATIONGRAPH: 15,
  VARIANT_PACK: 16, TENSOR: 17, MATMUL: 18, OPERATION_MATMUL: 19, REDUCTION: 21, OPERATION_REDUCTION: 22, OPERATION_RESHAPE: 31,
} as const;

/** cudnnBackendAttributeName_t. */
export const ATTR = {
  POINTWISE_MODE: 0, POINTWISE_MATH_PREC: 1, POINTWISE_AXIS: 9,
  ENGINEHEUR_MODE: 200, ENGINEHEUR_OPERATION_GRAPH: 201, ENGINEHEUR_RESULTS: 202,
  EXECUTION_PLAN_ENGINE_CONFIG: 401, EXECUTION_PLAN_WORKSPACE_SIZE: 402,
  OPERATION_POINTWISE_PW_DESCRIPTOR: 750, OPERATION_POINTWISE_XDESC: 751, OPERATION_POINTWISE_BDESC: 752,
  OPERATION_POINTWISE_YDESC: 753, OPERATION_POINTWISE_ALPHA1: 754, OPERATION_POINTWISE_ALPHA2: 755, OPERATION_POINTWISE_TDESC: 758,
  OPERATIONGRAPH_HANDLE: 800, OPERATIONGRAPH_OPS: 801,
  TENSOR_BYTE_ALIGNMENT: 900, TENSOR_DATA_TYPE: 901, TENSOR_DIMENSIONS: 902, TENSOR_STRIDES: 903, TENSOR_UNIQUE_ID: 906,
  TENSOR_IS_VIRTUAL: 907, TENSOR_IS_BY_VALUE: 908,
  VARIANT_PACK_UNIQUE_IDS: 1000, VARIANT_PACK_DATA_POINTERS: 1001, VARIANT_PACK_WORKSPACE: 1003,
  MATMUL_COMP_TYPE: 1500,
  OPERATION_MATMUL_ADESC: 1520, OPERATION_MATMUL_BDESC: 1521, OPERATION_MATMUL_CDESC: 1522, OPERATION_MATMUL_DESC: 1523,
  REDUCTION_OPERATOR: 1600, REDUCTION_COMP_TYPE: 1601,
  OPERATION_REDUCTION_XDESC: 1610, OPERATION_REDUCTION_YDESC: 1611, OPERATION_REDUCTION_DESC: 1612,
  OPERATION_RESHAPE_XDESC: 2200, OPERATION_RESHAPE_YDESC: 2201,
} as const;

/** cudnnBackendAttributeType_t. */
export const TYPE = {
  HANDLE: 0, DATA_TYPE: 1, BOOLEAN: 2, INT64: 3, FLOAT: 4, VOID_PTR: 6, HEUR_MODE: 8, POINTWISE_MODE: 14,
  BACKEND_DESCRIPTOR: 15, REDUCTION_OPERATOR_TYPE: 18,
} as const;

/** cudnnDataType_t. */
export const DATA = { FLOAT: 0, HALF: 2, INT32: 4, BFLOAT16: 9, BOOLEAN: 11 } as const;

/** cudnnPointwiseMode_t. */
export const PW = {
  ADD: 0, MUL: 1, DIV: 6, SUB: 9, EXP: 13, LOG: 15, IDENTITY: 21, CMP_GE: 303, GEN_INDEX: 501, BINARY_SELECT: 601,
} as const;

/** cudnnReduceTensorOp_t. */
export const REDUCE = { ADD: 0, MAX: 3 } as const;

/** cudnnBackendHeurMode_t. */
export const HEUR = { INSTANT: 0, B: 1, FALLBACK: 2, A: 3 } as const;

let bound: { lib: LoadedLibrary; api: Cudnn } | null = null;

/** The reason of the last failed call, from cudnnGetLastErrorString (cuDNN ≥ 9). */
export function cudnnLastError(): string {
  const f = bound?.api.cudnnGetLastErrorString;
  if (!f) return 'see the cuDNN log (CUDNN_LOGLEVEL_DBG=2)';
  const buf = Buffer.alloc(1024);
  f(buf, buf.length);
  const text = buf.toString('utf8', 0, Math.max(0, buf.indexOf(0))).trim();
  return text || 'no reason given by cuDNN';
}

export const cudnnStatus: StatusType = {
  library: 'cuDNN',
  typeName: 'cudnnStatus_t',
  success: 0,
  describe(code) {
    const api = bound?.api;
    return { name: api?.cudnnGetErrorString(code) ?? `cudnnStatus_t ${code}`, text: cudnnLastError() };
  },
};

export function cudnn(): Cudnn {
  if (bound) return bound.api;
  const lib = loadLibrary('cudnn');
  bound = { lib, api: bindLibrary<Cudnn>(lib, cudnnStatus, PROTOS, ['cudnnGetLastErrorString']) };
  return bound.api;
}

export function cudnnPath(): string | null {
  return bound?.lib.path ?? null;
}

/** cudnnGetVersion(): 91400 for 9.14.0. */
export function cudnnVersionNumber(): number {
  return Number(cudnn().cudnnGetVersion());
}

/** cudnnGetVersion() as `major.minor.patch` (9.14.0 is 91400). */
export function cudnnVersion(): string {
  const v = cudnnVersionNumber();
  return `${Math.floor(v / 10000)}.${Math.floor((v % 10000) / 100)}.${v % 100}`;
}
