// numpy's legacy `np.random.RandomState` (MT19937), as far as GPT-NeoX's data pipeline uses it.
//
// defines: RandomState (seeding, randomU32, randomU64, randomSample, randomInterval, randint, shuffle)
//
// GPT-NeoX shuffles its document and sample orders with `np.random.RandomState(seed).shuffle`, so a
// bit-exact data order needs numpy's exact stream. Facts taken from numpy's source:
// - `RandomState(int)` seeds with `mt19937_seed` = the reference `init_genrand` (Knuth's LCG over the
//   624-word state). It does NOT use `init_by_array` (that is `RandomState([ints])` and Python's
//   `random.seed`). numpy/random/_mt19937.pyx `_legacy_seeding`.
// - Outputs are the reference MT19937 tempered 32-bit words; 64-bit draws are `(a << 32) | b`.
// - `shuffle` of a 1-D array walks i = n-1 … 1 and swaps x[i] with x[j], j = `random_interval(i)`:
//   the masked rejection sampler (smallest all-ones mask ≥ i, redraw while value > i), 32-bit draws
//   when i ≤ 0xffffffff, 64-bit draws above. Same in numpy < 1.17 (`rk_interval`).
// - `random_sample` is (a >> 5, b >> 6) → (a·2^26 + b) / 2^53.
// - legacy `randint(low, high)` with a range < 2^32 - 1 is `low + random_interval(high - low - 1)`.

const N = 624;
const M = 397;
const MATRIX_A = 0x9908b0df;
const UPPER_MASK = 0x80000000;
const LOWER_MASK = 0x7fffffff;
const TWO_32 = 4294967296;

/** Arrays `shuffle` can permute in place. */
export type ShuffleTarget =
  | number[] | Int8Array | Uint8Array | Int16Array | Uint16Array | Int32Array | Uint32Array
  | Float32Array | Float64Array;

export class RandomState {
  private readonly key = new Uint32Array(N); // (624,) the MT state words
  private pos = N;

  /**
   * `seed`: an integer in [0, 2^32 - 1] (numpy's `RandomState(seed)`), or a non-empty array of such
   * integers (numpy's `RandomState([s0, s1, …])`, init_by_array).
   */
  constructor(seed: number | ArrayLike<number>) {
    if (typeof seed === 'number') {
      checkSeedWord(seed);
      this.seedInt(seed);
    } else {
      if (seed.length === 0) throw new Error('RandomState: seed array must be non-empty');
      for (let i = 0; i < seed.length; i++) checkSeedWord(seed[i]!);
      this.seedArray(seed);
    }
  }

  /** `mt19937_seed` / reference `init_genrand`. */
  private seedInt(seed: number): void {
    const mt = this.key;
    let s = seed >>> 0;
    for (let i = 0; i < N; i++) {
      mt[i] = s;
      // 1812433253 * (s ^ (s >>> 30)) + i + 1, mod 2^32 (Math.imul keeps the low 32 bits exact)
      s = (Math.imul(1812433253, (s ^ (s >>> 30)) >>> 0) + i + 1) >>> 0;
    }
    this.pos = N;
  }

  /** Reference `init_by_array`. */
  private seedArray(initKey: ArrayLike<number>): void {
    this.seedInt(19650218);
    const mt = this.key;
    const len = initKey.length;
    let i = 1;
    let j = 0;
    for (let k = Math.max(N, len); k > 0; k--) {
      const prev = mt[i - 1]!;
      mt[i] = ((mt[i]! ^ Math.imul((prev ^ (prev >>> 30)) >>> 0, 1664525)) + (initKey[j]! >>> 0) + j) >>> 0;
      i++;
      j++;
      if (i >= N) { mt[0] = mt[N - 1]!; i = 1; }
      if (j >= len) j = 0;
    }
    for (let k = N - 1; k > 0; k--) {
      const prev = mt[i - 1]!;
      mt[i] = ((mt[i]! ^ Math.imul((prev ^ (prev >>> 30)) >>> 0, 1566083941)) - i) >>> 0;
      i++;
      if (i >= N) { mt[0] = mt[N - 1]!; i = 1; }
    }
    mt[0] = 0x80000000;
    this.pos = N;
  }

  /** Regenerate all 624 words (`mt19937_gen`). */
  private twist(): void {
    const mt = this.key;
    let y: number;
    let i = 0;
    for (; i < N - M; i++) {
      y = (mt[i]! & UPPER_MASK) | (mt[i + 1]! & LOWER_MASK);
      mt[i] = mt[i + M]! ^ (y >>> 1) ^ ((y & 1) ? MATRIX_A : 0);
    }
    for (; i < N - 1; i++) {
      y = (mt[i]! & UPPER_MASK) | (mt[i + 1]! & LOWER_MASK);
      mt[i] = mt[i + M - N]! ^ (y >>> 1) ^ ((y & 1) ? MATRIX_A : 0);
    }
    y = (mt[N - 1]! & UPPER_MASK) | (mt[0]! & LOWER_MASK);
    mt[N - 1] = mt[M - 1]! ^ (y >>> 1) ^ ((y & 1) ? MATRIX_A : 0);
    this.pos = 0;
  }

  /** Next tempered 32-bit output, as an unsigned number in [0, 2^32). */
  randomU32(): number {
    if (this.pos === N) this.twist();
    let y = this.key[this.pos++]!;
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }

  /** numpy's `next_uint64`: two 32-bit draws, the first one high. */
  randomU64(): bigint {
    const hi = this.randomU32();
    const lo = this.randomU32();
    return (BigInt(hi) << 32n) | BigInt(lo);
  }

  /** `random_sample()`: a double in [0, 1) with 53 random bits. */
  randomSample(): number {
    const a = this.randomU32() >>> 5;
    const b = this.randomU32() >>> 6;
    return (a * 67108864 + b) / 9007199254740992;
  }

  /**
   * numpy's `random_interval(max)`: uniform integer in [0, max] by masked rejection. `max` must be a
   * non-negative safe integer (numpy allows up to 2^64 - 1; arrays that long don't fit in JS anyway).
   */
  randomInterval(max: number): number {
    if (!Number.isSafeInteger(max) || max < 0) throw new RangeError(`randomInterval: bad max ${max}`);
    if (max === 0) return 0;
    if (max <= 0xffffffff) {
      const mask = 0xffffffff >>> Math.clz32(max); // smallest 2^k - 1 ≥ max
      let value: number;
      do value = (this.randomU32() & mask) >>> 0; while (value > max);
      return value;
    }
    // 64-bit path: value = ((hi << 32) | lo) & mask with mask = 2^k - 1, k > 32.
    const maskHi = 0xffffffff >>> Math.clz32(Math.floor(max / TWO_32));
    let value: number;
    do {
      const hi = this.randomU32();
      const lo = this.randomU32();
      value = ((hi & maskHi) >>> 0) * TWO_32 + lo;
    } while (value > max);
    return value;
  }

  /** Legacy `randint(low, high)` for a range below 2^32 - 1: an integer in [low, high). */
  randint(low: number, high: number): number {
    const rng = high - low - 1;
    if (!Number.isSafeInteger(low) || !Number.isSafeInteger(high) || rng < 0) {
      throw new RangeError(`randint: need integers low < high, got ${low}, ${high}`);
    }
    if (rng >= 0xffffffff) throw new RangeError('randint: ranges of 2^32 or more are not implemented');
    return low + this.randomInterval(rng);
  }

  /** numpy's legacy `RandomState.shuffle` of a 1-D array, in place (Fisher–Yates from the end). */
  shuffle(x: ShuffleTarget): void {
    for (let i = x.length - 1; i > 0; i--) {
      const j = this.randomInterval(i);
      const t = x[i]!;
      x[i] = x[j]!;
      x[j] = t;
    }
  }
}

function checkSeedWord(s: number): void {
  if (!Number.isInteger(s) || s < 0 || s > 0xffffffff) {
    throw new RangeError(`RandomState: seed must be an integer between 0 and 2**32 - 1, got ${s}`);
  }
}
