// A caching allocator over raw device memory (cuMemAlloc / cuMemFree), like PyTorch's.
//
// Requests are rounded up to a size class and freed blocks are kept in a free list per class, so a
// training step that repeats the same shapes allocates from the driver only in its first step.
// Reusing a block is safe without synchronizing because every kernel runs on one stream: work that
// read the old tensor is queued before work that writes the new one.
//
//   size classes   ≤ 1 MiB: multiples of 512 B;  above: four classes per power of two
//                  (2^k · 1, 1.25, 1.5, 1.75), so at most 25% of a large block is slack
//   out of memory  release every cached block to the driver (after a stream sync), retry once,
//                  then throw CudaOutOfMemoryError with the numbers and what to change
//
// The raw memory is an interface, so the policy is tested on the CPU with a fake device.

/** Raw device memory, as the driver gives it. */
export interface DeviceMemory {
  /** A device pointer, or null when the device is out of memory (other failures throw). */
  malloc(bytes: number): number | null;
  free(ptr: number): void;
  /** Waits for queued work, before cached blocks go back to the driver. */
  synchronize(): void;
  /** Device name, total and free bytes, for error messages. */
  describe(): { name: string; total: number; free: number };
}

export interface Block {
  readonly ptr: number;
  /** The size class: what the block really occupies. */
  readonly size: number;
}

export interface AllocatorStats {
  allocated: number; // bytes in live blocks (size classes)
  reserved: number; // allocated + cached
  peak: number; // highest `allocated`
  cached: number; // bytes in free lists
  driverAllocs: number; // cuMemAlloc calls that succeeded
  cacheHits: number; // requests served from a free list
  cacheFlushes: number; // times the cache was released to satisfy a request
}

const KiB = 1024;
const MiB = 1024 * KiB;
const SMALL = 512;

/** The size class of a request of `bytes` bytes (0 stays 0). */
export function sizeClass(bytes: number): number {
  if (!Number.isSafeInteger(bytes) || bytes < 0) throw new Error(`allocator: invalid size ${bytes}`);
  if (bytes === 0) return 0;
  if (bytes <= MiB) return Math.ceil(bytes / SMALL) * SMALL;
  let p = 2 ** Math.floor(Math.log2(bytes));
  if (p > bytes) p /= 2;
  else if (p * 2 <= bytes) p *= 2;
  const step = p / 4;
  return Math.ceil(bytes / step) * step;
}

export class CudaOutOfMemoryError extends Error {
  override name = 'CudaOutOfMemoryError';
  constructor(readonly requested: number, message: string) {
    super(message);
  }
}

export class CachingAllocator {
  private readonly free = new Map<number, number[]>(); // size class → cached pointers
  private allocated = 0;
  private cached = 0;
  private peak = 0;
  private driverAllocs = 0;
  private cacheHits = 0;
  private cacheFlushes = 0;

  constructor(private readonly device: DeviceMemory) {}

  alloc(bytes: number): Block {
    const size = sizeClass(bytes);
    if (size === 0) return { ptr: 0, size: 0 };
    const list = this.free.get(size);
    let ptr = list?.pop();
    if (ptr !== undefined) {
      this.cached -= size;
      this.cacheHits++;
    } else {
      ptr = this.fromDevice(size, bytes);
    }
    this.allocated += size;
    if (this.allocated > this.peak) this.peak = this.allocated;
    return { ptr, size };
  }

  release(block: Block): void {
    if (block.size === 0) return;
    let list = this.free.get(block.size);
    if (!list) this.free.set(block.size, (list = []));
    list.push(block.ptr);
    this.allocated -= block.size;
    this.cached += block.size;
  }

  /** Returns every cached block to the driver (waits for queued work first). */
  emptyCache(): void {
    if (this.cached === 0) return;
    this.device.synchronize();
    for (const list of this.free.values()) for (const ptr of list) this.device.free(ptr);
    this.free.clear();
    this.cached = 0;
  }

  stats(): AllocatorStats {
    return {
      allocated: this.allocated, reserved: this.allocated + this.cached, peak: this.peak, cached: this.cached,
      driverAllocs: this.driverAllocs, cacheHits: this.cacheHits, cacheFlushes: this.cacheFlushes,
    };
  }

  resetPeak(): void {
    this.peak = this.allocated;
  }

  private fromDevice(size: number, requested: number): number {
    let ptr = this.device.malloc(size);
    if (ptr === null && this.cached > 0) {
      this.cacheFlushes++;
      this.emptyCache();
      ptr = this.device.malloc(size);
    }
    if (ptr === null) throw new CudaOutOfMemoryError(requested, this.oomMessage(requested, size));
    this.driverAllocs++;
    return ptr;
  }

  private oomMessage(requested: number, size: number): string {
    const d = this.device.describe();
    return (
      `CUDA out of memory: tried to allocate ${fmtBytes(requested)}` +
      (size !== requested ? ` (a ${fmtBytes(size)} block)` : '') +
      ` on ${d.name}, which has ${fmtBytes(d.total)} in total and ${fmtBytes(d.free)} free. ` +
      `Live tensors hold ${fmtBytes(this.allocated)} (peak ${fmtBytes(this.peak)}); ` +
      `reserved: ${fmtBytes(this.allocated + this.cached)}, after releasing the allocator's cache. ` +
      `To fit, lower train_micro_batch_size_per_gpu (and raise gradient_accumulation_steps to keep the batch), ` +
      `shorten seq_length, or set checkpoint_activations: true; a smaller model or more GPUs (ZeRO, tensor ` +
      `parallelism) also help. Other processes on this GPU count too (see nvidia-smi).`
    );
  }
}

/** 1536 → "1.5 KiB", 0 → "0 B". */
export function fmtBytes(n: number): string {
  if (n < KiB) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];
  let v = n / KiB;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2)} ${units[u]}`;
}
