// LLaMA: a configuration of the GPT-NeoX blocks (models/gpt_neox); only the HF adapter is its own.
//   hf_adapter.ts  LlamaForCausalLM tensor table, shared with Mistral
export * from './hf_adapter.js';
