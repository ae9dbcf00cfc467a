// CPU kernel: dropout with a Philox4x32-10 mask (tensor/philox.ts documents the stream).
//   dropout   y[i] = keep(offset + i) ? x[i] · scale : 0
// keep(j) ⇔ (u(j) >>> 8) ≥ ceil(p · 2^24), u(j) the Philox word at stream position j of `seed`.
// scale = 1/(1 − p), rounded to f32 for f32 tensors so that the f32 product matches a CUDA
// kernel's `x * scale` bit for bit (the product of two f32 values is exact in f64, then rounded once).
// p ≥ 1 drops everything (scale 0). Backward is this kernel on dy with the same attributes.

import { registerKernel } from '../../../tensor/engine.js';
import { blockOf, dropoutThreshold, philox4x32, seedWords } from '../../../tensor/philox.js';
import { f, out } from './util.js';

registerKernel('dropout', 'cpu', ([x], { p, seed, offset }, be) => {
  const n = x!.numel;
  const y = out(x!.shape, x!.dtype, be);
  const X = f(x!, 'dropout'), Y = f(y, 'dropout');
  if (n === 0) return [y];
  const thr = dropoutThreshold(p);
  const exact = p >= 1 ? 0 : 1 / (1 - p);
  const scale = x!.dtype === 'f32' ? Math.fround(exact) : exact;
  const [k0, k1] = seedWords(seed);
  blockOf(offset + n - 1); // validates the last position
  let { lo, hi, word } = blockOf(offset);
  const words = new Uint32Array(4);
  for (let i = 0; i < n; ) {
    philox4x32(lo, hi, 0, 0, k0, k1, words);
    for (; word < 4 && i < n; word++, i++) Y[i] = words[word]! >>> 8 >= thr ? X[i]! * scale : 0;
    word = 0;
    lo = (lo + 1) >>> 0;
    if (lo === 0) hi = (hi + 1) >>> 0;
  }
  return [y];
});
