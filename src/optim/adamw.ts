// AdamW with decoupled weight decay (torch.optim.AdamW semantics), parameter groups, and global
// gradient-norm clipping folded into the update as a gradient scale (no extra pass over memory).
//
// The training step never waits for the norm: gradSquaredNorm() sums Σg² on the device,
// clipFactorOf() turns it into the clip factor on the device, and update() hands that factor to the
// fused kernel, which skips the update when it is not finite (fp16 overflow, a NaN gradient). The
// host reads the norm afterwards, for the log and the loss scaler. gradNormAndClip() is the same
// computation with the norm read first (ZeRO, tests).

import { runKernel, zeros } from '../tensor/engine.js';
import type { Tensor } from '../tensor/tensor.js';
import * as ops from '../ops/index.js';

export interface AdamWOptions {
  betas: [number, number];
  eps: number;
}

export interface ParamGroup {
  params: Tensor[];
  weightDecay: number;
}

interface State {
  m: Tensor; // f32, like the parameter
  v: Tensor;
}

export class AdamW {
  step = 0; // completed optimizer steps (bias correction uses step + 1)
  private readonly state = new Map<Tensor, State>();

  constructor(readonly groups: ParamGroup[], readonly opts: AdamWOptions) {
    for (const g of groups) {
      for (const p of g.params) {
        this.state.set(p, { m: zeros(p.shape, 'f32', p.backend).keep(), v: zeros(p.shape, 'f32', p.backend).keep() });
      }
    }
  }

  /**
   * Applies one update with learning rate `lr`, gradients multiplied by `gradScale` first, and by
   * the device scalar `factor` when given (the clip factor; a non-finite one skips the update on the
   * device: then call undoStep()).
   */
  update(lr: number, gradScale = 1, factor?: Tensor): void {
    this.step++;
    for (const g of this.groups) {
      // One launch per group and gradient dtype (adamwMulti); a parameter that received no
      // gradient this step is left alone.
      const byDtype = new Map<string, Tensor[]>();
      for (const p of g.params) {
        if (!p.grad) continue;
        const s = this.state.get(p)!;
        const list = byDtype.get(p.grad.dtype) ?? [];
        list.push(p, p.grad, s.m, s.v);
        byDtype.set(p.grad.dtype, list);
      }
      for (const quads of byDtype.values()) {
        runKernel('adamwMulti', factor ? [...quads, factor] : quads, {
          lr, beta1: this.opts.betas[0], beta2: this.opts.betas[1], eps: this.opts.eps,
          weightDecay: g.weightDecay, step: this.step, gradScale, scaleInput: !!factor,
        });
      }
    }
  }

  /** Takes back the step count of an update the device skipped (its factor was not finite). */
  undoStep(): void {
    this.step--;
  }

  zeroGrad(): void {
    for (const g of this.groups) {
      for (const p of g.params) {
        p.grad?.dispose();
        p.grad = null;
      }
    }
  }

  /** Optimizer state as named tensors for checkpoints: `{name}.exp_avg`, `{name}.exp_avg_sq`. */
  stateTensors(names: Map<Tensor, string>): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [p, s] of this.state) {
      const n = names.get(p)!;
      out.push([`${n}.exp_avg`, s.m], [`${n}.exp_avg_sq`, s.v]);
    }
    return out;
  }

  /** The moment buffer for checkpoint restore. */
  moments(p: Tensor): State {
    return this.state.get(p)!;
  }
}

/**
 * The global L2 norm of all gradients and the factor that clips it to `maxNorm` (1 when
 * maxNorm ≤ 0 or the norm is within it), as torch.nn.utils.clip_grad_norm_ computes it.
 */
export function gradNormAndClip(params: Tensor[], maxNorm: number): { norm: number; scale: number } {
  const total = gradSquaredNorm(params);
  const norm = total ? Math.sqrt(total.item()) : 0;
  total?.dispose();
  const scale = maxNorm > 0 && norm > maxNorm ? maxNorm / (norm + 1e-6) : 1;
  return { norm, scale };
}

/** Σ‖g‖² over the parameters' gradients, [] f32 on the device (null when none has a gradient). */
export function gradSquaredNorm(params: readonly Tensor[]): Tensor | null {
  const grads = params.flatMap((p) => (p.grad ? [p.grad] : []));
  if (grads.length === 0) return null;
  // One call over all of them (a multi-tensor reduction on CUDA) per gradient dtype.
  const byDtype = new Map<string, Tensor[]>();
  for (const g of grads) {
    const list = byDtype.get(g.dtype);
    if (list) list.push(g);
    else byDtype.set(g.dtype, [g]);
  }
  let total: Tensor | null = null;
  for (const list of byDtype.values()) {
    const s = runKernel('sumSquares', list, {})[0]!;
    if (total) {
      ops.addInPlace(total, s);
      s.dispose();
    } else {
      total = s;
    }
  }
  return total;
}

/**
 * The clip factor of torch.nn.utils.clip_grad_norm_ from Σ‖g‖² [] on the device, for the true norm
 * √Σ‖g‖² · normScale (normScale undoes a loss scale); NaN when that norm is not finite.
 */
export function clipFactorOf(sumSquares: Tensor, maxNorm: number, normScale = 1): Tensor {
  return runKernel('clipFactor', [sumSquares], { maxNorm, normScale })[0]!;
}
