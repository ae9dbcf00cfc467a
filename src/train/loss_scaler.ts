// fp16 dynamic loss scaling, with DeepSpeed's rules (deepspeed/runtime/fp16/loss_scaler.py,
// DynamicLossScaler, consecutive_hysteresis off), which GPT-NeoX's fp16 block configures.
//
// defines: LossScaler, LossScalerState, LossScaleError
//
//   scale       starts at 2^initial_scale_power, or is `loss_scale` for good (static) when > 0
//   overflow    (a non-finite gradient norm) the step is skipped; with hysteresis left above 1 it
//               only uses one up, otherwise the scale halves (never below min_loss_scale) and the
//               hysteresis stays spent, so every further overflow halves again; an overflow that
//               would halve a scale already at min_loss_scale is an error (DeepSpeed's
//               raise_error_at_min_scale): the gradients are not finite however small the scale
//   good step   after loss_scale_window steps since the last overflow (or the start) the scale
//               doubles and the hysteresis is restored
// The state goes into checkpoints (`state.loss_scaler`) so a resumed run continues at the same scale.

import type { NeoXConfig } from '../config/index.js';

/** An overflow at the minimum loss scale: training cannot go on (printed as one `neox:` line). */
export class LossScaleError extends Error {
  override name = 'NeoxError';
}

export interface LossScalerState {
  scale: number;
  /** Steps since the last overflow (or the start). */
  sinceOverflow: number;
  /** Overflows still tolerated before the scale halves. */
  hysteresis: number;
}

export class LossScaler {
  scale: number;
  private sinceOverflow = 0;
  private hysteresis: number;
  private readonly dynamic: boolean;

  constructor(private readonly o: Pick<NeoXConfig['fp16'], 'loss_scale' | 'initial_scale_power' | 'loss_scale_window' | 'hysteresis' | 'min_loss_scale'>) {
    this.dynamic = !(o.loss_scale > 0);
    this.scale = this.dynamic ? 2 ** o.initial_scale_power : o.loss_scale;
    this.hysteresis = o.hysteresis;
  }

  /** Records a step's outcome; false means it overflowed and must be skipped. */
  update(finite: boolean): boolean {
    if (!this.dynamic) return finite;
    if (!finite) {
      if (this.hysteresis <= 1) {
        if (this.scale <= this.o.min_loss_scale) {
          throw new LossScaleError(`gradient overflow with the loss scale already at its minimum (fp16.min_loss_scale ${this.o.min_loss_scale}): ` +
            'the loss or the gradients are not finite whatever the scale. Lower the learning rate, check the data, or train in bf16 (precision: bfloat16).');
        }
        this.scale = Math.max(this.scale / 2, this.o.min_loss_scale);
      } else {
        this.hysteresis--;
      }
      this.sinceOverflow = 0;
      return false;
    }
    if (++this.sinceOverflow % this.o.loss_scale_window === 0) {
      this.hysteresis = this.o.hysteresis;
      this.scale *= 2;
    }
    return true;
  }

  state(): LossScalerState {
    return { scale: this.scale, sinceOverflow: this.sinceOverflow, hysteresis: this.hysteresis };
  }

  load(s: LossScalerState): void {
    for (const [k, v] of Object.entries(s)) {
      if (typeof v !== 'number' || !Number.isFinite(v)) throw new Error(`loss scaler state: ${k} must be a finite number, got ${JSON.stringify(v)}`);
    }
    this.scale = s.scale;
    this.sinceOverflow = s.sinceOverflow;
    this.hysteresis = s.hysteresis;
  }
}
