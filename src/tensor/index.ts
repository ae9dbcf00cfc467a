// The tensor engine.
//   dtype.ts    dtypes, host arrays, bf16/f16 conversion
//   backend.ts  the Backend contract (allocator + registered kernels)
//   tensor.ts   Tensor: shape, dtype, ref-counted storage, grad bookkeeping
//   kernels.ts  every kernel name with its attributes
//   engine.ts   registries, runKernel, autograd tape (backward), scopes (memory lifetimes),
//               activation checkpointing, kernel profiling
//   views.ts    zero-copy slices of a tensor's memory (flat buffers), device copy and clear in place
//   layout.ts   permutation plans shared by the backends' copy kernels
//   philox.ts   Philox4x32-10: dropout masks and weight init, identical on every backend
export * from './dtype.js';
export type { Backend, Storage, MemoryStats } from './backend.js';
export { Tensor } from './tensor.js';
export * from './engine.js';
export { adoptStorage, copyInto, sliceView, zeroInPlace } from './views.js';
export type { KernelAttrs, KernelName, ActivationKind, AttentionLayout } from './kernels.js';
export { KERNEL_NAMES } from './kernels.js';
export { permutePlan } from './layout.js';
