// CUDA kernels: LayerNorm, RMSNorm, ScaleNorm forward and backward (norm.cu). Contracts and the
// reference: backends/cpu/kernels/norm.ts. Statistics are f32. LayerNorm and RMSNorm run a warp per
// row (8 rows a block); their backward writes dx and per-block partial parameter gradients, which
// reduce.cu adds up (deterministic, no atomics).

import { registerKernel } from '../../../tensor/engine.js';
import type { Tensor } from '../../../tensor/tensor.js';
import type { CudaBackend } from '../backend.js';
import { cuda, floatSuffix, out, ptr, rowBlock, rowsCols, sameDtype } from './util.js';

/** Blocks of a backward pass: a few per multiprocessor, each walking R / blocks rows. */
/** Rows (warps) per block of the warp-per-row LayerNorm/RMSNorm kernels. */
const ROWS_PER_BLOCK = 8;

/**
 * Warps per block of the backward (each holds `sums` × C f32 sums in shared memory, up to 8 per
 * block within the device's shared memory) and blocks (enough warps to fill the device; each
 * block's partials are one row of [blocks, C]).
 */
function backwardLaunch(be: CudaBackend, R: number, C: number, sums: number): { warps: number; blocks: number } {
  const warps = Math.max(1, Math.min(ROWS_PER_BLOCK, Math.floor(be.device.maxSharedPerBlock / (sums * C * 4))));
  return { warps, blocks: Math.max(1, Math.min(Math.ceil(R / warps), Math.ceil((32 * be.device.multiprocessors) / warps))) };
}

/** Blocks of ScaleNorm's backward: a few per multiprocessor, each walking R / blocks rows. */
function backwardBlocks(be: CudaBackend, R: number): number {
  return Math.min(R, 2 * be.device.multiprocessors);
}

registerKernel('layerNorm', 'cuda', ([x, w, b], { eps }, backend) => {
  const be = cuda(backend);
  const [R, C] = rowsCols(x!, 'layerNorm', w, b);
  const t = floatSuffix(x!.dtype, 'layerNorm');
  const y = out([R, C], x!.dtype, be);
  const mean = out([R], 'f32', be);
  const rstd = out([R], 'f32', be);
  const grid = Math.ceil(R / ROWS_PER_BLOCK);
  if (b) be.kernel('norm.cu', `layer_norm_${t}`, 'ppppppllf').launch(grid, 32 * ROWS_PER_BLOCK, ptr(x!), ptr(w!), ptr(b), ptr(y), ptr(mean), ptr(rstd), R, C, eps);
  else be.kernel('norm.cu', `layer_norm_nobias_${t}`, 'pppppllf').launch(grid, 32 * ROWS_PER_BLOCK, ptr(x!), ptr(w!), ptr(y), ptr(mean), ptr(rstd), R, C, eps);
  return [y, mean, rstd];
});

/** dx (and the row-summed parameter gradients) of LayerNorm (`ln`) or RMSNorm. */
function normBackward(be: CudaBackend, ln: boolean, dy: Tensor, x: Tensor, w: Tensor, mean: Tensor | null, rstd: Tensor): Tensor[] {
  const kernel = ln ? 'layerNormBackward' : 'rmsNormBackward';
  const [R, C] = rowsCols(x, kernel, w);
  sameDtype(x, dy, kernel);
  const t = floatSuffix(x.dtype, kernel);
  const dx = out([R, C], x.dtype, be);
  const dw = out([C], w.dtype, be);
  const db = ln ? out([C], w.dtype, be) : null;
  const sums = ln ? 2 : 1;
  const { warps, blocks } = backwardLaunch(be, R, C, sums);
  const part = be.scratch(Math.max(4, sums * blocks * C * 4));
  const shared = warps * sums * C * 4;
  if (ln) {
    const k = be.kernel('norm.cu', `layer_norm_backward_${t}`, 'pppppppll');
    k.allowSharedMemory(shared, be.device.maxSharedPerBlock);
    k.launchShared(blocks, 1, 32 * warps, 1, shared, [ptr(dy), ptr(x), ptr(w), ptr(mean!), ptr(rstd), ptr(dx), part.ptr, R, C]);
  } else {
    const k = be.kernel('norm.cu', `rms_norm_backward_${t}`, 'ppppppll');
    k.allowSharedMemory(shared, be.device.maxSharedPerBlock);
    k.launchShared(blocks, 1, 32 * warps, 1, shared, [ptr(dy), ptr(x), ptr(w), ptr(rstd), ptr(dx), part.ptr, R, C]);
  }
  const finish = be.kernel('reduce.cu', `sumrows_final_${t}`, 'pllp');
  finish.launch(be.grid(C), 256, part.ptr, blocks, C, ptr(dw));
  if (db) finish.launch(be.grid(C), 256, part.ptr + blocks * C * 4, blocks, C, ptr(db));
  be.releaseScratch(part);
  return db ? [dx, dw, db] : [dx, dw];
}

registerKernel('layerNormBackward', 'cuda', ([dy, x, w, mean, rstd], _attrs, backend) => normBackward(cuda(backend), true, dy!, x!, w!, mean!, rstd!));

registerKernel('rmsNorm', 'cuda', ([x, w], { eps }, backend) => {
  const be = cuda(backend);
  const [R, C] = rowsCols(x!, 'rmsNorm', w);
  const t = floatSuffix(x!.dtype, 'rmsNorm');
  const y = out([R, C], x!.dtype, be);
  const rstd = out([R], 'f32', be);
  be.kernel('norm.cu', `rms_norm_${t}`, 'ppppllf').launch(Math.ceil(R / ROWS_PER_BLOCK), 32 * ROWS_PER_BLOCK, ptr(x!), ptr(w!), ptr(y), ptr(rstd), R, C, eps);
  return [y, rstd];
});

registerKernel('rmsNormBackward', 'cuda', ([dy, x, w, rstd], _attrs, backend) => normBackward(cuda(backend), false, dy!, x!, w!, null, rstd!));

function gain(g: Tensor, x: Tensor, kernel: string): void {
  sameDtype(x, g, kernel);
  if (g.numel !== 1) throw new Error(`${kernel}: g must have one element, got [${g.shape}]`);
}

registerKernel('scaleNorm', 'cuda', ([x, g], { eps }, backend) => {
  const be = cuda(backend);
  const [R, C] = rowsCols(x!, 'scaleNorm');
  gain(g!, x!, 'scaleNorm');
  const t = floatSuffix(x!.dtype, 'scaleNorm');
  const y = out([R, C], x!.dtype, be);
  const rnorm = out([R], 'f32', be);
  be.kernel('norm.cu', `scale_norm_${t}`, 'pppplf').launch(R, rowBlock(C), ptr(x!), ptr(g!), ptr(y), ptr(rnorm), C, eps);
  return [y, rnorm];
});

registerKernel('scaleNormBackward', 'cuda', ([dy, x, g, rnorm], { eps }, backend) => {
  const be = cuda(backend);
  const [R, C] = rowsCols(x!, 'scaleNormBackward');
  sameDtype(x!, dy!, 'scaleNormBackward');
  gain(g!, x!, 'scaleNormBackward');
  const t = floatSuffix(x!.dtype, 'scaleNormBackward');
  const dx = out([R, C], x!.dtype, be);
  const dg = out(g!.shape, g!.dtype, be);
  const blocks = backwardBlocks(be, R);
  const part = be.scratch(Math.max(4, blocks * 4));
  be.kernel('norm.cu', `scale_norm_backward_${t}`, 'ppppppllf')
    .launch(blocks, rowBlock(C), ptr(dy!), ptr(x!), ptr(g!), ptr(rnorm!), ptr(dx), part.ptr, R, C, eps);
  be.kernel('reduce.cu', `sum_final_${t}`, 'pip').launch(1, 256, part.ptr, blocks, ptr(dg));
  be.releaseScratch(part);
  return [dx, dg];
});
