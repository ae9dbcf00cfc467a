// convert/: Hugging Face interop, `neox convert to-hf` and `neox convert from-hf`.
//
//   hf_config.ts  config.json ⇄ GPT-NeoX keys (both transformers 4 and 5 forms read; unsupported keys
//                 named), config.json / generation_config.json writers, ConvertError
//   from_hf.ts    HF folder (GPT-NeoX/Pythia, Llama, Mistral; one file or shards; fp32/fp16/bf16) →
//                 OUT/neox.yml + OUT/checkpoint (fp32) + OUT/hf (tokenizer files); castHost
//   to_hf.ts      checkpoint → HF folder (config, sharded weights in fp32/fp16/bf16, generation config,
//                 tokenizer files); openModelCheckpoint, loadNeoXModel
//
// The tensor tables live with the models: models/gpt_neox/hf_adapter.ts (GPTNeoXForCausalLM, and the
// adapter types and row-run helpers), models/llama/hf_adapter.ts, models/mistral/hf_adapter.ts.
// docs/convert.md is the user-facing page.

export * from './hf_config.js';
export * from './from_hf.js';
export * from './to_hf.js';
