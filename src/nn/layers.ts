// Layers with parameters: Linear, Embedding, and the three GPT-NeoX norms.

import * as ops from '../ops/index.js';
import type { Backend } from '../tensor/backend.js';
import { type DType, hostArray } from '../tensor/dtype.js';
import { tensor, zeros } from '../tensor/engine.js';
import type { Tensor } from '../tensor/tensor.js';
import { Module, parameter } from './module.js';

/**
 * The dtype layers compute in, shared by every layer of a model: parameters stay in their own
 * (master) dtype and are cast at use, so with `compute = 'bf16'` the matmuls run in bf16 while
 * gradients flow back through the casts into f32 parameters (PyTorch autocast's scheme).
 */
export interface ComputePrecision {
  compute: DType;
}

/** `p` in the compute dtype (a cast recorded on the tape, or `p` itself). */
export function atCompute(p: Tensor, precision: ComputePrecision): Tensor {
  return ops.cast(p, precision.compute);
}

export interface ParamFactory {
  backend: Backend;
  dtype: DType;
  precision: ComputePrecision;
  /** A new [rows, cols] tensor (on `backend`, in `dtype`) holding a weight's initial values by the named role. */
  weight(rows: number, cols: number, role: 'input' | 'output'): Tensor;
}

/**
 * A parameter filled with `value`: zeros straight from the backend (a memset on CUDA), else one
 * host array of the dtype's own type, uploaded as is (bf16/f16 take f32 numbers, which tensor() rounds).
 */
function constant(shape: number[], value: number, f: ParamFactory): Tensor {
  if (value === 0) return parameter(zeros(shape, f.dtype, f.backend));
  const n = shape.reduce((a, b) => a * b, 1);
  const host = f.dtype === 'bf16' || f.dtype === 'f16' ? new Float32Array(n).fill(value) : hostArray(f.dtype, n).fill(value);
  return parameter(tensor(host, shape, f.dtype, f.backend));
}

/** nn.Linear: weight [out, in], optional bias [out]. */
export class Linear extends Module {
  readonly weight: Tensor; // (out, in)
  readonly bias: Tensor | null; // (out)
  private readonly precision: ComputePrecision;
  constructor(inFeatures: number, outFeatures: number, f: ParamFactory, opts: { bias: boolean; init: 'input' | 'output' }) {
    super();
    this.precision = f.precision;
    this.weight = parameter(f.weight(outFeatures, inFeatures, opts.init));
    this.bias = opts.bias ? constant([outFeatures], 0, f) : null;
  }
  forward(x: Tensor): Tensor {
    const p = this.precision;
    return ops.linear(x, atCompute(this.weight, p), this.bias && atCompute(this.bias, p));
  }
  /** gelu_tanh(linear(x)) as one op (on CUDA, cuBLASLt's GELU epilogue): GPT-NeoX's bias_gelu_fusion. */
  forwardGelu(x: Tensor): Tensor {
    const p = this.precision;
    return ops.linearGelu(x, atCompute(this.weight, p), this.bias && atCompute(this.bias, p));
  }
}

export class Embedding extends Module {
  readonly weight: Tensor; // (V, C)
  private readonly precision: ComputePrecision;
  constructor(num: number, dim: number, f: ParamFactory) {
    super();
    this.precision = f.precision;
    this.weight = parameter(f.weight(num, dim, 'input'));
  }
  forward(ids: Tensor): Tensor {
    return ops.embedding(ids, atCompute(this.weight, this.precision));
  }
}

export type NormKind = 'layernorm' | 'rmsnorm' | 'scalenorm';

/** LayerNorm (weight, bias), RMSNorm (weight) or ScaleNorm (scalar g) over the last dim. */
export class Norm extends Module {
  readonly weight: Tensor | null = null; // (C)
  readonly bias: Tensor | null = null; // (C)
  readonly g: Tensor | null = null; // (1), ScaleNorm only
  private readonly precision: ComputePrecision;
  constructor(readonly kind: NormKind, dim: number, readonly eps: number, f: ParamFactory, bias = true) {
    super();
    this.precision = f.precision;
    if (kind === 'scalenorm') this.g = constant([1], 1, f);
    else {
      this.weight = constant([dim], 1, f);
      if (kind === 'layernorm' && bias) this.bias = constant([dim], 0, f);
    }
  }
  forward(x: Tensor): Tensor {
    const c = (p: Tensor) => atCompute(p, this.precision);
    switch (this.kind) {
      case 'layernorm': return ops.layerNorm(x, c(this.weight!), this.bias && c(this.bias), this.eps);
      case 'rmsnorm': return ops.rmsNorm(x, c(this.weight!), this.eps);
      case 'scalenorm': return ops.scaleNorm(x, c(this.g!), this.eps);
    }
  }
}
