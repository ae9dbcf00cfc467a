// The CPU matrix multiply core, C[M, N] (+)= op(A) · op(B), row-major, over a range of C's rows.
//
// Shared by the main thread and the worker pool (pool_worker.ts), so it imports nothing but the
// WASM kernel (wasm/, itself engine-free).
//   gemmRows     the entry point: f32 problems go to the WebAssembly SIMD kernel
//                (wasm/gemm_wasm.ts) when the engine has it, everything else to gemmRowsJs
//   gemmRowsJs   the JS reference (and the f64 path). Two inner forms keep the innermost loop
//                contiguous: "axpy" (B not transposed: C row += a · B row, four C rows at a time)
//                and "dot" (B transposed: four dot products against one A row at a time)
// NEOX_CPU_WASM=0 turns the WASM path off.

import { gemmRowsF32Wasm, wasmSimdAvailable } from './wasm/gemm_wasm.js';

export type Floats = Float32Array | Float64Array;

export interface GemmArgs {
  A: Floats; aOff: number;
  B: Floats; bOff: number;
  C: Floats; cOff: number;
  M: number; N: number; K: number;
  transA: boolean; transB: boolean;
  /** Add into C instead of overwriting it. */
  accumulate: boolean;
}

/** Below this many multiply-adds (over the row range) the JS path beats the WASM call's fixed cost. */
const WASM_MIN_MACS = 256;

let useWasm: boolean | null = null;

/** C rows rowStart..rowEnd of C (+)= op(A) · op(B). */
export function gemmRows(g: GemmArgs, rowStart: number, rowEnd: number): void {
  useWasm ??= process.env.NEOX_CPU_WASM !== '0' && wasmSimdAvailable();
  if (useWasm && g.C instanceof Float32Array && g.A instanceof Float32Array && g.B instanceof Float32Array
    && (rowEnd - rowStart) * g.N * g.K >= WASM_MIN_MACS) {
    gemmRowsF32Wasm(g, rowStart, rowEnd);
  } else {
    gemmRowsJs(g, rowStart, rowEnd);
  }
}

/** The JS reference: any float types, f64 accumulation in the dot form. */
export function gemmRowsJs(g: GemmArgs, rowStart: number, rowEnd: number): void {
  if (g.transB) gemmDot(g, rowStart, rowEnd);
  else gemmAxpy(g, rowStart, rowEnd);
}

function gemmAxpy(g: GemmArgs, r0: number, r1: number): void {
  const { A, aOff, B, bOff, C, cOff, M, N, K, transA, accumulate } = g;
  // A[i, k] is at aOff + i*K + k, or aOff + k*M + i when transposed.
  const aRow = transA ? 1 : K;
  const aCol = transA ? M : 1;
  if (!accumulate) C.fill(0, cOff + r0 * N, cOff + r1 * N);
  let i = r0;
  for (; i + 4 <= r1; i += 4) {
    const c0 = cOff + i * N, c1 = c0 + N, c2 = c1 + N, c3 = c2 + N;
    for (let k = 0; k < K; k++) {
      const ak = aOff + i * aRow + k * aCol;
      const a0 = A[ak]!, a1 = A[ak + aRow]!, a2 = A[ak + 2 * aRow]!, a3 = A[ak + 3 * aRow]!;
      const b = bOff + k * N;
      for (let j = 0; j < N; j++) {
        const bv = B[b + j]!;
        C[c0 + j] += a0 * bv;
        C[c1 + j] += a1 * bv;
        C[c2 + j] += a2 * bv;
        C[c3 + j] += a3 * bv;
      }
    }
  }
  for (; i < r1; i++) {
    const c0 = cOff + i * N;
    for (let k = 0; k < K; k++) {
      const a0 = A[aOff + i * aRow + k * aCol]!;
      const b = bOff + k * N;
      for (let j = 0; j < N; j++) C[c0 + j] += a0 * B[b + j]!;
    }
  }
}

function gemmDot(g: GemmArgs, r0: number, r1: number): void {
  const { A, aOff, B, bOff, C, cOff, M, N, K, transA, accumulate } = g;
  // A row i gathered contiguously (a copy when A is transposed).
  const row = new Float64Array(K);
  for (let i = r0; i < r1; i++) {
    if (transA) for (let k = 0; k < K; k++) row[k] = A[aOff + k * M + i]!;
    else for (let k = 0; k < K; k++) row[k] = A[aOff + i * K + k]!;
    const c = cOff + i * N;
    let j = 0;
    for (; j + 4 <= N; j += 4) {
      const b0 = bOff + j * K, b1 = b0 + K, b2 = b1 + K, b3 = b2 + K;
      let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      for (let k = 0; k < K; k++) {
        const a = row[k]!;
        s0 += a * B[b0 + k]!;
        s1 += a * B[b1 + k]!;
        s2 += a * B[b2 + k]!;
        s3 += a * B[b3 + k]!;
      }
      if (accumulate) { C[c + j] += s0; C[c + j + 1] += s1; C[c + j + 2] += s2; C[c + j + 3] += s3; }
      else { C[c + j] = s0; C[c + j + 1] = s1; C[c + j + 2] = s2; C[c + j + 3] = s3; }
    }
    for (; j < N; j++) {
      const b0 = bOff + j * K;
      let s = 0;
      for (let k = 0; k < K; k++) s += row[k]! * B[b0 + k]!;
      C[c + j] = accumulate ? C[c + j]! + s : s;
    }
  }
}
