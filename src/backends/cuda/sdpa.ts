// cuDNN fused flash attention (SDPA) through the backend API: the forward and backward graphs of
// shared/CUDNN-SDPA.md §4–§7, built op by op exactly as cudnn-frontend 1.18 sends them on 9.14.
//
//   sdpaFor(be)              the per-backend Sdpa, or null with sdpaUnavailableReason() saying why
//   Sdpa.forward(shape, …)   o, lse of bf16 causal attention; false when cuDNN rejects the shape
//   Sdpa.backward(shape, …)  dq, dk, dv; false when cuDNN rejects the shape
//   sdpaSupports(…)          the shapes worth asking cuDNN about (bf16, causal, T = S, S % 128 = 0, …)
//
// Layout: cuDNN's tensors are logically [B, H, S, D] with the memory layout in their strides (any
// layout with a contiguous head dim), so both of ours go in as strided 4-D views, no copies:
//   bhsd  q, o, dO, dq contiguous [B, H, T, D], k, v, dk, dv [B, Hkv, S, D]: strides [H·S·D, S·D, D, 1]
//   bshd  q, o, dO, dq [B, T, H, D], k, v, dk, dv [B, S, Hkv, D] (what the model's QKV projection
//         gives, so it permutes no heads): strides [S·H·D, D, H·D, 1]
//   packed (with bshd, H = Hkv) q, k, v and dq, dk, dv inside one [B, S, H, 3·D] buffer, each
//         head's row [q ‖ k ‖ v] (the QKV projection's own output, so nothing is split or
//         concatenated): strides [S·H·3D, 3D, H·3D, 1] from qkv, qkv + D and qkv + 2D; o, dO bshd
// K (and V in backward) go in transposed, [B, Hkv, D, S] with the last two strides swapped. The
// graph-internal tensors (virtuals, the dQ accumulator, GQA's full-head dK/dV) keep contiguous
// strides whatever the layout (cudnn-frontend too gives the last two contiguous strides). cuDNN's
// Stats tensor, [B, H, T, 1] f32, is the natural-log log-sum-exp of the scaled, masked scores:
// exactly our lse (scale inside; [B, H, T] in both layouts), so it is written and read in place.
// The attention scale is a by-value host scalar, so one plan serves every scale. Plans are built
// once per (B, H, Hkv, S, D, layout) and direction, and kept; the graph's descriptors live as long
// as the plan. A shape cuDNN rejects (no engine, or a failing finalize) is remembered and
// reported once; the caller falls back to kernels/attention.cu. Workspaces (the plan's own, plus
// the backward's dQ accumulator and softmax sum) come from the allocator for the call.

import koffi from 'koffi';
import type { AttentionLayout } from '../../tensor/kernels.js';
import type { CudaBackend } from './backend.js';
import { ATTR, type Cudnn, DATA, DESC, HEUR, PW, REDUCE, TYPE, cudnn, cudnnVersionNumber } from './ffi/cudnn.js';

type H = bigint;

export interface SdpaShape {
  readonly B: number;
  readonly H: number;
  readonly Hkv: number;
  /** T = S: the query and key length. */
  readonly S: number;
  readonly D: number;
  /** Where the heads sit in memory (default 'bhsd'): see the header. */
  readonly layout?: AttentionLayout;
  /**
   * q, k, v (and dq, dk, dv) inside one packed [B, S, H, 3·D] buffer, each head's row [q ‖ k ‖ v]
   * (GPT-NeoX's fused projection; H = Hkv): strides [S·H·3D, 3D, H·3D, 1] from pointers qkv, qkv + D,
   * qkv + 2D. o and dO stay [B, S, H, D] (layout must be 'bshd').
   */
  readonly packed?: boolean;
}

export interface SdpaForwardArgs {
  q: number; k: number; v: number; o: number; lse: number;
}

export interface SdpaBackwardArgs extends SdpaForwardArgs {
  dO: number; dq: number; dk: number; dv: number;
}

/**
 * Whether a case is one the cuDNN graphs cover: bf16, causal, no window, no ALiBi, T = S with
 * S % 128 = 0 (cuDNN ≤ 9.15 pads other lengths in backward through extra graph inputs we do not
 * build), D a multiple of 8 up to 128, and at least two positions.
 */
export function sdpaSupports(dtype: string, causal: boolean, window: number, alibi: boolean, T: number, S: number, D: number): boolean {
  return dtype === 'bf16' && causal && window === 0 && !alibi && T === S && S >= 128 && S % 128 === 0 && D % 8 === 0 && D >= 8 && D <= 128;
}

// UIDs (CUDNN-SDPA.md §5, §6). Virtual tensors count up from 100.
const UID = { Q: 1, K: 2, V: 3, O: 4, STATS: 5, SCALE: 6, NEG_INF: 7, DO: 8, DQ: 9, DK: 10, DV: 11, ONE: 12, SOFTMAX_SUM: 13, DQ_ACCUM: 14 } as const;

interface Plan {
  plan: H;
  workspace: number;
  /** Every descriptor of the graph, kept alive with the plan. */
  descriptors: H[];
}

/** Descriptor construction with typed attribute setters; remembers what it created. */
class Builder {
  readonly made: H[] = [];
  private nextVirtual = 100;

  constructor(private readonly api: Cudnn, private readonly handle: H) {}

  create(type: number): H {
    const out: [H | null] = [null];
    this.api.cudnnBackendCreateDescriptor(type, out);
    this.made.push(out[0]!);
    return out[0]!;
  }

  private set(desc: H, name: number, type: number, count: number, buf: Buffer): void {
    this.api.cudnnBackendSetAttribute(desc, name, type, count, buf);
  }

  int64s(desc: H, name: number, values: readonly number[]): void {
    this.set(desc, name, TYPE.INT64, values.length, Buffer.from(BigInt64Array.from(values.map(BigInt)).buffer));
  }

  /** An int32 enum attribute of `type` (DATA_TYPE, POINTWISE_MODE, HEUR_MODE, ...). */
  enumeration(desc: H, name: number, type: number, value: number): void {
    this.set(desc, name, type, 1, Buffer.from(Int32Array.of(value).buffer));
  }

  bool(desc: H, name: number, value: boolean): void {
    this.set(desc, name, TYPE.BOOLEAN, 1, Buffer.from([value ? 1 : 0]));
  }

  float(desc: H, name: number, value: number): void {
    this.set(desc, name, TYPE.FLOAT, 1, Buffer.from(Float32Array.of(value).buffer));
  }

  descriptors(desc: H, name: number, values: readonly H[]): void {
    this.set(desc, name, TYPE.BACKEND_DESCRIPTOR, values.length, Buffer.from(BigUint64Array.from(values).buffer));
  }

  /** Addresses (VOID_PTR): device pointers, host scalars, the workspace. */
  pointers(desc: H, name: number, values: readonly bigint[]): void {
    this.set(desc, name, TYPE.VOID_PTR, values.length, Buffer.from(BigUint64Array.from(values).buffer));
  }

  handleAttr(desc: H, name: number): void {
    this.set(desc, name, TYPE.HANDLE, 1, Buffer.from(BigUint64Array.of(this.handle).buffer));
  }

  finalize(desc: H): H {
    this.api.cudnnBackendFinalize(desc);
    return desc;
  }

  /** A 4-D tensor: DATA_TYPE, DIMENSIONS, STRIDES, UNIQUE_ID, BYTE_ALIGNMENT, then the flags (§4). */
  tensor(uid: number | null, dtype: number, dims: readonly number[], strides: readonly number[], flags: { virtual?: boolean; byValue?: boolean } = {}): H {
    const t = this.create(DESC.TENSOR);
    this.enumeration(t, ATTR.TENSOR_DATA_TYPE, TYPE.DATA_TYPE, dtype);
    this.int64s(t, ATTR.TENSOR_DIMENSIONS, dims);
    this.int64s(t, ATTR.TENSOR_STRIDES, strides);
    this.int64s(t, ATTR.TENSOR_UNIQUE_ID, [uid ?? this.nextVirtual++]);
    this.int64s(t, ATTR.TENSOR_BYTE_ALIGNMENT, [16]);
    if (flags.virtual) this.bool(t, ATTR.TENSOR_IS_VIRTUAL, true);
    if (flags.byValue) this.bool(t, ATTR.TENSOR_IS_BY_VALUE, true);
    return this.finalize(t);
  }

  virtual(dtype: number, dims: readonly number[], strides: readonly number[]): H {
    return this.tensor(null, dtype, dims, strides, { virtual: true });
  }

  /** A host f32 scalar passed by value. */
  scalar(uid: number): H {
    return this.tensor(uid, DATA.FLOAT, [1, 1, 1, 1], [1, 1, 1, 1], { byValue: true });
  }

  pointwise(mode: number, prec: number, x: H, y: H, b?: H, t?: H, axis?: number): H {
    const pw = this.create(DESC.POINTWISE);
    this.enumeration(pw, ATTR.POINTWISE_MODE, TYPE.POINTWISE_MODE, mode);
    this.enumeration(pw, ATTR.POINTWISE_MATH_PREC, TYPE.DATA_TYPE, prec);
    if (axis !== undefined) this.int64s(pw, ATTR.POINTWISE_AXIS, [axis]);
    this.finalize(pw);
    const op = this.create(DESC.OPERATION_POINTWISE);
    this.descriptors(op, ATTR.OPERATION_POINTWISE_PW_DESCRIPTOR, [pw]);
    this.descriptors(op, ATTR.OPERATION_POINTWISE_XDESC, [x]);
    this.descriptors(op, ATTR.OPERATION_POINTWISE_YDESC, [y]);
    if (b !== undefined) this.descriptors(op, ATTR.OPERATION_POINTWISE_BDESC, [b]);
    if (t !== undefined) this.descriptors(op, ATTR.OPERATION_POINTWISE_TDESC, [t]);
    this.float(op, ATTR.OPERATION_POINTWISE_ALPHA1, 1);
    this.float(op, ATTR.OPERATION_POINTWISE_ALPHA2, 1);
    return this.finalize(op);
  }

  /** C = A·B over the last two dims, f32 accumulation; batch dims broadcast (GQA). */
  matmul(a: H, b: H, c: H): H {
    const mm = this.create(DESC.MATMUL);
    this.enumeration(mm, ATTR.MATMUL_COMP_TYPE, TYPE.DATA_TYPE, DATA.FLOAT);
    this.finalize(mm);
    const op = this.create(DESC.OPERATION_MATMUL);
    this.descriptors(op, ATTR.OPERATION_MATMUL_ADESC, [a]);
    this.descriptors(op, ATTR.OPERATION_MATMUL_BDESC, [b]);
    this.descriptors(op, ATTR.OPERATION_MATMUL_CDESC, [c]);
    this.descriptors(op, ATTR.OPERATION_MATMUL_DESC, [mm]);
    return this.finalize(op);
  }

  /** y = reduce(x) over the axes where y's dim is smaller (1, or a head group). */
  reduction(operator: number, x: H, y: H): H {
    const r = this.create(DESC.REDUCTION);
    this.enumeration(r, ATTR.REDUCTION_COMP_TYPE, TYPE.DATA_TYPE, DATA.FLOAT);
    this.enumeration(r, ATTR.REDUCTION_OPERATOR, TYPE.REDUCTION_OPERATOR_TYPE, operator);
    this.finalize(r);
    const op = this.create(DESC.OPERATION_REDUCTION);
    this.descriptors(op, ATTR.OPERATION_REDUCTION_DESC, [r]);
    this.descriptors(op, ATTR.OPERATION_REDUCTION_XDESC, [x]);
    this.descriptors(op, ATTR.OPERATION_REDUCTION_YDESC, [y]);
    return this.finalize(op);
  }

  reshape(x: H, y: H): H {
    const op = this.create(DESC.OPERATION_RESHAPE);
    this.descriptors(op, ATTR.OPERATION_RESHAPE_XDESC, [x]);
    this.descriptors(op, ATTR.OPERATION_RESHAPE_YDESC, [y]);
    return this.finalize(op);
  }

  /** OPERATIONGRAPH → heuristics (mode A, then FALLBACK) → the first engine config that finalizes (§7). */
  plan(ops: readonly H[]): { plan: H; workspace: number } {
    const graph = this.create(DESC.OPERATIONGRAPH);
    this.descriptors(graph, ATTR.OPERATIONGRAPH_OPS, ops);
    this.handleAttr(graph, ATTR.OPERATIONGRAPH_HANDLE);
    this.finalize(graph);
    const errors: string[] = [];
    for (const mode of [HEUR.A, HEUR.FALLBACK]) {
      const heur = this.create(DESC.ENGINEHEUR);
      this.descriptors(heur, ATTR.ENGINEHEUR_OPERATION_GRAPH, [graph]);
      this.enumeration(heur, ATTR.ENGINEHEUR_MODE, TYPE.HEUR_MODE, mode);
      this.finalize(heur);
      const count = Buffer.alloc(8);
      this.api.cudnnBackendGetAttribute(heur, ATTR.ENGINEHEUR_RESULTS, TYPE.BACKEND_DESCRIPTOR, 0, count, null);
      const n = Number(count.readBigInt64LE(0));
      if (n <= 0) continue;
      const configs: H[] = [];
      for (let i = 0; i < n; i++) configs.push(this.create(DESC.ENGINECFG)); // cuDNN fills descriptors we made
      const array = Buffer.from(BigUint64Array.from(configs).buffer);
      this.api.cudnnBackendGetAttribute(heur, ATTR.ENGINEHEUR_RESULTS, TYPE.BACKEND_DESCRIPTOR, n, count, array);
      const got = Math.min(n, Number(count.readBigInt64LE(0)));
      for (let i = 0; i < got; i++) {
        const plan = this.create(DESC.EXECUTION_PLAN);
        try {
          this.descriptors(plan, ATTR.EXECUTION_PLAN_ENGINE_CONFIG, [configs[i]!]);
          this.finalize(plan);
        } catch (e) {
          errors.push((e as Error).message);
          continue;
        }
        const ws = Buffer.alloc(8);
        this.api.cudnnBackendGetAttribute(plan, ATTR.EXECUTION_PLAN_WORKSPACE_SIZE, TYPE.INT64, 1, count, ws);
        return { plan, workspace: Number(ws.readBigInt64LE(0)) };
      }
    }
    throw new Error(`no cuDNN engine for this graph${errors.length ? ` (${errors[0]})` : ''}`);
  }

  destroyAll(): void {
    for (const d of this.made.splice(0).reverse()) {
      try {
        this.api.cudnnBackendDestroyDescriptor(d);
      } catch {
        // best effort on a failed build
      }
    }
  }
}

/** Strides of the logical [B, heads, S, D] tensor stored in `layout`: bhsd [B, heads, S, D], bshd [B, S, heads, D]. */
function layoutStrides(B: number, heads: number, S: number, D: number, layout: AttentionLayout): number[] {
  return layout === 'bshd' ? [S * heads * D, D, heads * D, 1] : [heads * S * D, S * D, D, 1];
}

/** Strides of q, k, v (and dq, dk, dv): the packed QKV's, or the layout's. */
function ioStrides(s: SdpaShape, heads: number): number[] {
  if (s.packed) return [s.S * s.H * 3 * s.D, 3 * s.D, s.H * 3 * s.D, 1];
  return layoutStrides(s.B, heads, s.S, s.D, s.layout ?? 'bhsd');
}

/** The transposed view [B, heads, D, S] of a [B, heads, S, D] tensor with strides `str` (K, and V in backward). */
function transposed(str: readonly number[]): number[] {
  return [str[0]!, str[1]!, str[3]!, str[2]!];
}

// Strides of contiguous tensors, and the shapes of §4.
function contiguous(dims: readonly number[]): number[] {
  const s = new Array<number>(dims.length);
  let acc = 1;
  for (let i = dims.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= dims[i]!;
  }
  return s;
}

export class Sdpa {
  private readonly api: Cudnn;
  private readonly handle: H;
  /** Host f32 scalars bound by value: [scale, −∞, 1]. */
  private readonly scalars: H;
  private readonly scalarView: Float32Array;
  private readonly plans = new Map<string, Plan | null>();
  /** Why each rejected shape was rejected (reported once). */
  readonly rejected = new Map<string, string>();

  constructor(private readonly be: CudaBackend) {
    this.api = cudnn();
    const h: [H | null] = [null];
    this.api.cudnnCreate(h);
    this.handle = h[0]!;
    this.api.cudnnSetStream(this.handle, be.stream);
    this.scalars = koffi.alloc('float', 4) as H;
    this.scalarView = new Float32Array(koffi.view(this.scalars, 16));
    this.scalarView.set([1, -Infinity, 1, 0]);
  }

  /** o, lse = attention(q, k, v), bf16 causal; false (nothing queued) when cuDNN has no plan for the shape. */
  forward(s: SdpaShape, scale: number, a: SdpaForwardArgs): boolean {
    const plan = this.plan('fwd', s, () => this.buildForward(s));
    if (!plan) return false;
    this.execute(plan, scale, [[UID.Q, a.q], [UID.K, a.k], [UID.V, a.v], [UID.O, a.o], [UID.STATS, a.lse]], false);
    return true;
  }

  /** dq, dk, dv of bf16 causal attention; false (nothing queued) when cuDNN has no plan for the shape. */
  backward(s: SdpaShape, scale: number, a: SdpaBackwardArgs): boolean {
    const plan = this.plan('bwd', s, () => this.buildBackward(s));
    if (!plan) return false;
    const accumBytes = s.B * s.H * s.S * s.D * 4; // dQ_accum [B, H, S, D] f32
    const sumBytes = s.B * s.H * s.S * 4; // softmax_sum [B, H, S, 1] f32
    const own = this.be.scratch(accumBytes + sumBytes);
    try {
      this.execute(plan, scale, [
        [UID.Q, a.q], [UID.K, a.k], [UID.V, a.v], [UID.O, a.o], [UID.DO, a.dO], [UID.STATS, a.lse],
        [UID.DQ, a.dq], [UID.DK, a.dk], [UID.DV, a.dv], [UID.DQ_ACCUM, own.ptr], [UID.SOFTMAX_SUM, own.ptr + accumBytes],
      ], true);
    } finally {
      this.be.releaseScratch(own);
    }
    return true;
  }

  /** How many plans are cached (rejected shapes not counted). */
  get planCount(): number {
    return [...this.plans.values()].filter((p) => p !== null).length;
  }

  private plan(dir: 'fwd' | 'bwd', s: SdpaShape, build: () => Plan): Plan | null {
    if (s.packed && (s.H !== s.Hkv || s.layout !== 'bshd')) throw new Error(`cuDNN attention: packed QKV needs H = Hkv and layout bshd`);
    const key = `${dir} B${s.B} H${s.H} Hkv${s.Hkv} S${s.S} D${s.D} ${s.layout ?? 'bhsd'}${s.packed ? ' packed' : ''}`;
    const hit = this.plans.get(key);
    if (hit !== undefined) return hit;
    let plan: Plan | null = null;
    try {
      plan = build();
    } catch (e) {
      const why = (e as Error).message;
      this.rejected.set(key, why);
      console.warn(`cuDNN attention: ${key} not supported (${why}); using the fallback kernel for this shape`);
    }
    this.plans.set(key, plan);
    return plan;
  }

  /**
   * Binds the device pointers and the host scalars (scale, −∞, and 1.0 in backward) in a variant pack
   * and queues the plan on the backend's stream. The by-value scalars are read during the call.
   */
  private execute(plan: Plan, scale: number, device: readonly [number, number][], backward: boolean): void {
    this.scalarView[0] = scale;
    const host: [number, H][] = [[UID.SCALE, this.scalars], [UID.NEG_INF, this.scalars + 4n]];
    if (backward) host.push([UID.ONE, this.scalars + 8n]);
    const bound: [number, H][] = [...device.map(([u, p]): [number, H] => [u, BigInt(p)]), ...host];
    const ws = plan.workspace > 0 ? this.be.scratch(plan.workspace) : null;
    const b = new Builder(this.api, this.handle);
    try {
      const vp = b.create(DESC.VARIANT_PACK);
      b.pointers(vp, ATTR.VARIANT_PACK_WORKSPACE, [BigInt(ws ? ws.ptr : 0)]);
      b.pointers(vp, ATTR.VARIANT_PACK_DATA_POINTERS, bound.map(([, p]) => p));
      b.int64s(vp, ATTR.VARIANT_PACK_UNIQUE_IDS, bound.map(([u]) => u));
      b.finalize(vp);
      this.api.cudnnSetStream(this.handle, this.be.stream);
      this.api.cudnnBackendExecute(this.handle, plan.plan, vp);
    } finally {
      b.destroyAll();
      if (ws) this.be.releaseScratch(ws); // stream-ordered: a later user queues after cuDNN's kernels
    }
  }

  /** §5: 19 tensors, 14 ops. */
  private buildForward(s: SdpaShape): Plan {
    const { B, H, Hkv, S, D, layout = 'bhsd' } = s;
    const b = new Builder(this.api, this.handle);
    try {
      const BF = DATA.BFLOAT16, F = DATA.FLOAT;
      const qDims = [B, H, S, D], kvDims = [B, Hkv, S, D], sDims = [B, H, S, S], rDims = [B, H, S, 1];
      const sStr = contiguous(sDims), rStr = contiguous(rDims);
      const qIo = ioStrides(s, H), kvIo = ioStrides(s, Hkv), oIo = layoutStrides(B, H, S, D, layout); // q; k, v; o
      const Q = b.tensor(UID.Q, BF, qDims, qIo);
      const KT = b.tensor(UID.K, BF, [B, Hkv, D, S], transposed(kvIo));
      const V = b.tensor(UID.V, BF, kvDims, kvIo);
      const O = b.tensor(UID.O, BF, qDims, oIo);
      const stats = b.tensor(UID.STATS, F, rDims, rStr);
      const scale = b.scalar(UID.SCALE);
      const negInf = b.scalar(UID.NEG_INF);
      const s0 = b.virtual(F, sDims, sStr);
      const s1 = b.virtual(F, sDims, sStr);
      const row = b.virtual(DATA.INT32, sDims, sStr);
      const col = b.virtual(DATA.INT32, sDims, sStr);
      const keep = b.virtual(DATA.BOOLEAN, sDims, sStr);
      const masked = b.virtual(F, sDims, sStr);
      const max = b.virtual(F, rDims, rStr);
      const shifted = b.virtual(F, sDims, sStr);
      const e = b.virtual(F, sDims, sStr);
      const z = b.virtual(F, rDims, rStr);
      const logZ = b.virtual(F, rDims, rStr);
      const P = b.virtual(BF, sDims, sStr);
      const ops = [
        b.matmul(Q, KT, s0),
        b.pointwise(PW.MUL, F, s0, s1, scale),
        b.pointwise(PW.GEN_INDEX, F, s1, row, undefined, undefined, 2),
        b.pointwise(PW.GEN_INDEX, F, s1, col, undefined, undefined, 3),
        b.pointwise(PW.CMP_GE, DATA.BOOLEAN, row, keep, col),
        b.pointwise(PW.BINARY_SELECT, F, s1, masked, negInf, keep),
        b.reduction(REDUCE.MAX, masked, max),
        b.pointwise(PW.SUB, F, masked, shifted, max),
        b.pointwise(PW.EXP, F, shifted, e),
        b.reduction(REDUCE.ADD, e, z),
        b.pointwise(PW.LOG, F, z, logZ),
        b.pointwise(PW.ADD, F, max, stats, logZ),
        b.pointwise(PW.DIV, F, e, P, z),
        b.matmul(P, V, O),
      ];
      const { plan, workspace } = b.plan(ops);
      return { plan, workspace, descriptors: b.made };
    } catch (e) {
      b.destroyAll();
      throw e;
    }
  }

  /** §6: 31 tensors, 22 ops (GQA: 33, 24, through full-head dK/dV and a head reduction). */
  private buildBackward(s: SdpaShape): Plan {
    const { B, H, Hkv, S, D, layout = 'bhsd' } = s;
    const b = new Builder(this.api, this.handle);
    try {
      const BF = DATA.BFLOAT16, F = DATA.FLOAT;
      const qDims = [B, H, S, D], kvDims = [B, Hkv, S, D], sDims = [B, H, S, S], rDims = [B, H, S, 1];
      const qStr = contiguous(qDims), sStr = contiguous(sDims), rStr = contiguous(rDims); // graph-internal
      const qIo = ioStrides(s, H), kvIo = ioStrides(s, Hkv), oIo = layoutStrides(B, H, S, D, layout); // q, dq; k, v, dk, dv; o, dO
      const tDims = [B, H, S, S], tStr = [sStr[0]!, sStr[1]!, 1, S]; // transposed view of an S tensor
      const Q = b.tensor(UID.Q, BF, qDims, qIo);
      const KT = b.tensor(UID.K, BF, [B, Hkv, D, S], transposed(kvIo));
      const VT = b.tensor(UID.V, BF, [B, Hkv, D, S], transposed(kvIo));
      const O = b.tensor(UID.O, BF, qDims, oIo);
      const stats = b.tensor(UID.STATS, F, rDims, rStr);
      const scale = b.scalar(UID.SCALE);
      const negInf = b.scalar(UID.NEG_INF);
      const dO = b.tensor(UID.DO, BF, qDims, oIo);
      const dQ = b.tensor(UID.DQ, BF, qDims, qIo);
      const dK = b.tensor(UID.DK, BF, kvDims, kvIo);
      const dV = b.tensor(UID.DV, BF, kvDims, kvIo);
      const one = b.scalar(UID.ONE);
      const softmaxSum = b.tensor(UID.SOFTMAX_SUM, F, rDims, rStr);
      const dQaccum = b.tensor(UID.DQ_ACCUM, F, qDims, qStr);
      const gqa = H !== Hkv;
      const ops: H[] = [];
      // softmax_sum = rowsum(dO ∘ O) · 1
      const dOO = b.virtual(F, qDims, qStr);
      const dOOsum = b.virtual(F, rDims, rStr);
      ops.push(b.pointwise(PW.MUL, F, dO, dOO, O));
      ops.push(b.reduction(REDUCE.ADD, dOO, dOOsum));
      ops.push(b.pointwise(PW.MUL, F, dOOsum, softmaxSum, one));
      // P = exp(mask(scale · Q·Kᵀ − Stats))
      const s0 = b.virtual(F, sDims, sStr);
      const s1 = b.virtual(F, sDims, sStr);
      const s2 = b.virtual(F, sDims, sStr);
      const row = b.virtual(DATA.INT32, sDims, sStr);
      const col = b.virtual(DATA.INT32, sDims, sStr);
      const keep = b.virtual(DATA.BOOLEAN, sDims, sStr);
      const masked = b.virtual(F, sDims, sStr);
      const P = b.virtual(F, sDims, sStr);
      ops.push(b.matmul(Q, KT, s0));
      ops.push(b.pointwise(PW.MUL, F, s0, s1, scale));
      ops.push(b.pointwise(PW.SUB, F, s1, s2, stats));
      ops.push(b.pointwise(PW.GEN_INDEX, F, s2, row, undefined, undefined, 2));
      ops.push(b.pointwise(PW.GEN_INDEX, F, s2, col, undefined, undefined, 3));
      ops.push(b.pointwise(PW.CMP_GE, DATA.BOOLEAN, row, keep, col));
      ops.push(b.pointwise(PW.BINARY_SELECT, F, s2, masked, negInf, keep));
      ops.push(b.pointwise(PW.EXP, F, masked, P));
      // dV = Pᵀ·dO (GQA: per query head, then summed over the group)
      const PT = b.virtual(BF, tDims, tStr);
      ops.push(b.reshape(P, PT));
      if (gqa) {
        const dVfull = b.virtual(BF, qDims, qStr);
        ops.push(b.matmul(PT, dO, dVfull));
        ops.push(b.reduction(REDUCE.ADD, dVfull, dV));
      } else {
        ops.push(b.matmul(PT, dO, dV));
      }
      // dS = (dO·Vᵀ − softmax_sum) ∘ P · scale
      const dP = b.virtual(F, sDims, sStr);
      const t1 = b.virtual(F, sDims, sStr);
      const t2 = b.virtual(F, sDims, sStr);
      const dS = b.virtual(F, sDims, sStr);
      ops.push(b.matmul(dO, VT, dP));
      ops.push(b.pointwise(PW.SUB, F, dP, t1, softmaxSum));
      ops.push(b.pointwise(PW.MUL, F, t1, t2, P));
      ops.push(b.pointwise(PW.MUL, F, t2, dS, scale));
      // dK = dSᵀ·Q
      const dST = b.virtual(BF, tDims, tStr);
      ops.push(b.reshape(dS, dST));
      if (gqa) {
        const dKfull = b.virtual(BF, qDims, qStr);
        ops.push(b.matmul(dST, Q, dKfull));
        ops.push(b.reduction(REDUCE.ADD, dKfull, dK));
      } else {
        ops.push(b.matmul(dST, Q, dK));
      }
      // dQ = dS·K through the f32 accumulator (K: the reshape of Kᵀ back to K's own strides)
      const K = b.virtual(F, kvDims, kvIo);
      ops.push(b.reshape(KT, K));
      ops.push(b.matmul(dS, K, dQaccum));
      ops.push(b.pointwise(PW.IDENTITY, F, dQaccum, dQ));
      const { plan, workspace } = b.plan(ops);
      return { plan, workspace, descriptors: b.made };
    } catch (e) {
      b.destroyAll();
      throw e;
    }
  }
}

const instances = new WeakMap<CudaBackend, Sdpa | null>();
let unavailable: string | null = null;

/**
 * The backend's cuDNN attention, created on first use, or null when cuDNN cannot serve it: the
 * library is missing, too old (< 9.0, or 9.10.0/9.10.1 with known SDPA bugs), or the GPU is older
 * than sm_80. The reason is in sdpaUnavailableReason(), and is logged once.
 */
export function sdpaFor(be: CudaBackend): Sdpa | null {
  const hit = instances.get(be);
  if (hit !== undefined) return hit;
  let sdpa: Sdpa | null = null;
  try {
    const v = cudnnVersionNumber();
    if (v < 90000) throw new Error(`cuDNN ${v} is older than 9.0`);
    if (v === 91000 || v === 91001) throw new Error('cuDNN 9.10.0/9.10.1 have known SDPA bugs');
    if (be.device.arch < 80) throw new Error(`fused attention needs sm_80 or newer (this GPU is sm_${be.device.arch})`);
    sdpa = new Sdpa(be);
  } catch (e) {
    unavailable = (e as Error).message;
    console.warn(`cuDNN attention unavailable: ${unavailable}; using the fallback kernel`);
  }
  instances.set(be, sdpa);
  return sdpa;
}

export function sdpaUnavailableReason(): string | null {
  return unavailable;
}
