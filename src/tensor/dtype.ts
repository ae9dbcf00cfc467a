// Data types: names, byte sizes, host array types, and bf16/f16 conversion helpers.
//
// Compute on the CPU backend happens in f32 (or f64 for gradient checks); bf16 and f16 are storage
// types there, converted on the way in and out. Integer types hold token ids, labels and masks.

export type DType = 'f32' | 'f64' | 'bf16' | 'f16' | 'i32' | 'u16' | 'u8';
export type FloatDType = 'f32' | 'f64' | 'bf16' | 'f16';

export type FloatArray = Float32Array | Float64Array;
export type HostArray = Float32Array | Float64Array | Int32Array | Uint16Array | Uint8Array;

export const ITEM_SIZE: Record<DType, number> = { f32: 4, f64: 8, bf16: 2, f16: 2, i32: 4, u16: 2, u8: 1 };

export function isFloat(dtype: DType): dtype is FloatDType {
  return dtype === 'f32' || dtype === 'f64' || dtype === 'bf16' || dtype === 'f16';
}

/** The host typed array that holds values of `dtype` (bf16/f16 as raw 16-bit words). */
export function hostArray(dtype: DType, n: number): HostArray {
  switch (dtype) {
    case 'f32': return new Float32Array(n);
    case 'f64': return new Float64Array(n);
    case 'bf16': case 'f16': case 'u16': return new Uint16Array(n);
    case 'i32': return new Int32Array(n);
    case 'u8': return new Uint8Array(n);
  }
}

const f32buf = new Float32Array(1);
const u32buf = new Uint32Array(f32buf.buffer);

/** f32 → bf16 with round-to-nearest-even (what PyTorch and CUDA's __float2bfloat16 do). */
export function f32ToBf16(x: number): number {
  f32buf[0] = x;
  const u = u32buf[0]!;
  if ((u & 0x7fffffff) > 0x7f800000) return ((u >>> 16) | 0x40) & 0xffff; // NaN stays NaN
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

export function bf16ToF32(h: number): number {
  u32buf[0] = (h & 0xffff) << 16;
  return f32buf[0]!;
}

/** f32 → IEEE half with round-to-nearest-even. */
export function f32ToF16(x: number): number {
  f32buf[0] = x;
  const u = u32buf[0]!;
  const sign = (u >>> 16) & 0x8000;
  const exp = (u >>> 23) & 0xff;
  let mant = u & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    let m = mant >>> shift;
    const rest = mant & ((1 << shift) - 1);
    if (rest > half || (rest === half && (m & 1))) m++;
    return sign | m;
  }
  let m = mant >>> 13;
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (m & 1))) {
    m++;
    if (m === 0x400) { m = 0; e++; if (e >= 0x1f) return sign | 0x7c00; }
  }
  return sign | (e << 10) | m;
}

export function f16ToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** Converts host values of any dtype to a Float32Array (ints become their values). */
export function toF32(dtype: DType, data: HostArray): Float32Array {
  if (dtype === 'f32') return data as Float32Array;
  const out = new Float32Array(data.length);
  if (dtype === 'bf16') for (let i = 0; i < data.length; i++) out[i] = bf16ToF32(data[i]!);
  else if (dtype === 'f16') for (let i = 0; i < data.length; i++) out[i] = f16ToF32(data[i]!);
  else out.set(data);
  return out;
}

/** Converts numbers to host storage of `dtype` (rounding for bf16/f16, truncating for ints). */
export function fromNumbers(dtype: DType, values: ArrayLike<number>): HostArray {
  const out = hostArray(dtype, values.length);
  if (dtype === 'bf16') for (let i = 0; i < values.length; i++) out[i] = f32ToBf16(values[i]!);
  else if (dtype === 'f16') for (let i = 0; i < values.length; i++) out[i] = f32ToF16(values[i]!);
  else (out as Float32Array).set(values);
  return out;
}
