// GEMM micro-benchmark, one thread: GFLOP/s of the JS reference (gemmRowsJs) against the
// WebAssembly SIMD path (gemmRowsF32Wasm) on f32, for the quickstart's shapes: M = 2048 tokens
// with K, N in {32, 128, 384, 512} over the four transpose combos, the weight-gradient shapes
// (K = 2048 tokens, transA), and an attention tile (32 × 128 × 32).
//
//   node dist/bench/kernels/gemm.js [--quick] [--filter SUBSTR]

import { type GemmArgs, gemmRowsJs } from '../../src/backends/cpu/gemm.js';
import { gemmRowsF32Wasm, wasmSimdAvailable } from '../../src/backends/cpu/wasm/gemm_wasm.js';

interface Shape { M: number; N: number; K: number; transA: boolean; transB: boolean; accumulate?: boolean; note?: string }

function rand(n: number, seed: number): Float32Array {
  const a = new Float32Array(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    a[i] = x / 4294967296 - 0.5;
  }
  return a;
}

/** Seconds per call: the best of 5 trials of at least `minTime`/5 seconds each, after a warm-up. */
function time(fn: () => void, minTime: number): number {
  const w0 = performance.now();
  do fn(); while (performance.now() - w0 < minTime * 200);
  let best = Infinity;
  for (let trial = 0; trial < 5; trial++) {
    let reps = 0;
    const t0 = performance.now();
    let t = t0;
    do { fn(); reps++; t = performance.now(); } while (t - t0 < minTime * 200);
    best = Math.min(best, (t - t0) / 1000 / reps);
  }
  return best;
}

function main(): void {
  const args = process.argv.slice(2);
  const quick = args.includes('--quick');
  const fi = args.indexOf('--filter');
  const filter = fi >= 0 ? args[fi + 1] ?? '' : '';
  const minTime = quick ? 0.15 : 0.5;
  const shapes: Shape[] = [];
  for (const [transA, transB] of [[false, false], [false, true], [true, false], [true, true]] as const) {
    for (const [K, N] of [[32, 32], [128, 128], [128, 384], [128, 512], [512, 128], [384, 128], [512, 512]] as const) {
      shapes.push({ M: 2048, N, K, transA, transB });
    }
  }
  // Weight gradients: dW = dYᵀ · X over 2048 tokens.
  for (const [M, N] of [[128, 128], [384, 128], [512, 128], [128, 512]] as const) shapes.push({ M, N, K: 2048, transA: true, transB: false, note: 'dW' });
  // Attention tiles (flash-style: S = Q·Kᵀ, O = P·V, dK += dSᵀ·Q).
  shapes.push({ M: 32, N: 128, K: 32, transA: false, transB: true, note: 'attn S' });
  shapes.push({ M: 32, N: 32, K: 128, transA: false, transB: false, note: 'attn O' });
  shapes.push({ M: 128, N: 32, K: 32, transA: true, transB: false, accumulate: true, note: 'attn dK' });

  console.log(`GEMM f32, 1 thread; WASM SIMD ${wasmSimdAvailable() ? 'available' : 'NOT available'}; node ${process.version}`);
  console.log('shape (M×N×K, op)'.padEnd(34) + 'JS GFLOP/s'.padStart(12) + 'WASM GFLOP/s'.padStart(14) + 'speed-up'.padStart(10));
  for (const s of shapes) {
    const label = `${s.M}×${s.N}×${s.K} ${s.transA ? 'Aᵀ' : 'A'}·${s.transB ? 'Bᵀ' : 'B'}${s.accumulate ? ' +=' : ''}${s.note ? ` (${s.note})` : ''}`;
    if (filter && !label.includes(filter)) continue;
    const g: GemmArgs = {
      A: rand(s.M * s.K, 1), aOff: 0, B: rand(s.K * s.N, 2), bOff: 0, C: new Float32Array(s.M * s.N), cOff: 0,
      M: s.M, N: s.N, K: s.K, transA: s.transA, transB: s.transB, accumulate: s.accumulate ?? false,
    };
    const flop = 2 * s.M * s.N * s.K;
    const js = flop / time(() => gemmRowsJs(g, 0, s.M), minTime) / 1e9;
    const wasm = wasmSimdAvailable() ? flop / time(() => gemmRowsF32Wasm(g, 0, s.M), minTime) / 1e9 : NaN;
    console.log(label.padEnd(34) + js.toFixed(2).padStart(12) + wasm.toFixed(2).padStart(14) + `${(wasm / js).toFixed(1)}×`.padStart(10));
  }
}

main();
