// Test helpers: random inputs, closeness assertions, and finite-difference gradient checks in f64.

import assert from 'node:assert/strict';
import '../../src/backends/cpu/index.js';
import { type Tensor, backward, getBackend, scope, tensor } from '../../src/tensor/index.js';
import * as ops from '../../src/ops/index.js';

/** A small deterministic PRNG (mulberry32) for test inputs. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Uniform values in [-1, 1) × scale. */
export function randn(shape: number[], seed: number, dtype: 'f32' | 'f64' = 'f64', scale = 1): Tensor {
  const r = rng(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  const v = new Float64Array(n);
  for (let i = 0; i < n; i++) v[i] = (r() * 2 - 1) * scale;
  return tensor(v, shape, dtype);
}

export function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: { rtol?: number; atol?: number } = {}, what = 'values'): void {
  const rtol = tol.rtol ?? 1e-5;
  const atol = tol.atol ?? 1e-6;
  assert.equal(actual.length, expected.length, `${what}: length ${actual.length} != ${expected.length}`);
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i]!, e = expected[i]!;
    if (!(Math.abs(a - e) <= atol + rtol * Math.abs(e))) {
      assert.fail(`${what}[${i}]: got ${a}, expected ${e} (rtol ${rtol}, atol ${atol})`);
    }
  }
}

/**
 * Checks the analytic gradients of `f(...inputs)` (reduced to a scalar by a fixed random
 * projection) against central finite differences, in f64 on the CPU.
 */
export function gradcheck(f: (...xs: Tensor[]) => Tensor, inputs: Tensor[], opts: { eps?: number; rtol?: number; atol?: number; only?: number[] } = {}): void {
  const eps = opts.eps ?? 1e-6;
  const check = opts.only ?? inputs.map((_, i) => i).filter((i) => inputs[i]!.dtype === 'f64');
  for (const i of check) inputs[i]!.requiresGrad = true;
  let proj: Tensor | null = null;
  const objective = (): number => scope(() => {
    const y = f(...inputs);
    proj ??= randn([...y.shape], 999, 'f64').keep();
    return ops.sum(ops.mul(y, proj)).item();
  });
  // Analytic
  scope(() => {
    const y = f(...inputs);
    proj ??= randn([...y.shape], 999, 'f64').keep();
    backward(ops.sum(ops.mul(y, proj)));
  });
  for (const i of check) {
    const x = inputs[i]!;
    const analytic = x.grad!.toArray() as Float64Array;
    const data = (x.storage as unknown as { data: Float64Array }).data;
    const numeric = new Float64Array(x.numel);
    for (let j = 0; j < x.numel; j++) {
      const orig = data[j]!;
      data[j] = orig + eps;
      const up = objective();
      data[j] = orig - eps;
      const down = objective();
      data[j] = orig;
      numeric[j] = (up - down) / (2 * eps);
    }
    assertClose(analytic, numeric, { rtol: opts.rtol ?? 1e-5, atol: opts.atol ?? 1e-7 }, `gradient of input ${i}`);
    x.grad!.dispose();
    x.grad = null;
  }
}

export const cpu = () => getBackend('cpu');
