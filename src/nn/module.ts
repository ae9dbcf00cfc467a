// Module: a container of parameters and sub-modules, named by the fields that hold them.
//
// Parameter names follow the field path (`layers.3.attention.dense.weight`), which is what
// checkpoints store and what the Hugging Face adapters map.

import { Tensor } from '../tensor/tensor.js';

export abstract class Module {
  /** Dropout is active only while training. */
  training = true;

  /** Every parameter below this module, in field order, with its dotted name. */
  namedParameters(prefix = ''): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [key, value] of Object.entries(this)) {
      const name = prefix ? `${prefix}.${key}` : key;
      if (value instanceof Tensor) {
        if (value.requiresGrad) out.push([name, value]);
      } else if (value instanceof Module) {
        out.push(...value.namedParameters(name));
      } else if (Array.isArray(value)) {
        value.forEach((v, i) => {
          if (v instanceof Module) out.push(...v.namedParameters(`${name}.${i}`));
        });
      }
    }
    return out;
  }

  parameters(): Tensor[] {
    return this.namedParameters().map(([, p]) => p);
  }

  numParameters(): number {
    return this.parameters().reduce((n, p) => n + p.numel, 0);
  }

  train(on = true): this {
    this.training = on;
    for (const value of Object.values(this)) {
      if (value instanceof Module) value.train(on);
      else if (Array.isArray(value)) for (const v of value) if (v instanceof Module) v.train(on);
    }
    return this;
  }

  eval(): this {
    return this.train(false);
  }
}

/** Makes `t` a trainable parameter (kept across scopes, gradients on). */
export function parameter(t: Tensor, name?: string): Tensor {
  t.requiresGrad = true;
  if (name) t.name = name;
  return t.keep();
}
