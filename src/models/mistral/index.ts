// Mistral: LLaMA's blocks with a sliding window (models/gpt_neox); only the HF adapter is its own.
//   hf_adapter.ts  MistralForCausalLM tensor table
export * from './hf_adapter.js';
