// A small benchmark of the CUDA backend (a lab, not a test): launch overhead, memory-bound kernels
// against the copy ceiling, cuBLASLt GEMMs against the bf16 peak, NVRTC compile and cache times.
// Run on a GPU host:  node dist/src/backends/cuda/bench.js   (prints a table, then one JSON line)
//
// GPU times come from CUDA events around 10 back-to-back calls after 3 warm-up calls, best of 3.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import '../cpu/index.js';
import '../../ops/index.js'; // registers reshape
import { type DType, type KernelAttrs, type KernelName, type Tensor, runKernel, scope, tensor } from '../../src/tensor/index.js';
import type { CudaBackend } from '../../src/backends/cuda/backend.js';
import { compile, kernelSources } from '../../src/backends/cuda/compiler.js';
import { initCuda } from '../../src/backends/cuda/index.js';

interface Row {
  what: string;
  ms: number;
  metric: string;
}

function rand(n: number, dtype: DType, be: CudaBackend, scale = 1): Tensor {
  const v = new Float32Array(n);
  let s = 12345;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    v[i] = ((s / 4294967296) * 2 - 1) * scale;
  }
  return tensor(v, [n], dtype, be);
}

/** GPU ms per call: the best of 3 timings of `iters` back-to-back calls, after `warmup` calls. */
function timeOp(be: CudaBackend, fn: () => void, warmup = 3, iters = 10): number {
  for (let i = 0; i < warmup; i++) scope(fn);
  let best = Infinity;
  for (let rep = 0; rep < 3; rep++) {
    best = Math.min(best, be.time(() => {
      for (let i = 0; i < iters; i++) scope(fn);
    }) / iters);
  }
  return best;
}

function run<K extends KernelName>(k: K, inputs: Tensor[], attrs: KernelAttrs[K]): void {
  runKernel(k, inputs, attrs);
}

export function benchCuda(): Row[] {
  const rows: Row[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'neox-bench-cache-'));
  const prev = process.env.NEOX_CACHE_DIR;
  process.env.NEOX_CACHE_DIR = dir;
  let be: CudaBackend;
  try {
    const t0 = performance.now();
    const maybe = initCuda() as CudaBackend | null;
    if (!maybe) throw new Error('no CUDA device');
    be = maybe;
    rows.push({ what: 'initCuda (driver, context, stream, libraries)', ms: performance.now() - t0, metric: be.device.name });
    const target = { arch: be.device.arch, driverVersion: be.device.driverVersion };
    for (const f of kernelSources()) {
      const cold = compile(f, target);
      const warm = compile(f, target);
      rows.push({ what: `NVRTC ${f} cold / cached`, ms: cold.ms, metric: `${warm.ms.toFixed(2)} ms cached, ${cold.image.length} B ${cold.format}` });
    }
  } finally {
    if (prev === undefined) delete process.env.NEOX_CACHE_DIR;
    else process.env.NEOX_CACHE_DIR = prev;
    rmSync(dir, { recursive: true, force: true });
  }

  // Launch overhead: a 1-element kernel, many times; host time per launch and GPU time per kernel.
  scope(() => {
    const x = rand(1, 'f32', be);
    run('scaleInPlace', [x], { alpha: 1 });
    be.synchronize();
    const n = 20000;
    const h0 = performance.now();
    const gpuMs = be.time(() => {
      for (let i = 0; i < n; i++) runKernel('scaleInPlace', [x], { alpha: 1 });
    });
    const hostUs = ((performance.now() - h0) * 1000) / n;
    rows.push({ what: `launch: scaleInPlace on 1 element ×${n}`, ms: gpuMs / n, metric: `${hostUs.toFixed(2)} µs host per launch (incl. runKernel)` });
  });

  const gbps = (bytes: number, ms: number): string => `${(bytes / ms / 1e6).toFixed(0)} GB/s`;
  scope(() => {
    const n = 1 << 28;
    const a = rand(n, 'bf16', be), b = rand(n, 'bf16', be);
    const ms = timeOp(be, () => run('add', [a, b], {}));
    rows.push({ what: 'add bf16, 2^28 elements', ms, metric: gbps(6 * n, ms) });
    const bb = rand(n / 1024, 'bf16', be);
    const msb = timeOp(be, () => run('add', [a, bb], {}));
    rows.push({ what: 'add bf16, 2^28 + broadcast [2^18]', ms: msb, metric: gbps(4 * n, msb) });
  });
  scope(() => {
    const n = 1 << 27;
    const a = rand(n, 'f32', be), b = rand(n, 'f32', be);
    const ms = timeOp(be, () => run('add', [a, b], {}));
    rows.push({ what: 'add f32, 2^27 elements', ms, metric: gbps(12 * n, ms) });
    const mc = timeOp(be, () => run('cast', [a], { dtype: 'bf16' }));
    rows.push({ what: 'cast f32→bf16, 2^27', ms: mc, metric: gbps(6 * n, mc) });
    const ms2 = timeOp(be, () => run('sum', [a], {}));
    rows.push({ what: 'sum f32, 2^27', ms: ms2, metric: gbps(4 * n, ms2) });
    const ms3 = timeOp(be, () => run('sumSquares', [a], {}));
    rows.push({ what: 'sumSquares f32, 2^27', ms: ms3, metric: gbps(4 * n, ms3) });
  });
  scope(() => {
    const [R, C] = [32768, 3072];
    const x = rand(R * C, 'bf16', be);
    const x2 = runKernel('reshape', [x], { shape: [R, C] })[0]!;
    const ms = timeOp(be, () => run('sumRows', [x2], {}));
    rows.push({ what: `sumRows bf16 [${R}, ${C}] (bias grad)`, ms, metric: gbps(2 * R * C, ms) });
  });
  scope(() => {
    const n = 1 << 27;
    const p = rand(n, 'f32', be), g = rand(n, 'f32', be, 0.01), m = rand(n, 'f32', be, 0), v = rand(n, 'f32', be, 0);
    const low = rand(n, 'bf16', be);
    const attrs = { lr: 1e-4, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, step: 1, gradScale: 1 };
    const ms = timeOp(be, () => run('adamw', [p, g, m, v, low], attrs));
    rows.push({ what: 'adamw f32 + bf16 copy, 2^27 params', ms, metric: gbps(30 * n, ms) });
  });
  scope(() => {
    const [V, C, N] = [50304, 2048, 16384];
    const w = rand(V * C, 'bf16', be);
    const w2 = runKernel('reshape', [w], { shape: [V, C] })[0]!;
    const idv = new Int32Array(N);
    for (let i = 0; i < N; i++) idv[i] = (i * 7919) % V;
    const ids = tensor(idv, [N], 'i32', be);
    const ms = timeOp(be, () => run('embedding', [ids, w2], {}));
    rows.push({ what: `embedding bf16 ${N} tokens × ${C}`, ms, metric: gbps(4 * N * C, ms) });
    const dy = runKernel('reshape', [rand(N * C, 'bf16', be)], { shape: [N, C] })[0]!;
    const mb = timeOp(be, () => run('embeddingBackward', [ids, dy], { vocab: V }));
    rows.push({ what: `embeddingBackward bf16 ${N} × ${C}, V ${V}`, ms: mb, metric: gbps(2 * N * C + 10 * V * C, mb) });
  });

  const shaped = (shape: number[], dtype: DType, scale = 1): Tensor =>
    runKernel('reshape', [rand(shape.reduce((a, b) => a * b, 1), dtype, be, scale)], { shape })[0]!;
  scope(() => {
    const [R, C] = [16384, 2048];
    const x = shaped([R, C], 'bf16'), w = shaped([C], 'bf16'), b = shaped([C], 'bf16'), dy = shaped([R, C], 'bf16');
    const ms = timeOp(be, () => run('layerNorm', [x, w, b], { eps: 1e-5 }));
    rows.push({ what: `layerNorm bf16 [${R}, ${C}]`, ms, metric: gbps(4 * R * C, ms) });
    const [, mean, rstd] = runKernel('layerNorm', [x, w, b], { eps: 1e-5 });
    const mb = timeOp(be, () => run('layerNormBackward', [dy, x, w, mean!, rstd!], {}));
    rows.push({ what: `layerNormBackward bf16 [${R}, ${C}]`, ms: mb, metric: gbps(6 * R * C, mb) });
    const mg = timeOp(be, () => run('activation', [x], { kind: 'gelu' }));
    rows.push({ what: `gelu bf16 [${R}, ${C}]`, ms: mg, metric: gbps(4 * R * C, mg) });
    const md = timeOp(be, () => run('dropout', [x], { p: 0.1, seed: 1, offset: 0 }));
    rows.push({ what: `dropout bf16 [${R}, ${C}]`, ms: md, metric: gbps(4 * R * C, md) });
    const sm = timeOp(be, () => run('softmax', [x], {}));
    rows.push({ what: `softmax bf16 [${R}, ${C}]`, ms: sm, metric: gbps(4 * R * C, sm) });
  });
  scope(() => {
    const [B, T, H, D] = [8, 2048, 16, 128];
    const x = shaped([B, T, H, D], 'bf16');
    const ms = timeOp(be, () => run('permute', [x], { perm: [0, 2, 1, 3] }));
    rows.push({ what: `permute bf16 [${B}, ${T}, ${H}, ${D}] → BHTD`, ms, metric: gbps(4 * B * T * H * D, ms) });
    const xb = shaped([B, H, T, D], 'bf16');
    const mr = timeOp(be, () => run('rotary', [xb], { rotaryDims: 32, base: 10000, offset: 0, inverse: false }));
    rows.push({ what: `rotary bf16 [${B}, ${H}, ${T}, ${D}], 32 dims`, ms: mr, metric: gbps(4 * B * T * H * D, mr) });
  });
  scope(() => {
    const [N, V] = [8192, 50304];
    const logits = shaped([N, V], 'bf16', 4);
    const lv = new Int32Array(N);
    for (let i = 0; i < N; i++) lv[i] = (i * 7919) % V;
    const labels = tensor(lv, [N], 'i32', be);
    const ms = timeOp(be, () => run('crossEntropy', [logits, labels], {}));
    rows.push({ what: `crossEntropy bf16 [${N}, ${V}]`, ms, metric: gbps(2 * N * V, ms) });
    const [, lse] = runKernel('crossEntropy', [logits, labels], {});
    const dloss = rand(N, 'f32', be);
    const mb = timeOp(be, () => run('crossEntropyBackward', [logits, labels, lse!, dloss], {}));
    rows.push({ what: `crossEntropyBackward bf16 [${N}, ${V}]`, ms: mb, metric: gbps(4 * N * V, mb) });
  });

  const tflops = (flop: number, ms: number): string => `${(flop / ms / 1e9).toFixed(0)} TFLOP/s`;
  for (const [dtype, n] of [['bf16', 8192], ['f32', 4096]] as const) {
    scope(() => {
      const a = runKernel('reshape', [rand(n * n, dtype, be)], { shape: [n, n] })[0]!;
      const b = runKernel('reshape', [rand(n * n, dtype, be)], { shape: [n, n] })[0]!;
      const ms = timeOp(be, () => run('matmul', [a, b], { transA: false, transB: false }));
      rows.push({ what: `matmul ${dtype} ${n}³`, ms, metric: tflops(2 * n ** 3, ms) });
    });
  }
  for (const [M, K, N] of [[32768, 768, 3072], [32768, 768, 2304], [16384, 2048, 8192]] as const) {
    scope(() => {
      const x = runKernel('reshape', [rand(M * K, 'bf16', be)], { shape: [M, K] })[0]!;
      const w = runKernel('reshape', [rand(N * K, 'bf16', be, 0.05)], { shape: [N, K] })[0]!;
      const bias = rand(N, 'bf16', be);
      const ms = timeOp(be, () => run('linear', [x, w, bias], {}));
      rows.push({ what: `linear bf16 + bias (${M}, ${K}) → ${N}`, ms, metric: tflops(2 * M * N * K, ms) });
      const dy = runKernel('reshape', [rand(M * N, 'bf16', be)], { shape: [M, N] })[0]!;
      const mg = timeOp(be, () => run('matmul', [dy, x], { transA: true, transB: false }));
      rows.push({ what: `  grad weight dyᵀ·x (${N}, ${M}) · (${M}, ${K})`, ms: mg, metric: tflops(2 * M * N * K, mg) });
    });
  }
  const s = be.allocator.stats();
  rows.push({ what: 'allocator', ms: 0, metric: `peak ${(s.peak / 2 ** 30).toFixed(2)} GiB, ${s.driverAllocs} cuMemAlloc, ${s.cacheHits} cache hits` });
  return rows;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const rows = benchCuda();
  const w = Math.max(...rows.map((r) => r.what.length));
  for (const r of rows) console.log(`${r.what.padEnd(w)}  ${r.ms.toFixed(4).padStart(10)} ms  ${r.metric}`);
  console.log(JSON.stringify({ date: new Date().toISOString(), rows }));
}
