// Launching compiled kernels: a Kernel owns a CUfunction and a native argument block it reuses.
//
// cuLaunchKernel takes `void **kernelParams`: an array of pointers, one per argument, each pointing
// at the argument's value. Each Kernel allocates that once: 8-byte value slots followed by the
// pointer array, filled at creation. A launch writes the values through typed-array views of the
// same memory (koffi.view) and calls cuLaunchKernel; nothing is allocated per launch, and the
// driver copies the values during the call, so the block is free again when it returns.
//
// Signatures are strings with one letter per kernel parameter:
//   p  device pointer (8 bytes)    l  int64 (long long)    i  int32    u  uint32    f  float

import koffi from 'koffi';
import { CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, type Driver, type Handle } from './ffi/driver.js';

const TWO32 = 4294967296;

export type Dim3 = readonly [number, number, number];

export class Kernel {
  private readonly u32: Uint32Array;
  private readonly i32: Int32Array;
  private readonly f32: Float32Array;
  private readonly params: bigint;
  private sharedLimit = 48 * 1024; // dynamic shared memory a launch may use without opting in

  constructor(
    private readonly drv: Driver,
    readonly name: string,
    private readonly fn: Handle,
    readonly signature: string,
    private readonly stream: Handle,
  ) {
    if (!/^[plfiu]*$/.test(signature)) throw new Error(`kernel ${name}: bad signature '${signature}'`);
    const n = Math.max(1, signature.length);
    const block = koffi.alloc('uint64_t', 2 * n) as bigint; // values, then pointers; lives as long as the kernel
    const mem = koffi.view(block, 16 * n);
    this.u32 = new Uint32Array(mem, 0, 2 * n);
    this.i32 = new Int32Array(mem, 0, 2 * n);
    this.f32 = new Float32Array(mem, 0, 2 * n);
    const pointers = new BigUint64Array(mem, 8 * n, n);
    for (let i = 0; i < n; i++) pointers[i] = block + BigInt(8 * i);
    this.params = block + BigInt(8 * n);
  }

  /** Opts in to `bytes` of dynamic shared memory per block (needed above 48 KiB), up to `max`. */
  allowSharedMemory(bytes: number, max: number): void {
    if (bytes <= this.sharedLimit) return;
    if (bytes > max) throw new Error(`kernel ${this.name} needs ${bytes} bytes of shared memory per block; the device allows ${max}`);
    this.drv.cuFuncSetAttribute(this.fn, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, bytes);
    this.sharedLimit = bytes;
  }

  /** A 1-D launch: `grid` blocks of `block` threads. */
  launch(grid: number, block: number, ...args: number[]): void {
    this.launchShared(grid, 1, block, 1, 0, args);
  }

  /** A 2-D launch with `sharedBytes` of dynamic shared memory. */
  launchShared(gridX: number, gridY: number, blockX: number, blockY: number, sharedBytes: number, args: readonly number[]): void {
    const sig = this.signature;
    if (args.length !== sig.length) throw new Error(`kernel ${this.name}: ${args.length} arguments for signature '${sig}'`);
    for (let i = 0; i < args.length; i++) {
      const v = args[i]!;
      const k = sig.charCodeAt(i);
      const s = 2 * i;
      if (k === 102 /* f */) {
        this.f32[s] = v;
      } else if (k === 105 /* i */) {
        this.i32[s] = v;
      } else if (k === 117 /* u */) {
        this.u32[s] = v >>> 0;
      } else {
        // p, l: 64-bit, written as two little-endian halves (two's complement for negatives)
        const hi = Math.floor(v / TWO32);
        this.u32[s] = v - hi * TWO32;
        this.u32[s + 1] = hi >>> 0;
      }
    }
    if (gridX <= 0 || gridY <= 0) return; // nothing to do (empty tensors)
    this.drv.cuLaunchKernel(this.fn, gridX, gridY, 1, blockX, blockY, 1, sharedBytes, this.stream, this.params, null);
  }
}
