// Layout helpers shared by every backend's copy kernels.

/**
 * The plan of `permute(x, perm)` for a contiguous x of `shape`: the output shape, and the output
 * walked as `dims` with the input stride of each (size-1 dims dropped, neighbours that are
 * adjacent and in order in the input merged), so a backend copies with as few nested loops as
 * the permutation really needs. One dim or none means the copy is a straight memcpy.
 */
export function permutePlan(shape: readonly number[], perm: readonly number[]): { outShape: number[]; dims: number[]; strides: number[] } {
  const nd = shape.length;
  if (perm.length !== nd || [...perm].sort((a, b) => a - b).some((p, i) => p !== i)) {
    throw new Error(`permute: [${perm}] is not a permutation of the ${nd} dims of [${shape}]`);
  }
  const inStride = new Array<number>(nd);
  for (let d = nd - 1, s = 1; d >= 0; d--) {
    inStride[d] = s;
    s *= shape[d]!;
  }
  const dims: number[] = [];
  const strides: number[] = [];
  for (const p of perm) {
    const size = shape[p]!;
    if (size === 1) continue;
    const k = dims.length - 1;
    if (k >= 0 && strides[k] === inStride[p]! * size) {
      dims[k] = dims[k]! * size;
      strides[k] = inStride[p]!;
    } else {
      dims.push(size);
      strides.push(inStride[p]!);
    }
  }
  return { outShape: perm.map((p) => shape[p]!), dims, strides };
}

/** Split and concat view x as (outer, dim along `axis`, inner): the copies move runs of dim_i · inner elements. */
export interface AxisPlan {
  axis: number;
  outer: number;
  inner: number;
  /** The whole dim along the axis (the input's for split, the output's for concat). */
  total: number;
}

function normAxis(axis: number, ndim: number, kernel: string): number {
  const a = axis < 0 ? axis + ndim : axis;
  if (!Number.isInteger(a) || a < 0 || a >= ndim) throw new Error(`${kernel}: axis ${axis} out of range for ${ndim} dims`);
  return a;
}

function prod(xs: readonly number[], from = 0, to = xs.length): number {
  let p = 1;
  for (let i = from; i < to; i++) p *= xs[i]!;
  return p;
}

/** The plan of `split(x, sizes, axis)`; the sizes must add up to x's dim along the axis. */
export function splitPlan(shape: readonly number[], sizes: readonly number[], axis: number): AxisPlan {
  const a = normAxis(axis, shape.length, 'split');
  const total = sizes.reduce((p, q) => p + q, 0);
  if (sizes.some((s) => !Number.isInteger(s) || s < 0) || total !== shape[a]) {
    throw new Error(`split: sizes [${sizes}] do not add up to dim ${a} (${shape[a]}) of [${shape}]`);
  }
  return { axis: a, outer: prod(shape, 0, a), inner: prod(shape, a + 1), total };
}

/** The plan of `concat(xs, axis)`: same dtype, same shape outside the axis. */
export function concatPlan(xs: readonly { shape: readonly number[]; dtype: string; ndim: number }[], axis: number): AxisPlan & { outShape: number[] } {
  if (xs.length === 0) throw new Error('concat: no inputs');
  const first = xs[0]!;
  const a = normAxis(axis, first.ndim, 'concat');
  let total = 0;
  for (const x of xs) {
    if (x.dtype !== first.dtype) throw new Error(`concat: dtypes differ (${first.dtype} and ${x.dtype})`);
    if (x.ndim !== first.ndim || x.shape.some((d, i) => i !== a && d !== first.shape[i])) {
      throw new Error(`concat: shapes [${first.shape}] and [${x.shape}] differ outside axis ${a}`);
    }
    total += x.shape[a]!;
  }
  return {
    axis: a, outer: prod(first.shape, 0, a), inner: prod(first.shape, a + 1), total,
    outShape: first.shape.map((d, i) => (i === a ? total : d)),
  };
}

/**
 * An attention tensor's shape (q, k, v, o and their gradients) as [B, heads, length, D] whatever the
 * layout: 'bhsd' stores [B, heads, length, D], 'bshd' [B, length, heads, D] (tensor/kernels.ts).
 */
export function headsFirst(shape: readonly number[], layout: 'bhsd' | 'bshd' = 'bhsd'): [number, number, number, number] {
  const [a, b, c, d] = shape as [number, number, number, number];
  return layout === 'bshd' ? [a, c, b, d] : [a, b, c, d];
}

/** The stored shape of an attention tensor of B × heads × length rows of D in `layout`. */
export function attentionShape(B: number, heads: number, length: number, D: number, layout: 'bhsd' | 'bshd' = 'bhsd'): number[] {
  return layout === 'bshd' ? [B, length, heads, D] : [B, heads, length, D];
}
