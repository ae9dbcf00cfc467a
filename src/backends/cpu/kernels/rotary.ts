// CPU kernel: rotary (rotate-half, GPT-NeoX / HF style), forward and inverse (its gradient).
//
// For each row of D values at position p = offset + t, on the first rotaryDims dims with h = rotaryDims / 2:
//   out[i]     = x[i] · cos θ_i − x[i + h] · sin θ_i
//   out[i + h] = x[i + h] · cos θ_i + x[i] · sin θ_i        (θ_i = p · inv_freq_i; inverse uses −θ)
// and dims ≥ rotaryDims pass through. The cos/sin table comes from ops/attention.ts (rotaryTable), so
// every backend rotates by the same angles.
// Layouts: 'bhsd' x [B, H, T, D] (t is axis 2) or 'bshd' x [B, T, H, D] (t is axis 1). Both walk rows
// as (outer, t, inner) with inner = 1 (bhsd) or H (bshd); each row gets the same arithmetic, so bshd
// equals permute ∘ bhsd ∘ permute bitwise.
// rotaryQKV: the packed QKV [B, T, H, 3D] in one pass, the q and k rows of each head rotated with the
// same arithmetic (so it equals split → rotary(bshd) → concat bitwise), v copied.

import { registerKernel } from '../../../tensor/engine.js';
import { rotaryTable } from '../../../ops/attention.js';
import { f, out } from './util.js';

registerKernel('rotary', 'cpu', ([x], { rotaryDims, base, offset, inverse, layout }, be) => {
  const X = f(x!, 'rotary'); // (B, H, T, D) or (B, T, H, D)
  const bshd = layout === 'bshd';
  const D = x!.dim(-1);
  const T = x!.dim(bshd ? 1 : 2);
  const inner = bshd ? x!.dim(2) : 1; // rows between consecutive positions: H (bshd) or 1 (bhsd)
  const outer = x!.numel / Math.max(1, T * inner * D); // B · H (bhsd) or B (bshd)
  const y = out(x!.shape, x!.dtype, be);
  const Y = f(y, 'rotary');
  const half = rotaryDims / 2;
  if (half === 0 || x!.numel === 0) {
    Y.set(X);
    return [y];
  }
  const { cos, sin } = rotaryTable(T, rotaryDims, base, offset); // (T, half) each
  const sign = inverse ? -1 : 1;
  for (let r = 0; r < outer; r++) {
    for (let t = 0; t < T; t++) {
      const c = t * half;
      for (let j = 0; j < inner; j++) {
        const o = ((r * T + t) * inner + j) * D;
        rotateRow(X, Y, o, c, half, cos, sin, sign);
        for (let i = rotaryDims; i < D; i++) Y[o + i] = X[o + i]!;
      }
    }
  }
  return [y];
});

type Floats = Float32Array | Float64Array;

/** The first 2·half values of the row at `o`, rotated by the angles at table row offset `c`. */
function rotateRow(X: Floats, Y: Floats, o: number, c: number, half: number, cos: Float64Array, sin: Float64Array, sign: number): void {
  for (let i = 0; i < half; i++) {
    const cs = cos[c + i]!, sn = sign * sin[c + i]!;
    const x1 = X[o + i]!, x2 = X[o + half + i]!;
    Y[o + i] = x1 * cs - x2 * sn;
    Y[o + half + i] = x2 * cs + x1 * sn;
  }
}

registerKernel('rotaryQKV', 'cpu', ([x], { rotaryDims, base, offset, inverse }, be) => {
  const X = f(x!, 'rotaryQKV'); // (B, T, H, 3D)
  if (x!.ndim !== 4 || x!.dim(3) % 3 !== 0) throw new Error(`rotaryQKV: expected qkv [B, T, H, 3·D], got [${x!.shape}]`);
  const [B, T, H, W] = x!.shape as [number, number, number, number];
  const D = W / 3;
  const y = out(x!.shape, x!.dtype, be);
  const Y = f(y, 'rotaryQKV');
  Y.set(X); // v and the dims past rotaryDims
  const half = rotaryDims / 2;
  if (half === 0 || x!.numel === 0) return [y];
  const { cos, sin } = rotaryTable(T, rotaryDims, base, offset); // (T, half) each
  const sign = inverse ? -1 : 1;
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      for (let h = 0; h < H; h++) {
        const o = ((b * T + t) * H + h) * W;
        rotateRow(X, Y, o, t * half, half, cos, sin, sign); // q
        rotateRow(X, Y, o + D, t * half, half, cos, sin, sign); // k
      }
    }
  }
  return [y];
});
