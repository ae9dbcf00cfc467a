// NCCL (libnccl.so.2): the symbols NeoX.ts uses, each declared once, following shared/NCCL.md
// (measured with NCCL 2.28.3 from Node 20 + koffi 3).
//
//   nccl()                     the bound API (loads the library on first use; throws LibraryNotFoundError)
//   ncclVersion()              `major.minor.patch` for `neox doctor`
//   NcclUniqueId               koffi struct { uint8_t internal[128] }, passed *by value* to ncclCommInitRank
//   NCCL_UNIQUE_ID_BYTES       128
//   ncclResult / ncclDataType / ncclRedOp   enum values from nccl.h (2.28.3)
//   ncclDataTypeOf(dtype, reducing)         NeoX dtype → ncclDataType_t (+ element scale for raw copies)
//   ncclRedOpOf(op)            ReduceOp → ncclRedOp_t
//   formatNcclError(...)       the sentence a failed call throws (function, enum name, NCCL's text, last error)
//   ncclStatus                 the StatusType check() uses: every ncclResult_t-returning call is checked
//
// Pitfalls the recipe measured (§2, §6), kept here so no caller repeats them:
// - The unique id holds NUL bytes: `uint8_t[128]`, never `char[128]` (koffi would decode a string).
// - ncclCommInitRank takes the id struct *by value* (128 bytes on the caller's stack under SysV):
//   the parameter type is the struct type, the argument `{ internal: Uint8Array(128) }`.
// - Buffers are device pointers (uint64_t numbers), counts are elements (reduce-scatter: the
//   per-rank receive count; all-gather: the per-rank send count), streams are driver CUstreams.

import koffi from 'koffi';
import type { DType } from '../../../tensor/dtype.js';
import { type LoadedLibrary, type StatusType, bindLibrary, defineAliases } from './lib.js';
import { loadLibrary } from './find.js';

defineAliases({ ncclResult_t: 'int', ncclComm_t: 'void *' });

export const NCCL_UNIQUE_ID_BYTES = 128;

/** `typedef struct { char internal[128]; } ncclUniqueId;`, declared with uint8_t so NULs survive. */
export const NcclUniqueId = koffi.struct('ncclUniqueId', { internal: koffi.array('uint8_t', NCCL_UNIQUE_ID_BYTES) });

/** ncclResult_t (nccl.h). */
export const ncclResult = {
  ncclSuccess: 0, ncclUnhandledCudaError: 1, ncclSystemError: 2, ncclInternalError: 3,
  ncclInvalidArgument: 4, ncclInvalidUsage: 5, ncclRemoteError: 6, ncclInProgress: 7,
} as const;

/** ncclDataType_t (nccl.h). */
export const ncclDataType = {
  ncclInt8: 0, ncclUint8: 1, ncclInt32: 2, ncclUint32: 3, ncclInt64: 4, ncclUint64: 5,
  ncclFloat16: 6, ncclFloat32: 7, ncclFloat64: 8, ncclBfloat16: 9, ncclFloat8e4m3: 10, ncclFloat8e5m2: 11,
} as const;

/** ncclRedOp_t (nccl.h). */
export const ncclRedOp = { ncclSum: 0, ncclProd: 1, ncclMax: 2, ncclMin: 3, ncclAvg: 4 } as const;

/** `#define NCCL_SPLIT_NOCOLOR -1`: a rank that passes it to ncclCommSplit gets no communicator. */
export const NCCL_SPLIT_NOCOLOR = -1;

/** Opaque communicator (ncclComm_t) as koffi returns it. */
export type NcclComm = bigint;
/** A driver CUstream (NCCL accepts it as a cudaStream_t). */
type Stream = bigint;
type Out<T> = [T];

export interface Nccl {
  ncclGetVersion(version: Out<number>): void;
  ncclGetErrorString(code: number): string;
  ncclGetLastError(comm: NcclComm | null): string | null;
  ncclGetUniqueId(id: Uint8Array): void;
  ncclCommInitRank(comm: Out<NcclComm | null>, nranks: number, id: { internal: Uint8Array }, rank: number): void;
  ncclCommDestroy(comm: NcclComm): void;
  ncclCommAbort(comm: NcclComm): void;
  ncclCommGetAsyncError(comm: NcclComm, asyncError: Out<number>): void;
  ncclCommCount(comm: NcclComm, count: Out<number>): void;
  ncclCommCuDevice(comm: NcclComm, device: Out<number>): void;
  /** Not in the measured recipe (declared from nccl.h 2.28.3); config null inherits the parent's. */
  ncclCommSplit(comm: NcclComm, color: number, key: number, newcomm: Out<NcclComm | null>, config: null): void;
  ncclAllReduce(send: number, recv: number, count: number, dtype: number, op: number, comm: NcclComm, stream: Stream): void;
  ncclReduceScatter(send: number, recv: number, recvcount: number, dtype: number, op: number, comm: NcclComm, stream: Stream): void;
  ncclAllGather(send: number, recv: number, sendcount: number, dtype: number, comm: NcclComm, stream: Stream): void;
  ncclBroadcast(send: number, recv: number, count: number, dtype: number, root: number, comm: NcclComm, stream: Stream): void;
  ncclSend(send: number, count: number, dtype: number, peer: number, comm: NcclComm, stream: Stream): void;
  ncclRecv(recv: number, count: number, dtype: number, peer: number, comm: NcclComm, stream: Stream): void;
  ncclGroupStart(): void;
  ncclGroupEnd(): void;
}

const PROTOS = {
  ncclGetVersion: 'ncclResult_t ncclGetVersion(_Out_ int *version)',
  // Unchecked (they return strings): the error decoder calls them.
  ncclGetErrorString: 'const char *ncclGetErrorString(int result)',
  ncclGetLastError: 'const char *ncclGetLastError(ncclComm_t comm)',
  ncclGetUniqueId: 'ncclResult_t ncclGetUniqueId(_Out_ uint8_t *uniqueId)',
  ncclCommInitRank: 'ncclResult_t ncclCommInitRank(_Out_ void **comm, int nranks, ncclUniqueId commId, int rank)',
  ncclCommDestroy: 'ncclResult_t ncclCommDestroy(ncclComm_t comm)',
  ncclCommAbort: 'ncclResult_t ncclCommAbort(ncclComm_t comm)',
  ncclCommGetAsyncError: 'ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, _Out_ int *asyncError)',
  ncclCommCount: 'ncclResult_t ncclCommCount(ncclComm_t comm, _Out_ int *count)',
  ncclCommCuDevice: 'ncclResult_t ncclCommCuDevice(ncclComm_t comm, _Out_ int *device)',
  ncclCommSplit: 'ncclResult_t ncclCommSplit(ncclComm_t comm, int color, int key, _Out_ void **newcomm, void *config)',
  ncclAllReduce: 'ncclResult_t ncclAllReduce(uint64_t sendbuff, uint64_t recvbuff, size_t count, int datatype, int op, ncclComm_t comm, void *stream)',
  ncclReduceScatter: 'ncclResult_t ncclReduceScatter(uint64_t sendbuff, uint64_t recvbuff, size_t recvcount, int datatype, int op, ncclComm_t comm, void *stream)',
  ncclAllGather: 'ncclResult_t ncclAllGather(uint64_t sendbuff, uint64_t recvbuff, size_t sendcount, int datatype, ncclComm_t comm, void *stream)',
  ncclBroadcast: 'ncclResult_t ncclBroadcast(uint64_t sendbuff, uint64_t recvbuff, size_t count, int datatype, int root, ncclComm_t comm, void *stream)',
  ncclSend: 'ncclResult_t ncclSend(uint64_t sendbuff, size_t count, int datatype, int peer, ncclComm_t comm, void *stream)',
  ncclRecv: 'ncclResult_t ncclRecv(uint64_t recvbuff, size_t count, int datatype, int peer, ncclComm_t comm, void *stream)',
  ncclGroupStart: 'ncclResult_t ncclGroupStart()',
  ncclGroupEnd: 'ncclResult_t ncclGroupEnd()',
} as const satisfies Record<keyof Nccl, string>;

const RESULT_NAMES = new Map<number, string>(Object.entries(ncclResult).map(([k, v]) => [v, k]));

/** The text nccl.h's ncclGetErrorString gives (2.28), for messages when the library is not loaded. */
const RESULT_TEXT: Record<number, string> = {
  0: 'no error', 1: 'unhandled cuda error (run with NCCL_DEBUG=INFO for details)',
  2: 'unhandled system error (run with NCCL_DEBUG=INFO for details)', 3: 'internal error - please report this issue to the NCCL developers',
  4: 'invalid argument (run with NCCL_DEBUG=WARN for details)', 5: 'invalid usage (run with NCCL_DEBUG=WARN for details)',
  6: 'remote process exited or there was a network error', 7: 'NCCL operation in progress',
};

/** ncclResult_t's enum name (`ncclRemoteError`), or `ncclResult_t 42` for a code nccl.h does not list. */
export function ncclResultName(code: number): string {
  return RESULT_NAMES.get(code) ?? `ncclResult_t ${code}`;
}

/**
 * NCCL's description of `code`: its error string, plus the last error message when NCCL kept one
 * (ncclGetLastError often names the peer, the transport or the CUDA call that failed).
 */
export function formatNcclError(code: number, errorString: string | null, lastError: string | null): { name: string; text: string } {
  const base = errorString?.trim() || RESULT_TEXT[code] || 'unknown error';
  const last = lastError?.trim();
  return { name: ncclResultName(code), text: last && last !== base ? `${base}; last error: ${last}` : base };
}

let bound: { lib: LoadedLibrary; api: Nccl } | null = null;

export const ncclStatus: StatusType = {
  library: 'NCCL',
  typeName: 'ncclResult_t',
  success: ncclResult.ncclSuccess,
  describe: (code) => formatNcclError(code, bound?.api.ncclGetErrorString(code) ?? null, bound?.api.ncclGetLastError(null) ?? null),
};

/** The NCCL API, loaded and bound on first use (throws LibraryNotFoundError without libnccl). */
export function nccl(): Nccl {
  if (bound) return bound.api;
  const lib = loadLibrary('nccl');
  bound = { lib, api: bindLibrary<Nccl>(lib, ncclStatus, PROTOS) };
  return bound.api;
}

export function ncclPath(): string | null {
  return bound?.lib.path ?? null;
}

/** ncclGetVersion() as `major.minor.patch` (2.28.3 is 22803). */
export function ncclVersion(): string {
  const v: Out<number> = [0];
  nccl().ncclGetVersion(v);
  const n = v[0];
  return `${Math.floor(n / 10000)}.${Math.floor((n % 10000) / 100)}.${n % 100}`;
}

/**
 * The ncclDataType_t a tensor of `dtype` travels as, and how many of those elements one tensor
 * element is. Reductions need NCCL's own type; copies (all-gather, broadcast, send/recv) of a type
 * NCCL lacks (u16) go as bytes. Throws for a reduction NCCL cannot do.
 */
export function ncclDataTypeOf(dtype: DType, reducing: boolean): { type: number; scale: number } {
  switch (dtype) {
    case 'f32': return { type: ncclDataType.ncclFloat32, scale: 1 };
    case 'f64': return { type: ncclDataType.ncclFloat64, scale: 1 };
    case 'bf16': return { type: ncclDataType.ncclBfloat16, scale: 1 };
    case 'f16': return { type: ncclDataType.ncclFloat16, scale: 1 };
    case 'i32': return { type: ncclDataType.ncclInt32, scale: 1 };
    case 'u8': return { type: ncclDataType.ncclUint8, scale: 1 };
    case 'u16':
      if (reducing) throw new Error('NCCL has no 16-bit unsigned integer type: u16 tensors cannot be reduced (copy them to i32)');
      return { type: ncclDataType.ncclUint8, scale: 2 };
  }
}

/** ncclRedOp_t of a process-group reduce op (avg is NCCL's own ncclAvg: sum, then divide by the size). */
export function ncclRedOpOf(op: 'sum' | 'avg' | 'max' | 'min'): number {
  switch (op) {
    case 'sum': return ncclRedOp.ncclSum;
    case 'avg': return ncclRedOp.ncclAvg;
    case 'max': return ncclRedOp.ncclMax;
    case 'min': return ncclRedOp.ncclMin;
  }
}

/** ncclGetUniqueId into a fresh 128-byte array (rank 0 only; the others receive it through the store). */
export function ncclUniqueId(): Uint8Array {
  const id = Buffer.alloc(NCCL_UNIQUE_ID_BYTES); // a Buffer, as measured (§2)
  nccl().ncclGetUniqueId(id);
  return new Uint8Array(id);
}

/** ncclCommInitRank with the id passed by value; blocks until all `nranks` ranks have joined. */
export function ncclCommInitRank(nranks: number, id: Uint8Array, rank: number): NcclComm {
  if (id.length !== NCCL_UNIQUE_ID_BYTES) throw new Error(`an NCCL unique id has ${NCCL_UNIQUE_ID_BYTES} bytes, got ${id.length}`);
  const comm: Out<NcclComm | null> = [null];
  nccl().ncclCommInitRank(comm, nranks, { internal: id }, rank);
  if (comm[0] === null) throw new Error('ncclCommInitRank returned ncclSuccess and no communicator');
  return comm[0];
}
