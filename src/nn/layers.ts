// Layers with parameters: Linear, Embedding, and the three GPT-NeoX norms.

import * as ops from '../ops/index.js';
import type { Backend } from '../tensor/backend.js';
import type { DType } from '../tensor/dtype.js';
import { tensor } from '../tensor/engine.js';
import type { Tensor } from '../tensor/tensor.js';
import { Module, parameter } from './module.js';

export interface ParamFactory {
  backend: Backend;
  dtype: DType;
  /** Initial values for a [rows, cols] weight by the named role. */
  weight(rows: number, cols: number, role: 'input' | 'output'): Float32Array;
}

function constant(shape: number[], value: number, f: ParamFactory): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return parameter(tensor(new Float64Array(n).fill(value), shape, f.dtype, f.backend));
}

/** nn.Linear: weight [out, in], optional bias [out]. */
export class Linear extends Module {
  readonly weight: Tensor; // (out, in)
  readonly bias: Tensor | null; // (out)
  constructor(inFeatures: number, outFeatures: number, f: ParamFactory, opts: { bias: boolean; init: 'input' | 'output' }) {
    super();
    this.weight = parameter(tensor(f.weight(outFeatures, inFeatures, opts.init), [outFeatures, inFeatures], f.dtype, f.backend));
    this.bias = opts.bias ? constant([outFeatures], 0, f) : null;
  }
  forward(x: Tensor): Tensor {
    return ops.linear(x, this.weight, this.bias);
  }
}

export class Embedding extends Module {
  readonly weight: Tensor; // (V, C)
  constructor(num: number, dim: number, f: ParamFactory) {
    super();
    this.weight = parameter(tensor(f.weight(num, dim, 'input'), [num, dim], f.dtype, f.backend));
  }
  forward(ids: Tensor): Tensor {
    return ops.embedding(ids, this.weight);
  }
}

export type NormKind = 'layernorm' | 'rmsnorm' | 'scalenorm';

/** LayerNorm (weight, bias), RMSNorm (weight) or ScaleNorm (scalar g) over the last dim. */
export class Norm extends Module {
  readonly weight: Tensor | null = null; // (C)
  readonly bias: Tensor | null = null; // (C)
  readonly g: Tensor | null = null; // (1), ScaleNorm only
  constructor(readonly kind: NormKind, dim: number, readonly eps: number, f: ParamFactory, bias = true) {
    super();
    if (kind === 'scalenorm') this.g = constant([1], 1, f);
    else {
      this.weight = constant([dim], 1, f);
      if (kind === 'layernorm' && bias) this.bias = constant([dim], 0, f);
    }
  }
  forward(x: Tensor): Tensor {
    switch (this.kind) {
      case 'layernorm': return ops.layerNorm(x, this.weight!, this.bias, this.eps);
      case 'rmsnorm': return ops.rmsNorm(x, this.weight!, this.eps);
      case 'scalenorm': return ops.scaleNorm(x, this.g!, this.eps);
    }
  }
}
