// The GPT-NeoX family (Pythia, 20B, and through its options LLaMA- and Mistral-style models).
//   config.ts  the model's resolved configuration and the mapping from GPT-NeoX keys
//   model.ts   Attention, MLP, Layer, GPTNeoX (forward, loss, weight-decay groups, FLOPs)
//   params.ts  countParameters: the parameter count from a resolved config, without allocating
export * from './config.js';
export * from './model.js';
export * from './params.js';
