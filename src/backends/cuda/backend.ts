// The CUDA backend: a device context, one compute stream, the caching allocator, the kernel
// compiler/launcher, and cuBLASLt. Kernels (kernels/*.ts) ask it for memory and launches.
//
// Everything is queued on one stream, created non-blocking, from the thread that made the context
// current (Node's main thread). The host waits for the GPU only in download() and synchronize()
// (and when the allocator must return its cache to the driver): never inside a step.
//
// Kernels report bad inputs they cannot throw about (token ids out of range) by setting bits of an
// error word in device memory; download() and synchronize() read it after waiting and throw.
//
// Views (Backend.view): a CudaStorage at ptr + offset into another's block, flagged `isView`; the
// allocator never sees it (freeing it only marks it freed), and the tensor layer keeps the parent
// alive. copy() and clear() are cuMemcpyDtoDAsync / cuMemsetD8Async on the stream.

import type { Backend, MemoryStats, Storage } from '../../tensor/backend.js';
import { type DType, type HostArray, ITEM_SIZE, hostArray } from '../../tensor/dtype.js';
import type { Tensor } from '../../tensor/tensor.js';
import { type Block, CachingAllocator, type DeviceMemory } from './allocator.js';
import { Blas } from './blas.js';
import { type CompiledModule, type Defines, compile } from './compiler.js';
import {
  CUDA_ERROR_OUT_OF_MEMORY, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR,
  CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, CU_EVENT_DEFAULT, CU_STREAM_NON_BLOCKING, type Driver, type Handle, driver, eventElapsedMs,
} from './ffi/driver.js';
import { CudaError, devicePointer } from './ffi/lib.js';
import { Kernel } from './launch.js';

export class CudaStorage implements Storage {
  freed = false;
  /** `isView`: ptr points into `block`, which belongs to another storage (not released when this is freed). */
  constructor(readonly ptr: number, readonly bytes: number, readonly block: Block, readonly isView = false) {}
}

/** The device pointer behind a CUDA tensor. */
export function ptr(t: Tensor): number {
  return (t.storage as CudaStorage).ptr;
}

export interface DeviceInfo {
  readonly ordinal: number;
  readonly name: string;
  /** Compute capability as major·10 + minor (90 for an H200). */
  readonly arch: number;
  readonly multiprocessors: number;
  /** Dynamic shared memory a block may opt in to (bytes). */
  readonly maxSharedPerBlock: number;
  readonly totalMemory: number;
  readonly driverVersion: number;
}

/** Bits of the device error word (kernels/common.cuh has the same values). */
const DEVICE_ERRORS: [number, string][] = [
  [1, 'embedding: a token id was out of range [0, vocab)'],
  [2, 'embeddingBackward: a token id was out of range [0, vocab)'],
  [4, 'crossEntropy: a label was ≥ the vocabulary size'],
];

export class CudaBackend implements Backend {
  readonly name = 'cuda';
  readonly allocator: CachingAllocator;
  /** Fill every new allocation with 0xFF bytes (NaN in every float type): tests use it to catch unwritten outputs. */
  poison = false;
  private readonly modules = new Map<string, Handle>();
  private readonly kernels = new Map<string, Kernel>();
  private readonly compiled: { file: string; cached: boolean; ms: number }[] = [];
  private readonly errorWord: Block;
  private readonly errorHost = new Int32Array(1);
  private blasInstance: Blas | null = null;

  private constructor(
    readonly drv: Driver,
    readonly device: DeviceInfo,
    readonly context: Handle,
    readonly stream: Handle,
  ) {
    const info = device;
    const mem: DeviceMemory = {
      malloc: (bytes) => {
        if (bytes > info.totalMemory) return null; // the driver may call this INVALID_VALUE rather than OOM
        const out: [number | bigint] = [0];
        try {
          drv.cuMemAlloc_v2(out, bytes);
        } catch (e) {
          if (e instanceof CudaError && e.code === CUDA_ERROR_OUT_OF_MEMORY) return null;
          throw e;
        }
        return devicePointer(out[0]);
      },
      free: (p) => drv.cuMemFree_v2(p),
      synchronize: () => drv.cuStreamSynchronize(stream),
      describe: () => {
        const free: [number] = [0];
        const total: [number] = [0];
        try {
          drv.cuMemGetInfo_v2(free, total);
        } catch {
          return { name: device.name, total: device.totalMemory, free: 0 };
        }
        return { name: device.name, total: total[0], free: free[0] };
      },
    };
    this.allocator = new CachingAllocator(mem);
    this.errorWord = this.allocator.alloc(4);
    drv.cuMemsetD32Async(this.errorWord.ptr, 0, 1, stream);
  }

  /** Initialises the driver, makes device `ordinal`'s primary context current, creates the stream. */
  static create(ordinal = 0): CudaBackend {
    const drv = driver();
    drv.cuInit(0);
    const count: [number] = [0];
    drv.cuDeviceGetCount(count);
    if (ordinal >= count[0]) throw new Error(`CUDA device ${ordinal} requested, ${count[0]} present`);
    const dev: [number] = [0];
    drv.cuDeviceGet(dev, ordinal);
    const attr = (a: number): number => {
      const v: [number] = [0];
      drv.cuDeviceGetAttribute(v, a, dev[0]);
      return v[0];
    };
    const nameBuf = Buffer.alloc(256);
    drv.cuDeviceGetName(nameBuf, nameBuf.length, dev[0]);
    const total: [number] = [0];
    drv.cuDeviceTotalMem_v2(total, dev[0]);
    const version: [number] = [0];
    drv.cuDriverGetVersion(version);
    const info: DeviceInfo = {
      ordinal,
      name: nameBuf.toString('utf8', 0, Math.max(0, nameBuf.indexOf(0))),
      arch: attr(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR) * 10 + attr(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR),
      multiprocessors: attr(CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT),
      maxSharedPerBlock: attr(CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN),
      totalMemory: total[0],
      driverVersion: version[0],
    };
    const ctx: [Handle | null] = [null];
    drv.cuDevicePrimaryCtxRetain(ctx, dev[0]);
    drv.cuCtxSetCurrent(ctx[0]!);
    const stream: [Handle | null] = [null];
    drv.cuStreamCreate(stream, CU_STREAM_NON_BLOCKING);
    return new CudaBackend(drv, info, ctx[0]!, stream[0]!);
  }

  // ------------------------------------------------------------------------------------------
  // Backend contract

  alloc(dtype: DType, numel: number): CudaStorage {
    const bytes = numel * ITEM_SIZE[dtype];
    const block = this.allocator.alloc(bytes);
    if (this.poison && bytes > 0) this.drv.cuMemsetD8Async(block.ptr, 0xff, bytes, this.stream);
    return new CudaStorage(block.ptr, bytes, block);
  }

  zeros(dtype: DType, numel: number): CudaStorage {
    const s = this.alloc(dtype, numel);
    if (s.bytes > 0) this.drv.cuMemsetD8Async(s.ptr, 0, s.bytes, this.stream);
    return s;
  }

  upload(data: HostArray, dtype: DType): CudaStorage {
    if (data.BYTES_PER_ELEMENT !== ITEM_SIZE[dtype]) throw new Error(`upload: ${data.constructor.name} does not hold ${dtype}`);
    const s = this.alloc(dtype, data.length);
    // Stream-ordered: the block may have been freed by a tensor that queued kernels still read.
    // From pageable memory the driver stages the bytes before returning, so `data` may change after.
    if (s.bytes > 0) this.drv.cuMemcpyHtoDAsync_v2(s.ptr, data, s.bytes, this.stream);
    return s;
  }

  download(storage: Storage, dtype: DType, numel: number): HostArray {
    const s = live(storage);
    const out = hostArray(dtype, numel);
    const bytes = numel * ITEM_SIZE[dtype];
    if (bytes > s.bytes) throw new Error(`download: ${bytes} bytes asked of a ${s.bytes}-byte buffer`);
    if (bytes > 0) this.drv.cuMemcpyDtoHAsync_v2(out, s.ptr, bytes, this.stream);
    this.synchronize();
    return out;
  }

  free(storage: Storage): void {
    const s = storage as CudaStorage;
    if (s.freed) throw new Error('CUDA storage freed twice');
    s.freed = true;
    if (!s.isView) this.allocator.release(s.block);
  }

  view(storage: Storage, byteOffset: number, bytes: number): CudaStorage {
    const s = live(storage);
    if (!Number.isInteger(byteOffset) || !Number.isInteger(bytes) || byteOffset < 0 || bytes < 0 || byteOffset + bytes > s.bytes) {
      throw new Error(`view: bytes [${byteOffset}, ${byteOffset + bytes}) are outside a ${s.bytes}-byte storage`);
    }
    return new CudaStorage(s.ptr + byteOffset, bytes, s.block, true);
  }

  copy(dst: Storage, src: Storage, bytes: number): void {
    const d = live(dst);
    const s = live(src);
    if (!Number.isInteger(bytes) || bytes < 0 || bytes > d.bytes || bytes > s.bytes) {
      throw new Error(`copy: ${bytes} bytes between storages of ${s.bytes} and ${d.bytes} bytes`);
    }
    this.copyAsync(d.ptr, s.ptr, bytes);
  }

  clear(storage: Storage): void {
    const s = live(storage);
    this.memsetAsync(s.ptr, 0, s.bytes);
  }

  synchronize(): void {
    this.drv.cuStreamSynchronize(this.stream);
    this.drv.cuMemcpyDtoH_v2(this.errorHost, this.errorWord.ptr, 4);
    const bits = this.errorHost[0]!;
    if (bits !== 0) {
      this.drv.cuMemsetD32Async(this.errorWord.ptr, 0, 1, this.stream);
      const what = DEVICE_ERRORS.filter(([b]) => bits & b).map(([, m]) => m);
      throw new Error(`a CUDA kernel reported bad input: ${what.join('; ') || `error bits ${bits}`}`);
    }
  }

  memoryStats(): MemoryStats {
    const s = this.allocator.stats();
    return { allocated: s.allocated, reserved: s.reserved, peak: s.peak };
  }

  resetPeakMemory(): void {
    this.allocator.resetPeak();
  }

  /** The kernel profile's device timing: events recorded on the stream, pooled. */
  readonly timing = {
    mark: (): Handle => {
      const e = this.timingEvents.pop() ?? this.newTimingEvent();
      this.drv.cuEventRecord(e, this.stream);
      return e;
    },
    elapsedMs: (a: unknown, b: unknown): number => {
      this.drv.cuEventSynchronize(b as Handle);
      const ms = eventElapsedMs(a as Handle, b as Handle);
      this.timingEvents.push(a as Handle, b as Handle);
      return ms;
    },
  };
  private readonly timingEvents: Handle[] = [];

  private newTimingEvent(): Handle {
    const e: [Handle | null] = [null];
    this.drv.cuEventCreate(e, CU_EVENT_DEFAULT);
    return e[0]!;
  }

  // ------------------------------------------------------------------------------------------
  // For kernels

  /** The device error word kernels set bits in (see DEVICE_ERRORS). */
  get errorPtr(): number {
    return this.errorWord.ptr;
  }

  /**
   * The kernel `name` of source `file` (kernels/<file>), compiled on first use for this device.
   * `defines` are compile-time constants (a separate module per distinct set).
   */
  kernel(file: string, name: string, signature: string, defines?: Defines): Kernel {
    const modKey = defines ? `${file}?${JSON.stringify(defines)}` : file;
    const key = `${modKey}#${name}`;
    const hit = this.kernels.get(key);
    if (hit) return hit;
    let mod = this.modules.get(modKey);
    if (mod === undefined) {
      const c: CompiledModule = compile(file, { arch: this.device.arch, driverVersion: this.device.driverVersion }, defines);
      const out: [Handle | null] = [null];
      this.drv.cuModuleLoadData(out, c.image);
      mod = out[0]!;
      this.modules.set(modKey, mod);
      this.compiled.push({ file: modKey, cached: c.cached, ms: c.ms });
    }
    const fn: [Handle | null] = [null];
    this.drv.cuModuleGetFunction(fn, mod, name);
    const k = new Kernel(this.drv, name, fn[0]!, signature, this.stream);
    this.kernels.set(key, k);
    return k;
  }

  /** Modules compiled or read from the disk cache so far, with the time each took. */
  compileLog(): readonly { file: string; cached: boolean; ms: number }[] {
    return this.compiled;
  }

  /** Blocks for a 1-D grid-stride kernel over n elements (block of 256 threads). */
  grid(n: number, block = 256): number {
    return Math.min(Math.ceil(n / block), this.device.multiprocessors * 16);
  }

  /** Temporary device memory for one kernel sequence; give it back with releaseScratch (stream-ordered). */
  scratch(bytes: number): Block {
    return this.allocator.alloc(bytes);
  }

  releaseScratch(b: Block): void {
    this.allocator.release(b);
  }

  memsetAsync(p: number, byte: number, bytes: number): void {
    if (bytes > 0) this.drv.cuMemsetD8Async(p, byte, bytes, this.stream);
  }

  memset16Async(p: number, word: number, count: number): void {
    if (count > 0) this.drv.cuMemsetD16Async(p, word, count, this.stream);
  }

  memset32Async(p: number, word: number, count: number): void {
    if (count > 0) this.drv.cuMemsetD32Async(p, word >>> 0, count, this.stream);
  }

  copyAsync(dst: number, src: number, bytes: number): void {
    if (bytes > 0) this.drv.cuMemcpyDtoDAsync_v2(dst, src, bytes, this.stream);
  }

  /** cuBLASLt, created on first use. */
  blas(): Blas {
    return (this.blasInstance ??= new Blas(this));
  }

  /** Milliseconds of GPU time `fn` queues on the stream (events around it; waits for the end event). */
  time(fn: () => void): number {
    const start: [Handle | null] = [null];
    const end: [Handle | null] = [null];
    this.drv.cuEventCreate(start, CU_EVENT_DEFAULT);
    this.drv.cuEventCreate(end, CU_EVENT_DEFAULT);
    try {
      this.drv.cuEventRecord(start[0]!, this.stream);
      fn();
      this.drv.cuEventRecord(end[0]!, this.stream);
      this.drv.cuEventSynchronize(end[0]!);
      return eventElapsedMs(start[0]!, end[0]!);
    } finally {
      this.drv.cuEventDestroy_v2(start[0]!);
      this.drv.cuEventDestroy_v2(end[0]!);
    }
  }
}

function live(storage: Storage): CudaStorage {
  const s = storage as CudaStorage;
  if (s.freed) throw new Error('CUDA storage used after free');
  return s;
}
