// The f32 GEMM in WebAssembly SIMD, generated at run time: same contract as gemm.ts's gemmRows
// (C[M, N] (+)= op(A) · op(B), row-major, over rows r0..r1 of C), for Float32Array operands.
//
//   buildGemmModule()        emits the module (its own exported memory plus four functions):
//     kernel                 MR × NR register-blocked micro-kernel (MR·NV f32x4 accumulators;
//                            f32x4 mul + add, standard SIMD has no FMA) over K × NR panels of B
//                            and MR rows of A, either packed (K × MR panels) or plain rows
//     pack8 / pack4          copy 8 (4) consecutive columns of every row into K × 8 (4) panels
//     pack8T                 the same from a transposed source (panel column c = source row c)
//   wasmSimdAvailable()      whether this engine validates the module (cached)
//   gemmRowsF32Wasm(g, r0, r1)  memcpy's op(B) (and op(A) when transposed) into the module's
//                            memory slice by slice, packs them there, then per chunk of MC rows
//                            (plain A rows: one memcpy) runs the kernel over KC-blocks of K and
//                            copies C's rows out (and in first, when accumulating)
//
// Edges: N is padded to a multiple of NR and M to one of MR; the pad lanes of a panel hold
// whatever lies next to the copied data, which only reaches the pad rows/columns of the C block
// in the module's memory, never copied out. Accumulation is in f32.
// One instance per thread, made lazily (workers import this file too), its memory grown on demand
// and kept between calls. Imports nothing from the engine.

import type { GemmArgs } from '../gemm.js';
import { Code, I32, V128, encodeModule } from './encoder.js';

/** Register block: MR rows × NR = 4·NV columns of C (8 accumulators; 4 × 8 measured best). */
const MR = 4;
const NV = 2;
const NR = 4 * NV;
/** K-block: a B micro-panel (KC × NR f32, 8 KiB) stays in L1 across a chunk of rows. */
const KC = 256;
/** Rows of C per chunk (MC × KC f32 of A, 128 KiB, sits in L2). A multiple of MR. */
const MC = 128;
/** Staging area target (f32) for raw slices of B or op(A)ᵀ before packing. */
const STAGE = 1 << 18;
/** Zeroed f32 after staged data: reads past the end by a panel's pad lanes stay in bounds. */
const SLACK = 16;

/**
 * Emits the module. All pointers and strides are byte offsets into its memory; counts ≥ 1.
 *
 * kernel(aPtr, aRow, aK, aBlock, mb, bPtr, bStride, nb, kLen, cPtr, ldc, acc): A element (r, k)
 * of row panel i at aPtr + i·aBlock + r·aRow + k·aK (packed: aRow 4, aK 4·MR; plain rows:
 * aRow 4·lda, aK 4); B panel j at bPtr + j·bStride, layout [k][NR]; the MR × NR block (i, j) of C
 * at cPtr + i·MR·ldc + j·NR·4 becomes (acc ? C : 0) + Σ_k a[:, k] ⊗ b[k, :] over kLen steps.
 *
 * pack8/pack4(src, ld, kLen, np, dst, pStride): panel p at dst + p·pStride, row k = the 8 (4)
 * f32 at src + k·ld + p·32 (16).  pack8T(src, ld, kLen, np, dst, pStride): panel p, row k,
 * column c = the f32 at src + (8p + c)·ld + 4k.
 */
export function buildGemmModule(mr = MR, nv = NV): Uint8Array<ArrayBuffer> {
  const i32s = (n: number) => new Array<typeof I32>(n).fill(I32);
  return encodeModule({
    funcs: [
      { name: 'kernel', params: i32s(12), results: [], code: kernelCode(mr, nv) },
      { name: 'pack8', params: i32s(6), results: [], code: packCode(2) },
      { name: 'pack4', params: i32s(6), results: [], code: packCode(1) },
      { name: 'pack8T', params: i32s(6), results: [], code: packTCode(8) },
    ],
    memoryPages: 1,
  });
}

function kernelCode(mr: number, nv: number): Code {
  const nr = 4 * nv;
  const P = { aPtr: 0, aRow: 1, aK: 2, aBlock: 3, mb: 4, bPtr: 5, bStride: 6, nb: 7, kLen: 8, cPtr: 9, ldc: 10, acc: 11 };
  const f = new Code(12);
  const jb = f.local(I32), ib = f.local(I32), k = f.local(I32);
  const apRow = f.local(I32), bp = f.local(I32), bCol = f.local(I32);
  const cp = f.local(I32), cCol = f.local(I32), cr = f.local(I32);
  const ap: number[] = [];
  for (let r = 0; r < mr; r++) ap.push(f.local(I32));
  const c: number[][] = [];
  for (let r = 0; r < mr; r++) { c.push([]); for (let v = 0; v < nv; v++) c[r]!.push(f.local(V128)); }
  const b: number[] = [];
  for (let v = 0; v < nv; v++) b.push(f.local(V128));
  const a = f.local(V128);

  f.get(P.nb).set(jb);
  f.get(P.bPtr).set(bCol);
  f.get(P.cPtr).set(cCol);
  f.loop(); // column panels
  {
    f.get(P.aPtr).set(apRow);
    f.get(cCol).set(cp);
    f.get(P.mb).set(ib);
    f.loop(); // row panels
    {
      // accumulators: the C block, or zero
      f.get(P.acc).if_();
      f.get(cp).set(cr);
      for (let r = 0; r < mr; r++) {
        for (let v = 0; v < nv; v++) f.get(cr).v128Load(16 * v, 2).set(c[r]![v]!);
        if (r + 1 < mr) f.addLocal(cr, P.ldc);
      }
      f.else_();
      for (let r = 0; r < mr; r++) for (let v = 0; v < nv; v++) f.v128Const0().set(c[r]![v]!);
      f.end();
      f.get(apRow).set(ap[0]!);
      for (let r = 1; r < mr; r++) f.get(ap[r - 1]!).get(P.aRow).i32Add().set(ap[r]!);
      f.get(bCol).set(bp);
      f.get(P.kLen).set(k);
      f.loop(); // k
      {
        for (let v = 0; v < nv; v++) f.get(bp).v128Load(16 * v).set(b[v]!);
        for (let r = 0; r < mr; r++) {
          f.get(ap[r]!).v128Load32Splat(0).set(a);
          for (let v = 0; v < nv; v++) f.get(c[r]![v]!).get(a).get(b[v]!).f32x4Mul().f32x4Add().set(c[r]![v]!);
        }
        for (let r = 0; r < mr; r++) f.addLocal(ap[r]!, P.aK);
        f.addTo(bp, 4 * nr);
        f.get(k).i32Const(1).i32Sub().tee(k).brIf(0);
      }
      f.end();
      f.get(cp).set(cr);
      for (let r = 0; r < mr; r++) {
        for (let v = 0; v < nv; v++) f.get(cr).get(c[r]![v]!).v128Store(16 * v, 2);
        if (r + 1 < mr) f.addLocal(cr, P.ldc);
      }
      f.addLocal(apRow, P.aBlock);
      f.get(cp).get(P.ldc).i32Const(mr).i32Mul().i32Add().set(cp);
      f.get(ib).i32Const(1).i32Sub().tee(ib).brIf(0);
    }
    f.end();
    f.addLocal(bCol, P.bStride);
    f.addTo(cCol, 4 * nr);
    f.get(jb).i32Const(1).i32Sub().tee(jb).brIf(0);
  }
  f.end();
  return f;
}

const PK = { src: 0, ld: 1, kLen: 2, np: 3, dst: 4, pStride: 5 };

/** pack8 (nv = 2) / pack4 (nv = 1): v128 copies of 4·nv consecutive f32 per row. */
function packCode(nv: number): Code {
  const w = 4 * nv;
  const f = new Code(6);
  const p = f.local(I32), k = f.local(I32), s = f.local(I32), d = f.local(I32), sp = f.local(I32), dp = f.local(I32);
  f.get(PK.np).set(p);
  f.get(PK.src).set(sp);
  f.get(PK.dst).set(dp);
  f.loop();
  {
    f.get(sp).set(s);
    f.get(dp).set(d);
    f.get(PK.kLen).set(k);
    f.loop();
    {
      for (let v = 0; v < nv; v++) f.get(d).get(s).v128Load(16 * v, 2).v128Store(16 * v);
      f.addLocal(s, PK.ld);
      f.addTo(d, 4 * w);
      f.get(k).i32Const(1).i32Sub().tee(k).brIf(0);
    }
    f.end();
    f.addTo(sp, 4 * w);
    f.addLocal(dp, PK.pStride);
    f.get(p).i32Const(1).i32Sub().tee(p).brIf(0);
  }
  f.end();
  return f;
}

/** pack8T: scalar gather of w source rows into the columns of each panel row. */
function packTCode(w: number): Code {
  const f = new Code(6);
  const p = f.local(I32), k = f.local(I32), s = f.local(I32), d = f.local(I32), sp = f.local(I32), dp = f.local(I32);
  const rowOff: number[] = [];
  for (let c = 0; c < w; c++) rowOff.push(f.local(I32));
  for (let c = 0; c < w; c++) f.get(PK.ld).i32Const(c).i32Mul().set(rowOff[c]!);
  f.get(PK.np).set(p);
  f.get(PK.src).set(sp);
  f.get(PK.dst).set(dp);
  f.loop();
  {
    f.get(sp).set(s);
    f.get(dp).set(d);
    f.get(PK.kLen).set(k);
    f.loop();
    {
      for (let c = 0; c < w; c++) f.get(d).get(s).get(rowOff[c]!).i32Add().f32Load(0).f32Store(4 * c);
      f.addTo(s, 4);
      f.addTo(d, 4 * w);
      f.get(k).i32Const(1).i32Sub().tee(k).brIf(0);
    }
    f.end();
    f.get(sp).get(rowOff[1]!).i32Const(w).i32Mul().i32Add().set(sp);
    f.addLocal(dp, PK.pStride);
    f.get(p).i32Const(1).i32Sub().tee(p).brIf(0);
  }
  f.end();
  return f;
}

let bytes: Uint8Array<ArrayBuffer> | null = null;
let available: boolean | null = null;

/** Whether this engine runs WebAssembly with fixed-width SIMD (validates the generated module). */
export function wasmSimdAvailable(): boolean {
  if (available === null) {
    try {
      available = typeof WebAssembly === 'object' && WebAssembly.validate(bytes ??= buildGemmModule());
    } catch {
      available = false;
    }
  }
  return available;
}

type Kernel = (aPtr: number, aRow: number, aK: number, aBlock: number, mb: number, bPtr: number, bStride: number, nb: number, kLen: number, cPtr: number, ldc: number, acc: number) => void;
type Pack = (src: number, ld: number, kLen: number, np: number, dst: number, pStride: number) => void;

interface State {
  memory: WebAssembly.Memory;
  kernel: Kernel;
  pack8: Pack;
  pack4: Pack;
  pack8T: Pack;
  /** f32 view of the whole memory (remade when it grows). */
  f32: Float32Array;
}

let state: State | null = null;

function instance(): State {
  if (state) return state;
  const inst = new WebAssembly.Instance(new WebAssembly.Module(bytes ??= buildGemmModule()), {});
  const e = inst.exports as Record<string, unknown>;
  const memory = e.memory as WebAssembly.Memory;
  state = { memory, kernel: e.kernel as Kernel, pack8: e.pack8 as Pack, pack4: e.pack4 as Pack, pack8T: e.pack8T as Pack, f32: new Float32Array(memory.buffer) };
  return state;
}

/** Makes the memory at least `floats` f32 long; returns the current f32 view. */
function reserve(s: State, floats: number): Float32Array {
  const bytes = floats * 4;
  const have = s.memory.buffer.byteLength;
  if (bytes > have) s.memory.grow(Math.ceil((bytes - have) / 65536));
  if (s.f32.buffer !== s.memory.buffer) s.f32 = new Float32Array(s.memory.buffer);
  return s.f32;
}

/** Copies src[from, to) to mem at f32 index `at` and zeroes SLACK f32 after it. */
function stage(mem: Float32Array, src: Float32Array, from: number, to: number, at: number): void {
  mem.set(src.subarray(from, to), at);
  mem.fill(0, at + to - from, at + to - from + SLACK);
}

/** n rows of w f32 from src (row stride ls) to dst (row stride ld). */
function copyRows(src: Float32Array, s: number, ls: number, dst: Float32Array, d: number, ld: number, n: number, w: number): void {
  if (ls === w && ld === w) dst.set(src.subarray(s, s + n * w), d);
  else if (w >= 64) for (let i = 0; i < n; i++) dst.set(src.subarray(s + i * ls, s + i * ls + w), d + i * ld);
  else for (let i = 0; i < n; i++) for (let j = 0; j < w; j++) dst[d + i * ld + j] = src[s + i * ls + j]!;
}

/**
 * gemmRows for Float32Array A, B, C through the WASM SIMD kernel: rows r0..r1 of
 * C[M, N] (+)= op(A) · op(B). The caller checks wasmSimdAvailable() and the element types.
 */
export function gemmRowsF32Wasm(g: GemmArgs, r0: number, r1: number): void {
  const { aOff, bOff, cOff, M, N, K, transA, transB, accumulate } = g;
  const A = g.A as Float32Array, B = g.B as Float32Array, C = g.C as Float32Array;
  if (r1 <= r0 || N <= 0) return;
  if (K <= 0) {
    if (!accumulate) C.fill(0, cOff + r0 * N, cOff + r1 * N);
    return;
  }
  const s = instance();
  const rows = r1 - r0;
  const nb = Math.ceil(N / NR), Np = nb * NR;
  const mbAll = Math.ceil(rows / MR);
  const mc = Math.min(MC, mbAll * MR);
  // Staging slices: rows of B (K × N), panels of Bᵀ (N × K), or rows of Aᵀ (K × M, columns r0..r1).
  const kSliceB = Math.max(1, Math.floor(STAGE / N));
  const pSliceB = Math.max(1, Math.floor(STAGE / (NR * K)));
  const kSliceA = Math.max(1, Math.floor(STAGE / M));
  const stageLen = Math.max(transB ? pSliceB * NR * K : kSliceB * N, transA ? kSliceA * M : 0) + SLACK;
  // Layout (f32 indices): packed B | packed A (transA) or a chunk of A rows | staging | C chunk.
  const bPack = 0;
  const aPack = bPack + nb * K * NR;
  const stg = aPack + (transA ? mbAll * MR * K : mc * K);
  const cBuf = stg + stageLen;
  const mem = reserve(s, cBuf + mc * Np);

  // B → K × NR panels.
  if (transB) {
    for (let p0 = 0; p0 < nb; p0 += pSliceB) {
      const np = Math.min(pSliceB, nb - p0);
      const j0 = p0 * NR, j1 = Math.min(N, j0 + np * NR);
      stage(mem, B, bOff + j0 * K, bOff + j1 * K, stg);
      mem.fill(0, stg + (j1 - j0) * K, stg + np * NR * K); // missing rows of the last panel
      s.pack8T(stg * 4, K * 4, K, np, (bPack + p0 * K * NR) * 4, K * NR * 4);
    }
  } else {
    for (let k0 = 0; k0 < K; k0 += kSliceB) {
      const k1 = Math.min(K, k0 + kSliceB);
      stage(mem, B, bOff + k0 * N, bOff + k1 * N, stg);
      s.pack8(stg * 4, N * 4, k1 - k0, nb, (bPack + k0 * NR) * 4, K * NR * 4);
    }
  }
  // op(A) transposed: A[i, k] at aOff + k·M + i; rows r0..r1 → K × MR panels.
  if (transA) {
    for (let k0 = 0; k0 < K; k0 += kSliceA) {
      const k1 = Math.min(K, k0 + kSliceA);
      stage(mem, A, aOff + k0 * M + r0, aOff + (k1 - 1) * M + r1, stg);
      s.pack4(stg * 4, M * 4, k1 - k0, mbAll, (aPack + k0 * MR) * 4, K * MR * 4);
    }
  }

  for (let i0 = r0; i0 < r1; i0 += mc) {
    const n = Math.min(mc, r1 - i0);
    const mb = Math.ceil(n / MR);
    if (!transA) {
      // Plain rows (one memcpy); the kernel walks MR of them at once. Pad rows are zeroed.
      mem.set(A.subarray(aOff + i0 * K, aOff + (i0 + n) * K), aPack);
      mem.fill(0, aPack + n * K, aPack + mb * MR * K);
    }
    const cSrc = cOff + i0 * N;
    if (accumulate) copyRows(C, cSrc, N, mem, cBuf, Np, n, N);
    for (let k0 = 0; k0 < K; k0 += KC) {
      const kl = Math.min(KC, K - k0);
      const acc = accumulate || k0 > 0 ? 1 : 0;
      const bp = (bPack + k0 * NR) * 4;
      if (transA) s.kernel((aPack + ((i0 - r0) / MR) * K * MR + k0 * MR) * 4, 4, 4 * MR, K * MR * 4, mb, bp, K * NR * 4, nb, kl, cBuf * 4, Np * 4, acc);
      else s.kernel((aPack + k0) * 4, K * 4, 4, MR * K * 4, mb, bp, K * NR * 4, nb, kl, cBuf * 4, Np * 4, acc);
    }
    copyRows(mem, cBuf, Np, C, cSrc, N, n, N);
  }
}
