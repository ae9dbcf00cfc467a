// CUDA kernel: dropout on the Philox4x32-10 stream (dropout.cu), bit-identical to the CPU kernel
// (backends/cpu/kernels/dropout.ts): the same mask, and x · scale with scale rounded to f32.

import { registerKernel } from '../../../tensor/engine.js';
import { blockOf, dropoutThreshold, seedWords } from '../../../tensor/philox.js';
import { cuda, floatSuffix, out, ptr } from './util.js';

registerKernel('dropout', 'cuda', ([x], { p, seed, offset }, backend) => {
  const be = cuda(backend);
  const t = floatSuffix(x!.dtype, 'dropout');
  const n = x!.numel;
  const y = out(x!.shape, x!.dtype, be);
  if (n === 0) return [y];
  const threshold = dropoutThreshold(p);
  const scale = p >= 1 ? 0 : Math.fround(1 / (1 - p));
  const [k0, k1] = seedWords(seed);
  blockOf(offset + n - 1); // validates the last stream position
  const philoxBlocks = Math.floor((offset + n - 1) / 4) - Math.floor(offset / 4) + 1;
  be.kernel('dropout.cu', `dropout_${t}`, 'pplluuuf').launch(be.grid(philoxBlocks), 256, ptr(x!), ptr(y), n, offset, k0, k1, threshold, scale);
  return [y];
});
