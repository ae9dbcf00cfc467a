// Training: the loop and what it needs around it.
//   trainer.ts  train(): set-up, the step loop, evaluation, checkpoints, resume
//   sample.ts   sampling from a model (greedy / temperature / top-k / top-p)
//   logger.ts   console + progress + metrics.jsonl
//   device.ts   picking the backend (CUDA when present, else CPU)
export * from './trainer.js';
export * from './sample.js';
export * from './logger.js';
export * from './device.js';
