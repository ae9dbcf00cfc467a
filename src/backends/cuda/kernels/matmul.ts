// CUDA kernels: matmul (batched, transposes, a shared operand) and linear (x · wᵀ + b) on cuBLASLt.
// f32, bf16 or f16 storage, f32 accumulation; linear's bias rides cuBLASLt's BIAS epilogue, and
// linearGelu (bias_gelu_fusion) its GELU_AUX(_BIAS) epilogue: gelu_tanh and the pre-activation in one call.

import { noGrad, registerKernel, runKernel } from '../../../tensor/engine.js';
import { matmulShape } from '../../cpu/kernels/matmul.js';
import { cuda, floatSuffix, out, ptr, sameDtype } from './util.js';

registerKernel('matmul', 'cuda', ([a, b], { transA, transB }, backend) => {
  const be = cuda(backend);
  sameDtype(a!, b!, 'matmul');
  floatSuffix(a!.dtype, 'matmul');
  const { batchDims, batch, M, N, K, sharedA, sharedB } = matmulShape(a!, b!, transA, transB);
  const y = out([...batchDims, M, N], a!.dtype, be);
  if (y.numel === 0) return [y];
  if (K === 0) {
    be.memsetAsync(ptr(y), 0, y.storage.bytes);
    return [y];
  }
  const common = { dtype: a!.dtype, transA, transB, N, K, a: ptr(a!), b: ptr(b!), d: ptr(y) };
  if (sharedB && !transA) {
    // The batch folds into M: one [batch·M, K] · [K, N] product.
    be.blas().gemm({ ...common, M: batch * M, batch: 1, strideA: 0, strideB: 0 });
  } else {
    be.blas().gemm({ ...common, M, batch, strideA: sharedA ? 0 : M * K, strideB: sharedB ? 0 : K * N });
  }
  return [y];
});

registerKernel('linear', 'cuda', ([x, w, bias], _attrs, backend) => {
  const be = cuda(backend);
  sameDtype(x!, w!, 'linear');
  floatSuffix(x!.dtype, 'linear');
  if (bias) sameDtype(x!, bias, 'linear (bias)');
  const K = x!.dim(-1);
  const [N, Kw] = w!.shape as [number, number];
  if (K !== Kw) throw new Error(`linear: input has ${K} features, weight [${w!.shape}] expects ${Kw}`);
  const rows = K === 0 ? x!.numel : x!.numel / K;
  const y = out([...x!.shape.slice(0, -1), N], x!.dtype, be);
  if (y.numel === 0) return [y];
  if (K === 0) {
    // An empty product: y = 0 (+ bias on every row).
    be.memsetAsync(ptr(y), 0, y.storage.bytes);
    if (bias) be.kernel('elementwise.cu', `add_rows_inplace_${x!.dtype}`, 'ppll').launch(be.grid(y.numel), 256, ptr(y), ptr(bias), y.numel, N);
    return [y];
  }
  be.blas().gemm({
    dtype: x!.dtype, transA: false, transB: true, M: rows, N, K, batch: 1, strideA: 0, strideB: 0,
    a: ptr(x!), b: ptr(w!), d: ptr(y), bias: bias ? ptr(bias) : undefined,
  });
  return [y];
});

registerKernel('linearGelu', 'cuda', (inputs, _attrs, backend) => {
  const [x, w, bias] = inputs;
  const be = cuda(backend);
  sameDtype(x!, w!, 'linearGelu');
  floatSuffix(x!.dtype, 'linearGelu');
  if (bias) sameDtype(x!, bias, 'linearGelu (bias)');
  const K = x!.dim(-1);
  const [N, Kw] = w!.shape as [number, number];
  if (K !== Kw) throw new Error(`linearGelu: input has ${K} features, weight [${w!.shape}] expects ${Kw}`);
  if (K === 0 || x!.numel === 0) {
    // Nothing for cuBLASLt to do: linear, then the activation (unrecorded: this is one kernel).
    return noGrad(() => {
      const pre = runKernel('linear', inputs, {})[0]!;
      return [runKernel('activation', [pre], { kind: 'gelu_tanh' })[0]!, pre];
    });
  }
  const shape = [...x!.shape.slice(0, -1), N];
  const y = out(shape, x!.dtype, be);
  const pre = out(shape, x!.dtype, be);
  be.blas().gemm({
    dtype: x!.dtype, transA: false, transB: true, M: x!.numel / K, N, K, batch: 1, strideA: 0, strideB: 0,
    a: ptr(x!), b: ptr(w!), d: ptr(y), bias: bias ? ptr(bias) : undefined, geluAux: ptr(pre),
  });
  return [y, pre];
});
