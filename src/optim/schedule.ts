// Learning-rate schedules as GPT-NeoX's AnnealingLR: linear warmup over `warmup · lr_decay_iters`
// steps, then constant, linear, cosine or exponential decay towards min_lr.
//
// One deliberate difference: GPT-NeoX's cosine keeps going past lr_decay_iters (the LR rises
// again); here it stays at min_lr after lr_decay_iters, as every other schedule does.

export type DecayStyle = 'constant' | 'linear' | 'cosine' | 'exponential';

export interface ScheduleOptions {
  lr: number;
  minLr: number;
  warmupIters: number;
  decayIters: number;
  style: DecayStyle;
}

/** The learning rate for the optimizer step taken after `iteration` completed steps. */
export function learningRate(iteration: number, o: ScheduleOptions): number {
  if (o.warmupIters > 0 && iteration <= o.warmupIters) return (o.lr * iteration) / o.warmupIters;
  const span = Math.max(1, o.decayIters - o.warmupIters);
  const t = Math.min(iteration - o.warmupIters, span);
  let lr: number;
  switch (o.style) {
    case 'constant': lr = o.lr; break;
    case 'linear': lr = (o.lr * (span - t)) / span; break;
    case 'cosine': lr = o.minLr + ((o.lr - o.minLr) / 2) * (Math.cos((Math.PI * t) / span) + 1); break;
    case 'exponential': lr = o.lr * Math.exp((-0.693 * t) / span); break;
  }
  return Math.max(lr, o.minLr);
}
