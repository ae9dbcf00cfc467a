// ZeRO's flat layout: where each parameter sits in the flat buffers, how they are cut into
// buckets, and which slice of each bucket every rank owns (used by zero.ts).
//
// defines: zeroLayout, ZeroLayout, ZeroLayoutOptions, ZeroBucket, shardRange, ShardRange
//
// Layout (zeroLayout): every parameter, f32, lives in one flat buffer, at an offset aligned to
// `align` elements (64 on CUDA: 256 bytes, what cuBLASLt and vector loads want; 1 on CPU). The
// parameters are grouped into buckets of at most `bucketElements` (zero_optimization.
// reduce_bucket_size), filled walking the forward order (`order`: the model's parameters();
// default the groups' order) backward, the order backward makes gradients final; within a bucket
// the parameters are laid out group by group (one weight decay after the other), each in forward
// order. Each bucket is padded to a multiple of W·align and split into W equal slices: rank r owns
// slice r of every bucket. A rank's shard (S elements) is its slices of all buckets, end to end.
// With one bucket (the default for models under 5e8 parameters) rank r owns flat [r·S, (r+1)·S).

export interface ZeroBucket {
  /** First element of the bucket in the flat buffers. */
  start: number;
  /** Elements, a multiple of W·align. */
  length: number;
  /** length / W: rank r owns flat [start + r·slice, start + (r+1)·slice). */
  slice: number;
  /** Where each rank's slice of this bucket sits in its shard. */
  shardOffset: number;
  /** The bucket's parameters (indices into the parameter list), in flat order: by class, then forward order. */
  params: number[];
}

export interface ZeroLayoutOptions {
  /** Most elements per bucket (default: one bucket). */
  bucketElements?: number;
  /** Alignment of every parameter and rank slice, in elements (default 1). */
  align?: number;
  /** The parameter indices in forward order (default 0, 1, …): buckets are filled walking it backward. */
  order?: readonly number[];
  /** Per parameter, a class (ZeroOptimizer: its group, i.e. weight decay); within a bucket, classes are laid out one after another (default: all 0). */
  classes?: readonly number[];
  /** Per parameter, a gather unit (stage 3): no bucket holds parameters of two units (default: all 0). */
  units?: readonly number[];
}

export interface ZeroLayout {
  /** Flat offset of each parameter. */
  offsets: number[];
  /** In reduction order: the bucket of the last parameters (whose gradients backward makes first) first. */
  buckets: ZeroBucket[];
  /** Elements of the flat buffers: W·S. */
  total: number;
  /** Elements of a rank's shard, S. */
  shardSize: number;
}

const roundUp = (x: number, a: number): number => Math.ceil(x / a) * a;

/** Where each of `numels` parameters goes in the flat buffers, and the buckets (see the header). */
export function zeroLayout(numels: readonly number[], worldSize: number, opts: ZeroLayoutOptions = {}): ZeroLayout {
  const W = worldSize;
  const n = numels.length;
  const align = opts.align ?? 1;
  const maxElements = opts.bucketElements ?? Infinity;
  if (!Number.isInteger(W) || W < 1) throw new Error(`zeroLayout: world size ${W}`);
  if (!Number.isInteger(align) || align < 1) throw new Error(`zeroLayout: alignment ${align} must be a positive integer`);
  if (!(maxElements >= 1)) throw new Error(`zeroLayout: bucket size must be at least 1 element, got ${maxElements}`);
  const order = opts.order ?? Array.from({ length: n }, (_, i) => i);
  const position = new Array<number>(n).fill(-1);
  order.forEach((i, at) => {
    if (!(Number.isInteger(i) && i >= 0 && i < n) || position[i] !== -1) throw new Error(`zeroLayout: order must list each of the ${n} parameters once`);
    position[i] = at;
  });
  if (order.length !== n) throw new Error(`zeroLayout: order must list each of the ${n} parameters once`);
  const classOf = (i: number) => opts.classes?.[i] ?? 0;
  const unitOf = (i: number) => opts.units?.[i] ?? 0;
  // Bucket membership, walking the forward order backward (the order gradients become final).
  const members: number[][] = [];
  let current: number[] = [];
  let size = 0;
  for (let j = n - 1; j >= 0; j--) {
    const i = order[j]!;
    const s = roundUp(numels[i]!, align);
    if (current.length && (size + s > maxElements || unitOf(i) !== unitOf(current[0]!))) {
      members.push(current);
      current = [];
      size = 0;
    }
    current.push(i);
    size += s;
  }
  if (current.length) members.push(current);
  // Flat placement: the last bucket formed (the first parameters) first; within a bucket, class by
  // class (so a rank's slice has few runs of one weight decay), each in forward order.
  const offsets = new Array<number>(n).fill(0);
  const buckets: ZeroBucket[] = [];
  let at = 0;
  let shardAt = 0;
  for (let k = members.length - 1; k >= 0; k--) {
    const params = [...members[k]!].sort((a, b) => classOf(a) - classOf(b) || position[a]! - position[b]!);
    const start = at;
    for (const i of params) {
      offsets[i] = at;
      at += roundUp(numels[i]!, align);
    }
    const length = roundUp(at - start, W * align);
    at = start + length;
    buckets.push({ start, length, slice: length / W, shardOffset: shardAt, params });
    shardAt += length / W;
  }
  return { offsets, buckets: buckets.reverse(), total: at, shardSize: shardAt };
}

export interface ShardRange {
  /** Elements per shard, S = ceil(N / W). */
  shardSize: number;
  /** W·S: the flat vector's padded length. */
  padded: number;
  start: number;
  /** Exclusive; capped at N. */
  end: number;
}

/** Rank r's slice of a flat vector of `total` elements split W ways (the one-bucket layout with align 1). */
export function shardRange(total: number, worldSize: number, rank: number): ShardRange {
  const shardSize = Math.ceil(total / worldSize);
  const start = Math.min(total, rank * shardSize);
  return { shardSize, padded: shardSize * worldSize, start, end: Math.min(total, start + shardSize) };
}
