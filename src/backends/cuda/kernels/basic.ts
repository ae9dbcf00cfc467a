// CUDA kernels: fill, cast, elementwise arithmetic, in-place updates, reductions, embedding.
// Sources: elementwise.cu, reduce.cu, embedding.cu. Contracts: tensor/kernels.ts (the CPU
// implementations in backends/cpu/kernels/basic.ts are the reference the tests compare against).

import { f32ToBf16, f32ToF16 } from '../../../tensor/dtype.js';
import { registerKernel } from '../../../tensor/engine.js';
import type { Tensor } from '../../../tensor/tensor.js';
import type { CudaBackend } from '../backend.js';
import { chunkTable, cuda, floatSuffix, out, ptr, sameDtype } from './util.js';

const BLOCK = 256;
const f32Bits = new Uint32Array(new Float32Array(1).buffer);
const f32Word = new Float32Array(f32Bits.buffer);

registerKernel('fill', 'cuda', (_inputs, { shape, dtype, value }, backend) => {
  const be = cuda(backend);
  const y = out(shape, dtype, be);
  const p = ptr(y);
  const n = y.numel;
  switch (dtype) {
    case 'f32':
      f32Word[0] = value;
      be.memset32Async(p, f32Bits[0]!, n);
      break;
    case 'i32': be.memset32Async(p, value | 0, n); break;
    case 'bf16': be.memset16Async(p, f32ToBf16(value), n); break;
    case 'f16': be.memset16Async(p, f32ToF16(value), n); break;
    case 'u16': be.memset16Async(p, (value | 0) & 0xffff, n); break;
    case 'u8': be.memsetAsync(p, (value | 0) & 0xff, n); break;
    default: throw new Error(`fill on CUDA does not support ${dtype}`);
  }
  return [y];
});

const CASTABLE = new Set(['f32', 'bf16', 'f16', 'i32']);

registerKernel('cast', 'cuda', ([x], { dtype }, backend) => {
  const be = cuda(backend);
  const y = out(x!.shape, dtype, be);
  if (x!.dtype === dtype) {
    be.copyAsync(ptr(y), ptr(x!), y.storage.bytes);
    return [y];
  }
  if (!CASTABLE.has(x!.dtype) || !CASTABLE.has(dtype) || (x!.dtype === 'i32' && dtype === 'i32')) {
    throw new Error(`cast on CUDA: ${x!.dtype} → ${dtype} is not supported (f32, bf16, f16, i32)`);
  }
  const n = x!.numel;
  be.kernel('elementwise.cu', `cast_${x!.dtype}_${dtype}`, 'ppl').launch(be.grid(n), BLOCK, ptr(x!), ptr(y), n);
  return [y];
});

function binary(name: 'add' | 'sub' | 'mul'): void {
  registerKernel(name, 'cuda', ([a, b], _attrs, backend) => {
    const be = cuda(backend);
    sameDtype(a!, b!, name);
    const t = floatSuffix(a!.dtype, name);
    const n = a!.numel;
    const m = b!.numel;
    if (m === 0 ? n !== 0 : n % m !== 0) throw new Error(`${name}: cannot broadcast [${b!.shape}] to [${a!.shape}]`);
    const y = out(a!.shape, a!.dtype, be);
    be.kernel('elementwise.cu', `${name}_${t}`, 'pppll').launch(be.grid(n), BLOCK, ptr(a!), ptr(b!), ptr(y), n, m);
    return [y];
  });
}
binary('add');
binary('sub');
binary('mul');

registerKernel('scale', 'cuda', ([x], { alpha }, backend) => {
  const be = cuda(backend);
  const t = floatSuffix(x!.dtype, 'scale');
  const y = out(x!.shape, x!.dtype, be);
  const n = x!.numel;
  be.kernel('elementwise.cu', `scale_${t}`, 'ppfl').launch(be.grid(n), BLOCK, ptr(x!), ptr(y), alpha, n);
  return [y];
});

registerKernel('addInPlace', 'cuda', ([a, b], { alpha }, backend) => {
  const be = cuda(backend);
  sameDtype(a!, b!, 'addInPlace');
  const t = floatSuffix(a!.dtype, 'addInPlace');
  if (a!.numel !== b!.numel) throw new Error(`addInPlace: shapes differ ([${a!.shape}] and [${b!.shape}])`);
  const n = a!.numel;
  be.kernel('elementwise.cu', `add_inplace_${t}`, 'ppfl').launch(be.grid(n), BLOCK, ptr(a!), ptr(b!), alpha, n);
  return [];
});

registerKernel('scaleInPlace', 'cuda', ([a], { alpha }, backend) => {
  const be = cuda(backend);
  const t = floatSuffix(a!.dtype, 'scaleInPlace');
  const n = a!.numel;
  be.kernel('elementwise.cu', `scale_inplace_${t}`, 'pfl').launch(be.grid(n), BLOCK, ptr(a!), alpha, n);
  return [];
});

// --- reductions: partial sums per block into f32 scratch, then one block sums the partials.

/** Blocks of the first pass: ~2048 elements each, at most 1024 (the final pass reads them all). */
function reduceBlocks(n: number): number {
  return Math.min(Math.max(1, Math.ceil(n / 2048)), 1024);
}

function fullReduction(kernel: 'sum' | 'sumSquares'): void {
  registerKernel(kernel, 'cuda', (inputs, _attrs, backend) => {
    const be = cuda(backend);
    if (kernel === 'sumSquares' && inputs.length !== 1) return [sumSquaresMany(be, inputs)];
    const x = inputs[0];
    const t = floatSuffix(x!.dtype, kernel);
    const outDtype = kernel === 'sum' ? x!.dtype : 'f32';
    const y = out([], outDtype, be);
    const n = x!.numel;
    const blocks = n === 0 ? 0 : reduceBlocks(n);
    const partial = be.scratch(Math.max(4, blocks * 4));
    const first = kernel === 'sum' ? `sum_partial_${t}` : `sumsq_partial_${t}`;
    be.kernel('reduce.cu', first, 'plp').launch(blocks, BLOCK, ptr(x!), n, partial.ptr);
    be.kernel('reduce.cu', `sum_final_${floatSuffix(outDtype, kernel)}`, 'pip').launch(1, BLOCK, partial.ptr, blocks, ptr(y));
    be.releaseScratch(partial);
    return [y];
  });
}
fullReduction('sum');
fullReduction('sumSquares');

/** Σ x² over many tensors of one dtype in two launches: a block per chunk, then the final sum. */
function sumSquaresMany(be: CudaBackend, xs: Tensor[]): Tensor {
  const y = out([], 'f32', be);
  const live = xs.filter((x) => x.numel > 0);
  if (live.length === 0) {
    be.kernel('reduce.cu', 'sum_final_f32', 'pip').launch(1, BLOCK, 0, 0, ptr(y));
    return y;
  }
  const dtype = live[0]!.dtype;
  if (live.some((x) => x.dtype !== dtype)) throw new Error(`sumSquares: inputs of one dtype, got ${[...new Set(live.map((x) => x.dtype))].join(', ')}`);
  const t = floatSuffix(dtype, 'sumSquares');
  const { table, chunks } = chunkTable(be, live.map((x) => [x]));
  const partial = be.scratch(chunks * 4);
  be.kernel('reduce.cu', `sumsq_chunks_${t}`, 'pp').launch(chunks, BLOCK, table.ptr, partial.ptr);
  be.kernel('reduce.cu', 'sum_final_f32', 'pip').launch(1, BLOCK, partial.ptr, chunks, ptr(y));
  be.releaseScratch(partial);
  be.releaseScratch(table);
  return y;
}

registerKernel('sumRows', 'cuda', ([x], _attrs, backend) => {
  const be = cuda(backend);
  const t = floatSuffix(x!.dtype, 'sumRows');
  const C = x!.dim(-1);
  const R = C === 0 ? 0 : x!.numel / C;
  const y = out([C], x!.dtype, be);
  if (C === 0) return [y];
  if (R === 0) {
    be.memsetAsync(ptr(y), 0, y.storage.bytes);
    return [y];
  }
  // Column blocks of 32; enough row chunks to give every multiprocessor a few blocks.
  const colBlocks = Math.ceil(C / 32);
  let chunks = Math.max(1, Math.min(Math.ceil(R / 32), Math.ceil((4 * be.device.multiprocessors) / colBlocks)));
  const rows = Math.ceil(R / chunks);
  chunks = Math.ceil(R / rows);
  const partial = be.scratch(chunks * C * 4);
  be.kernel('reduce.cu', `sumrows_partial_${t}`, 'plllp').launchShared(colBlocks, chunks, 32, 8, 0, [ptr(x!), R, C, rows, partial.ptr]);
  be.kernel('reduce.cu', `sumrows_final_${t}`, 'pllp').launch(be.grid(C), BLOCK, partial.ptr, chunks, C, ptr(y));
  be.releaseScratch(partial);
  return [y];
});

// --- embedding

registerKernel('embedding', 'cuda', ([ids, w], _attrs, backend) => {
  const be = cuda(backend);
  if (ids!.dtype !== 'i32') throw new Error(`embedding: expected i32 ids, got ${ids!.dtype}`);
  const t = floatSuffix(w!.dtype, 'embedding');
  const [V, C] = w!.shape as [number, number];
  const y = out([...ids!.shape, C], w!.dtype, be);
  const N = ids!.numel;
  be.kernel('embedding.cu', `embedding_${t}`, 'ppplllp').launch(be.grid(N * C), BLOCK, ptr(ids!), ptr(w!), ptr(y), N, C, V, be.errorPtr);
  return [y];
});

registerKernel('embeddingBackward', 'cuda', ([ids, dy], { vocab }, backend) => {
  const be = cuda(backend);
  if (ids!.dtype !== 'i32') throw new Error(`embeddingBackward: expected i32 ids, got ${ids!.dtype}`);
  const t = floatSuffix(dy!.dtype, 'embeddingBackward');
  const C = dy!.dim(-1);
  const N = ids!.numel;
  if (dy!.numel !== N * C) throw new Error(`embeddingBackward: dy [${dy!.shape}] does not match ids [${ids!.shape}]`);
  const dw = out([vocab, C], dy!.dtype, be);
  // Atomics accumulate in f32: straight into dw when it is f32, else into a scratch table cast after.
  const acc = t === 'f32' ? null : be.scratch(vocab * C * 4);
  const accPtr = acc ? acc.ptr : ptr(dw);
  be.memsetAsync(accPtr, 0, vocab * C * 4);
  be.kernel('embedding.cu', `embedding_backward_${t}`, 'ppplllp').launch(be.grid(N * C), BLOCK, ptr(ids!), ptr(dy!), accPtr, N, C, vocab, be.errorPtr);
  if (acc) {
    be.kernel('elementwise.cu', `cast_f32_${t}`, 'ppl').launch(be.grid(vocab * C), BLOCK, acc.ptr, ptr(dw), vocab * C);
    be.releaseScratch(acc);
  }
  return [dw];
});
