// Config: GPT-NeoX-style YAML files → one validated, typed NeoXConfig.
//
//   schema.ts   the table of every supported key (type, default, doc, group), the keys accepted
//               but ignored (DeepSpeed knobs, unimplemented GPT-NeoX features), NeoXConfig
//   load.ts     loadConfig: read YAML with line numbers, merge files, type-check, collect ignored
//   derive.ts   derived values and cross-key checks (batch sizes, precision, lr, kv heads, ...),
//               padVocabSize, expandAttentionConfig, assertTrainable (refuses tensor/pipeline
//               parallelism before training)
//   format.ts   formatConfig: the merged config as YAML, for `neox config show`
//   errors.ts   ConfigError: every message starts with "file line N:"
//
// The reference for users is docs/config.md, generated from schema.ts by tools/gen_config_docs.ts.

export { ConfigError } from './errors.js';
export type { Loc } from './errors.js';
export { loadConfig, suggestKey } from './load.js';
export type { IgnoredKey, LoadedConfig, LoadOptions } from './load.js';
export { assertTrainable, expandAttentionConfig, padVocabSize } from './derive.js';
export { formatConfig } from './format.js';
export {
  ACTIVATIONS, ATTENTION_TYPES, IGNORED_KEYS, IMPLEMENTED_ATTENTION_TYPES, INIT_METHODS, NORMS, POS_EMB, SCHEMA, SCHEMA_BY_KEY,
} from './schema.js';
export type {
  Activation, AttentionType, BF16Config, Device, FP16Config, InitMethod, KeySpec, NeoXConfig, Norm,
  OptimizerConfig, PosEmb, Precision, TokenizerType, ZeroConfig, CurriculumConfig,
} from './schema.js';
