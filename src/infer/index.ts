// Inference: generation, the completions server, and log-likelihood evaluation.
//   kv_cache.ts    KVCache: per-layer keys/values for incremental decoding (sliding windows trimmed)
//   generate.ts    decodeSteps / generateTokens: batched prompts, KV cache or recompute, sampling, stops
//   text_gen.ts    GPT-NeoX's text_gen_type modes: generateSamples (JSONL records), readPrompts,
//                  runInteractive, readGenerationKeys (generation keys of YAML files)
//   logprobs.ts    logitsRows (right-padded scoring forward, rows gathered on device), logSoftmax, topLogprobs
//   server.ts      startServer: /v1/completions for lm-evaluation-harness, tokenizer endpoints, limits
//   tasks.ts       harness task formats (lambada_openai, piqa, hellaswag, arc_easy/challenge, sciq, winogrande)
//   eval.ts        evaluateTasks, runEvalTasks (training hook), datasetPerplexity, formatResults
//   load_model.ts  loadModel: checkpoint folder → model + tokenizer via the trainer's config path
export * from './kv_cache.js';
export * from './generate.js';
export * from './text_gen.js';
export * from './logprobs.js';
export * from './server.js';
export * from './tasks.js';
export * from './eval.js';
export * from './load_model.js';
