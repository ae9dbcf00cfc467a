// Hugging Face MistralForCausalLM ⇄ NeoX.ts: Llama's table (models/llama/hf_adapter.ts) without
// biases and with a sliding window. HF Mistral's `sliding_window: W` keeps keys with
// pos_q − pos_k < W, which is our attention kernel's window; GPT-NeoX's `sliding_window_width: w`
// keeps w + 1 keys, so W ⇄ sliding_window_width W − 1 (convert/hf_config.ts).
//
// defines: mistralAdapter

import type { HFAdapter } from '../gpt_neox/hf_adapter.js';
import { llamaStyleAdapter } from '../llama/hf_adapter.js';

export const mistralAdapter: HFAdapter = llamaStyleAdapter({
  architecture: 'mistral', modelType: 'mistral', hfClass: 'MistralForCausalLM', biases: false, slidingWindow: true,
});
