// The WebAssembly SIMD f32 GEMM (src/backends/cpu/wasm/): the encoder's LEB128, then
// gemmRowsF32Wasm against the JS reference gemmRowsJs over all four transpose combos,
// accumulate on/off, odd sizes, non-zero offsets, row sub-ranges, SharedArrayBuffer-backed
// arrays, K-blocking / row chunking / staging slices, stale-memory isolation; gemmRows'
// dispatch (f64 stays on JS); and the public ops.matmul on shapes that use the worker pool.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type GemmArgs, gemmRows, gemmRowsJs } from '../src/backends/cpu/gemm.js';
import { shutdownPool } from '../src/backends/cpu/pool.js';
import { sleb, uleb } from '../src/backends/cpu/wasm/encoder.js';
import { buildGemmModule, gemmRowsF32Wasm, wasmSimdAvailable } from '../src/backends/cpu/wasm/gemm_wasm.js';
import * as ops from '../src/ops/index.js';
import { scope } from '../src/tensor/index.js';
import { randn, rng } from './helpers/check.js';

const COMBOS = [[false, false], [false, true], [true, false], [true, true]] as const;

function randF32(n: number, seed: number, shared = false): Float32Array {
  const r = rng(seed);
  const a = shared ? new Float32Array(new SharedArrayBuffer(n * 4)) : new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = r() * 2 - 1;
  return a;
}

interface Case { M: number; N: number; K: number; transA: boolean; transB: boolean; accumulate: boolean; aOff?: number; bOff?: number; cOff?: number; r0?: number; r1?: number; shared?: boolean; seed?: number }

/** Runs the case through the JS reference and the WASM path on copies of the same C; compares. */
function check(c: Case): void {
  const { M, N, K, transA, transB, accumulate } = c;
  const aOff = c.aOff ?? 0, bOff = c.bOff ?? 0, cOff = c.cOff ?? 0, seed = c.seed ?? 1;
  const r0 = c.r0 ?? 0, r1 = c.r1 ?? M;
  const A = randF32(aOff + M * K + 3, seed, c.shared);
  const B = randF32(bOff + K * N + 3, seed + 1, c.shared);
  const C0 = randF32(cOff + M * N + 3, seed + 2, c.shared);
  const Cjs = new Float32Array(C0);
  const Cw = c.shared ? new Float32Array(new SharedArrayBuffer(C0.byteLength)) : new Float32Array(C0.length);
  Cw.set(C0);
  const g = (C: Float32Array): GemmArgs => ({ A, aOff, B, bOff, C, cOff, M, N, K, transA, transB, accumulate });
  gemmRowsJs(g(Cjs), r0, r1);
  gemmRowsF32Wasm(g(Cw), r0, r1);
  const tol = 1e-5 * Math.sqrt(Math.max(1, K));
  const what = `M${M} N${N} K${K} ${transA ? 'Aᵀ' : 'A'}·${transB ? 'Bᵀ' : 'B'}${accumulate ? ' +=' : ''} offs ${aOff}/${bOff}/${cOff} rows ${r0}..${r1}`;
  for (let i = 0; i < C0.length; i++) {
    const e = Cjs[i]!, a = Cw[i]!;
    const inRows = i >= cOff + r0 * N && i < cOff + r1 * N;
    if (!inRows) {
      if (!Object.is(a, C0[i]!)) assert.fail(`${what}: C[${i}] outside the row range changed (${C0[i]} → ${a})`);
    } else if (!(Math.abs(a - e) <= tol * (1 + Math.abs(e)))) {
      assert.fail(`${what}: C[${i}] = ${a}, JS reference ${e} (tol ${tol})`);
    }
  }
}

test('LEB128 encodings', () => {
  assert.deepEqual(uleb(0), [0]);
  assert.deepEqual(uleb(127), [0x7f]);
  assert.deepEqual(uleb(128), [0x80, 0x01]);
  assert.deepEqual(uleb(624485), [0xe5, 0x8e, 0x26]);
  assert.deepEqual(uleb(0xffffffff), [0xff, 0xff, 0xff, 0xff, 0x0f]);
  assert.deepEqual(sleb(0), [0]);
  assert.deepEqual(sleb(63), [0x3f]);
  assert.deepEqual(sleb(64), [0xc0, 0x00]);
  assert.deepEqual(sleb(-1), [0x7f]);
  assert.deepEqual(sleb(-64), [0x40]);
  assert.deepEqual(sleb(-65), [0xbf, 0x7f]);
  assert.deepEqual(sleb(-123456), [0xc0, 0xbb, 0x78]);
  assert.deepEqual(sleb(0x7fffffff), [0xff, 0xff, 0xff, 0xff, 0x07]);
  assert.deepEqual(sleb(0x80000000), sleb(-0x80000000)); // i32.const wraps
});

test('WASM SIMD is available on this engine; generated modules validate', () => {
  assert.equal(wasmSimdAvailable(), true);
  for (const [mr, nv] of [[4, 2], [1, 1], [2, 4], [6, 2]] as const) assert.ok(WebAssembly.validate(buildGemmModule(mr, nv)), `${mr} × ${4 * nv}`);
});

test('odd sizes, all transpose combos, accumulate on/off', () => {
  const sizes = [1, 3, 5, 17, 33, 65, 129];
  let seed = 10;
  for (const [transA, transB] of COMBOS) {
    for (const accumulate of [false, true]) {
      for (const M of sizes) for (const N of sizes) {
        // K over a rotating subset keeps the case count reasonable while covering every size.
        for (const K of [sizes[(M + N) % sizes.length]!, sizes[(M * 3 + N) % sizes.length]!]) {
          check({ M, N, K, transA, transB, accumulate, seed: seed++ });
        }
      }
    }
  }
});

test('non-zero offsets and row sub-ranges', () => {
  let seed = 500;
  for (const [transA, transB] of COMBOS) {
    for (const accumulate of [false, true]) {
      for (const [M, N, K] of [[17, 33, 5], [65, 3, 129], [129, 65, 33], [5, 17, 65], [33, 129, 17]] as const) {
        for (const [r0, r1] of [[0, M], [1, M], [0, M - 1], [Math.floor(M / 3), Math.floor((2 * M) / 3) + 1], [M - 1, M], [2, 2]] as const) {
          check({ M, N, K, transA, transB, accumulate, aOff: 7, bOff: 13, cOff: 5, r0, r1, seed: seed++ });
        }
      }
    }
  }
});

test('SharedArrayBuffer-backed arrays', () => {
  let seed = 900;
  for (const [transA, transB] of COMBOS) {
    for (const accumulate of [false, true]) {
      check({ M: 129, N: 65, K: 33, transA, transB, accumulate, aOff: 3, bOff: 1, cOff: 2, r0: 5, r1: 100, shared: true, seed: seed++ });
    }
  }
});

test('K-blocking, row chunking and staging slices (large K, M > chunk, N·K > stage)', () => {
  let seed = 1000;
  for (const [transA, transB] of COMBOS) {
    // K = 2050 spans several K-blocks with a ragged last one; 300 rows span three row chunks;
    // B (2050 × 161) and Aᵀ (2050 × 300) exceed one staging slice.
    check({ M: 300, N: 161, K: 2050, transA, transB, accumulate: seed % 2 === 0, aOff: 1, bOff: 2, cOff: 3, r0: 7, r1: 299, seed: seed++ });
  }
});

test('degenerate shapes: K = 0, N < 4, a single row', () => {
  for (const [transA, transB] of COMBOS) {
    for (const accumulate of [false, true]) {
      check({ M: 9, N: 7, K: 0, transA, transB, accumulate, cOff: 2, r0: 1, r1: 8 });
      check({ M: 40, N: 1, K: 300, transA, transB, accumulate });
      check({ M: 40, N: 2, K: 7, transA, transB, accumulate });
      check({ M: 1, N: 300, K: 300, transA, transB, accumulate });
    }
  }
});

test('stale memory from an earlier call never reaches the output', () => {
  // Fill the module's memory with NaN/Inf by a large product of non-finite data ...
  const M = 64, N = 200, K = 300;
  const bad = new Float32Array(M * K).fill(NaN);
  const B = new Float32Array(K * N).fill(Infinity);
  gemmRowsF32Wasm({ A: bad, aOff: 0, B, bOff: 0, C: new Float32Array(M * N), cOff: 0, M, N, K, transA: false, transB: false, accumulate: false }, 0, M);
  // ... then odd shapes whose pad lanes read whatever lies beyond the copied data.
  let seed = 1200;
  for (const [transA, transB] of COMBOS) {
    for (const accumulate of [false, true]) check({ M: 7, N: 13, K: 11, transA, transB, accumulate, seed: seed++ });
  }
});

test('non-finite inputs propagate like the JS path', () => {
  const M = 6, N = 9, K = 5;
  const A = randF32(M * K, 1), B = randF32(K * N, 2);
  A[2 * K + 3] = NaN; // row 2
  B[1 * N + 4] = Infinity; // column 4 (k = 1)
  const Cjs = new Float32Array(M * N), Cw = new Float32Array(M * N);
  const g = (C: Float32Array): GemmArgs => ({ A, aOff: 0, B, bOff: 0, C, cOff: 0, M, N, K, transA: false, transB: false, accumulate: false });
  gemmRowsJs(g(Cjs), 0, M);
  gemmRowsF32Wasm(g(Cw), 0, M);
  for (let i = 0; i < M * N; i++) {
    assert.equal(Number.isNaN(Cw[i]!), Number.isNaN(Cjs[i]!), `NaN at ${i}`);
    if (!Number.isFinite(Cjs[i]!)) assert.equal(Cw[i], Cjs[i], `non-finite at ${i}`);
  }
});

test('gemmRows dispatch: f32 via WASM, f64 (and tiny problems) bit-identical to the JS path', () => {
  const M = 33, N = 17, K = 65;
  for (const [transA, transB] of COMBOS) {
    // f64: exactly the JS reference.
    const r = rng(7);
    const A = Float64Array.from({ length: M * K }, () => r() * 2 - 1);
    const B = Float64Array.from({ length: K * N }, () => r() * 2 - 1);
    const C1 = new Float64Array(M * N), C2 = new Float64Array(M * N);
    gemmRows({ A, aOff: 0, B, bOff: 0, C: C1, cOff: 0, M, N, K, transA, transB, accumulate: false }, 0, M);
    gemmRowsJs({ A, aOff: 0, B, bOff: 0, C: C2, cOff: 0, M, N, K, transA, transB, accumulate: false }, 0, M);
    assert.deepEqual(C1, C2);
    // f32: close to the reference.
    const Af = Float32Array.from(A), Bf = Float32Array.from(B);
    const D1 = new Float32Array(M * N), D2 = new Float32Array(M * N);
    gemmRows({ A: Af, aOff: 0, B: Bf, bOff: 0, C: D1, cOff: 0, M, N, K, transA, transB, accumulate: false }, 0, M);
    gemmRowsJs({ A: Af, aOff: 0, B: Bf, bOff: 0, C: D2, cOff: 0, M, N, K, transA, transB, accumulate: false }, 0, M);
    for (let i = 0; i < M * N; i++) assert.ok(Math.abs(D1[i]! - D2[i]!) <= 1e-5 * Math.sqrt(K) * (1 + Math.abs(D2[i]!)), `f32 ${i}`);
    // Tiny f32 (below the WASM threshold): the JS path, bit for bit.
    const t = (C: Float32Array): GemmArgs => ({ A: Af, aOff: 1, B: Bf, bOff: 2, C, cOff: 0, M: 3, N: 2, K: 4, transA, transB, accumulate: false });
    const E1 = new Float32Array(6), E2 = new Float32Array(6);
    gemmRows(t(E1), 0, 3);
    gemmRowsJs(t(E2), 0, 3);
    assert.deepEqual(E1, E2);
  }
});

/** Naive f64 reference of op(a) · op(b) for 2-D row-major inputs. */
function naiveMatmul(a: ArrayLike<number>, b: ArrayLike<number>, M: number, N: number, K: number, transA: boolean, transB: boolean): Float64Array {
  const y = new Float64Array(M * N);
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += a[transA ? k * M + i : i * K + k]! * b[transB ? j * K + k : k * N + j]!;
      y[i * N + j] = s;
    }
  }
  return y;
}

test('ops.matmul (f32) through the worker pool matches an f64 reference', () => {
  const M = 300, N = 96, K = 200; // ≥ 2^20 multiply-adds, operands ≥ 64 KiB: shared, so pooled
  try {
    let seed = 40;
    for (const [transA, transB] of COMBOS) {
      scope(() => {
        const a = randn(transA ? [K, M] : [M, K], seed++, 'f32');
        const b = randn(transB ? [N, K] : [K, N], seed++, 'f32');
        const y = ops.matmul(a, b, { transA, transB });
        assert.deepEqual(y.shape, [M, N]);
        for (const t of [a, b, y]) {
          assert.ok((t.storage as unknown as { data: Float32Array }).data.buffer instanceof SharedArrayBuffer, 'operands are shared (pool eligible)');
        }
        const ref = naiveMatmul(a.toArray(), b.toArray(), M, N, K, transA, transB);
        const got = y.toArray();
        for (let i = 0; i < M * N; i++) {
          assert.ok(Math.abs(got[i]! - ref[i]!) <= 1e-5 * Math.sqrt(K) * (1 + Math.abs(ref[i]!)), `${transA}/${transB} [${i}]: ${got[i]} vs ${ref[i]}`);
        }
      });
    }
    // Batched with a shared B (the batch folds into M), odd sizes.
    scope(() => {
      const a = randn([3, 129, 65], 90, 'f32');
      const b = randn([65, 257], 91, 'f32');
      const y = ops.matmul(a, b);
      const av = a.toArray(), got = y.toArray();
      const ref = naiveMatmul(av, b.toArray(), 3 * 129, 257, 65, false, false);
      for (let i = 0; i < ref.length; i++) assert.ok(Math.abs(got[i]! - ref[i]!) <= 1e-5 * Math.sqrt(65) * (1 + Math.abs(ref[i]!)), `batched [${i}]`);
    });
  } finally {
    shutdownPool();
  }
});
