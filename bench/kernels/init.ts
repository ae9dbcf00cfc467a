// Random-init micro-benchmark: values/s of the Philox draws behind weight init (tensor/philox.ts),
// the pre-fusion reference code (tests/helpers/philox_reference.ts), the fused serial path, and the
// CPU worker pool (src/backends/cpu/sample.ts); then the time to construct a Pythia model on the
// CPU backend with init serial and on the pool (bitwise the same weights; checked on the embedding).
//
//   node dist/bench/kernels/init.js [--n VALUES] [--model pythia-410m|pythia-160m|pythia-1.4b|none]
//
// NEOX_CPU_THREADS sets the pool's size (default: every core). Not a test: it prints a table.

import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import { cpu } from '../../src/backends/cpu/index.js';
import { parallelSample } from '../../src/backends/cpu/sample.js';
import { GPTNeoX, resolveModelConfig } from '../../src/models/gpt_neox/index.js';
import { SHAPES, pythiaKeys } from '../pythia.js';
import { type Distribution, sampleInto, setBulkSampler } from '../../src/tensor/philox.js';
import { refNormal, refUniform } from '../../tests/helpers/philox_reference.js';

/** Best wall seconds of `reps` calls, after one warm-up call. */
function best(fn: () => void, reps = 3): number {
  fn();
  let t = Infinity;
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    fn();
    t = Math.min(t, (performance.now() - t0) / 1000);
  }
  return t;
}

const rate = (n: number, s: number): string => `${(n / s / 1e6).toFixed(1)} M/s`;
const gib = (): string => `${(process.memoryUsage().rss / 2 ** 30).toFixed(2)} GiB`;

function main(): void {
  const { values } = parseArgs({ options: { n: { type: 'string' }, model: { type: 'string' } } });
  const n = Number(values.n ?? 16 * 2 ** 20);
  const modelName = values.model ?? 'pythia-410m';
  const threads = Number(process.env.NEOX_CPU_THREADS) || availableParallelism();
  console.log(`Philox init draws, ${n} values; pool of ${threads} threads (${availableParallelism()} cores); node ${process.version}`);
  console.log('draw'.padEnd(28) + 'reference'.padStart(12) + 'serial'.padStart(12) + 'pool'.padStart(12) + 'pool/ref'.padStart(10) + 'pool/serial'.padStart(13));
  const out = new Float32Array(new SharedArrayBuffer(4 * n));
  const rows: [string, Distribution, () => void][] = [
    ['normal · std (small_init)', { kind: 'normal', std: 0.02 }, () => {
      const v = refNormal(1234, 2 ** 32, n);
      for (let i = 0; i < n; i++) v[i]! *= 0.02;
    }],
    ['uniform', { kind: 'uniform' }, () => refUniform(1234, 2 ** 32, n)],
  ];
  for (const [label, dist, reference] of rows) {
    const ref = best(reference, 1);
    const serial = best(() => sampleInto(1234, 2 ** 32, dist, out));
    const pool = best(() => parallelSample(1234, 2 ** 32, dist, out));
    console.log(label.padEnd(28) + rate(n, ref).padStart(12) + rate(n, serial).padStart(12) + rate(n, pool).padStart(12) +
      `${(ref / pool).toFixed(2)}×`.padStart(10) + `${(serial / pool).toFixed(2)}×`.padStart(13));
  }

  const shape = SHAPES[modelName];
  if (!shape) return;
  const cfg = resolveModelConfig(pythiaKeys(shape, 2048), 50304);
  // Warm up the constructor's code paths (and the pool's workers) on a small model first.
  new GPTNeoX(resolveModelConfig(pythiaKeys({ layers: 2, hidden: 256, heads: 4, mb: 1 }, 128), 4096), cpu);
  console.log(`\nconstructing ${modelName} on the CPU backend (hidden ${shape.hidden}, ${shape.layers} layers, vocab 50304):`);
  const build = (label: string, sampler: typeof parallelSample | null): Float32Array => {
    setBulkSampler(sampler);
    const t0 = performance.now(), c0 = process.cpuUsage();
    const model = new GPTNeoX(cfg, cpu);
    const s = (performance.now() - t0) / 1000;
    const c = process.cpuUsage(c0);
    const cpuS = (c.user + c.system) / 1e6; // all of this process's threads
    console.log(`  ${label.padEnd(16)} ${s.toFixed(2).padStart(7)} s   ${(model.numParameters() / 1e6).toFixed(0)}M parameters, ` +
      `${rate(model.numParameters(), s)}, ${cpuS.toFixed(1)} s of CPU (${(cpuS / s).toFixed(2)} cores busy), rss ${gib()}`);
    return model.embed_in.weight.toFloat32(); // the parameters are kept: both builds start from fresh memory
  };
  const pooled = build('init on the pool', parallelSample);
  const serial = build('init serial', null);
  setBulkSampler(parallelSample);
  const same = pooled.length === serial.length && Buffer.compare(Buffer.from(pooled.buffer), Buffer.from(serial.buffer)) === 0;
  console.log(`  embed_in bitwise identical: ${same}`);
}

main();
