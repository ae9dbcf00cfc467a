// Neural-network building blocks: modules with parameters.
//   module.ts  Module (named parameters, train/eval), parameter()
//   init.ts    GPT-NeoX init methods over the Philox generator
//   layers.ts  Linear, Embedding, Norm (LayerNorm, RMSNorm, ScaleNorm)
export * from './module.js';
export * from './init.js';
export * from './layers.js';
