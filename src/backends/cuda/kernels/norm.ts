// CUDA kernels: LayerNorm, RMSNorm, ScaleNorm forward and backward (norm.cu). Contracts and the
// reference: backends/cpu/kernels/norm.ts. Statistics are f32. LayerNorm and RMSNorm run a warp per
// row (8 rows a block). Their backward is one pass over dy and x (norm_backward_reg): a row group of
// 32·wpr threads per row, each thread owning the same few 16-byte column slots for every row, so a
// row's dy and x sit in registers between the row sums and the dx store, and the thread adds dy · x̂
// and dy into its own registers for dw and db. A persistent grid (a few blocks per multiprocessor)
// walks the rows and writes per-block partials [blocks, C] f32, which norm_params_final adds up in
// a fixed order (deterministic, no atomics). Rows wider than the register slots hold (C > 6144 for
// bf16/f16, > 4096 for f32) take the older shared-memory kernel (norm_backward).

import { registerKernel } from '../../../tensor/engine.js';
import type { Tensor } from '../../../tensor/tensor.js';
import type { CudaBackend } from '../backend.js';
import { cuda, floatSuffix, out, ptr, rowBlock, rowsCols, sameDtype } from './util.js';

/** Rows (warps) per block of the warp-per-row LayerNorm/RMSNorm kernels. */
const ROWS_PER_BLOCK = 8;

/** Threads per block of norm_backward_reg (norm.cu NORM_BW_THREADS). */
const REG_THREADS = 256;
/** Most 16-byte column slots a thread of norm_backward_reg holds, by element size (norm.cu's instances). */
const REG_MAX_SLOTS: Record<number, number> = { 4: 4, 2: 3 };
/** The launch bounds' blocks per multiprocessor of norm_backward_reg with NV slots (norm.cu's MINB). */
const REG_MIN_BLOCKS = [0, 4, 2, 2, 2];

interface RegLaunch { nv: number; tpr: number; groups: number; blocks: number; shared: number }

/**
 * norm_backward_reg's launch for [R, C], or null when a row is wider than 256 threads' slots hold.
 * A row has nvec = ⌈C / V⌉ slots (V = 16 bytes / element size); a row group has wpr = ⌈nvec /
 * (32·NVmax)⌉ warps (tpr = 32·wpr threads) and each thread nv = ⌈nvec / tpr⌉ slots; a block has
 * ⌊256 / tpr⌋ groups; the grid is persistent: the blocks the launch bounds guarantee resident
 * (⌊256·MINB(nv) / threads⌋ per multiprocessor, at most 2048 threads), no more than the rows need.
 */
function regLaunch(be: CudaBackend, R: number, C: number, itemSize: number, sums: number): RegLaunch | null {
  const maxSlots = REG_MAX_SLOTS[itemSize]!;
  const nvec = Math.ceil(C / (16 / itemSize));
  if (nvec === 0 || nvec > REG_THREADS * maxSlots) return null;
  const wpr = Math.ceil(nvec / (32 * maxSlots));
  const tpr = 32 * wpr;
  const nv = Math.ceil(nvec / tpr);
  const groups = Math.floor(REG_THREADS / tpr);
  const threads = tpr * groups;
  const shared = groups > 1 ? sums * C * 4 : 0;
  let perSM = Math.max(1, Math.min(Math.floor((REG_THREADS * REG_MIN_BLOCKS[nv]!) / threads), Math.floor(2048 / threads)));
  if (shared > 0) perSM = Math.max(1, Math.min(perSM, Math.floor(be.device.maxSharedPerBlock / (shared + 1024))));
  const blocks = Math.max(1, Math.min(Math.ceil(R / groups), perSM * be.device.multiprocessors));
  return { nv, tpr, groups, blocks, shared };
}

/**
 * The fallback norm_backward's launch: warps per block (each holds `sums` × C f32 sums in shared
 * memory, up to 8 per block within the device's shared memory) and blocks (enough warps to fill
 * the device; each block's partials are one row of [blocks, C]).
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
  const name = ln ? 'layer_norm_backward' : 'rms_norm_backward';
  const sig = ln ? 'pppppppll' : 'ppppppll';
  const stats = ln ? [ptr(dy), ptr(x), ptr(w), ptr(mean!), ptr(rstd)] : [ptr(dy), ptr(x), ptr(w), ptr(rstd)];
  const itemSize = x.dtype === 'f32' ? 4 : 2;
  const reg = regLaunch(be, R, C, itemSize, sums);
  const fallback = reg ? null : backwardLaunch(be, R, C, sums);
  const blocks = reg ? reg.blocks : fallback!.blocks;
  const part = be.scratch(Math.max(4, sums * blocks * C * 4));
  if (reg) {
    const vec = C % (16 / itemSize) === 0 && [dy, x, dx, w].every((a) => ptr(a) % 16 === 0);
    const k = be.kernel('norm.cu', `${name}_r${reg.nv}_${vec ? 'v' : 's'}_${t}`, sig);
    k.allowSharedMemory(reg.shared, be.device.maxSharedPerBlock);
    k.launchShared(blocks, 1, reg.tpr, reg.groups, reg.shared, [...stats, ptr(dx), part.ptr, R, C]);
  } else {
    const { warps } = fallback!;
    const shared = warps * sums * C * 4;
    const k = be.kernel('norm.cu', `${name}_${t}`, sig);
    k.allowSharedMemory(shared, be.device.maxSharedPerBlock);
    k.launchShared(blocks, 1, 32 * warps, 1, shared, [...stats, ptr(dx), part.ptr, R, C]);
  }
  // dw (and db) = the partial rows added up, blockIdx.y choosing which.
  be.kernel('norm.cu', `norm_params_final_${t}`, 'pllpp')
    .launchShared(Math.ceil(C / 32), sums, 32, 32, 0, [part.ptr, blocks, C, ptr(dw), db ? ptr(db) : 0]);
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
