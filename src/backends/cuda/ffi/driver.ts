// The CUDA driver API (libcuda.so.1), the symbols NeoX.ts uses, each declared once.
//
// Versioned entry points are bound by their exported names (cuMemAlloc_v2, ...), the ones cuda.h's
// macros select. Handles (CUcontext, CUstream, CUevent, CUmodule, CUfunction) are opaque pointers,
// BigInt in JS; device pointers (CUdeviceptr) are numbers. Out-parameters are one-element arrays.

import { type LoadedLibrary, type StatusType, bindLibrary, defineAliases } from './lib.js';
import { loadLibrary } from './find.js';

defineAliases({
  CUresult: 'int',
  CUdevice: 'int',
  CUcontext: 'void *',
  CUstream: 'void *',
  CUevent: 'void *',
  CUmodule: 'void *',
  CUfunction: 'void *',
});

export type Handle = bigint;
type Out<T> = [T];

export interface Driver {
  cuGetErrorName(code: number, name: Out<string | null>): void;
  cuGetErrorString(code: number, text: Out<string | null>): void;
  cuDriverGetVersion(version: Out<number>): void;
  cuInit(flags: number): void;
  cuDeviceGetCount(count: Out<number>): void;
  cuDeviceGet(device: Out<number>, ordinal: number): void;
  cuDeviceGetName(name: Buffer, len: number, device: number): void;
  cuDeviceGetAttribute(value: Out<number>, attribute: number, device: number): void;
  cuDeviceTotalMem_v2(bytes: Out<number>, device: number): void;
  cuDevicePrimaryCtxRetain(ctx: Out<Handle | null>, device: number): void;
  cuDevicePrimaryCtxRelease_v2(device: number): void;
  cuCtxSetCurrent(ctx: Handle): void;
  cuCtxSynchronize(): void;
  cuMemGetInfo_v2(free: Out<number>, total: Out<number>): void;
  cuMemAlloc_v2(ptr: Out<number | bigint>, bytes: number): void;
  cuMemFree_v2(ptr: number): void;
  cuMemcpyHtoD_v2(dst: number, src: ArrayBufferView, bytes: number): void;
  cuMemcpyDtoH_v2(dst: ArrayBufferView, src: number, bytes: number): void;
  cuMemcpyDtoD_v2(dst: number, src: number, bytes: number): void;
  cuMemcpyHtoDAsync_v2(dst: number, src: ArrayBufferView, bytes: number, stream: Handle): void;
  cuMemcpyDtoHAsync_v2(dst: ArrayBufferView, src: number, bytes: number, stream: Handle): void;
  cuMemcpyDtoDAsync_v2(dst: number, src: number, bytes: number, stream: Handle): void;
  cuMemsetD8_v2(dst: number, value: number, count: number): void;
  cuMemsetD16_v2(dst: number, value: number, count: number): void;
  cuMemsetD32_v2(dst: number, value: number, count: number): void;
  cuMemsetD8Async(dst: number, value: number, count: number, stream: Handle): void;
  cuMemsetD16Async(dst: number, value: number, count: number, stream: Handle): void;
  cuMemsetD32Async(dst: number, value: number, count: number, stream: Handle): void;
  cuStreamCreate(stream: Out<Handle | null>, flags: number): void;
  cuStreamSynchronize(stream: Handle): void;
  cuStreamDestroy_v2(stream: Handle): void;
  cuEventCreate(event: Out<Handle | null>, flags: number): void;
  cuEventRecord(event: Handle, stream: Handle): void;
  cuEventSynchronize(event: Handle): void;
  /** Unchecked: CUDA_ERROR_NOT_READY (600) is an answer, not an error. */
  cuEventQuery(event: Handle): number;
  cuStreamWaitEvent(stream: Handle, event: Handle, flags: number): void;
  /** CUDA 12.8+ name; older drivers export only cuEventElapsedTime (same signature). Use eventElapsedMs(). */
  cuEventElapsedTime_v2?(ms: Out<number>, start: Handle, end: Handle): void;
  cuEventElapsedTime?(ms: Out<number>, start: Handle, end: Handle): void;
  cuEventDestroy_v2(event: Handle): void;
  cuModuleLoadData(module: Out<Handle | null>, image: Buffer): void;
  cuModuleGetFunction(fn: Out<Handle | null>, module: Handle, name: string): void;
  cuModuleUnload(module: Handle): void;
  cuFuncSetAttribute(fn: Handle, attribute: number, value: number): void;
  cuLaunchKernel(
    fn: Handle, gridX: number, gridY: number, gridZ: number, blockX: number, blockY: number, blockZ: number,
    sharedBytes: number, stream: Handle, params: bigint, extra: null,
  ): void;
}

const PROTOS = {
  // `int`, not CUresult: the error decoder calls these two unchecked.
  cuGetErrorName: 'int cuGetErrorName(int error, _Out_ const char **pStr)',
  cuGetErrorString: 'int cuGetErrorString(int error, _Out_ const char **pStr)',
  cuDriverGetVersion: 'CUresult cuDriverGetVersion(_Out_ int *driverVersion)',
  cuInit: 'CUresult cuInit(unsigned int flags)',
  cuDeviceGetCount: 'CUresult cuDeviceGetCount(_Out_ int *count)',
  cuDeviceGet: 'CUresult cuDeviceGet(_Out_ CUdevice *device, int ordinal)',
  cuDeviceGetName: 'CUresult cuDeviceGetName(void *name, int len, CUdevice dev)',
  cuDeviceGetAttribute: 'CUresult cuDeviceGetAttribute(_Out_ int *pi, int attrib, CUdevice dev)',
  cuDeviceTotalMem_v2: 'CUresult cuDeviceTotalMem_v2(_Out_ size_t *bytes, CUdevice dev)',
  cuDevicePrimaryCtxRetain: 'CUresult cuDevicePrimaryCtxRetain(_Out_ CUcontext *pctx, CUdevice dev)',
  cuDevicePrimaryCtxRelease_v2: 'CUresult cuDevicePrimaryCtxRelease_v2(CUdevice dev)',
  cuCtxSetCurrent: 'CUresult cuCtxSetCurrent(CUcontext ctx)',
  cuCtxSynchronize: 'CUresult cuCtxSynchronize()',
  cuMemGetInfo_v2: 'CUresult cuMemGetInfo_v2(_Out_ size_t *free, _Out_ size_t *total)',
  cuMemAlloc_v2: 'CUresult cuMemAlloc_v2(_Out_ CUdeviceptr *dptr, size_t bytesize)',
  cuMemFree_v2: 'CUresult cuMemFree_v2(CUdeviceptr dptr)',
  cuMemcpyHtoD_v2: 'CUresult cuMemcpyHtoD_v2(CUdeviceptr dstDevice, const void *srcHost, size_t ByteCount)',
  cuMemcpyDtoH_v2: 'CUresult cuMemcpyDtoH_v2(void *dstHost, CUdeviceptr srcDevice, size_t ByteCount)',
  cuMemcpyDtoD_v2: 'CUresult cuMemcpyDtoD_v2(CUdeviceptr dstDevice, CUdeviceptr srcDevice, size_t ByteCount)',
  cuMemcpyHtoDAsync_v2: 'CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dstDevice, const void *srcHost, size_t ByteCount, CUstream hStream)',
  cuMemcpyDtoHAsync_v2: 'CUresult cuMemcpyDtoHAsync_v2(void *dstHost, CUdeviceptr srcDevice, size_t ByteCount, CUstream hStream)',
  cuMemcpyDtoDAsync_v2: 'CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr dstDevice, CUdeviceptr srcDevice, size_t ByteCount, CUstream hStream)',
  cuMemsetD8_v2: 'CUresult cuMemsetD8_v2(CUdeviceptr dstDevice, uint8_t uc, size_t N)',
  cuMemsetD16_v2: 'CUresult cuMemsetD16_v2(CUdeviceptr dstDevice, uint16_t us, size_t N)',
  cuMemsetD32_v2: 'CUresult cuMemsetD32_v2(CUdeviceptr dstDevice, uint32_t ui, size_t N)',
  cuMemsetD8Async: 'CUresult cuMemsetD8Async(CUdeviceptr dstDevice, uint8_t uc, size_t N, CUstream hStream)',
  cuMemsetD16Async: 'CUresult cuMemsetD16Async(CUdeviceptr dstDevice, uint16_t us, size_t N, CUstream hStream)',
  cuMemsetD32Async: 'CUresult cuMemsetD32Async(CUdeviceptr dstDevice, uint32_t ui, size_t N, CUstream hStream)',
  cuStreamCreate: 'CUresult cuStreamCreate(_Out_ CUstream *phStream, unsigned int Flags)',
  cuStreamSynchronize: 'CUresult cuStreamSynchronize(CUstream hStream)',
  cuStreamDestroy_v2: 'CUresult cuStreamDestroy_v2(CUstream hStream)',
  cuEventCreate: 'CUresult cuEventCreate(_Out_ CUevent *phEvent, unsigned int Flags)',
  cuEventRecord: 'CUresult cuEventRecord(CUevent hEvent, CUstream hStream)',
  cuEventSynchronize: 'CUresult cuEventSynchronize(CUevent hEvent)',
  cuEventQuery: 'int cuEventQuery(CUevent hEvent)',
  cuStreamWaitEvent: 'CUresult cuStreamWaitEvent(CUstream hStream, CUevent hEvent, unsigned int Flags)',
  cuEventElapsedTime_v2: 'CUresult cuEventElapsedTime_v2(_Out_ float *pMilliseconds, CUevent hStart, CUevent hEnd)',
  cuEventElapsedTime: 'CUresult cuEventElapsedTime(_Out_ float *pMilliseconds, CUevent hStart, CUevent hEnd)',
  cuEventDestroy_v2: 'CUresult cuEventDestroy_v2(CUevent hEvent)',
  cuModuleLoadData: 'CUresult cuModuleLoadData(_Out_ CUmodule *module, const void *image)',
  cuModuleGetFunction: 'CUresult cuModuleGetFunction(_Out_ CUfunction *hfunc, CUmodule hmod, const char *name)',
  cuModuleUnload: 'CUresult cuModuleUnload(CUmodule hmod)',
  cuFuncSetAttribute: 'CUresult cuFuncSetAttribute(CUfunction hfunc, int attrib, int value)',
  cuLaunchKernel:
    'CUresult cuLaunchKernel(CUfunction f, unsigned int gridDimX, unsigned int gridDimY, unsigned int gridDimZ, ' +
    'unsigned int blockDimX, unsigned int blockDimY, unsigned int blockDimZ, unsigned int sharedMemBytes, ' +
    'CUstream hStream, void *kernelParams, void *extra)',
} as const satisfies Record<keyof Driver, string>;

// Enum values from cuda.h (CUDA 13.0).
export const CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = 16;
export const CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75;
export const CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76;
export const CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN = 97;
export const CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8;
export const CU_STREAM_NON_BLOCKING = 1;
export const CU_EVENT_DEFAULT = 0;
export const CUDA_ERROR_OUT_OF_MEMORY = 2;
export const CUDA_ERROR_NO_DEVICE = 100;

let bound: { lib: LoadedLibrary; api: Driver } | null = null;

export const driverStatus: StatusType = {
  library: 'CUDA driver',
  typeName: 'CUresult',
  success: 0,
  describe(code) {
    const name: Out<string | null> = [null];
    const text: Out<string | null> = [null];
    if (bound) {
      bound.api.cuGetErrorName(code, name); // unchecked (see PROTOS); unknown codes leave null
      bound.api.cuGetErrorString(code, text);
    }
    return { name: name[0] ?? `CUresult ${code}`, text: text[0] ?? 'unknown error' };
  },
};

/** The driver API, loaded and bound on first use (throws LibraryNotFoundError without a driver). */
export function driver(): Driver {
  if (bound) return bound.api;
  const lib = loadLibrary('driver');
  const api = bindLibrary<Driver>(lib, driverStatus, PROTOS, ['cuEventElapsedTime_v2', 'cuEventElapsedTime']);
  bound = { lib, api };
  return api;
}

/** Milliseconds between two recorded events (whichever of the two entry points the driver has). */
export function eventElapsedMs(start: Handle, end: Handle): number {
  const api = driver();
  const ms: Out<number> = [0];
  const fn = api.cuEventElapsedTime_v2 ?? api.cuEventElapsedTime;
  if (!fn) throw new Error('the CUDA driver exports no cuEventElapsedTime');
  fn(ms, start, end);
  return ms[0];
}

/** CUDA devices visible to this process (0 without a driver); creates no context. */
export function visibleDeviceCount(): number {
  try {
    const d = driver();
    d.cuInit(0);
    const n: [number] = [0];
    d.cuDeviceGetCount(n);
    return n[0];
  } catch {
    return 0;
  }
}

export function driverPath(): string | null {
  return bound?.lib.path ?? null;
}
