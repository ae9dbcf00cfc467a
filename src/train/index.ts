// Training: the loop and what it needs around it.
//   trainer.ts  train(): set-up, the step loop, evaluation, checkpoints, resume
//   loss_scaler.ts  fp16 dynamic loss scaling (DeepSpeed's rules), saved in checkpoints
//   sample.ts   sampling from a model (greedy / temperature / top-k / top-p)
//   logger.ts   console + progress + metrics.jsonl (+ TensorBoard, W&B)
//   wandb.ts    Weights & Biases runs over HTTPS (the SDK's GraphQL upsertBucket + file_stream protocol)
//   device.ts   picking the backend (CUDA when present, else CPU)
export * from './trainer.js';
export * from './loss_scaler.js';
export * from './sample.js';
export * from './logger.js';
export * from './wandb.js';
export * from './device.js';
