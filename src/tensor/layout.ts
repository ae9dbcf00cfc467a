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
