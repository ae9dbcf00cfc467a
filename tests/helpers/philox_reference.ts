// The Philox sampling and init code as it was before draws were fused and parallelised (single
// threaded, uniform → normal → scale in place), kept verbatim as the oracle the fast paths must
// match bit for bit (tests/init_parallel.test.ts).

import type { InitContext, InitMethod } from '../../src/nn/init.js';

const M0 = 0xd2511f53;
const M1 = 0xcd9e8d57;
const W0 = 0x9e3779b9;
const W1 = 0xbb67ae85;
const TWO32 = 4294967296;

function mulhi(a: number, b: number, lo: number): number {
  return Math.round((a * b - lo) * 2 ** -32) >>> 0;
}

export function refPhilox4x32(c0: number, c1: number, c2: number, c3: number, k0: number, k1: number, out: Uint32Array = new Uint32Array(4)): Uint32Array {
  let x0 = c0 >>> 0, x1 = c1 >>> 0, x2 = c2 >>> 0, x3 = c3 >>> 0;
  let key0 = k0 >>> 0, key1 = k1 >>> 0;
  for (let r = 0; r < 10; r++) {
    if (r > 0) {
      key0 = (key0 + W0) >>> 0;
      key1 = (key1 + W1) >>> 0;
    }
    const lo0 = Math.imul(M0, x0) >>> 0;
    const hi0 = mulhi(M0, x0, lo0);
    const lo1 = Math.imul(M1, x2) >>> 0;
    const hi1 = mulhi(M1, x2, lo1);
    x0 = (hi1 ^ x1 ^ key0) >>> 0;
    x1 = lo1;
    x2 = (hi0 ^ x3 ^ key1) >>> 0;
    x3 = lo0;
  }
  out[0] = x0;
  out[1] = x1;
  out[2] = x2;
  out[3] = x3;
  return out;
}

function refFillWords(seed: number, offset: number, n: number, dst: Uint32Array): Uint32Array {
  if (n === 0) return dst;
  const k0 = seed >>> 0, k1 = Math.floor(seed / TWO32) >>> 0;
  const b = Math.floor(offset / 4);
  let lo = b >>> 0, hi = Math.floor(b / TWO32) >>> 0, word = offset - b * 4;
  const words = new Uint32Array(4);
  for (let i = 0; i < n; ) {
    refPhilox4x32(lo, hi, 0, 0, k0, k1, words);
    for (; word < 4 && i < n; word++, i++) dst[i] = words[word]!;
    word = 0;
    lo = (lo + 1) >>> 0;
    if (lo === 0) hi = (hi + 1) >>> 0;
  }
  return dst;
}

export function refUniform(seed: number, offset: number, n: number): Float32Array {
  const words = new Uint32Array(n);
  refFillWords(seed, offset, n, words);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (words[i]! >>> 8) * 2 ** -24;
  return out;
}

export function refNormal(seed: number, offset: number, n: number): Float32Array {
  const m = n + (n & 1);
  const u = refUniform(seed, offset, m);
  const out = new Float32Array(m);
  const twoPi = 2 * Math.PI;
  for (let k = 0; k < m; k += 2) {
    const r = Math.sqrt(-2 * Math.log(1 - u[k]!));
    const t = twoPi * u[k + 1]!;
    out[k] = r * Math.cos(t);
    out[k + 1] = r * Math.sin(t);
  }
  return m === n ? out : out.subarray(0, n).slice();
}

export function refInitWeight(method: InitMethod, rows: number, cols: number, ctx: InitContext, stream: number): Float32Array {
  const n = rows * cols;
  const offset = stream * 2 ** 32;
  const gaussian = (std: number): Float32Array => {
    const v = refNormal(ctx.seed, offset, n);
    for (let i = 0; i < n; i++) v[i]! *= std;
    return v;
  };
  switch (method) {
    case 'normal': return gaussian(ctx.std);
    case 'scaled_normal': return gaussian(ctx.std / Math.sqrt(2 * ctx.numLayers));
    case 'single_residual_scaled_normal': return gaussian(ctx.std / Math.sqrt(ctx.numLayers));
    case 'small_init': return gaussian(Math.sqrt(2 / (5 * ctx.hiddenSize)));
    case 'wang_init': return gaussian((2 / ctx.numLayers) / Math.sqrt(ctx.hiddenSize));
    case 'xavier_normal': return gaussian(Math.sqrt(2 / (rows + cols)));
    case 'xavier_uniform': {
      const a = Math.sqrt(6 / (rows + cols));
      const u = refUniform(ctx.seed, offset, n);
      for (let i = 0; i < n; i++) u[i] = (2 * u[i]! - 1) * a;
      return u;
    }
    case 'orthogonal': return orthogonal(gaussian(1), rows, cols, 1);
    case 'scaled_orthogonal': return orthogonal(gaussian(1), rows, cols, 2 / Math.sqrt(2 * ctx.numLayers));
  }
}

function orthogonal(g: Float32Array, rows: number, cols: number, gain: number): Float32Array {
  const byRows = rows <= cols;
  const count = byRows ? rows : cols;
  const len = byRows ? cols : rows;
  const vecs: Float64Array[] = [];
  for (let i = 0; i < count; i++) {
    const v = new Float64Array(len);
    for (let j = 0; j < len; j++) v[j] = byRows ? g[i * cols + j]! : g[j * cols + i]!;
    for (let pass = 0; pass < 2; pass++) {
      for (const u of vecs) {
        let d = 0;
        for (let j = 0; j < len; j++) d += u[j]! * v[j]!;
        for (let j = 0; j < len; j++) v[j]! -= d * u[j]!;
      }
    }
    let norm = 0;
    for (let j = 0; j < len; j++) norm += v[j]! * v[j]!;
    norm = Math.sqrt(norm) || 1;
    for (let j = 0; j < len; j++) v[j]! /= norm;
    vecs.push(v);
  }
  const out = new Float32Array(rows * cols);
  vecs.forEach((v, i) => {
    for (let j = 0; j < len; j++) out[byRows ? i * cols + j : j * cols + i] = gain * v[j]!;
  });
  return out;
}
