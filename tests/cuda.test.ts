// The CUDA backend. Everywhere: kernel sources are found from src/ and dist/, every .cu compiles
// with nvcc for sm_80 and sm_90 (when nvcc is installed), and the caching allocator's policy on a
// fake device. On a GPU: every CUDA kernel against the CPU backend on fresh random inputs, with
// outputs poisoned (NaN-filled) beforehand so unwritten elements fail; uploads, downloads, the
// allocator's reuse and out-of-memory message, the kernel disk cache.
// Without a GPU the device tests report `skipped: no CUDA device`.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { CachingAllocator, CudaOutOfMemoryError, type DeviceMemory, sizeClass } from '../src/backends/cuda/allocator.js';
import { type CudaBackend, ptr } from '../src/backends/cuda/backend.js';
import { Blas, readTuning, writeTuning } from '../src/backends/cuda/blas.js';
import { compile, kernelSources, kernelsDir } from '../src/backends/cuda/compiler.js';
import { cudaUnavailableReason, initCuda } from '../src/backends/cuda/index.js';
import {
  type DType, KERNEL_NAMES, type KernelName, type Tensor, fromNumbers, getBackend, hasKernel, runKernel, scope, tensor, toF32,
} from '../src/tensor/index.js';
import { assertClose, rng } from './helpers/check.js';

const gpu = initCuda() as CudaBackend | null;
const noGpu = gpu ? false : 'skipped: no CUDA device';
if (gpu) gpu.poison = true;
else console.log(`CUDA backend unavailable: ${cudaUnavailableReason()}`);
const cpu = getBackend('cpu');

// ---------------------------------------------------------------------------------------------
// Everywhere

test('kernel sources are found from src/ and from dist/', () => {
  const dir = kernelsDir();
  assert.ok(dir.endsWith(join('src', 'backends', 'cuda', 'kernels')), dir);
  assert.ok(existsSync(join(dir, 'common.cuh')));
  const sources = kernelSources();
  for (const f of ['elementwise.cu', 'reduce.cu', 'embedding.cu', 'adamw.cu']) assert.ok(sources.includes(f), `${f} in ${sources}`);
  const root = dir.slice(0, dir.length - join('src', 'backends', 'cuda', 'kernels').length);
  // The compiled module lives in dist/src/backends/cuda/ (tsc's outDir), the source in src/backends/cuda/.
  assert.equal(kernelsDir(join(root, 'dist', 'src', 'backends', 'cuda', 'compiler.js')), dir);
  assert.equal(kernelsDir(join(root, 'src', 'backends', 'cuda', 'compiler.ts')), dir);
  assert.throws(() => kernelsDir(join(tmpdir(), 'nowhere', 'compiler.js')), /common\.cuh/);
});

function findNvcc(): string | null {
  const dirs = [...(process.env.PATH ?? '').split(delimiter)];
  for (const root of [process.env.CUDA_HOME, process.env.CUDA_PATH, '/usr/local/cuda']) if (root) dirs.push(join(root, 'bin'));
  for (const d of dirs) if (d && existsSync(join(d, 'nvcc'))) return join(d, 'nvcc');
  return null;
}
const nvcc = findNvcc();

test('every .cu source compiles with nvcc for sm_80 and sm_90', { skip: nvcc ? false : 'skipped: nvcc not found' }, async () => {
  const run = promisify(execFile);
  const dir = kernelsDir();
  const jobs = kernelSources().flatMap((f) => [80, 90].map(async (arch) => {
    try {
      await run(nvcc!, ['-std=c++17', '--cubin', `-arch=sm_${arch}`, '-I', dir, '-o', '/dev/null', join(dir, f)], { timeout: 120_000 });
      return null;
    } catch (e) {
      const err = e as { stderr?: string; message: string };
      return `${f} for sm_${arch}:\n${err.stderr || err.message}`;
    }
  }));
  const failures = (await Promise.all(jobs)).filter((x) => x !== null);
  assert.deepEqual(failures, [], failures.join('\n'));
});

test('size classes: 512-byte steps up to 1 MiB, then four per power of two', () => {
  assert.equal(sizeClass(0), 0);
  assert.equal(sizeClass(1), 512);
  assert.equal(sizeClass(512), 512);
  assert.equal(sizeClass(513), 1024);
  assert.equal(sizeClass(1 << 20), 1 << 20);
  assert.equal(sizeClass((1 << 20) + 1), 1.25 * (1 << 20));
  assert.equal(sizeClass(3 << 20), 3 << 20);
  assert.equal(sizeClass(2 ** 30), 2 ** 30);
  const r = rng(1);
  for (let i = 0; i < 1000; i++) {
    const n = Math.floor(2 ** (r() * 40));
    const c = sizeClass(n);
    assert.ok(c >= n && (n <= 1 << 20 ? c - n < 512 : c <= n * 1.25), `${n} → ${c}`);
  }
});

/** A device of `capacity` bytes that hands out increasing addresses. */
function fakeDevice(capacity: number): DeviceMemory & { used: number; syncs: number; live: Map<number, number> } {
  let next = 1 << 20;
  const dev = {
    used: 0,
    syncs: 0,
    live: new Map<number, number>(),
    malloc(bytes: number): number | null {
      if (dev.used + bytes > capacity) return null;
      dev.used += bytes;
      const p = next;
      next += bytes;
      dev.live.set(p, bytes);
      return p;
    },
    free(p: number): void {
      dev.used -= dev.live.get(p)!;
      dev.live.delete(p);
    },
    synchronize(): void {
      dev.syncs++;
    },
    describe: () => ({ name: 'Fake GPU', total: capacity, free: capacity - dev.used }),
  };
  return dev;
}

test('the caching allocator reuses freed blocks of the same class and tracks allocated, reserved, peak', () => {
  const dev = fakeDevice(64 << 20);
  const a = new CachingAllocator(dev);
  const b1 = a.alloc(1000);
  assert.equal(b1.size, 1024);
  a.release(b1);
  const b2 = a.alloc(900); // same class
  assert.equal(b2.ptr, b1.ptr);
  const b3 = a.alloc(5 << 20);
  let s = a.stats();
  assert.deepEqual([s.allocated, s.reserved, s.peak, s.driverAllocs, s.cacheHits], [1024 + (5 << 20), 1024 + (5 << 20), 1024 + (5 << 20), 2, 1]);
  a.release(b3);
  a.release(b2);
  s = a.stats();
  assert.deepEqual([s.allocated, s.reserved, s.cached, s.peak], [0, 1024 + (5 << 20), 1024 + (5 << 20), 1024 + (5 << 20)]);
  assert.equal(a.alloc(0).ptr, 0);
  a.emptyCache();
  assert.equal(dev.used, 0);
  assert.equal(dev.syncs, 1, 'waits for queued work before returning memory');
});

test('on out of memory the allocator releases its cache and retries, then throws a message that says what to change', () => {
  const dev = fakeDevice(10 << 20);
  const a = new CachingAllocator(dev);
  a.release(a.alloc(6 << 20)); // cached, 6 MiB
  const big = a.alloc(8 << 20); // only fits once the cache is released
  assert.equal(a.stats().cacheFlushes, 1);
  assert.equal(a.stats().cached, 0);
  let err: unknown;
  try {
    a.alloc(100 << 20);
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof CudaOutOfMemoryError);
  const msg = (err as Error).message;
  for (const needle of ['100 MiB', 'Fake GPU', '10.0 MiB in total', 'Live tensors hold 8.00 MiB', 'train_micro_batch_size_per_gpu', 'seq_length', 'checkpoint_activations']) {
    assert.ok(msg.includes(needle), `"${needle}" missing from: ${msg}`);
  }
  assert.doesNotMatch(msg, /CUDA_ERROR|error 2\b/);
  a.release(big);
});

// ---------------------------------------------------------------------------------------------
// On the GPU: helpers

type FloatT = 'f32' | 'bf16' | 'f16';
const FLOATS: FloatT[] = ['f32', 'bf16', 'f16'];
/** Relative tolerance of one rounding to the storage type (with margin). */
const RTOL: Record<FloatT, number> = { f32: 2e-6, bf16: 1e-2, f16: 2e-3 };

let seed = 1000;

/** Random values in [-scale, scale), rounded to `dtype` so both backends see the same numbers. */
function values(n: number, dtype: DType, scale = 1): Float32Array {
  const r = rng(seed++);
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) v[i] = (r() * 2 - 1) * scale;
  return dtype === 'f32' ? v : toF32(dtype, fromNumbers(dtype, v));
}

/** The same values as a CPU f32 tensor and as a GPU tensor of `dtype`. */
function pair(shape: number[], dtype: FloatT, scale = 1): [Tensor, Tensor] {
  const v = values(shape.reduce((a, b) => a * b, 1), dtype, scale);
  return [tensor(v, shape, 'f32', cpu), tensor(v, shape, dtype, gpu!)];
}

/** The CPU's f32 result rounded to `dtype` (what the GPU stores). */
function rounded(t: Tensor, dtype: DType): Float32Array {
  const v = t.toFloat32();
  return dtype === 'f32' ? v : toF32(dtype, fromNumbers(dtype, v));
}

function rms(a: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * a[i]!;
  return Math.sqrt(s / Math.max(1, a.length));
}

function one(ts: Tensor[]): Tensor {
  return ts[0]!;
}

// ---------------------------------------------------------------------------------------------
// On the GPU: memory

test('upload and download round-trip every dtype, zeros are zero', { skip: noGpu }, () => {
  scope(() => {
    const cases: [DType, ArrayLike<number>][] = [
      ['f32', [1.5, -2, 3e-20, 7]], ['f64', [Math.PI, -1e300, 0]], ['bf16', [1, -2, 0.5]], ['f16', [1, 65504, -0.25]],
      ['i32', [-5, 2 ** 31 - 1, 0]], ['u16', [0, 65535, 7]], ['u8', [255, 0, 9]],
    ];
    for (const [dtype, v] of cases) {
      const t = tensor(v, [v.length], dtype, gpu!);
      assert.deepEqual([...t.toArray()], [...tensor(v, [v.length], dtype, cpu).toArray()], dtype);
    }
    const z = runKernel('fill', [], { shape: [0], dtype: 'f32', value: 0 }, gpu!); // empty tensors are fine
    assert.equal(one(z).toArray().length, 0);
    const big = (gpu!.zeros('f32', 1 << 20));
    assert.ok((gpu!.download(big, 'f32', 1 << 20) as Float32Array).every((x) => x === 0));
    gpu!.free(big);
  });
});

test('the allocator reuses freed device memory and reports allocated/reserved/peak', { skip: noGpu }, () => {
  const before = gpu!.memoryStats();
  const a = gpu!.alloc('f32', 1000);
  const mid = gpu!.memoryStats();
  assert.equal(mid.allocated - before.allocated, 4096);
  assert.ok(mid.peak >= mid.allocated && mid.reserved >= mid.allocated);
  gpu!.free(a);
  const b = gpu!.alloc('f32', 1000);
  assert.equal(b.ptr, a.ptr, 'a freed block of the same size class is handed out again');
  gpu!.free(b);
  assert.equal(gpu!.memoryStats().allocated, before.allocated);
  assert.throws(() => gpu!.free(b), /freed twice/);
});

test('asking for an absurd amount of memory gives an actionable error, and the device still works', { skip: noGpu }, () => {
  const bytes = 2 ** 52;
  assert.throws(() => gpu!.alloc('u8', bytes), (e: Error) => {
    assert.ok(e instanceof CudaOutOfMemoryError, e.message);
    for (const needle of ['out of memory', '4.00 PiB', gpu!.device.name, 'in total', 'train_micro_batch_size_per_gpu', 'seq_length', 'checkpoint_activations']) {
      assert.ok(e.message.includes(needle), `"${needle}" missing from: ${e.message}`);
    }
    return true;
  });
  const t = tensor([1, 2, 3], [3], 'f32', gpu!);
  assert.deepEqual([...t.toArray()], [1, 2, 3]);
});

test('kernels compile through the disk cache: the second compile reads the first one\'s CUBIN', { skip: noGpu }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'neox-kernels-'));
  const prev = process.env.NEOX_CACHE_DIR;
  process.env.NEOX_CACHE_DIR = dir;
  try {
    const target = { arch: gpu!.device.arch, driverVersion: gpu!.device.driverVersion };
    const first = compile('reduce.cu', target);
    const second = compile('reduce.cu', target);
    const other = compile('reduce.cu', target, { UNUSED_CONSTANT: 3 });
    assert.equal(first.cached, false);
    assert.equal(second.cached, true);
    assert.equal(other.cached, false, 'defines are part of the key');
    assert.ok(first.image.equals(second.image));
    assert.notEqual(first.key, other.key);
  } finally {
    if (prev === undefined) delete process.env.NEOX_CACHE_DIR;
    else process.env.NEOX_CACHE_DIR = prev;
    rmSync(dir, { recursive: true, force: true });
  }
});

// ---------------------------------------------------------------------------------------------
// On the GPU: kernels against the CPU

test('fill writes the same words as the CPU for every dtype', { skip: noGpu }, () => {
  scope(() => {
    for (const dtype of ['f32', 'bf16', 'f16', 'i32', 'u16', 'u8'] as DType[]) {
      for (const value of [0, 1, -2.5, 1e-3, 300]) {
        const g = one(runKernel('fill', [], { shape: [3, 37], dtype, value }, gpu!)).toArray();
        const c = one(runKernel('fill', [], { shape: [3, 37], dtype, value }, cpu)).toArray();
        assert.deepEqual([...g], [...c], `${dtype} ${value}`);
      }
    }
  });
});

test('cast between f32, bf16, f16 and i32 rounds exactly like the CPU', { skip: noGpu }, () => {
  scope(() => {
    const r = rng(7);
    const n = 5000;
    const v = new Float32Array(n);
    for (let i = 0; i < n; i++) v[i] = (r() * 2 - 1) * 10 ** Math.floor(r() * 12 - 8); // 1e-8 .. 1e4, subnormal f16 too
    v.set([0, -0, 65504, 65520, 1e5, -1e-7, 3.14159, 1 + 2 ** -8, 1 + 3 * 2 ** -9]);
    const types: DType[] = ['f32', 'bf16', 'f16', 'i32'];
    for (const from of types) {
      const gx = tensor(v, [n], from, gpu!); // v rounded (or truncated) to `from`
      const cx = tensor(v, [n], from, cpu);
      const x = cx.toFloat32();
      for (const to of types) {
        if (from === 'i32' && to === 'i32') continue;
        const g = one(runKernel('cast', [gx], { dtype: to })).toArray();
        const c = one(runKernel('cast', [cx], { dtype: to })).toArray();
        for (let i = 0; i < n; i++) {
          // Out of int32 range (f16 infinities) the CPU wraps (ToInt32) and the GPU saturates: unspecified.
          if (to === 'i32' && !(Math.abs(x[i]!) < 2 ** 31)) continue;
          if (g[i] !== c[i]) assert.fail(`cast ${from}→${to}: element ${i} (${v[i]}): got ${g[i]}, CPU ${c[i]}`);
        }
      }
    }
  });
});

test('add, sub, mul match the CPU, same shape and suffix broadcast', { skip: noGpu }, () => {
  for (const dtype of FLOATS) {
    for (const [as, bs] of [[[5, 7], [5, 7]], [[4, 5, 6], [6]], [[4, 5, 6], [5, 6]], [[2048, 1024], [2048, 1024]], [[3000, 700], [700]]]) {
      scope(() => {
        const [ca, ga] = pair(as!, dtype);
        const [cb, gb] = pair(bs!, dtype);
        for (const op of ['add', 'sub', 'mul'] as const) {
          const g = one(runKernel(op, [ga, gb], {})).toFloat32();
          const c = rounded(one(runKernel(op, [ca, cb], {})), dtype);
          assertClose(g, c, { rtol: RTOL[dtype], atol: 0 }, `${op} ${dtype} [${as}] [${bs}]`);
        }
      });
    }
  }
});

test('scale, addInPlace and scaleInPlace match the CPU', { skip: noGpu }, () => {
  for (const dtype of FLOATS) {
    scope(() => {
      const shape = [1537, 129];
      const [cx, gx] = pair(shape, dtype);
      const [cy, gy] = pair(shape, dtype);
      assertClose(one(runKernel('scale', [gx], { alpha: -0.37 })).toFloat32(), rounded(one(runKernel('scale', [cx], { alpha: -0.37 })), dtype),
        { rtol: RTOL[dtype], atol: 1e-30 }, `scale ${dtype}`);
      runKernel('addInPlace', [gx, gy], { alpha: 0.5 });
      runKernel('addInPlace', [cx, cy], { alpha: 0.5 });
      assertClose(gx.toFloat32(), rounded(cx, dtype), { rtol: RTOL[dtype], atol: 1e-7 }, `addInPlace ${dtype}`);
      runKernel('scaleInPlace', [gy], { alpha: 3 });
      runKernel('scaleInPlace', [cy], { alpha: 3 });
      assertClose(gy.toFloat32(), rounded(cy, dtype), { rtol: RTOL[dtype], atol: 0 }, `scaleInPlace ${dtype}`);
    });
  }
});

test('sum, sumSquares and sumRows match the CPU (f32 accumulation)', { skip: noGpu }, () => {
  for (const dtype of FLOATS) {
    for (const shape of [[1], [0], [7, 13], [1000, 33], [4096, 768], [3, 50000], [1 << 22]]) {
      scope(() => {
        const [cx, gx] = pair(shape, dtype);
        const abs = cx.toFloat32().reduce((s, x) => s + Math.abs(x), 0);
        const gs = one(runKernel('sum', [gx], {}));
        assert.equal(gs.dtype, dtype);
        assertClose(gs.toFloat32(), one(runKernel('sum', [cx], {})).toFloat32(), { rtol: RTOL[dtype], atol: 1e-6 * abs + 1e-30 }, `sum ${dtype} [${shape}]`);
        const gq = one(runKernel('sumSquares', [gx], {}));
        assert.equal(gq.dtype, 'f32');
        assertClose(gq.toFloat32(), one(runKernel('sumSquares', [cx], {})).toFloat32(), { rtol: 1e-5, atol: 1e-30 }, `sumSquares ${dtype} [${shape}]`);
        if (shape.length === 2) {
          const gr = one(runKernel('sumRows', [gx], {})).toFloat32();
          const cr = one(runKernel('sumRows', [cx], {}));
          const R = shape[0]!;
          assertClose(gr, rounded(cr, dtype), { rtol: RTOL[dtype], atol: 1e-5 * Math.sqrt(R) }, `sumRows ${dtype} [${shape}]`);
        }
      });
    }
  }
});

test('embedding and embeddingBackward match the CPU; bad ids are reported at the next wait', { skip: noGpu }, () => {
  for (const dtype of FLOATS) {
    scope(() => {
      const [V, C] = [50, 96];
      const r = rng(seed++);
      const ids = Int32Array.from({ length: 3 * 170 }, () => Math.floor(r() * V)); // many repeats: atomics collide
      const [cw, gw] = pair([V, C], dtype);
      const cid = tensor(ids, [3, 170], 'i32', cpu);
      const gid = tensor(ids, [3, 170], 'i32', gpu!);
      const gy = one(runKernel('embedding', [gid, gw], {}));
      assert.deepEqual(gy.shape, [3, 170, C]);
      assertClose(gy.toFloat32(), rounded(one(runKernel('embedding', [cid, cw], {})), dtype), { rtol: 0, atol: 0 }, `embedding ${dtype}`);
      const [cdy, gdy] = pair([3, 170, C], dtype);
      const gdw = one(runKernel('embeddingBackward', [gid, gdy], { vocab: V }));
      assert.equal(gdw.dtype, dtype);
      const cdw = rounded(one(runKernel('embeddingBackward', [cid, cdy], { vocab: V })), dtype);
      assertClose(gdw.toFloat32(), cdw, { rtol: RTOL[dtype], atol: 1e-5 }, `embeddingBackward ${dtype}`);
    });
  }
  scope(() => {
    const w = tensor(values(4 * 8, 'f32'), [4, 8], 'f32', gpu!);
    const y = one(runKernel('embedding', [tensor([1, 4], [2], 'i32', gpu!), w], {}));
    assert.throws(() => y.toArray(), /token id was out of range/);
    assert.deepEqual([...tensor([5], [1], 'f32', gpu!).toArray()], [5], 'the error is reported once');
  });
});

function matmulCase(dtype: FloatT, as: number[], bs: number[], transA: boolean, transB: boolean): void {
  scope(() => {
    const [ca, ga] = pair(as, dtype);
    const [cb, gb] = pair(bs, dtype);
    const g = one(runKernel('matmul', [ga, gb], { transA, transB }));
    const c = one(runKernel('matmul', [ca, cb], { transA, transB }));
    assert.deepEqual(g.shape, c.shape);
    const e = c.toFloat32();
    // f32 accumulation everywhere; the bf16/f16 output is rounded once.
    const tol = dtype === 'f32' ? 1e-5 : RTOL[dtype];
    assertClose(g.toFloat32(), e, { rtol: tol, atol: tol * rms(e) }, `matmul ${dtype} [${as}]${transA ? 'ᵀ' : ''}·[${bs}]${transB ? 'ᵀ' : ''}`);
  });
}

test('matmul matches the CPU: transposes, odd sizes, batches, a shared operand', { skip: noGpu }, () => {
  for (const dtype of FLOATS) {
    for (const [M, N, K] of [[1, 1, 1], [5, 7, 3], [64, 33, 70], [130, 96, 120], [256, 512, 384]] as const) {
      for (const tA of [false, true]) for (const tB of [false, true]) {
        matmulCase(dtype, tA ? [K, M] : [M, K], tB ? [N, K] : [K, N], tA, tB);
      }
    }
    for (const tA of [false, true]) for (const tB of [false, true]) {
      matmulCase(dtype, tA ? [3, 2, 9, 17] : [3, 2, 17, 9], tB ? [3, 2, 11, 9] : [3, 2, 9, 11], tA, tB); // batched
      matmulCase(dtype, tA ? [4, 9, 17] : [4, 17, 9], tB ? [11, 9] : [9, 11], tA, tB); // b shared
      matmulCase(dtype, tA ? [9, 17] : [17, 9], tB ? [4, 11, 9] : [4, 9, 11], tA, tB); // a shared
    }
  }
});

test('GEMM tuning file (CPU-side): the first choice of a shape stays, an entry the caller could not use is replaced, writes merge', () => {
  const dir = mkdtempSync(join(tmpdir(), 'neox-gemm-file-'));
  try {
    const file = join(dir, 'gemm', 'GPU-cublaslt1.json');
    assert.deepEqual(readTuning(file), {}, 'no file yet');
    assert.deepEqual(writeTuning(file, 'k1', 'aa'), { k1: 'aa' });
    assert.deepEqual(writeTuning(file, 'k1', 'bb'), { k1: 'aa' }, 'another process timed k1 too: the first choice stays');
    assert.deepEqual(writeTuning(file, 'k2', 'cc'), { k1: 'aa', k2: 'cc' });
    assert.deepEqual(writeTuning(file, 'k1', 'dd', 'aa'), { k1: 'dd', k2: 'cc' }, 'a stale entry (not among the candidates) is replaced');
    assert.deepEqual(readTuning(file), { k1: 'dd', k2: 'cc' });
    writeFileSync(file, '{ not json');
    assert.deepEqual(readTuning(file), {}, 'an unreadable file means tune again');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('GEMM autotuning: candidates timed once per shape, the choice kept in the tuning file and reused by a new process (same bits)', { skip: noGpu }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'neox-gemm-'));
  const saved = process.env.NEOX_CACHE_DIR;
  process.env.NEOX_CACHE_DIR = dir; // the tuning file's folder is read when a Blas is made
  let first: Blas;
  try {
    first = new Blas(gpu!);
  } finally {
    if (saved === undefined) delete process.env.NEOX_CACHE_DIR;
    else process.env.NEOX_CACHE_DIR = saved;
  }
  try {
    assert.ok(first.autotune, 'autotuning is on unless NEOX_GEMM_AUTOTUNE=0');
    assert.ok(first.tuningFile.startsWith(join(dir, 'gemm')), first.tuningFile);
    scope(() => {
      const [M, N, K] = [512, 384, 256];
      const [ac, ag] = pair([M, K], 'bf16');
      const [bc, bg] = pair([N, K], 'bf16');
      const [biasc, biasg] = pair([N], 'bf16');
      const expected = rounded(runKernel('linear', [ac, bc, biasc], {})[0]!, 'bf16');
      const run = (blas: Blas) => {
        const d = tensor(new Float32Array(M * N), [M, N], 'bf16', gpu!);
        blas.gemm({ dtype: 'bf16', transA: false, transB: true, M, N, K, batch: 1, strideA: 0, strideB: 0, a: ptr(ag), b: ptr(bg), d: ptr(d), bias: ptr(biasg) });
        return d.toFloat32();
      };
      const y1 = run(first);
      assert.deepEqual(first.planChoices, { heuristic: 0, timed: 1, file: 0 }, 'the new shape was timed');
      const file = JSON.parse(readFileSync(first.tuningFile, 'utf8')) as Record<string, string>;
      assert.equal(Object.keys(file).length, 1);
      assert.match(Object.values(file)[0]!, /^[0-9a-f]{128}$/, 'the algorithm\'s 64 bytes');
      const y2 = run(first); // cached plan: no new timing
      assert.deepEqual(first.planChoices, { heuristic: 0, timed: 1, file: 0 });
      assert.deepEqual(y2, y1);
      // A Blas made now (as a new process would) reads the choice from the file.
      let third: Blas;
      process.env.NEOX_CACHE_DIR = dir;
      try {
        third = new Blas(gpu!);
      } finally {
        if (saved === undefined) delete process.env.NEOX_CACHE_DIR;
        else process.env.NEOX_CACHE_DIR = saved;
      }
      const y3 = run(third);
      assert.deepEqual(third.planChoices, { heuristic: 0, timed: 0, file: 1 }, 'the choice came from the tuning file');
      assert.deepEqual(y3, y1, 'the same algorithm gives the same bits');
      third.dispose();
      for (let i = 0; i < expected.length; i++) {
        assert.ok(Math.abs(y1[i]! - expected[i]!) <= 2e-2 * (1 + Math.abs(expected[i]!)), `y[${i}] = ${y1[i]}, expected ${expected[i]}`);
      }
    });
  } finally {
    first.dispose();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('linear (x·wᵀ + b, bias through the cuBLASLt epilogue) matches the CPU', { skip: noGpu }, () => {
  for (const dtype of FLOATS) {
    for (const [xs, N] of [[[2, 3, 4], 6], [[64, 768], 2304], [[1, 7], 1], [[512, 100], 33]] as const) {
      for (const withBias of [false, true]) {
        scope(() => {
          const K = xs[xs.length - 1]!;
          const [cx, gx] = pair([...xs], dtype);
          const [cw, gw] = pair([N, K], dtype, 0.1);
          const [cb, gb] = pair([N], dtype);
          const g = one(runKernel('linear', withBias ? [gx, gw, gb] : [gx, gw], {}));
          const e = one(runKernel('linear', withBias ? [cx, cw, cb] : [cx, cw], {})).toFloat32();
          const tol = dtype === 'f32' ? 1e-5 : RTOL[dtype];
          assertClose(g.toFloat32(), e, { rtol: tol, atol: tol * rms(e) }, `linear ${dtype} [${xs}]·[${N},${K}]ᵀ${withBias ? ' + b' : ''}`);
        });
      }
    }
  }
});

test('linearGelu (cuBLASLt GELU_AUX / GELU_AUX_BIAS epilogue) matches the CPU: gelu_tanh output and pre-activation', { skip: noGpu }, () => {
  for (const dtype of FLOATS) {
    for (const [xs, N] of [[[2, 3, 8], 16], [[256, 768], 3072], [[1, 64], 8]] as const) {
      for (const withBias of [false, true]) {
        scope(() => {
          const K = xs[xs.length - 1]!;
          const [cx, gx] = pair([...xs], dtype);
          const [cw, gw] = pair([N, K], dtype, 0.1);
          const [cb, gb] = pair([N], dtype);
          const [gy, gpre] = runKernel('linearGelu', withBias ? [gx, gw, gb] : [gx, gw], {});
          const [cy, cpre] = runKernel('linearGelu', withBias ? [cx, cw, cb] : [cx, cw], {});
          const tol = dtype === 'f32' ? 1e-5 : RTOL[dtype];
          const what = `linearGelu ${dtype} [${xs}]·[${N},${K}]ᵀ${withBias ? ' + b' : ''}`;
          const e = cpre!.toFloat32();
          assertClose(gpre!.toFloat32(), e, { rtol: tol, atol: tol * rms(e) }, `${what}: pre-activation`);
          // cuBLASLt's GELU is documented as the tanh form; 2e-3 covers its rounding of the activation.
          const ey = cy!.toFloat32();
          assertClose(gy!.toFloat32(), ey, { rtol: Math.max(tol, 2e-3), atol: Math.max(tol, 2e-3) * rms(ey) }, `${what}: gelu_tanh`);
        });
      }
    }
  }
});

/** torch.optim.AdamW's update in f64 (the reference the fused kernel follows). */
function adamwReference(p: Float64Array, g: ArrayLike<number>, m: Float64Array, v: Float64Array, o: { lr: number; beta1: number; beta2: number; eps: number; weightDecay: number; step: number; gradScale: number }): void {
  const bc1 = 1 - o.beta1 ** o.step;
  const bc2 = 1 - o.beta2 ** o.step;
  for (let i = 0; i < p.length; i++) {
    const gi = g[i]! * o.gradScale;
    p[i] = p[i]! * (1 - o.lr * o.weightDecay);
    m[i] = o.beta1 * m[i]! + (1 - o.beta1) * gi;
    v[i] = o.beta2 * v[i]! + (1 - o.beta2) * gi * gi;
    p[i] = p[i]! - (o.lr / bc1) * m[i]! / (Math.sqrt(v[i]!) / Math.sqrt(bc2) + o.eps);
  }
}

test('adamw (fused, f32 master, optional bf16/f16 copy) matches torch.optim.AdamW over three steps', { skip: noGpu }, () => {
  for (const gradType of ['f32', 'bf16'] as const) {
    for (const lowType of [null, 'bf16', 'f16'] as const) {
      scope(() => {
        const n = 100_003;
        const p0 = values(n, 'f32');
        const P = Float64Array.from(p0), M = new Float64Array(n), Vv = new Float64Array(n);
        const p = tensor(p0, [n], 'f32', gpu!);
        const m = tensor(new Float32Array(n), [n], 'f32', gpu!);
        const v = tensor(new Float32Array(n), [n], 'f32', gpu!);
        const low = lowType ? tensor(new Float32Array(n), [n], lowType, gpu!) : null;
        // The CPU kernel, once written (backends/cpu/kernels/optim.ts), must agree as well.
        const onCpu = hasKernel('adamw', 'cpu')
          ? [tensor(p0, [n], 'f32', cpu), tensor(new Float32Array(n), [n], 'f32', cpu), tensor(new Float32Array(n), [n], 'f32', cpu)] as const
          : null;
        for (let step = 1; step <= 3; step++) {
          const gv = values(n, gradType, 0.01);
          const g = tensor(gv, [n], gradType, gpu!);
          const attrs = { lr: 1e-3, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, step, gradScale: 0.5 };
          runKernel('adamw', low ? [p, g, m, v, low] : [p, g, m, v], attrs);
          adamwReference(P, gv, M, Vv, attrs);
          if (onCpu) runKernel('adamw', [onCpu[0], tensor(gv, [n], 'f32', cpu), onCpu[1], onCpu[2]], attrs);
        }
        if (onCpu) assertClose(p.toFloat32(), onCpu[0].toFloat32(), { rtol: 1e-5, atol: 1e-7 }, 'adamw: CUDA vs CPU kernel');
        const what = `adamw grad ${gradType}${lowType ? ` + ${lowType} copy` : ''}`;
        assertClose(p.toFloat32(), P, { rtol: 1e-5, atol: 1e-7 }, `${what}: param`);
        assertClose(m.toFloat32(), M, { rtol: 1e-5, atol: 1e-9 }, `${what}: exp_avg`);
        assertClose(v.toFloat32(), Vv, { rtol: 1e-5, atol: 1e-12 }, `${what}: exp_avg_sq`);
        if (low) assertClose(low.toFloat32(), rounded(p, lowType!), { rtol: 0, atol: 0 }, `${what}: low-precision copy`);
      });
    }
  }
});

test('clipFactor and adamw with a device scale agree with the CPU; a NaN factor skips the update', { skip: noGpu }, () => {
  scope(() => {
    for (const [sumSq, maxNorm, normScale] of [[25, 1, 1], [25, 10, 1], [4e6, 1, 1 / 1024], [NaN, 1, 1], [Infinity, 0, 1]] as const) {
      const onGpu = runKernel('clipFactor', [tensor([sumSq], [], 'f32', gpu!)], { maxNorm, normScale })[0]!.item();
      const onCpu = runKernel('clipFactor', [tensor([sumSq], [], 'f32', cpu)], { maxNorm, normScale })[0]!.item();
      if (Number.isNaN(onCpu)) assert.ok(Number.isNaN(onGpu), `clipFactor(${sumSq}, ${maxNorm}) is NaN`);
      else assertClose([onGpu], [onCpu], { rtol: 1e-6 }, `clipFactor(${sumSq}, ${maxNorm}, ${normScale})`);
    }
    const n = 4099;
    const p0 = values(n, 'f32'), gv = values(n, 'f32', 0.01);
    const attrs = { lr: 1e-3, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, step: 1, gradScale: 0.5, scaleInput: true };
    for (const factor of [0.25, NaN]) {
      const [p, m, v] = [tensor(p0, [n], 'f32', gpu!), tensor(new Float32Array(n), [n], 'f32', gpu!), tensor(new Float32Array(n), [n], 'f32', gpu!)];
      const [pc, mc, vc] = [tensor(p0, [n], 'f32', cpu), tensor(new Float32Array(n), [n], 'f32', cpu), tensor(new Float32Array(n), [n], 'f32', cpu)];
      runKernel('adamw', [p, tensor(gv, [n], 'f32', gpu!), m, v, tensor([factor], [], 'f32', gpu!)], attrs);
      runKernel('adamw', [pc, tensor(gv, [n], 'f32', cpu), mc, vc, tensor([factor], [], 'f32', cpu)], attrs);
      assertClose(p.toFloat32(), pc.toFloat32(), { rtol: 1e-5, atol: 1e-7 }, `adamw factor ${factor}: param`);
      assertClose(m.toFloat32(), mc.toFloat32(), { rtol: 1e-5, atol: 1e-9 }, `adamw factor ${factor}: exp_avg`);
      if (Number.isNaN(factor)) assert.deepEqual(p.toFloat32(), Float32Array.from(p0), 'skipped: parameters untouched');
    }
  });
});

test('multi-tensor kernels across chunk boundaries: sumSquares over many tensors and adamwMulti (bitwise = adamw)', { skip: noGpu }, () => {
  scope(() => {
    const sizes = [1, 65535, 65536, 65537, 200003];
    for (const dtype of ['f32', 'bf16'] as const) {
      const vals = sizes.map((n) => values(n, dtype));
      const onGpu = runKernel('sumSquares', vals.map((v, k) => tensor(v, [sizes[k]!], dtype, gpu!)), {})[0]!.item();
      const onCpu = runKernel('sumSquares', vals.map((v, k) => tensor(v, [sizes[k]!], 'f32', cpu)), {})[0]!.item();
      assertClose([onGpu], [onCpu], { rtol: 1e-5 }, `sumSquares of ${sizes.length} ${dtype} tensors`);
    }
    const o = { lr: 1e-3, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, step: 2, gradScale: 0.5 };
    for (const gradType of ['f32', 'bf16'] as const) {
      for (const factor of [null, 0.25, NaN]) {
        const init = sizes.map((n) => [values(n, 'f32'), values(n, gradType, 0.01), values(n, 'f32', 0.01), Float32Array.from(values(n, 'f32', 0.001), Math.abs)]);
        const make = () => init.map(([p, g, m, v], k) => [tensor(p!, [sizes[k]!], 'f32', gpu!), tensor(g!, [sizes[k]!], gradType, gpu!),
          tensor(m!, [sizes[k]!], 'f32', gpu!), tensor(v!, [sizes[k]!], 'f32', gpu!)]);
        const scale = factor === null ? [] : [tensor([factor], [], 'f32', gpu!)];
        const one = make(), many = make();
        for (const q of one) runKernel('adamw', [...q, ...scale], { ...o, scaleInput: factor !== null });
        runKernel('adamwMulti', [...many.flat(), ...scale], { ...o, scaleInput: factor !== null });
        one.forEach((q, k) => [0, 2, 3].forEach((j) => assert.deepEqual(many[k]![j]!.toFloat32(), q[j]!.toFloat32(), `adamwMulti ${gradType} factor ${factor}: tensor ${k}.${j}`)));
      }
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Coverage, and the kernels ported from the CPU's norm, activation, loss, dropout, shape, rotary

test('every declared kernel has a CUDA implementation', () => {
  const missing = KERNEL_NAMES.filter((k) => !hasKernel(k, 'cuda'));
  assert.deepEqual(missing, []);
});

/** Runs `kernel` on both backends (inputs given as [cpu, gpu] pairs or shared non-float tensors). */
function both(kernel: KernelName, inputs: ([Tensor, Tensor] | Tensor)[], attrs: unknown): [Tensor[], Tensor[]] {
  const on = (t: Tensor, be: typeof cpu): Tensor => (t.backend === be ? t : copyTo(t, be));
  const c = runKernel(kernel, inputs.map((i) => (Array.isArray(i) ? i[0] : on(i, cpu))), attrs as never);
  const g = runKernel(kernel, inputs.map((i) => (Array.isArray(i) ? i[1] : on(i, gpu!))), attrs as never);
  return [c, g];
}

/** The same values on another backend (tensor() takes bf16/f16 as numbers, not words). */
function copyTo(t: Tensor, be: typeof cpu): Tensor {
  return tensor(t.dtype === 'bf16' || t.dtype === 'f16' ? t.toFloat32() : t.toArray(), [...t.shape], t.dtype, be);
}

/** GPU output vs CPU output (rounded to the GPU's dtype), with a tolerance relative to each element and to the rms. */
function close(g: Tensor, c: Tensor, rtol: number, what: string, rmsTol = rtol): void {
  assert.deepEqual(g.shape, c.shape, `${what}: shape`);
  const e = rounded(c, g.dtype);
  // f16 values under 2^-14 are subnormal, spaced 2^-24 apart: one step there is a rounding, not an error.
  const floor = g.dtype === 'f16' ? 2 ** -24 : 1e-30;
  assertClose(g.toFloat32(), e, { rtol, atol: rmsTol * rms(e) + floor }, what);
}

test('layerNorm, rmsNorm, scaleNorm and their backward passes match the CPU', { skip: noGpu }, () => {
  for (const dtype of FLOATS) {
    const tol = dtype === 'f32' ? 1e-4 : dtype === 'bf16' ? 2e-2 : 4e-3;
    // Row groups of one to eight warps, several blocks walking many rows, element loads (C = 33), the wide-row fallback (20000).
    for (const [R, C] of [[7, 33], [64, 768], [3000, 768], [1030, 2048], [300, 4096], [5, 20000]] as const) {
      scope(() => {
        const x = pair([R, C], dtype, 2);
        const w = pair([C], dtype);
        const b = pair([C], dtype);
        const dy = pair([R, C], dtype);
        const at = `${dtype} [${R}, ${C}]`;
        for (const withBias of [true, false]) {
          const [c, g] = both('layerNorm', withBias ? [x, w, b] : [x, w], { eps: 1e-5 });
          close(g[0]!, c[0]!, tol, `layerNorm y ${at}`);
          close(g[1]!, c[1]!, 1e-4, `layerNorm mean ${at}`);
          close(g[2]!, c[2]!, 1e-4, `layerNorm rstd ${at}`);
          const cb = runKernel('layerNormBackward', [dy[0], x[0], w[0], c[1]!, c[2]!], {});
          const gb = runKernel('layerNormBackward', [dy[1], x[1], w[1], g[1]!, g[2]!], {});
          ['dx', 'dw', 'db'].forEach((n, i) => close(gb[i]!, cb[i]!, tol, `layerNormBackward ${n} ${at}`));
          // Deterministic: the same inputs give the same bits.
          const again = runKernel('layerNormBackward', [dy[1], x[1], w[1], g[1]!, g[2]!], {});
          again.forEach((t, i) => assert.deepEqual(t.toArray(), gb[i]!.toArray(), `layerNormBackward ${at}: output ${i} differs between two runs`));
        }
        const [c, g] = both('rmsNorm', [x, w], { eps: 1e-6 });
        close(g[0]!, c[0]!, tol, `rmsNorm y ${at}`);
        close(g[1]!, c[1]!, 1e-4, `rmsNorm rstd ${at}`);
        const cb = runKernel('rmsNormBackward', [dy[0], x[0], w[0], c[1]!], {});
        const gb = runKernel('rmsNormBackward', [dy[1], x[1], w[1], g[1]!], {});
        ['dx', 'dw'].forEach((n, i) => close(gb[i]!, cb[i]!, tol, `rmsNormBackward ${n} ${at}`));
        const gain = pair([1], dtype);
        for (const eps of [1e-5, 1e4]) { // the second clamps every row
          const [cs, gs] = both('scaleNorm', [x, gain], { eps });
          close(gs[0]!, cs[0]!, tol, `scaleNorm y ${at} eps ${eps}`);
          close(gs[1]!, cs[1]!, 1e-4, `scaleNorm rnorm ${at} eps ${eps}`);
          const csb = runKernel('scaleNormBackward', [dy[0], x[0], gain[0], cs[1]!], { eps });
          const gsb = runKernel('scaleNormBackward', [dy[1], x[1], gain[1], gs[1]!], { eps });
          ['dx', 'dg'].forEach((n, i) => close(gsb[i]!, csb[i]!, tol, `scaleNormBackward ${n} ${at} eps ${eps}`));
        }
      });
    }
  }
});

test('activations, gated activations and softmax (forward and backward) match the CPU', { skip: noGpu }, () => {
  for (const dtype of FLOATS) {
    const tol = dtype === 'f32' ? 2e-5 : RTOL[dtype] * 2;
    for (const kind of ['gelu', 'gelu_tanh', 'relu', 'silu'] as const) {
      scope(() => {
        const x = pair([33, 130], dtype, 4);
        const dy = pair([33, 130], dtype);
        let [c, g] = both('activation', [x], { kind });
        close(g[0]!, c[0]!, tol, `activation ${kind} ${dtype}`, 1e-6);
        [c, g] = both('activationBackward', [x, dy], { kind });
        close(g[0]!, c[0]!, tol, `activationBackward ${kind} ${dtype}`, 1e-6);
        const dyh = pair([33, 65], dtype);
        [c, g] = both('gatedActivation', [x], { kind });
        close(g[0]!, c[0]!, tol, `gatedActivation ${kind} ${dtype}`, 1e-6);
        [c, g] = both('gatedActivationBackward', [x, dyh], { kind });
        close(g[0]!, c[0]!, tol, `gatedActivationBackward ${kind} ${dtype}`, 1e-6);
      });
    }
    for (const shape of [[7, 33], [64, 1000], [3, 50000], [2, 3, 5]]) {
      scope(() => {
        const x = pair(shape, dtype, 5);
        const dy = pair(shape, dtype);
        const [c, g] = both('softmax', [x], {});
        close(g[0]!, c[0]!, tol, `softmax ${dtype} [${shape}]`, 1e-6);
        const cb = runKernel('softmaxBackward', [c[0]!, dy[0]], {});
        const gb = runKernel('softmaxBackward', [g[0]!, dy[1]], {});
        close(gb[0]!, cb[0]!, dtype === 'f32' ? 1e-4 : 3 * RTOL[dtype], `softmaxBackward ${dtype} [${shape}]`, dtype === 'f32' ? 1e-4 : 3 * RTOL[dtype]);
      });
    }
  }
});

test('crossEntropy and its backward match the CPU; ignored labels give 0; bad labels are reported', { skip: noGpu }, () => {
  for (const dtype of FLOATS) {
    // 50304 (Pythia's padded vocabulary): whole 16-byte vectors; 50277 and 1003: scalar heads and tails.
    for (const [N, V] of [[37, 1000], [8, 50304], [64, 50304], [5, 50277], [9, 1003], [3, 7]] as const) {
      scope(() => {
        const logits = pair([N, V], dtype, 8);
        const r = rng(seed++);
        const lv = Int32Array.from({ length: N }, (_, i) => (i % 5 === 4 ? -100 : Math.floor(r() * V)));
        const labels = tensor(lv, [N], 'i32', cpu);
        const [c, g] = both('crossEntropy', [logits, labels], {});
        close(g[0]!, c[0]!, 1e-5, `crossEntropy loss ${dtype} [${N}, ${V}]`, 1e-6);
        close(g[1]!, c[1]!, 1e-5, `crossEntropy lse ${dtype} [${N}, ${V}]`, 1e-6);
        const lossG = g[0]!.toFloat32();
        for (let i = 0; i < N; i++) if (lv[i]! < 0) assert.equal(lossG[i], 0);
        const dloss = pair([N], 'f32');
        const cb = runKernel('crossEntropyBackward', [logits[0], labels, c[1]!, dloss[0]], {});
        const gb = runKernel('crossEntropyBackward', [logits[1], tensor(lv, [N], 'i32', gpu!), g[1]!, dloss[1]], {});
        close(gb[0]!, cb[0]!, dtype === 'f32' ? 1e-4 : 2 * RTOL[dtype], `crossEntropyBackward ${dtype} [${N}, ${V}]`, 1e-5);
      });
    }
  }
  scope(() => {
    const out = runKernel('crossEntropy', [tensor(values(2 * 5, 'f32'), [2, 5], 'f32', gpu!), tensor([1, 5], [2], 'i32', gpu!)], {});
    assert.throws(() => out[0]!.toArray(), /label was ≥ the vocabulary size/);
  });
});

test('dropout reproduces the CPU mask and values bit for bit (Philox4x32-10)', { skip: noGpu }, () => {
  for (const p of [0, 0.1, 0.5, 0.9, 1]) {
    for (const [seedV, offset] of [[0, 0], [12345, 1], [2 ** 40 + 7, 3], [99, 2 ** 33 + 5]] as const) {
      for (const n of [1, 5, 1001, 100_003]) {
        scope(() => {
          const x = pair([n], 'f32');
          const [c, g] = both('dropout', [x], { p, seed: seedV, offset });
          const gv = g[0]!.toFloat32(), cv = c[0]!.toFloat32();
          for (let i = 0; i < n; i++) {
            if (!Object.is(gv[i], cv[i])) assert.fail(`dropout p ${p} seed ${seedV} offset ${offset} n ${n}: element ${i}: got ${gv[i]}, CPU ${cv[i]}`);
          }
        });
      }
    }
  }
  scope(() => {
    const x = pair([4097], 'bf16');
    const [c, g] = both('dropout', [x], { p: 0.3, seed: 7, offset: 11 });
    assert.deepEqual([...g[0]!.toFloat32()], [...rounded(c[0]!, 'bf16')], 'bf16 dropout = CPU f32 dropout rounded');
  });
});

test('permute, split and concat move the same elements as the CPU for every element size', { skip: noGpu }, () => {
  const cases: [number[], number[]][] = [
    [[2, 3, 4, 5], [0, 2, 1, 3]], [[2, 3, 4, 5], [3, 2, 1, 0]], [[2, 3, 4, 5], [1, 0, 2, 3]], [[2, 3, 4, 5], [0, 1, 3, 2]],
    [[2, 1, 3], [2, 1, 0]], [[4, 64, 12, 64], [0, 2, 1, 3]], [[7], [0]], [[2, 3, 2, 3, 2, 3], [5, 3, 1, 4, 2, 0]],
  ];
  for (const dtype of ['f32', 'bf16', 'i32', 'u8', 'f64'] as DType[]) {
    scope(() => {
      const make = (shape: number[]): Tensor => {
        const n = shape.reduce((a, b) => a * b, 1);
        const v = Array.from({ length: n }, (_, i) => (dtype === 'u8' ? i % 251 : i * 0.5 - 7));
        return tensor(v, shape, dtype, cpu);
      };
      for (const [shape, perm] of cases) {
        const [c, g] = both('permute', [make(shape)], { perm });
        assert.deepEqual(g[0]!.shape, c[0]!.shape);
        assert.deepEqual([...g[0]!.toArray()], [...c[0]!.toArray()], `permute ${dtype} [${shape}] by [${perm}]`);
      }
      for (const [shape, axis, sizes] of [[[4, 10, 6], 1, [3, 0, 7]], [[4, 10, 6], -1, [2, 4]], [[4, 10, 6], 0, [1, 3]], [[5], 0, [5]]] as const) {
        const x = make([...shape]);
        const [c, g] = both('split', [x], { axis, sizes: [...sizes] });
        assert.equal(g.length, sizes.length);
        g.forEach((t, i) => assert.deepEqual([...t.toArray()], [...c[i]!.toArray()], `split ${dtype} [${shape}] axis ${axis} part ${i}`));
        const back = runKernel('concat', g, { axis });
        assert.deepEqual([...back[0]!.toArray()], [...x.toArray()], `concat ${dtype} [${shape}] axis ${axis}`);
      }
    });
  }
});

test('rotary (full, partial, none; offset; inverse; bhsd and bshd layouts) matches the CPU', { skip: noGpu }, () => {
  for (const dtype of FLOATS) {
    for (const rotaryDims of [16, 8, 0]) {
      for (const offset of [0, 5]) {
        for (const inverse of [false, true]) {
          for (const layout of ['bhsd', 'bshd'] as const) {
            scope(() => {
              // bhsd [B, H, T, D] = [2, 3, 17, 16]; bshd [B, T, H, D] = [2, 17, 3, 16] (positions along axis 1)
              const x = pair(layout === 'bshd' ? [2, 17, 3, 16] : [2, 3, 17, 16], dtype, 2);
              const [c, g] = both('rotary', [x], { rotaryDims, base: 10000, offset, inverse, layout });
              close(g[0]!, c[0]!, dtype === 'f32' ? 1e-5 : RTOL[dtype], `rotary ${layout} ${dtype} dims ${rotaryDims} offset ${offset}${inverse ? ' inverse' : ''}`, 1e-6);
            });
          }
        }
      }
    }
  }
});
