// Ops: the typed front-ends of the kernels, each file with the gradients of its kernels.
//   basic.ts      fill, cast, add/sub/mul/scale, sum/mean, sumRows, matmul, linear, linearGelu, reshape, embedding
//   shape.ts      permute, split, concat
//   norm.ts       layerNorm, rmsNorm, scaleNorm
//   activation.ts activation (gelu, gelu_tanh, relu, silu), gatedActivation (SwiGLU/GeGLU), softmax
//   dropout.ts    dropout (Philox counter-based, identical on every backend)
//   attention.ts  rotary, attention (causal, sliding window, ALiBi, GQA/MQA); rotaryQKV, attentionQKV (packed QKV)
//   loss.ts       crossEntropy (fused over the vocabulary)
export * from './basic.js';
export * from './shape.js';
export * from './norm.js';
export * from './activation.js';
export * from './dropout.js';
export * from './attention.js';
export * from './loss.js';
