// The CUDA backend (koffi → driver API, NVRTC, cuBLASLt, cuDNN attention, NCCL process groups).
//   index.ts      initCuda(): the registered backend when a GPU is usable, else null; doctorReport();
//                 visibleDeviceCount()
//   backend.ts    CudaBackend: context, stream, upload/download, kernel cache, error word
//   allocator.ts  the caching allocator (size classes, reuse, OOM → flush → retry → clear error)
//   compiler.ts   .cu → NVRTC → CUBIN for the device's arch, cached on disk; where the sources are
//   launch.ts     Kernel: cuLaunchKernel with a reused native argument block
//   blas.ts       row-major GEMMs on cuBLASLt with cached plans and the bias epilogue
//   sdpa.ts       cuDNN fused flash attention graphs (forward, backward), plans cached per shape
//   nccl_group.ts the 'nccl' process group: own stream, event ordering, watchdog
//   doctor.ts     library discovery report for `neox doctor`
//   ffi/          one module per native library (driver, nvrtc, cublaslt, cudnn, nccl), find.ts, lib.ts
//   kernels/      *.cu sources (common.cuh shared) and their registrations (*.ts) by kernel name
import type { Backend } from '../../tensor/backend.js';
import { registerBackend } from '../../tensor/engine.js';
import { CudaBackend } from './backend.js';
import { cublasLt } from './ffi/cublaslt.js';
import { nvrtc } from './ffi/nvrtc.js';
import './kernels/basic.js';
import './kernels/matmul.js';
import './kernels/shape.js';
import './kernels/norm.js';
import './kernels/activation.js';
import './kernels/dropout.js';
import './kernels/rotary.js';
import './kernels/loss.js';
import './kernels/optim.js';
import './kernels/attention.js';
import './nccl_group.js'; // registers the 'nccl' process-group backend

export { CudaBackend } from './backend.js';
export { visibleDeviceCount } from './ffi/driver.js';
export { doctorReport, findLibraries } from './doctor.js';

let instance: CudaBackend | null | undefined;
let whyNot: string | null = null;

/**
 * The CUDA backend on device `ordinal` (registered as 'cuda'), or null when no usable GPU is
 * present: no driver, no device, or NVRTC/cuBLASLt missing. Never throws; the reason for a null
 * is in cudaUnavailableReason(). Later calls return the first result.
 */
export function initCuda(ordinal = 0): Backend | null {
  if (instance !== undefined) return instance;
  try {
    const be = CudaBackend.create(ordinal);
    nvrtc();
    cublasLt();
    registerBackend(be);
    instance = be;
  } catch (e) {
    whyNot = (e as Error).message;
    instance = null;
  }
  return instance;
}

/** Why initCuda() returned null (null if it has not, or it found a GPU). */
export function cudaUnavailableReason(): string | null {
  return whyNot;
}
