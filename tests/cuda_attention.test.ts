// Attention on CUDA against the CPU backend: forward o and lse, backward dq, dk, dv on random
// inputs, for causal MHA, GQA, MQA, a sliding window, ALiBi, T < S, T > S (rows that see no key),
// non-causal, and head dims 32 … 256; f32 and bf16; in the bhsd layout and (the `bshd` cases: cuDNN
// shapes with D 64 and 128, MHA and GQA, and fallback-only modes) the bshd layout the model uses,
// against the CPU in the same layout (itself bitwise the permuted bhsd: tests/attention.test.ts).
// bf16 runs twice: the automatic choice (cuDNN's fused attention where sdpaSupports() says so) and
// the attention.cu fallback forced. Outputs are poisoned (NaN-filled) before each kernel. Then
// forward + backward timings at Pythia-160m and Pythia-1.4B attention shapes on both paths and in
// both layouts, printed as a table.
// Without a GPU the tests report `skipped: no CUDA device`.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { CudaBackend } from '../src/backends/cuda/backend.js';
import { cudaUnavailableReason, initCuda } from '../src/backends/cuda/index.js';
import { attentionPaths, setCudnnAttention } from '../src/backends/cuda/kernels/attention.js';
import { sdpaFor, sdpaSupports, sdpaUnavailableReason } from '../src/backends/cuda/sdpa.js';
import { type AttentionLayout, type KernelAttrs, type Tensor, fromNumbers, getBackend, runKernel, scope, tensor, toF32 } from '../src/tensor/index.js';
import { attentionShape } from '../src/tensor/layout.js';
import { rng } from './helpers/check.js';

const gpu = initCuda() as CudaBackend | null;
const noGpu = gpu ? false : 'skipped: no CUDA device';
if (gpu) gpu.poison = true;
else console.log(`CUDA backend unavailable: ${cudaUnavailableReason()}`);
const cpu = getBackend('cpu');

interface Case {
  name: string;
  B: number; H: number; Hkv: number; T: number; S: number; D: number;
  causal: boolean; window: number; alibi: boolean;
  /** Default bhsd. */
  layout?: AttentionLayout;
}

const CASES: Case[] = [
  { name: 'causal MHA', B: 2, H: 4, Hkv: 4, T: 128, S: 128, D: 64, causal: true, window: 0, alibi: false },
  { name: 'GQA 8/2', B: 1, H: 8, Hkv: 2, T: 128, S: 128, D: 64, causal: true, window: 0, alibi: false },
  { name: 'MQA 4/1', B: 1, H: 4, Hkv: 1, T: 128, S: 128, D: 128, causal: true, window: 0, alibi: false },
  { name: 'D=32', B: 2, H: 2, Hkv: 2, T: 128, S: 128, D: 32, causal: true, window: 0, alibi: false },
  { name: 'D=128', B: 1, H: 4, Hkv: 4, T: 256, S: 256, D: 128, causal: true, window: 0, alibi: false },
  { name: 'window 17', B: 1, H: 4, Hkv: 2, T: 96, S: 96, D: 64, causal: true, window: 17, alibi: false },
  { name: 'ALiBi, 6 heads', B: 1, H: 6, Hkv: 6, T: 80, S: 80, D: 32, causal: true, window: 0, alibi: true },
  { name: 'T < S', B: 1, H: 4, Hkv: 2, T: 40, S: 100, D: 64, causal: true, window: 0, alibi: false },
  { name: 'T > S (rows with no key)', B: 1, H: 2, Hkv: 2, T: 50, S: 20, D: 32, causal: true, window: 0, alibi: false },
  { name: 'non-causal, window, ALiBi', B: 1, H: 4, Hkv: 1, T: 33, S: 57, D: 48, causal: false, window: 9, alibi: true },
  { name: 'D=256', B: 1, H: 2, Hkv: 1, T: 64, S: 64, D: 256, causal: true, window: 0, alibi: false },
  // bshd: q, o [B, T, H, D], k, v [B, S, Hkv, D]. cuDNN shapes (bf16) first, then fallback-only modes.
  { name: 'bshd causal MHA', B: 2, H: 4, Hkv: 4, T: 128, S: 128, D: 64, causal: true, window: 0, alibi: false, layout: 'bshd' },
  { name: 'bshd GQA 8/2', B: 1, H: 8, Hkv: 2, T: 256, S: 256, D: 64, causal: true, window: 0, alibi: false, layout: 'bshd' },
  { name: 'bshd D=128', B: 1, H: 4, Hkv: 4, T: 256, S: 256, D: 128, causal: true, window: 0, alibi: false, layout: 'bshd' },
  { name: 'bshd GQA 4/2 D=128', B: 2, H: 4, Hkv: 2, T: 128, S: 128, D: 128, causal: true, window: 0, alibi: false, layout: 'bshd' },
  { name: 'bshd MQA 4/1', B: 1, H: 4, Hkv: 1, T: 128, S: 128, D: 64, causal: true, window: 0, alibi: false, layout: 'bshd' },
  { name: 'bshd window 17', B: 1, H: 4, Hkv: 2, T: 96, S: 96, D: 64, causal: true, window: 17, alibi: false, layout: 'bshd' },
  { name: 'bshd ALiBi, T < S', B: 1, H: 6, Hkv: 3, T: 40, S: 100, D: 32, causal: true, window: 0, alibi: true, layout: 'bshd' },
  { name: 'bshd T > S (rows with no key)', B: 2, H: 2, Hkv: 1, T: 50, S: 20, D: 32, causal: true, window: 0, alibi: false, layout: 'bshd' },
  { name: 'bshd non-causal, D=48', B: 2, H: 4, Hkv: 2, T: 33, S: 57, D: 48, causal: false, window: 0, alibi: false, layout: 'bshd' },
];

type FloatT = 'f32' | 'bf16';

/** Tolerances per dtype: elementwise |g − c| ≤ rtol·|c| + atol·rms(c), and ‖g − c‖ / ‖c‖ ≤ norm. */
const TOL: Record<FloatT, { o: [number, number, number]; grad: [number, number, number]; lse: number }> = {
  f32: { o: [1e-4, 1e-4, 1e-5], grad: [2e-4, 2e-4, 2e-5], lse: 1e-4 },
  bf16: { o: [3e-2, 3e-2, 1e-2], grad: [6e-2, 6e-2, 2.5e-2], lse: 2e-3 },
};

let seed = 7000;

/** n values in [−scale, scale), rounded to `dtype` so both backends see the same numbers. */
function values(n: number, dtype: FloatT, scale: number): Float32Array {
  const r = rng(seed++);
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) v[i] = (r() * 2 - 1) * scale;
  return dtype === 'f32' ? v : toF32(dtype, fromNumbers(dtype, v));
}

/** The same values as a CPU f32 tensor and a GPU tensor of `dtype`. */
function pair(shape: number[], dtype: FloatT, scale: number): [Tensor, Tensor] {
  const v = values(shape.reduce((a, b) => a * b, 1), dtype, scale);
  return [tensor(v, shape, 'f32', cpu), tensor(v, shape, dtype, gpu!)];
}

interface Err { max: number; norm: number; bad: string | null }

/** Error of `g` against `c` relative to rms(c), the relative norm error, and the first failing element. */
function compare(what: string, g: Float32Array, c: Float32Array, [rtol, atol, norm]: [number, number, number]): Err {
  let ss = 0, se = 0, max = 0;
  let bad: string | null = null;
  for (let i = 0; i < c.length; i++) ss += c[i]! * c[i]!;
  const rms = Math.sqrt(ss / Math.max(1, c.length));
  for (let i = 0; i < c.length; i++) {
    const e = Math.abs(g[i]! - c[i]!);
    se += Number.isFinite(e) ? e * e : Infinity;
    const rel = e / (rms || 1);
    if (!(rel <= max)) max = rel;
    if (!(e <= atol * rms + rtol * Math.abs(c[i]!)) && !(e === 0) && bad === null) bad = `${what}[${i}]: got ${g[i]}, expected ${c[i]} (rms ${rms.toPrecision(3)})`;
  }
  const nerr = Math.sqrt(se) / (Math.sqrt(ss) || 1);
  if (bad === null && !(nerr <= norm)) bad = `${what}: relative norm error ${nerr.toPrecision(3)} > ${norm}`;
  return { max, norm: nerr, bad };
}

/** lse: −∞ must match exactly (rows that see no key), the rest within an absolute tolerance. */
function compareLse(g: Float32Array, c: Float32Array, tol: number): Err {
  let max = 0;
  let bad: string | null = null;
  for (let i = 0; i < c.length; i++) {
    const e = c[i] === g[i] ? 0 : Math.abs(g[i]! - c[i]!);
    if (!(e <= max)) max = e;
    if (!(e <= tol) && bad === null) bad = `lse[${i}]: got ${g[i]}, expected ${c[i]}`;
  }
  return { max, norm: 0, bad };
}

interface Outcome { failures: string[]; path: string; line: string }

/** Forward and backward of case `c` on both backends; the failures, the path taken and a report line. */
function runCase(c: Case, dtype: FloatT, cudnn: boolean): Outcome {
  setCudnnAttention(cudnn);
  const before = attentionPaths();
  try {
    return scope(() => {
      const layout = c.layout ?? 'bhsd';
      const qShape = attentionShape(c.B, c.H, c.T, c.D, layout), kvShape = attentionShape(c.B, c.Hkv, c.S, c.D, layout);
      const [qc, qg] = pair(qShape, dtype, 2);
      const [kc, kg] = pair(kvShape, dtype, 1);
      const [vc, vg] = pair(kvShape, dtype, 1);
      const [dc, dg] = pair(qShape, dtype, 1);
      const attrs: KernelAttrs['attention'] = { scale: 1 / Math.sqrt(c.D), causal: c.causal, window: c.window, alibi: c.alibi, layout };
      const [oc, lc] = runKernel('attention', [qc, kc, vc], attrs);
      const [og, lg] = runKernel('attention', [qg, kg, vg], attrs);
      const gradsC = runKernel('attentionBackward', [qc, kc, vc, oc!, lc!, dc], attrs);
      const gradsG = runKernel('attentionBackward', [qg, kg, vg, og!, lg!, dg], attrs);
      const tol = TOL[dtype];
      assert.equal(lg!.dtype, 'f32', 'lse is f32');
      assert.deepEqual(og!.shape, qShape, 'o has q\'s layout');
      assert.deepEqual(lg!.shape, [c.B, c.H, c.T], 'lse is [B, H, T]');
      const errs: [string, Err][] = [
        ['o', compare('o', og!.toFloat32(), oc!.toFloat32(), tol.o)],
        ['lse', compareLse(lg!.toFloat32(), lc!.toFloat32(), tol.lse)],
        ...(['dq', 'dk', 'dv'] as const).map((n, i): [string, Err] => [n, compare(n, gradsG[i]!.toFloat32(), gradsC[i]!.toFloat32(), tol.grad)]),
      ];
      const after = attentionPaths();
      const fwd = after.cudnnForward > before.cudnnForward ? 'cuDNN' : 'fallback';
      const bwd = after.cudnnBackward > before.cudnnBackward ? 'cuDNN' : 'fallback';
      const path = fwd === bwd ? fwd : `${fwd} fwd / ${bwd} bwd`;
      const what = `${c.name} ${dtype} (${path})`;
      const line = `${what.padEnd(48)} ` + errs.map(([n, e]) => `${n} ${e.max.toExponential(1)}${n === 'lse' ? '' : `/${e.norm.toExponential(1)}`}`).join('  ');
      return { failures: errs.filter(([, e]) => e.bad).map(([, e]) => `${what}: ${e.bad}`), path, line };
    });
  } finally {
    setCudnnAttention(true);
  }
}

test('attention forward and backward match the CPU: f32 on the fallback kernel', { skip: noGpu }, () => {
  const failures: string[] = [];
  console.log('case, dtype (path): max |Δ| / rms and relative norm error per output; lse: max |Δ|');
  for (const c of CASES) {
    const r = runCase(c, 'f32', true);
    console.log(r.line);
    assert.equal(r.path, 'fallback', `${c.name}: f32 never goes to cuDNN`);
    failures.push(...r.failures);
  }
  assert.deepEqual(failures, [], failures.join('\n'));
});

test('attention forward and backward match the CPU: bf16 through cuDNN where it applies, and on the forced fallback', { skip: noGpu }, () => {
  const failures: string[] = [];
  const sdpa = sdpaFor(gpu!);
  if (!sdpa) console.log(`cuDNN attention unavailable: ${sdpaUnavailableReason()}`);
  for (const c of CASES) {
    const auto = runCase(c, 'bf16', true);
    console.log(auto.line);
    failures.push(...auto.failures);
    const eligible = sdpaSupports('bf16', c.causal, c.window, c.alibi, c.T, c.S, c.D);
    if (!eligible) assert.equal(auto.path, 'fallback', `${c.name}: not a cuDNN case`);
    // The shapes the recipe measured (D 64 and 128) must take cuDNN when the library is there.
    if (sdpa && eligible && (c.D === 64 || c.D === 128) && auto.path !== 'cuDNN') {
      failures.push(`${c.name}: expected the cuDNN path, got ${auto.path} (${[...sdpa.rejected.values()].join('; ')})`);
    }
    if (eligible) {
      const forced = runCase(c, 'bf16', false);
      console.log(forced.line);
      assert.equal(forced.path, 'fallback');
      failures.push(...forced.failures);
    }
  }
  if (sdpa) console.log(`cuDNN plans cached: ${sdpa.planCount}; rejected: ${sdpa.rejected.size ? [...sdpa.rejected].map(([k, v]) => `${k}: ${v}`).join('; ') : 'none'}`);
  assert.deepEqual(failures, [], failures.join('\n'));
});

// The packed QKV [B, T, H, 3D] the model trains with (multi-head): rotaryQKV and attentionQKV(+Backward)
// on CUDA against the CPU's (the split → rotary / attention → concat composition). bf16 with T % 128 = 0
// must go through cuDNN reading q, k, v in place and writing one dqkv; f32 and T = 96 take the fallback.
test('packed QKV: rotaryQKV and attentionQKV forward and backward match the CPU; cuDNN reads and writes the packed heads', { skip: noGpu }, () => {
  const failures: string[] = [];
  const sdpa = sdpaFor(gpu!);
  for (const [B, T, H, D, rot, dtype, expectCudnn] of [
    [2, 128, 4, 64, 16, 'bf16', true], [1, 256, 2, 128, 32, 'bf16', true], [1, 128, 3, 64, 64, 'bf16', true],
    [2, 96, 2, 64, 16, 'bf16', false], [1, 64, 2, 32, 8, 'f32', false], [1, 128, 2, 10, 4, 'f32', false], [1, 128, 2, 64, 0, 'bf16', true],
  ] as [number, number, number, number, number, FloatT, boolean][]) {
    const what = `B${B} T${T} H${H} D${D} rot ${rot} ${dtype}`;
    const before = attentionPaths();
    scope(() => {
      const shape = [B, T, H, 3 * D];
      const [xc, xg] = pair(shape, dtype, 2);
      const [dc, dg] = pair([B, T, H, D], dtype, 1);
      for (const inverse of [false, true]) {
        const rattrs = { rotaryDims: rot, base: 10000, offset: inverse ? 5 : 0, inverse };
        const rc = runKernel('rotaryQKV', [xc], rattrs)[0]!;
        const rg = runKernel('rotaryQKV', [xg], rattrs)[0]!;
        const e = compare(`${what} rotaryQKV${inverse ? ' inverse' : ''}`, rg.toFloat32(), rc.toFloat32(), dtype === 'f32' ? [1e-6, 1e-6, 1e-6] : [8e-3, 8e-3, 4e-3]);
        if (e.bad) failures.push(e.bad);
      }
      const attrs: KernelAttrs['attentionQKV'] = { scale: 1 / Math.sqrt(D), causal: true, window: 0, alibi: false };
      const [oc, lc] = runKernel('attentionQKV', [xc], attrs);
      const [og, lg] = runKernel('attentionQKV', [xg], attrs);
      const [gc] = runKernel('attentionQKVBackward', [xc, oc!, lc!, dc], attrs);
      const [gg] = runKernel('attentionQKVBackward', [xg, og!, lg!, dg], attrs);
      assert.deepEqual(og!.shape, [B, T, H, D]);
      assert.deepEqual(gg!.shape, shape);
      const tol = TOL[dtype];
      for (const [n, e] of [
        ['o', compare(`${what} o`, og!.toFloat32(), oc!.toFloat32(), tol.o)],
        ['lse', compareLse(lg!.toFloat32(), lc!.toFloat32(), tol.lse)],
        ['dqkv', compare(`${what} dqkv`, gg!.toFloat32(), gc!.toFloat32(), tol.grad)],
      ] as const) if (e.bad) failures.push(`${n}: ${e.bad}`);
    });
    const after = attentionPaths();
    const cudnn = after.cudnnForward > before.cudnnForward && after.cudnnBackward > before.cudnnBackward;
    if (sdpa && cudnn !== expectCudnn) failures.push(`${what}: expected ${expectCudnn ? 'cuDNN' : 'the fallback'} (rejected: ${[...sdpa.rejected.values()].join('; ') || 'none'})`);
  }
  assert.deepEqual(failures, [], failures.join('\n'));
});

test('attention timings at Pythia-160m and Pythia-1.4B shapes (bf16, causal): cuDNN and fallback', { skip: noGpu }, () => {
  const be = gpu!;
  const poison = be.poison;
  be.poison = false;
  const rows: string[] = [];
  try {
    for (const s of [{ name: 'Pythia-160m', B: 16, H: 12, T: 2048, D: 64 }, { name: 'Pythia-1.4B', B: 8, H: 16, T: 2048, D: 128 }]) {
      const fwdFlop = (4 * s.B * s.H * s.T * s.T * s.D) / 2;
      scope(() => {
        const shape = [s.B, s.H, s.T, s.D];
        const n = shape.reduce((a, b) => a * b, 1);
        const v = new Float32Array(n);
        const rand = (k: number): Tensor => {
          const r = rng(k);
          for (let i = 0; i < n; i++) v[i] = r() * 2 - 1;
          return scope(() => runKernel('cast', [tensor(v, shape, 'f32', be)], { dtype: 'bf16' })[0]!);
        };
        const bhsd = [rand(1), rand(2), rand(3), rand(4)];
        // bshd: the same numbers read as [B, T, H, D] (a view; timing does not care which head is which)
        const bshd = bhsd.map((x) => runKernel('reshape', [x], { shape: [s.B, s.T, s.H, s.D] })[0]!);
        const runs: [boolean, AttentionLayout][] = [[true, 'bhsd'], [true, 'bshd'], [false, 'bhsd'], [false, 'bshd']];
        for (const [cudnn, layout] of runs) {
          setCudnnAttention(cudnn);
          const [q, k, vv, dO] = (layout === 'bshd' ? bshd : bhsd) as [Tensor, Tensor, Tensor, Tensor];
          const attrs = { scale: 1 / Math.sqrt(s.D), causal: true, window: 0, alibi: false, layout };
          scope(() => {
            const before = attentionPaths();
            let o!: Tensor, lse!: Tensor;
            const fwd = (): void => {
              o?.dispose();
              lse?.dispose();
              [o, lse] = runKernel('attention', [q, k, vv], attrs) as [Tensor, Tensor];
            };
            const bwd = (): void => { for (const g of runKernel('attentionBackward', [q, k, vv, o, lse, dO], attrs)) g.dispose(); };
            fwd(); bwd(); // plans and compiles
            be.synchronize();
            const reps = cudnn ? 10 : 3;
            let tf = Infinity, tb = Infinity;
            for (let r = 0; r < 2; r++) {
              tf = Math.min(tf, be.time(() => { for (let i = 0; i < reps; i++) fwd(); }) / reps);
              tb = Math.min(tb, be.time(() => { for (let i = 0; i < reps; i++) bwd(); }) / reps);
            }
            const after = attentionPaths();
            const path = after.cudnnForward > before.cudnnForward ? 'cuDNN' : 'fallback';
            const tflops = (flop: number, ms: number): string => (flop / ms / 1e9).toFixed(flop / ms / 1e9 < 10 ? 1 : 0);
            rows.push(`| ${s.name} B=${s.B} H=${s.H} T=${s.T} D=${s.D} | ${path} ${layout} | ${tf.toFixed(3)} ms | ${tflops(fwdFlop, tf)} | ` +
              `${tb.toFixed(3)} ms | ${tflops(2.5 * fwdFlop, tb)} | ${(tf + tb).toFixed(3)} ms | ${tflops(3.5 * fwdFlop, tf + tb)} |`);
          });
        }
      });
    }
  } finally {
    setCudnnAttention(true);
    be.poison = poison;
  }
  console.log(`timings on ${be.device.name}, ${new Date().toISOString().slice(0, 10)} (best of 2 runs; TFLOP/s counts 4·B·H·T²·D/2 forward, 2.5× that backward)`);
  console.log('| shape | path | forward | TFLOP/s | backward | TFLOP/s | fwd + bwd | TFLOP/s |');
  for (const r of rows) console.log(r);
});
