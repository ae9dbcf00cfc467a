// Philox4x32-10: the counter-based generator behind dropout and random init, identical on every
// backend (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11; Random123;
// CUDA's curand_philox4x32_10).
//
//   philox4x32(c0, c1, c2, c3, k0, k1, out?)  one block: 4 counter words, 2 key words → 4 words
//   uniformWord(seed, position)                the 32-bit word at one stream position
//   fillWords(seed, offset, n, dst)            raw words for a run of positions
//   blockOf(position)                          block counter (lo, hi) and word index of a position
//   uniform(seed, offset, n)                   f32 in [0, 1) for positions offset .. offset+n-1
//   normal(seed, offset, n)                    standard normals by Box–Muller over those uniforms
//   sample / withSample(seed, offset, n, dist) a Distribution's values (owned / lent to a callback)
//   sampleInto(seed, offset, dist, out, s, e)  elements s .. e-1 of a draw, written into `out`
//   setBulkSampler(fn, minValues)              the hook that fills large draws on several threads
//   dropoutThreshold(p)                        the integer test a dropout mask uses
//   seedWords(seed), PHILOX_MAX_SEED           how a JS number seed becomes the key
//
// ---- The stream, precisely (a CUDA kernel reproduces it bit for bit) ----------------------------
//
// A stream is identified by `seed`, an integer in [0, 2^53). Its key is
//     k0 = seed mod 2^32,  k1 = floor(seed / 2^32).
// Position j (an integer in [0, 2^53)) of the stream is the 32-bit word
//     u(j) = philox4x32_10(counter = (lo, hi, 0, 0), key = (k0, k1))[j mod 4]
// where the block counter b = floor(j / 4) (a 64-bit integer) is split lo = b mod 2^32,
// hi = floor(b / 2^32). In CUDA: uint64 b = j >> 2; ctr = {(uint32)b, (uint32)(b >> 32), 0, 0}.
// So positions 4b .. 4b+3 are the four output words of block b, in order.
//
// uniform(seed, offset, n)[i] = U(offset + i), with
//     U(j) = (u(j) >>> 8) · 2^-24                     (exact in f32; range [0, 1 − 2^-24])
//
// normal(seed, offset, n)[i], for the pair k = i >> 1 (elements 2k and 2k+1 share it):
//     a = U(offset + 2k), b = U(offset + 2k + 1)
//     r = sqrt(−2 · ln(1 − a))                       (1 − a ∈ [2^-24, 1]: never ln 0)
//     θ = 2π · b
//     element 2k = r · cos θ,  element 2k+1 = r · sin θ
// computed in double precision and rounded once to f32. (libm's log/cos/sin may differ by an ulp
// between platforms, so normals are reproducible to ~1 f32 ulp, uniforms and dropout masks exactly.)
// A call consumes positions offset .. offset + 2⌈n/2⌉ − 1; element i does not depend on n.
//
// Dropout with probability p keeps element i iff (u(offset + i) >>> 8) ≥ dropoutThreshold(p),
// where dropoutThreshold(p) = ceil(p · 2^24): the same as U(offset + i) ≥ p compared exactly.
//
// ---- The block function ------------------------------------------------------------------------
//
// Ten rounds; before every round but the first the key is bumped by (0x9E3779B9, 0xBB67AE85)
// mod 2^32. One round, with mulhilo(a, b) the high and low words of the 64-bit product a·b:
//     (hi0, lo0) = mulhilo(0xD2511F53, x0)
//     (hi1, lo1) = mulhilo(0xCD9E8D57, x2)
//     (x0, x1, x2, x3) = (hi1 ^ x1 ^ k0, lo1, hi0 ^ x3 ^ k1, lo0)

const M0 = 0xd2511f53;
const M1 = 0xcd9e8d57;
const W0 = 0x9e3779b9;
const W1 = 0xbb67ae85;

/** Seeds and positions must be integers below this (they travel as doubles). */
export const PHILOX_MAX_SEED = Number.MAX_SAFE_INTEGER;

const TWO32 = 4294967296;

const TWO_POW_M32 = 2 ** -32;

/**
 * High 32 bits of the 64-bit product of two u32 values, exact. `lo` is the exact low word (from
 * Math.imul). The double product a·b is within 2^10 of the true product, and subtracting lo adds at
 * most 2^10 more rounding error, so v = (a·b − lo) · 2^-32 lies within 2^-21 of the integer high
 * word h ∈ [0, 2^32 − 1]. Then v + 0.5 lies in (h, h + 1), and `>>> 0` truncates it to h: the same
 * integer as Math.round(v), about 1.5× faster over a whole Philox block.
 */
function mulhi(a: number, b: number, lo: number): number {
  return ((a * b - lo) * TWO_POW_M32 + 0.5) >>> 0;
}

/**
 * Philox4x32-10 of counter (c0, c1, c2, c3) under key (k0, k1), all u32. Writes the four output
 * words into `out` and returns it; pass a reused buffer in loops to avoid allocation.
 */
export function philox4x32(c0: number, c1: number, c2: number, c3: number, k0: number, k1: number, out: Uint32Array = new Uint32Array(4)): Uint32Array {
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

function checkIndex(what: string, v: number): void {
  if (!Number.isInteger(v) || v < 0 || v > PHILOX_MAX_SEED) {
    throw new Error(`philox: ${what} must be an integer in [0, 2^53), got ${v}`);
  }
}

/** The key words (k0, k1) of a seed. */
export function seedWords(seed: number): [number, number] {
  checkIndex('seed', seed);
  return [seed >>> 0, Math.floor(seed / TWO32) >>> 0];
}

/** The block counter (lo, hi) of the block holding stream position `position`, and the word index in it. */
export function blockOf(position: number): { lo: number; hi: number; word: number } {
  checkIndex('position', position);
  const b = Math.floor(position / 4);
  return { lo: b >>> 0, hi: Math.floor(b / TWO32) >>> 0, word: position - b * 4 };
}

/** Raw words u(offset + i), i = 0 .. n−1, into `dst`; each Philox block is generated once. */
export function fillWords(seed: number, offset: number, n: number, dst: Uint32Array): Uint32Array {
  if (!Number.isInteger(n) || n < 0) throw new Error(`philox: count must be a non-negative integer, got ${n}`);
  if (n === 0) return dst;
  checkIndex('offset + n - 1', offset + n - 1);
  const [k0, k1] = seedWords(seed);
  let { lo, hi, word } = blockOf(offset);
  const words = new Uint32Array(4);
  for (let i = 0; i < n; ) {
    philox4x32(lo, hi, 0, 0, k0, k1, words);
    for (; word < 4 && i < n; word++, i++) dst[i] = words[word]!;
    word = 0;
    lo = (lo + 1) >>> 0;
    if (lo === 0) hi = (hi + 1) >>> 0;
  }
  return dst;
}

/** The raw 32-bit word at stream position `position`. */
export function uniformWord(seed: number, position: number): number {
  const [k0, k1] = seedWords(seed);
  const { lo, hi, word } = blockOf(position);
  return philox4x32(lo, hi, 0, 0, k0, k1)[word]!;
}

/** Uniform f32 values in [0, 1): element i is (u(offset + i) >>> 8) · 2^-24 (see the file header). */
export function uniform(seed: number, offset: number, n: number): Float32Array {
  return sample(seed, offset, n, UNIFORM);
}

/** Standard normal f32 values by Box–Muller over pairs of uniforms (see the file header). */
export function normal(seed: number, offset: number, n: number): Float32Array {
  return sample(seed, offset, n, NORMAL);
}

// ---- Draws: serial ranges, bulk fills, lent results ---------------------------------------------
//
// A draw of n values of a Distribution from (seed, offset) is defined element by element:
//   uniform            U(offset + i)                                      (= uniform())
//   uniform_symmetric  (2 · U(offset + i) − 1) · bound in f64, rounded once to f32: U(−bound, bound)
//   normal             f32(Box–Muller element i) · std in f64, rounded again to f32 (std = 1: normal())
// These are exactly the values (and roundings) of generating uniform()/normal() and then scaling the
// f32 array in place, as GPT-NeoX's init methods do (src/nn/init.ts), fused into one pass.
//
// Element i depends only on offset + i (a normal on its pair offset + 2⌊i/2⌋, +1), never on n or
// on where a computation starts, so any split of [0, n) into ranges (sampleInto) gives bitwise the
// same array: that is what lets a bulk sampler fill a large draw on several threads.
//
// The bulk sampler is a hook (setBulkSampler), not an import: the tensor layer sits below the
// backends (src/backends/cpu imports src/tensor: the engine, and this file for dropout), so importing
// the CPU worker pool here would make an import cycle and would tie host-side initialisation
// (src/nn/init.ts, backend-independent) to one backend. The CPU backend registers its pool's
// sampler when it loads (src/backends/cpu/sample.ts); without one, or for draws below `minValues`
// (1M by default: smaller ones are not worth a round trip to the workers), everything runs
// serially on this thread, through the same sampleInto the workers run.
//
// A bulk sampler writes into a SharedArrayBuffer (the only memory worker threads can share). One
// buffer is kept and reused for every bulk draw (growing to the largest), because V8 (Node 20) does
// not count SharedArrayBuffers towards its GC heuristics: fresh ones per parameter would stay
// allocated until an unrelated full GC (in every worker that saw them), many GB for a 1B model.
// So withSample *lends* large draws to a callback (a tensor upload copies them out), and sample()
// returns an owned copy. The kept buffer costs host memory equal to the largest draw.

/** What a draw's elements are (see above). */
export type Distribution =
  | { kind: 'uniform' }
  | { kind: 'uniform_symmetric'; bound: number }
  | { kind: 'normal'; std: number };

const UNIFORM: Distribution = { kind: 'uniform' };
const NORMAL: Distribution = { kind: 'normal', std: 1 };
const TWO_POW_M24 = 2 ** -24;
/** Words generated per pass of sampleInto (even, so normals' pairs never straddle passes). */
const TILE = 2048;
const tileWords = new Uint32Array(TILE);

/**
 * Writes elements start .. end − 1 of the draw of `dist` from (seed, offset) into out[start .. end − 1],
 * and returns `out`. Any start and end (a range starting at an odd index recomputes its first pair).
 * Positions are not validated beyond what fillWords checks: callers check the whole draw first.
 */
export function sampleInto(seed: number, offset: number, dist: Distribution, out: Float32Array, start = 0, end = out.length): Float32Array {
  if (!(end > start)) return out;
  const words = tileWords;
  if (dist.kind === 'normal') {
    const std = dist.std;
    const twoPi = 2 * Math.PI;
    const first = start - (start % 2);
    for (let s = first; s < end; s += TILE) {
      const len = Math.min(TILE, end - s + ((end - s) % 2)); // even: whole pairs
      fillWords(seed, offset + s, len, words);
      for (let k = 0; k < len; k += 2) {
        const a = (words[k]! >>> 8) * TWO_POW_M24;
        const b = (words[k + 1]! >>> 8) * TWO_POW_M24;
        const r = Math.sqrt(-2 * Math.log(1 - a));
        const t = twoPi * b;
        const i = s + k;
        if (i >= start) out[i] = Math.fround(r * Math.cos(t)) * std;
        if (i + 1 < end) out[i + 1] = Math.fround(r * Math.sin(t)) * std;
      }
    }
    return out;
  }
  const symmetric = dist.kind === 'uniform_symmetric';
  const bound = symmetric ? dist.bound : 1;
  for (let s = start; s < end; s += TILE) {
    const len = Math.min(TILE, end - s);
    fillWords(seed, offset + s, len, words);
    if (symmetric) for (let k = 0; k < len; k++) out[s + k] = (2 * ((words[k]! >>> 8) * TWO_POW_M24) - 1) * bound;
    else for (let k = 0; k < len; k++) out[s + k] = (words[k]! >>> 8) * TWO_POW_M24;
  }
  return out;
}

/** Throws unless a draw of n values from (seed, offset) lies within the stream. */
function checkDraw(seed: number, offset: number, n: number, dist: Distribution): void {
  if (!Number.isInteger(n) || n < 0) throw new Error(`philox: count must be a non-negative integer, got ${n}`);
  if (n === 0) return;
  seedWords(seed);
  checkIndex('offset', offset);
  // A normal draw consumes whole pairs: 2⌈n/2⌉ positions.
  checkIndex('offset + n - 1', offset + (dist.kind === 'normal' ? n + (n % 2) : n) - 1);
}

/**
 * Fills out[0 .. out.length − 1] with the draw of `dist` from (seed, offset), exactly as
 * sampleInto(seed, offset, dist, out) would; `out` is SharedArrayBuffer-backed. Runs synchronously.
 */
export type BulkSampler = (seed: number, offset: number, dist: Distribution, out: Float32Array) => void;

/** Draws smaller than this stay on the calling thread by default. */
export const BULK_MIN_VALUES = 1 << 20;

let bulkSampler: BulkSampler | null = null;
let bulkMin = BULK_MIN_VALUES;
/** The reused buffer of bulk draws (see above), and whether a withSample callback holds it. */
let lendBuffer: SharedArrayBuffer | null = null;
let lent = false;

/**
 * Registers the sampler that fills draws of at least `minValues` values (null: every draw serial).
 * Returns the previous one. The CPU backend registers its worker pool's at load.
 */
export function setBulkSampler(fn: BulkSampler | null, minValues = BULK_MIN_VALUES): BulkSampler | null {
  if (!Number.isInteger(minValues) || minValues < 1) throw new Error(`setBulkSampler: minValues must be a positive integer, got ${minValues}`);
  const prev = bulkSampler;
  bulkSampler = fn;
  bulkMin = minValues;
  return prev;
}

/**
 * Calls `use` with the n values of the draw of `dist` from (seed, offset) and returns its result.
 * `isLent` says the array is lent: it lives in a buffer reused by the next draw, so `use` must copy
 * out what it keeps (a tensor upload does) and not hold on to the array. Otherwise it is the caller's.
 */
export function withSample<T>(seed: number, offset: number, n: number, dist: Distribution, use: (values: Float32Array, isLent: boolean) => T): T {
  checkDraw(seed, offset, n, dist);
  if (bulkSampler === null || n < bulkMin) return use(sampleInto(seed, offset, dist, new Float32Array(n)), false);
  if (lent) {
    // Nested inside another lent draw (not done by this codebase): a buffer of its own.
    const out = new Float32Array(new SharedArrayBuffer(4 * n));
    bulkSampler(seed, offset, dist, out);
    return use(out, false);
  }
  if (lendBuffer === null || lendBuffer.byteLength < 4 * n) lendBuffer = new SharedArrayBuffer(4 * n);
  const out = new Float32Array(lendBuffer, 0, n);
  bulkSampler(seed, offset, dist, out);
  lent = true;
  try {
    return use(out, true);
  } finally {
    lent = false;
  }
}

/** The n values of the draw of `dist` from (seed, offset), in a new array owned by the caller. */
export function sample(seed: number, offset: number, n: number, dist: Distribution): Float32Array {
  return withSample(seed, offset, n, dist, (v, isLent) => (isLent ? v.slice() : v));
}

/** Dropout keeps position j iff (u(j) >>> 8) ≥ this; p ≥ 1 drops everything. */
export function dropoutThreshold(p: number): number {
  if (!(p >= 0)) throw new Error(`dropout: p must be in [0, 1], got ${p}`);
  return p >= 1 ? 2 ** 24 : Math.ceil(p * 2 ** 24);
}
