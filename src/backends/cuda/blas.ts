// Row-major GEMMs through cuBLASLt (shared/CUBLASLT.md): f32 accumulation, cached plans.
//
// cuBLASLt is column-major; a row-major [r, c] buffer is a column-major c × r matrix. So
// C[M,N] = op(A)·op(B) is computed as the column-major product Cᵀ = op(B)ᵀ · op(A)ᵀ with m = N,
// n = M: the stored B is cuBLASLt's first operand and the stored A its second (§3 of the recipe):
//
//   operand         stored as          cuBLASLt op   layout rows × cols, ld
//   first  (= B)    [K, N]             N             N × K, N
//                   [N, K] (transB)    T             K × N, K
//   second (= A)    [M, K]             N             K × M, K
//                   [K, M] (transA)    T             M × K, M
//   D (= C)         [M, N]                           N × M, N
//
// Batches use BATCH_COUNT and STRIDED_BATCH_OFFSET; an operand shared by the batch has stride 0.
// A plan (descriptor, three layouts, an algorithm) is made once per shape, dtype, transposes and
// epilogue, and kept. The algorithm: cuBLASLt's heuristic returns up to 8 candidates (asked twice,
// with a 32 MiB and a 1 MiB workspace limit, as shared/CUBLASLT.md §6 found the smaller limit's
// picks faster for some bias GEMMs); its first is up to 25% off the best on the recipe's shapes, so
// each candidate is timed on the real operands (1 warm-up, then 3 calls between events; beta = 0
// GEMMs only, since they overwrite D; accumulating ones keep the first) and the fastest kept. The
// choice goes to a JSON file per device and cuBLASLt version beside the kernel cache
// (…/neox-ts/gemm/), so later processes on the machine use the same algorithms: a resumed run
// computes exactly what the uninterrupted one would. NEOX_GEMM_AUTOTUNE=0 keeps the heuristic's first.
// The bias epilogue adds a [N] vector to every row
// (cuBLASLt's D column); BIAS_POINTER is a descriptor attribute, so it is set before each call.
// The GELU epilogue (GELU_AUX, GELU_AUX_BIAS; shared/CUBLASLT.md §4) writes gelu_tanh of the result
// to D and the pre-activation to the aux buffer, D-shaped with ld N, for the gradient.

import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import koffi from 'koffi';
import type { DType } from '../../tensor/dtype.js';
import type { Block } from './allocator.js';
import type { CudaBackend } from './backend.js';
import { gemmTuningDir } from './compiler.js';
import {
  CUBLAS_COMPUTE_32F, CUBLAS_OP_N, CUBLAS_OP_T, CUDA_R_16BF, CUDA_R_16F, CUDA_R_32F, type CublasLt, DESC, EPILOGUE,
  HEURISTIC_RESULT_BYTES, LAYOUT, PREF_MAX_WORKSPACE_BYTES, cublasLt, cublasLtVersion,
} from './ffi/cublaslt.js';

const WORKSPACE_BYTES = 32 * 1024 * 1024;
const SMALL_WORKSPACE_BYTES = 1024 * 1024;
const REQUESTED_ALGOS = 8;
/** cublasLtMatmulAlgo_t: the first 64 bytes of a heuristic result. */
const ALGO_BYTES = 64;
const TIMED_CALLS = 3;

export interface Gemm {
  dtype: DType;
  transA: boolean;
  transB: boolean;
  M: number;
  N: number;
  K: number;
  /** Number of products; 1 for a plain GEMM. */
  batch: number;
  /** Element strides between batch items (0: shared by every item). */
  strideA: number;
  strideB: number;
  a: number;
  b: number;
  d: number;
  /** A [N] vector added to every output row (linear's bias), same dtype as D. */
  bias?: number;
  /** D += op(A)·op(B) instead of D = (beta = 1). */
  accumulate?: boolean;
  /** D = gelu_tanh(result), the result (bias added) written here, D-shaped, same dtype (linearGelu). */
  geluAux?: number;
}

interface Plan {
  desc: bigint;
  first: bigint; // layout of the stored B
  second: bigint; // layout of the stored A
  out: bigint; // layout of D (and C)
  results: bigint; // heuristic results (koffi.alloc, HEURISTIC_RESULT_BYTES each)
  count: number;
  /** The algorithm cublasLtMatmul runs: results + chosen · HEURISTIC_RESULT_BYTES. */
  algo: bigint;
  /** How it was chosen: the heuristic's first, timed now, or read from the tuning file. */
  how: 'heuristic' | 'timed' | 'file';
}

function dataType(dtype: DType): number {
  switch (dtype) {
    case 'f32': return CUDA_R_32F;
    case 'bf16': return CUDA_R_16BF;
    case 'f16': return CUDA_R_16F;
    default: throw new Error(`matmul on CUDA supports f32, bf16 and f16, not ${dtype}`);
  }
}

export class Blas {
  private readonly lt: CublasLt;
  private readonly handle: bigint;
  private readonly pref: bigint;
  private readonly workspace: Block;
  private readonly scalars: bigint; // floats [1, 0, 1]: alpha, beta = 0, beta = 1
  private readonly attr = Buffer.alloc(8);
  private readonly plans = new Map<string, Plan>();
  private readonly smallPref: bigint;
  /** Tuned choices: plan key → the algorithm's 64 bytes as hex (the tuning file's contents). */
  private readonly tuned: Record<string, string>;
  readonly autotune = process.env.NEOX_GEMM_AUTOTUNE !== '0';
  /** Where the choices are kept for this device and cuBLASLt version. */
  readonly tuningFile: string;

  constructor(private readonly be: CudaBackend) {
    this.lt = cublasLt();
    const h: [bigint | null] = [null];
    this.lt.cublasLtCreate(h);
    this.handle = h[0]!;
    const p: [bigint | null] = [null];
    this.lt.cublasLtMatmulPreferenceCreate(p);
    this.pref = p[0]!;
    this.attr.writeBigUInt64LE(BigInt(WORKSPACE_BYTES));
    this.lt.cublasLtMatmulPreferenceSetAttribute(this.pref, PREF_MAX_WORKSPACE_BYTES, this.attr, 8);
    const p2: [bigint | null] = [null];
    this.lt.cublasLtMatmulPreferenceCreate(p2);
    this.smallPref = p2[0]!;
    this.attr.writeBigUInt64LE(BigInt(SMALL_WORKSPACE_BYTES));
    this.lt.cublasLtMatmulPreferenceSetAttribute(this.smallPref, PREF_MAX_WORKSPACE_BYTES, this.attr, 8);
    this.workspace = be.scratch(WORKSPACE_BYTES);
    const device = be.device.name.replace(/[^A-Za-z0-9]+/g, '_');
    this.tuningFile = join(gemmTuningDir(), `${device}-cublaslt${cublasLtVersion()}.json`);
    this.tuned = readTuning(this.tuningFile);
    this.scalars = koffi.alloc('float', 3) as bigint;
    new Float32Array(koffi.view(this.scalars, 12)).set([1, 0, 1]);
  }

  gemm(g: Gemm): void {
    const plan = this.plan(g);
    if (g.bias !== undefined) this.setDesc(plan.desc, DESC.BIAS_POINTER, g.bias, 8);
    if (g.geluAux !== undefined) this.setDesc(plan.desc, DESC.EPILOGUE_AUX_POINTER, g.geluAux, 8);
    const beta = this.scalars + (g.accumulate ? 8n : 4n);
    this.lt.cublasLtMatmul(
      this.handle, plan.desc, this.scalars, g.b, plan.first, g.a, plan.second, beta,
      g.d, plan.out, g.d, plan.out, plan.algo, this.workspace.ptr, WORKSPACE_BYTES, this.be.stream,
    );
  }

  /** How many plans are cached (each holds a heuristic query's result). */
  get planCount(): number {
    return this.plans.size;
  }

  /** Gives the workspace back (a Blas other than the backend's own, as in tests). */
  dispose(): void {
    this.be.releaseScratch(this.workspace);
  }

  /** How each cached plan's algorithm was chosen, counted. */
  get planChoices(): Record<Plan['how'], number> {
    const n = { heuristic: 0, timed: 0, file: 0 };
    for (const p of this.plans.values()) n[p.how]++;
    return n;
  }

  private plan(g: Gemm): Plan {
    const key = `${g.dtype} ${g.transA ? 'T' : 'N'}${g.transB ? 'T' : 'N'} ${g.M} ${g.N} ${g.K} ${g.batch} ${g.strideA} ${g.strideB} ${g.bias !== undefined ? 'bias' : ''} ${g.geluAux !== undefined ? 'gelu' : ''}${g.accumulate ? ' acc' : ''}`;
    const hit = this.plans.get(key);
    if (hit) return hit;
    const lt = this.lt;
    const type = dataType(g.dtype);
    const out1: [bigint | null] = [null];
    lt.cublasLtMatmulDescCreate(out1, CUBLAS_COMPUTE_32F, CUDA_R_32F);
    const desc = out1[0]!;
    this.setDesc(desc, DESC.TRANSA, g.transB ? CUBLAS_OP_T : CUBLAS_OP_N, 4);
    this.setDesc(desc, DESC.TRANSB, g.transA ? CUBLAS_OP_T : CUBLAS_OP_N, 4);
    if (g.geluAux !== undefined) {
      if (g.batch !== 1 || g.accumulate) throw new Error('the GELU epilogue is for a plain GEMM (batch 1, beta 0)');
      this.setDesc(desc, DESC.EPILOGUE, g.bias !== undefined ? EPILOGUE.GELU_AUX_BIAS : EPILOGUE.GELU_AUX, 4);
      this.setDesc(desc, DESC.EPILOGUE_AUX_POINTER, g.geluAux, 8);
      this.setDesc(desc, DESC.EPILOGUE_AUX_LD, g.N, 8);
      this.setDesc(desc, DESC.EPILOGUE_AUX_DATA_TYPE, type, 4);
    } else if (g.bias !== undefined) {
      this.setDesc(desc, DESC.EPILOGUE, EPILOGUE.BIAS, 4);
    }
    if (g.bias !== undefined) this.setDesc(desc, DESC.BIAS_POINTER, g.bias, 8);
    const { M, N, K } = g;
    const first = g.transB ? this.layout(type, K, N, K) : this.layout(type, N, K, N);
    const second = g.transA ? this.layout(type, M, K, M) : this.layout(type, K, M, K);
    const out = this.layout(type, N, M, N);
    if (g.batch > 1) {
      this.batched(first, g.batch, g.strideB);
      this.batched(second, g.batch, g.strideA);
      this.batched(out, g.batch, M * N);
    }
    // Candidates: the heuristic's under the 32 MiB limit, then new ones under 1 MiB.
    const results = koffi.alloc('uint8_t', HEURISTIC_RESULT_BYTES * 2 * REQUESTED_ALGOS) as bigint;
    const count: [number] = [0];
    lt.cublasLtMatmulAlgoGetHeuristic(this.handle, desc, first, second, out, out, this.pref, REQUESTED_ALGOS, results, count);
    if (count[0] === 0) {
      throw new Error(`cuBLASLt has no algorithm for ${g.dtype} matmul [${key}] on ${this.be.device.name}`);
    }
    let n = count[0];
    const tune = this.autotune && !g.accumulate;
    if (tune) {
      const extra = koffi.alloc('uint8_t', HEURISTIC_RESULT_BYTES * REQUESTED_ALGOS) as bigint;
      const more: [number] = [0];
      lt.cublasLtMatmulAlgoGetHeuristic(this.handle, desc, first, second, out, out, this.smallPref, REQUESTED_ALGOS, extra, more);
      const seen = new Set(Array.from({ length: n }, (_, i) => algoHex(results, i)));
      for (let i = 0; i < more[0]; i++) {
        const hex = algoHex(extra, i);
        if (seen.has(hex)) continue;
        seen.add(hex);
        new Uint8Array(koffi.view(results, HEURISTIC_RESULT_BYTES * 2 * REQUESTED_ALGOS)).set(
          new Uint8Array(koffi.view(extra + BigInt(i * HEURISTIC_RESULT_BYTES), HEURISTIC_RESULT_BYTES)), n * HEURISTIC_RESULT_BYTES);
        n++;
      }
      koffi.free(extra);
    }
    const plan: Plan = { desc, first, second, out, results, count: n, algo: results, how: 'heuristic' };
    if (tune && n > 1) {
      const hexes = Array.from({ length: n }, (_, i) => algoHex(results, i));
      // Another process (a data-parallel rank) may have tuned this shape since this one read the file.
      const saved = this.tuned[key] ?? readTuning(this.tuningFile)[key];
      const index = saved === undefined ? -1 : hexes.indexOf(saved);
      if (index >= 0) {
        plan.algo = results + BigInt(index * HEURISTIC_RESULT_BYTES);
        plan.how = 'file';
      } else {
        const mine = hexes[this.fastest(g, plan)]!;
        Object.assign(this.tuned, writeTuning(this.tuningFile, key, mine, saved));
        // A rank that tuned this shape first keeps its choice in the file; every process then uses that one.
        const chosen = hexes.includes(this.tuned[key]!) ? this.tuned[key]! : mine;
        plan.algo = results + BigInt(hexes.indexOf(chosen) * HEURISTIC_RESULT_BYTES);
        plan.how = 'timed';
      }
    }
    this.plans.set(key, plan);
    return plan;
  }

  /**
   * Times each candidate on g's own operands (beta = 0: D is overwritten, and the real call comes
   * after) and returns the fastest's index. A candidate cuBLASLt refuses at run time is skipped.
   */
  private fastest(g: Gemm, plan: Plan): number {
    if (g.bias !== undefined) this.setDesc(plan.desc, DESC.BIAS_POINTER, g.bias, 8);
    if (g.geluAux !== undefined) this.setDesc(plan.desc, DESC.EPILOGUE_AUX_POINTER, g.geluAux, 8);
    const call = (algo: bigint) => this.lt.cublasLtMatmul(
      this.handle, plan.desc, this.scalars, g.b, plan.first, g.a, plan.second, this.scalars + 4n,
      g.d, plan.out, g.d, plan.out, algo, this.workspace.ptr, WORKSPACE_BYTES, this.be.stream,
    );
    const timing = this.be.timing; // events around the calls, on the stream
    let best = 0, bestMs = Infinity;
    for (let i = 0; i < plan.count; i++) {
      const algo = plan.results + BigInt(i * HEURISTIC_RESULT_BYTES);
      try {
        call(algo); // warm-up (loads the algorithm's kernels), outside the timed calls
      } catch {
        continue; // cuBLASLt refused this candidate when it was queued: it cannot run here
      }
      let queued = true;
      const start = timing.mark();
      try {
        for (let r = 0; r < TIMED_CALLS; r++) call(algo);
      } catch {
        queued = false;
      }
      // Waits for the calls; a fault on the device is an error, not a refused candidate.
      const ms = timing.elapsedMs(start, timing.mark());
      if (queued && ms < bestMs) [best, bestMs] = [i, ms];
    }
    return best;
  }


  private layout(type: number, rows: number, cols: number, ld: number): bigint {
    const out: [bigint | null] = [null];
    this.lt.cublasLtMatrixLayoutCreate(out, type, rows, cols, ld);
    return out[0]!;
  }

  private batched(layout: bigint, count: number, stride: number): void {
    this.attr.writeInt32LE(count, 0);
    this.lt.cublasLtMatrixLayoutSetAttribute(layout, LAYOUT.BATCH_COUNT, this.attr, 4);
    this.attr.writeBigInt64LE(BigInt(stride), 0);
    this.lt.cublasLtMatrixLayoutSetAttribute(layout, LAYOUT.STRIDED_BATCH_OFFSET, this.attr, 8);
  }

  private setDesc(desc: bigint, attr: number, value: number, size: 4 | 8): void {
    if (size === 4) this.attr.writeUInt32LE(value, 0);
    else this.attr.writeBigUInt64LE(BigInt(value), 0);
    this.lt.cublasLtMatmulDescSetAttribute(desc, attr, this.attr, size);
  }
}

/** The 64-byte algorithm of heuristic result i at `results`, as hex (its identity across runs). */
function algoHex(results: bigint, i: number): string {
  return Buffer.from(koffi.view(results + BigInt(i * HEURISTIC_RESULT_BYTES), ALGO_BYTES)).toString('hex');
}

export function readTuning(file: string): Record<string, string> {
  try {
    const parsed: unknown = JSON.parse(readFileSync(file, 'utf8'));
    if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) return parsed as Record<string, string>;
  } catch {
    // none yet, or unreadable: tune again
  }
  return {};
}

/**
 * Adds one choice to the file, keeping every entry already there (the first process to tune a shape
 * wins, so later processes and ranks all read the same algorithm) except `stale`, an entry this
 * process found but could not use (not among cuBLASLt's candidates now). Written atomically (a
 * temporary file renamed over the old one). Returns the file's entries; an unwritable cache only
 * costs a re-tune.
 */
export function writeTuning(file: string, key: string, algo: string, stale?: string): Record<string, string> {
  const merged = readTuning(file);
  if (merged[key] === undefined || merged[key] === stale) merged[key] = algo;
  try {
    mkdirSync(dirname(file), { recursive: true });
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, `${JSON.stringify(merged, null, 1)}\n`);
    renameSync(tmp, file);
  } catch {
    // read-only cache folder
  }
  return merged;
}
