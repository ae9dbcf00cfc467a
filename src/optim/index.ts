// Optimizers and schedules.
//   adamw.ts     AdamW (decoupled weight decay, groups), global grad-norm clipping
//   schedule.ts  GPT-NeoX learning-rate schedules (warmup + constant/linear/cosine/exponential)
export * from './adamw.js';
export * from './schedule.js';
