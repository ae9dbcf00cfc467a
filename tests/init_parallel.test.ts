// Random init on the CPU worker pool: every draw (uniform, normal, the fused scalings of the init
// methods) is bitwise the single-threaded reference (tests/helpers/philox_reference.ts, the code as
// it was) for any thread count, split and n: odd n, n around the bulk threshold, chunk boundaries,
// offsets mid-block and across the 32-bit counter carry, seeds above 2^32. And a model built with
// the pool has exactly the parameters of one built serially.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { cpu } from '../src/backends/cpu/index.js';
import { poolStats, setCpuThreads } from '../src/backends/cpu/pool.js';
import { SAMPLE_CHUNK, parallelSample } from '../src/backends/cpu/sample.js';
import { GPTNeoX, type NeoXModelKeys, resolveModelConfig } from '../src/models/gpt_neox/index.js';
import { type InitContext, type InitMethod, initWeight, withInitWeight } from '../src/nn/init.js';
import {
  BULK_MIN_VALUES, type Distribution, normal, philox4x32, sample, sampleInto, setBulkSampler, uniform, withSample,
} from '../src/tensor/philox.js';
import { modelKeys } from './helpers/model.js';
import { refInitWeight, refNormal, refPhilox4x32, refUniform } from './helpers/philox_reference.js';

after(() => {
  setBulkSampler(parallelSample);
  setCpuThreads(null);
});

/** Asserts a and b hold the same bits (so −0 ≠ +0), naming the first difference. */
function sameBits(a: Float32Array, b: Float32Array, what: string): void {
  assert.equal(a.length, b.length, `${what}: length`);
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length), y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < x.length; i++) {
    if (x[i] !== y[i]) assert.fail(`${what}: element ${i} is ${a[i]} (0x${x[i]!.toString(16)}), expected ${b[i]} (0x${y[i]!.toString(16)})`);
  }
}

/** The reference values of a draw (generate, then scale in place, as the init methods did). */
function reference(seed: number, offset: number, n: number, dist: Distribution): Float32Array {
  if (dist.kind === 'uniform') return refUniform(seed, offset, n);
  if (dist.kind === 'uniform_symmetric') {
    const u = refUniform(seed, offset, n);
    for (let i = 0; i < n; i++) u[i] = (2 * u[i]! - 1) * dist.bound;
    return u;
  }
  const v = refNormal(seed, offset, n);
  if (dist.std !== 1) for (let i = 0; i < n; i++) v[i]! *= dist.std;
  return v;
}

const DISTS: Distribution[] = [
  { kind: 'uniform' }, { kind: 'normal', std: 1 }, { kind: 'normal', std: 0.02 }, { kind: 'normal', std: Math.sqrt(2 / (5 * 768)) },
  { kind: 'uniform_symmetric', bound: Math.sqrt(6 / (768 + 3072)) },
];
// Offsets: 0, mid-block, odd, a parameter's stream (k · 2^32), just before the 32-bit block-counter
// carry; seeds: small, above 2^32.
const STARTS: [number, number][] = [[1234, 0], [7, 2], [7, 5], [1234, 3 * 2 ** 32], [42, 4 * (2 ** 32 - 1) + 1], [5 * 2 ** 32 + 7, 9]];

test('philox4x32 (faster high-word rounding) matches the reference block function', () => {
  const a = new Uint32Array(4), b = new Uint32Array(4);
  let x = 0x12345678;
  const next = () => (x = (Math.imul(x, 1664525) + 1013904223) >>> 0);
  const edge = [0, 1, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff];
  for (let i = 0; i < 200_000; i++) {
    const w = i < 6 ** 3 ? [edge[i % 6]!, edge[Math.floor(i / 6) % 6]!, edge[Math.floor(i / 36) % 6]!] : [next(), next(), next()];
    const c = [w[0]!, w[1]!, next(), next()], k = [w[2]!, next()];
    philox4x32(c[0]!, c[1]!, c[2]!, c[3]!, k[0]!, k[1]!, a);
    refPhilox4x32(c[0]!, c[1]!, c[2]!, c[3]!, k[0]!, k[1]!, b);
    if (a[0] !== b[0] || a[1] !== b[1] || a[2] !== b[2] || a[3] !== b[3]) assert.fail(`block ${c} key ${k}: ${a} ≠ ${b}`);
  }
});

test('serial draws match the reference (uniform, normal, fused scalings), any n and offset', () => {
  const prev = setBulkSampler(null);
  try {
    for (const [seed, offset] of STARTS) {
      for (const n of [0, 1, 2, 3, 4, 5, 7, 2047, 2048, 2049, 4097, 10_001]) {
        sameBits(uniform(seed, offset, n), refUniform(seed, offset, n), `uniform(${seed}, ${offset}, ${n})`);
        sameBits(normal(seed, offset, n), refNormal(seed, offset, n), `normal(${seed}, ${offset}, ${n})`);
        for (const d of DISTS) sameBits(sample(seed, offset, n, d), reference(seed, offset, n, d), `${JSON.stringify(d)} (${seed}, ${offset}, ${n})`);
      }
    }
  } finally {
    setBulkSampler(prev);
  }
});

test('sampleInto over any split of [0, n) (odd starts included) gives the whole draw', () => {
  const n = 9_001;
  for (const d of DISTS) {
    const whole = reference(3, 11, n, d);
    for (const cuts of [[1], [2, 3], [2047, 2048, 2049], [4095, 4097, 9000], [5, 6, 7, 8, 4444]]) {
      const out = new Float32Array(n);
      const bounds = [0, ...cuts, n];
      // Fill the pieces out of order, so no piece can lean on its neighbour.
      for (let p = bounds.length - 2; p >= 0; p--) sampleInto(3, 11, d, out, bounds[p]!, bounds[p + 1]!);
      sameBits(out, whole, `${JSON.stringify(d)} split at ${cuts}`);
    }
  }
});

test('the pool sampler matches the reference for 1–5 threads, tiny chunks and any n', () => {
  try {
    for (const threads of [1, 2, 3, 5]) {
      setCpuThreads(threads);
      for (const [seed, offset] of STARTS.slice(1, 5)) {
        for (const n of [0, 1, 2, 3, 5, 6, 13, 64, 1001, 4096, 8193]) {
          for (const chunk of [1, 3, 8, 1000]) {
            for (const d of DISTS) {
              const out = new Float32Array(new SharedArrayBuffer(4 * n));
              parallelSample(seed, offset, d, out, chunk);
              sameBits(out, reference(seed, offset, n, d), `${threads} threads, chunk ${chunk}: ${JSON.stringify(d)} (${seed}, ${offset}, ${n})`);
            }
          }
        }
      }
      if (threads > 1) assert.ok((poolStats().get('philoxSample') ?? 0) > 0, `${threads} threads: the draws went to the workers`);
    }
  } finally {
    setCpuThreads(null);
  }
});

test('normal() and uniform() around the bulk threshold: pool path (2 and 3 threads) = reference', () => {
  try {
    for (const threads of [2, 3]) {
      setCpuThreads(threads);
      for (const n of [BULK_MIN_VALUES - 1, BULK_MIN_VALUES, BULK_MIN_VALUES + 1]) {
        const [seed, offset] = n === BULK_MIN_VALUES ? [1234, 7 * 2 ** 32] : [5 * 2 ** 32 + 7, 4 * (2 ** 32 - 1) + 1];
        const z = normal(seed, offset, n);
        sameBits(z, refNormal(seed, offset, n), `${threads} threads: normal(n = ${n})`);
        assert.ok(!(z.buffer instanceof SharedArrayBuffer), 'normal() returns an array of its own, not the lent buffer');
        sameBits(uniform(seed, offset, n), refUniform(seed, offset, n), `${threads} threads: uniform(n = ${n})`);
      }
      assert.ok((poolStats().get('philoxSample') ?? 0) >= 4, `${threads} threads: draws ≥ 1M went to the workers`);
    }
  } finally {
    setCpuThreads(null);
  }
});

test('every init method, fused and on the pool, matches the reference', () => {
  const ctx: InitContext = { seed: 1234, std: 0.02, numLayers: 6, hiddenSize: 48 };
  const methods: InitMethod[] = [
    'normal', 'scaled_normal', 'orthogonal', 'scaled_orthogonal', 'xavier_uniform', 'xavier_normal', 'wang_init', 'small_init',
    'single_residual_scaled_normal',
  ];
  // Small weights on the pool: a low threshold, and chunks of 50 (odd pairs split across chunks).
  const prev = setBulkSampler((seed, offset, dist, out) => parallelSample(seed, offset, dist, out, 50), 64);
  setCpuThreads(3);
  try {
    for (const method of methods) {
      for (const [rows, cols, stream] of [[48, 144, 3], [37, 5, 1], [7, 9, 2], [1, 1, 0], [144, 48, 5]] as const) {
        const want = refInitWeight(method, rows, cols, ctx, stream);
        const got = initWeight(method, rows, cols, ctx, stream);
        sameBits(got, want, `${method} [${rows}, ${cols}] stream ${stream}`);
        assert.ok(!(got.buffer instanceof SharedArrayBuffer), 'initWeight returns an array of its own');
        withInitWeight(method, rows, cols, ctx, stream, (v, isLent) => {
          sameBits(v, want, `${method} lent`);
          if (rows * cols >= 64 && !method.includes('orthogonal')) assert.ok(isLent, `${method}: a bulk draw is lent`);
        });
      }
    }
  } finally {
    setBulkSampler(prev);
    setCpuThreads(null);
  }
});

test('a lent draw stays valid through a nested draw, and owned results are never overwritten', () => {
  const prev = setBulkSampler(parallelSample, 16);
  try {
    const d: Distribution = { kind: 'normal', std: 1 };
    const kept = sample(1, 0, 100, d);
    withSample(2, 0, 100, d, (outer, outerLent) => {
      assert.ok(outerLent);
      const copy = outer.slice();
      withSample(3, 0, 200, d, (inner, innerLent) => {
        assert.ok(!innerLent, 'a nested draw gets a buffer of its own');
        sameBits(inner, refNormal(3, 0, 200), 'nested');
      });
      sameBits(outer, copy, 'the outer lent draw is untouched by the nested one');
    });
    sameBits(kept, refNormal(1, 0, 100), 'sample() keeps its values after later draws');
    assert.throws(() => normal(-1, 0, 100), /seed/);
    assert.throws(() => normal(1, 2 ** 53 - 50, 100), /offset \+ n - 1/);
    assert.throws(() => uniform(1, 0, -5), /count/);
  } finally {
    setBulkSampler(prev);
  }
});

test('a model built with the pool has exactly the parameters of one built serially', () => {
  const build = (keys: Partial<NeoXModelKeys>, V: number) => {
    const model = new GPTNeoX(resolveModelConfig(modelKeys(keys), V), cpu);
    return new Map(model.namedParameters().map(([name, p]) => [name, p.toArray() as Float32Array]));
  };
  // The default threshold: the (4224 × 256) embeddings are bulk draws, the layers serial.
  const big = { hidden_size: 256, num_layers: 1, num_attention_heads: 4, no_weight_tying: true, init_method: 'small_init', output_layer_init_method: 'wang_init' } as const;
  // A low threshold and small chunks: every weight of a small model on the pool, every init method family.
  const small = [
    { hidden_size: 32, num_layers: 2, init_method: 'normal', output_layer_init_method: 'scaled_normal' },
    { hidden_size: 32, num_layers: 2, init_method: 'xavier_uniform', output_layer_init_method: 'scaled_orthogonal' },
  ] as const;
  const cases: [Partial<NeoXModelKeys>, number, number, number][] = [
    [big, 4224, BULK_MIN_VALUES, SAMPLE_CHUNK], ...small.map((k): [Partial<NeoXModelKeys>, number, number, number] => [k, 200, 256, 16]),
  ];
  for (const [keys, V, min, chunk] of cases) {
    const prev = setBulkSampler(null);
    const serial = build(keys, V);
    setBulkSampler((seed, offset, dist, out) => parallelSample(seed, offset, dist, out, chunk), min);
    setCpuThreads(3);
    try {
      const before = poolStats().get('philoxSample') ?? 0;
      const pooled = build(keys, V);
      assert.ok((poolStats().get('philoxSample') ?? 0) > before, `${keys.init_method}: weights were drawn on the pool`);
      assert.deepEqual([...pooled.keys()], [...serial.keys()]);
      for (const [name, p] of serial) sameBits(pooled.get(name)!, p, `${keys.init_method}: ${name}`);
    } finally {
      setBulkSampler(prev);
      setCpuThreads(null);
    }
  }
});
