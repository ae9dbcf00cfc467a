// The config schema: every key NeoX.ts understands, as one table, and the typed result.
//
// defines:
//   FieldType, FieldSpec, KeySpec, Group   how a key is described (type, default, doc, group)
//   SCHEMA, SCHEMA_BY_KEY, ALIASES          the table of supported keys (GPT-NeoX snake_case names)
//   IGNORED_KEYS, IgnoreReason              GPT-NeoX/DeepSpeed keys accepted but not acted on
//   NeoXConfig (+ nested block types)       the validated, derived config handed to the rest of NeoX.ts
//   describeType, defaultOf                 shared by the loader's messages and the docs generator
//   enum value lists (POS_EMB, NORMS, ACTIVATIONS, INIT_METHODS, ATTENTION_TYPES, ...)
//
// Names, defaults and meanings follow GPT-NeoX's megatron/neox_arguments/neox_args.py and
// deepspeed_args.py. Keys marked `ext` are NeoX.ts extensions. Loading and checking live in
// load.ts, derived values (batch sizes, precision, ...) in derive.ts.

// ---------------------------------------------------------------------------------------------
// Enum value lists (GPT-NeoX's Literal[...] choices)

export const POS_EMB = ['learned', 'rotary', 'sinusoidal', 'rpe', 'alibi', 'none'] as const;
export const NORMS = [
  'layernorm', 'rmsnorm', 'non_parametric_layernorm', 'scalenorm', 'te_rmsnorm', 'te_layernorm',
] as const;
/** GPT-NeoX's list. NeoX.ts implements gelu, relu, silu, swiglu, geglu; the model builder rejects the rest. */
export const ACTIVATIONS = [
  'gelu', 'geglu', 'relu', 'softsign', 'swish', 'mish', 'silu', 'reglu', 'swiglu', 'bilinear', 'glu',
] as const;
export const INIT_METHODS = [
  'normal', 'scaled_normal', 'orthogonal', 'scaled_orthogonal', 'xavier_uniform', 'xavier_normal',
  'wang_init', 'small_init', 'single_residual_scaled_normal',
] as const;
/** GPT-NeoX's list (recognised in configs); NeoX.ts implements IMPLEMENTED_ATTENTION_TYPES, the rest are an error. */
export const ATTENTION_TYPES = [
  'global', 'local', 'sparse_fixed', 'sparse_variable', 'bigbird', 'bslongformer', 'gmlp', 'amlp',
  'flash', 'rwkv', 'mamba',
] as const;
/** flash is GPT-NeoX's kernel for the same math as global. */
export const IMPLEMENTED_ATTENTION_TYPES: readonly string[] = ['global', 'flash'];
export const PRECISIONS = ['fp32', 'fp16', 'bfloat16'] as const;
export const OPTIMIZER_TYPES = [
  'adam', 'onebitadam', 'cpu_adam', 'cpu_torch_adam', 'sm3', 'madgrad_wd', 'sgd', 'lion',
] as const;
export const LR_DECAY_STYLES = ['constant', 'linear', 'cosine', 'exponential'] as const;
export const TOKENIZER_TYPES = [
  'GPT2BPETokenizer', 'HFTokenizer', 'HFGPT2Tokenizer', 'SPMTokenizer', 'CharLevelTokenizer',
  'TiktokenTokenizer',
] as const;
export const DATA_IMPLS = ['infer', 'mmap', 'cached'] as const;
export const PACK_IMPLS = ['packed', 'pack_until_overflow', 'unpacked'] as const;
export const CHECKPOINT_SCALES = ['linear', 'log'] as const;
export const LAUNCHERS = ['pdsh', 'openmpi', 'mvapich', 'slurm'] as const;
export const TEXT_GEN_TYPES = ['unconditional', 'input-file', 'interactive', 'precompute'] as const;
export const DEVICES = ['auto', 'cpu', 'cuda'] as const;

export type PosEmb = (typeof POS_EMB)[number];
export type Norm = (typeof NORMS)[number];
export type Activation = (typeof ACTIVATIONS)[number];
export type InitMethod = (typeof INIT_METHODS)[number];
export type AttentionType = (typeof ATTENTION_TYPES)[number];
export type Precision = (typeof PRECISIONS)[number];
export type OptimizerType = (typeof OPTIMIZER_TYPES)[number];
export type LrDecayStyle = (typeof LR_DECAY_STYLES)[number];
export type TokenizerType = (typeof TOKENIZER_TYPES)[number];
export type DataImpl = (typeof DATA_IMPLS)[number];
export type PackImpl = (typeof PACK_IMPLS)[number];
export type CheckpointScale = (typeof CHECKPOINT_SCALES)[number];
export type Launcher = (typeof LAUNCHERS)[number];
export type TextGenType = (typeof TEXT_GEN_TYPES)[number];
export type Device = (typeof DEVICES)[number];

// ---------------------------------------------------------------------------------------------
// The result type

export interface OptimizerConfig {
  /** Lower-cased GPT-NeoX name; `adam` is AdamW (decoupled weight decay), as GPT-NeoX's FusedAdam. */
  type: OptimizerType;
  params: { lr: number; betas: [number, number]; eps: number; momentum: number };
}

export interface FP16Config {
  enabled: boolean;
  /** GPT-NeoX 1.x's spelling of bf16 training: `bfloat16` (with enabled) means precision bfloat16. */
  type: 'fp16' | 'bfloat16' | null;
  /** 0 means dynamic loss scaling; a positive value is a static scale. */
  loss_scale: number;
  initial_scale_power: number;
  loss_scale_window: number;
  hysteresis: number;
  min_loss_scale: number;
}

export interface BF16Config {
  enabled: boolean;
}

export interface CurriculumConfig {
  enabled: boolean;
  curriculum_type: 'seqlen';
  min_difficulty: number | null;
  max_difficulty: number | null;
  schedule_type: 'fixed_linear' | 'fixed_root' | 'fixed_discrete';
  schedule_config: {
    total_curriculum_step: number | null;
    difficulty_step: number;
    root_degree: number;
    difficulty: number[] | null;
    max_step: number[] | null;
  };
}

export interface ZeroConfig {
  stage: number;
  allgather_partitions: boolean;
  allgather_bucket_size: number;
  overlap_comm: boolean;
  reduce_scatter: boolean;
  reduce_bucket_size: number;
  contiguous_gradients: boolean;
}

/** The merged, validated config with derived values filled in. Keys are GPT-NeoX's names. */
export interface NeoXConfig {
  // model
  num_layers: number;
  hidden_size: number;
  num_attention_heads: number;
  num_kv_heads: number;
  intermediate_size: number | null;
  expansion_factor: number | null;
  mlp_multiple_of: number;
  seq_length: number;
  max_position_embeddings: number;
  sliding_window_width: number | null;
  pos_emb: PosEmb;
  rotary_pct: number;
  rotary_emb_base: number;
  rpe_num_buckets: number;
  rpe_max_distance: number;
  norm: Norm;
  layernorm_epsilon: number;
  rms_norm_epsilon: number;
  scalenorm_epsilon: number;
  activation: Activation;
  bias_gelu_fusion: boolean;
  gpt_j_residual: boolean;
  gpt_j_tied: boolean;
  no_weight_tying: boolean;
  use_bias_in_attn_linear: boolean;
  use_bias_in_mlp: boolean;
  use_bias_in_norms: boolean;
  init_method: InitMethod;
  output_layer_init_method: InitMethod;
  init_method_std: number;
  hidden_dropout: number;
  attention_dropout: number;
  make_vocab_size_divisible_by: number;
  /** Expanded: one attention type per layer (length num_layers). */
  attention_config: AttentionType[];
  // precision
  precision: Precision;
  fp16: FP16Config;
  bf16: BF16Config;
  // optimizer
  optimizer: OptimizerConfig;
  /** Derived: optimizer.params.lr. */
  lr: number;
  weight_decay: number;
  gradient_clipping: number;
  // learning rate
  lr_decay_style: LrDecayStyle;
  lr_decay_iters: number | null;
  lr_decay_fraction: number | null;
  min_lr: number;
  warmup: number;
  // training
  train_iters: number | null;
  train_epochs: number | null;
  train_micro_batch_size_per_gpu: number;
  gradient_accumulation_steps: number;
  train_batch_size: number;
  seed: number;
  eod_mask_loss: boolean;
  loss_chunk_tokens: number;
  curriculum_learning: CurriculumConfig;
  checkpoint_activations: boolean;
  checkpoint_num_layers: number;
  eval_interval: number;
  eval_iters: number;
  exit_interval: number | null;
  sample_after_training: boolean;
  // data
  data_path: string | null;
  train_data_paths: string[] | null;
  valid_data_paths: string[] | null;
  test_data_paths: string[] | null;
  train_data_weights: number[] | null;
  valid_data_weights: number[] | null;
  test_data_weights: number[] | null;
  train_label_data_paths: string[] | null;
  valid_label_data_paths: string[] | null;
  test_label_data_paths: string[] | null;
  weight_by_num_documents: boolean;
  weighted_sampler_alpha: number;
  split: string;
  data_impl: DataImpl;
  pack_impl: PackImpl;
  allow_chopped: boolean;
  mmap_warmup: boolean;
  use_shared_fs: boolean;
  preprocess_inputs: string[] | null;
  // tokenizer
  tokenizer_type: TokenizerType;
  vocab_file: string | null;
  merge_file: string | null;
  // checkpoint
  save: string | null;
  load: string | null;
  checkpoint_factor: number | null;
  checkpoint_scale: CheckpointScale;
  extra_save_iters: number[] | null;
  keep_last_n_checkpoints: number | null;
  finetune: boolean;
  no_load_optim: boolean;
  no_load_rng: boolean;
  no_save_optim: boolean;
  no_save_rng: boolean;
  // logging
  log_interval: number;
  log_dir: string | null;
  tensorboard_dir: string | null;
  use_wandb: boolean;
  wandb_project: string;
  wandb_group: string | null;
  wandb_run_name: string | null;
  wandb_team: string | null;
  wandb_host: string;
  log_grad_norm: boolean;
  log_param_norm: boolean;
  peak_theoretical_tflops: number | null;
  // parallelism
  pipe_parallel_size: number;
  model_parallel_size: number;
  sequence_parallel: boolean;
  pipe_partition_method: string;
  output_layer_parallelism: 'column';
  zero_optimization: ZeroConfig;
  // launch
  launcher: Launcher;
  hostfile: string | null;
  include: string | null;
  exclude: string | null;
  num_gpus: number | null;
  num_nodes: number;
  master_addr: string | null;
  master_port: number;
  device: Device;
  // generation
  text_gen_type: TextGenType;
  temperature: number;
  top_k: number;
  top_p: number;
  maximum_tokens: number;
  prompt_end: string;
  sample_input_file: string | null;
  sample_output_file: string;
  num_samples: number;
  recompute: boolean;
  // evaluation
  eval_tasks: string[] | null;
  eval_results_prefix: string;
}

// ---------------------------------------------------------------------------------------------
// Schema types and builders

export type FieldType =
  | { kind: 'int'; min?: number; max?: number }
  | { kind: 'float'; min?: number; max?: number; minExclusive?: boolean }
  | { kind: 'bool' }
  | { kind: 'string' }
  /** Matched case-insensitively (as GPT-NeoX does) and stored in the spelling listed here. */
  | { kind: 'enum'; values: readonly string[] }
  | { kind: 'list'; of: FieldType; length?: number }
  /** A nested block. `ignored` lists nested keys that are accepted and reported, with a reason. */
  | { kind: 'object'; fields: readonly FieldSpec[]; ignored?: Readonly<Record<string, string>> }
  /** GPT-NeoX's attention_config: [[["global", "local"], 6], ...] or an already expanded list. */
  | { kind: 'attention_config' };

/** Marks a key that has no default and must be set. */
export const REQUIRED: unique symbol = Symbol('required');

export interface FieldSpec<K extends string = string> {
  key: K;
  type: FieldType;
  /** null: unset (allowed value); REQUIRED: must be given; ignored for objects (built from fields). */
  default: unknown;
  /** Text for the docs' default column when the default is computed from other keys. */
  defaultDoc?: string;
  doc: string;
}

export type Group =
  | 'model' | 'precision' | 'optimizer' | 'learning rate' | 'training' | 'data' | 'tokenizer'
  | 'checkpoint' | 'logging' | 'parallelism' | 'launch' | 'generation' | 'evaluation';

export interface KeySpec<K extends string = string> extends FieldSpec<K> {
  group: Group;
  /** A NeoX.ts extension: not a GPT-NeoX key. */
  ext: boolean;
  /** Other spellings accepted for this key (besides `-` for `_`). */
  aliases: readonly string[];
  /** Computed from other keys and never read from a file (GPT-NeoX overwrites it too). */
  derivedOnly: boolean;
}

interface KeyOpts {
  ext?: boolean;
  aliases?: readonly string[];
  derivedOnly?: boolean;
  defaultDoc?: string;
}

const int = (min?: number, max?: number): FieldType => ({ kind: 'int', min, max });
const posInt = int(1);
const nonNegInt = int(0);
const float = (min?: number, max?: number): FieldType => ({ kind: 'float', min, max });
const posFloat: FieldType = { kind: 'float', min: 0, minExclusive: true };
const nonNegFloat = float(0);
const fraction = float(0, 1);
const bool: FieldType = { kind: 'bool' };
const str: FieldType = { kind: 'string' };
const oneOf = (values: readonly string[]): FieldType => ({ kind: 'enum', values });
const listOf = (of: FieldType, length?: number): FieldType => ({ kind: 'list', of, length });
const block = (fields: readonly FieldSpec[], ignored?: Record<string, string>): FieldType =>
  ({ kind: 'object', fields, ignored });

/** A nested field of a block. */
function f(key: string, type: FieldType, dflt: unknown, doc: string): FieldSpec {
  return { key, type, default: dflt, doc };
}

/** A top-level key; the group is filled in by `group()`. */
function k<K extends string>(
  key: K, type: FieldType, dflt: unknown, doc: string, opts: KeyOpts = {},
): Omit<KeySpec<K>, 'group'> {
  return {
    key, type, default: dflt, doc, defaultDoc: opts.defaultDoc,
    ext: opts.ext ?? false, aliases: opts.aliases ?? [], derivedOnly: opts.derivedOnly ?? false,
  };
}

function group<K extends string>(g: Group, keys: Omit<KeySpec<K>, 'group'>[]): KeySpec<K>[] {
  return keys.map((s) => ({ ...s, group: g }));
}

// ---------------------------------------------------------------------------------------------
// Nested blocks

const DS_FP16_ONLY = 'DeepSpeed fp16 setting; NeoX.ts does not use it';
const DS_ZERO_ONLY = 'DeepSpeed ZeRO setting; NeoX.ts does not implement it';

const OPTIMIZER_PARAMS = block([
  f('lr', nonNegFloat, 0.001, 'Peak learning rate (GPT-NeoX default 0.001).'),
  f('betas', listOf(fraction, 2), [0.9, 0.999], 'Adam/Lion beta1, beta2.'),
  f('eps', posFloat, 1.0e-8, 'Adam epsilon.'),
  f('momentum', nonNegFloat, 0.0, 'SGD momentum.'),
], {
  weight_decay: 'set the top-level `weight_decay` instead (GPT-NeoX passes that one)',
  freeze_step: 'OneBitAdam setting; not implemented',
  cuda_aware: 'OneBitAdam setting; not implemented',
  comm_backend_name: 'OneBitAdam setting; not implemented',
  amsgrad: 'not implemented',
  bias_correction: 'Adam always uses bias correction in NeoX.ts',
  adam_w_mode: 'NeoX.ts Adam is always AdamW, as GPT-NeoX\'s FusedAdam default',
  set_grad_none: 'DeepSpeed FusedAdam setting',
  nesterov: 'not implemented',
  dampening: 'not implemented',
  beta: 'SM3 setting; not implemented',
});

const OPTIMIZER = block([
  f('type', oneOf(OPTIMIZER_TYPES), 'adam',
    'Optimizer name, case-insensitive. `adam` is AdamW (decoupled weight decay) as in GPT-NeoX.'),
  f('params', OPTIMIZER_PARAMS, null, 'Optimizer hyperparameters.'),
]);

const FP16 = block([
  f('enabled', bool, false, 'Train in fp16 with loss scaling (in bfloat16 when `type` is bfloat16).'),
  f('type', oneOf(['fp16', 'bfloat16']), null,
    'GPT-NeoX 1.x form of bf16 training, used by Pythia-1B\'s config: `enabled: true` with `type: bfloat16` means precision bfloat16 (loss scaling unused). GPT-NeoX 2.x ignores `type`; NeoX.ts follows 1.x, the config\'s evident intent.'),
  f('loss_scale', nonNegFloat, 0, 'Static loss scale; 0 selects dynamic loss scaling.'),
  f('initial_scale_power', nonNegInt, 16, 'Dynamic loss scaling starts at 2^initial_scale_power.'),
  f('loss_scale_window', posInt, 1000, 'Steps without overflow before the scale is raised.'),
  f('hysteresis', posInt, 2, 'Overflows tolerated before the scale is lowered.'),
  f('min_loss_scale', posFloat, 1, 'Lower bound of the dynamic loss scale.'),
], {
  fp16: 'redundant GPT-NeoX flag; `enabled` decides',
  auto_cast: DS_FP16_ONLY,
  consecutive_hysteresis: DS_FP16_ONLY,
  fp16_master_weights_and_grads: DS_FP16_ONLY,
});

const BF16 = block([
  f('enabled', bool, false, 'Train in bfloat16 (fp32 master weights and optimizer states).'),
], {
  // GPT-NeoX configs often copy the fp16 block's keys into bf16; DeepSpeed ignores them there.
  ...Object.fromEntries(['bf16', 'type', 'loss_scale', 'initial_scale_power', 'loss_scale_window',
    'hysteresis', 'min_loss_scale'].map((key) => [key, 'loss scaling is for fp16; bfloat16 needs none'])),
  immediate_grad_update: 'DeepSpeed bf16 setting; NeoX.ts does not use it',
  check_grad_overflow: 'DeepSpeed bf16 setting; NeoX.ts does not use it',
  bf16_master_weights_and_grads: 'DeepSpeed bf16 setting; NeoX.ts does not use it',
  bf16_optimizer_states: 'DeepSpeed bf16 setting; NeoX.ts does not use it',
});

const ZERO = block([
  f('stage', int(0, 3), 0, 'ZeRO stage: 0 off, 1 shard optimizer states, 2 + gradients, 3 + parameters.'),
  f('allgather_partitions', bool, true, 'Gather updated parameter shards with all-gather (vs broadcasts).'),
  f('allgather_bucket_size', posInt, 500000000, 'Elements all-gathered at a time.'),
  f('overlap_comm', bool, false, 'Overlap gradient reduction with the backward pass. NeoX.ts always does (the result is bitwise the same as reducing after backward); the key is accepted for GPT-NeoX configs.'),
  f('reduce_scatter', bool, true, 'Average gradients with reduce-scatter instead of all-reduce.'),
  f('reduce_bucket_size', posInt, 500000000, 'Elements reduced at a time: the gradient buckets of ZeRO 1–2. Without ZeRO the all-reduce buckets are at most 25 MiB of f32 (PyTorch DDP\'s), so that they overlap the backward pass.'),
  f('contiguous_gradients', bool, false, 'Copy gradients into one contiguous buffer as they are produced.'),
], Object.fromEntries([
  'cpu_offload', 'cpu_offload_params', 'cpu_offload_param', 'cpu_offload_use_pin_memory',
  'offload_param', 'offload_optimizer', 'sub_group_size', 'elastic_checkpoint',
  'load_from_fp32_weights', 'ignore_unused_parameters', 'legacy_stage1', 'round_robin_gradients',
  'use_multi_rank_bucket_allreduce', 'zero_hpz_partition_size', 'zero_quantized_weights',
  'zero_quantized_nontrainable_weights', 'zero_quantized_gradients', 'zeropp_loco_param',
  'mics_shard_size', 'mics_hierarchical_params_gather', 'memory_efficient_linear',
  'pipeline_loading_checkpoint', 'override_module_apply', 'prefetch_bucket_size',
  'param_persistence_threshold', 'model_persistence_threshold', 'max_live_parameters',
  'max_reuse_distance', 'gather_16bit_weights_on_model_save', 'module_granularity_threshold',
  'use_all_reduce_for_fetch_params', 'stage3_max_live_parameters', 'stage3_max_reuse_distance',
  'stage3_prefetch_bucket_size', 'stage3_param_persistence_threshold',
  'stage3_model_persistence_threshold', 'stage3_gather_16bit_weights_on_model_save',
  'stage3_gather_fp16_weights_on_model_save', 'stage3_module_granularity_threshold',
  'stage3_use_all_reduce_for_fetch_params',
].map((key) => [key, DS_ZERO_ONLY])));

const CURRICULUM_SCHEDULE = block([
  f('total_curriculum_step', posInt, null, 'fixed_linear / fixed_root: steps until max_difficulty.'),
  f('difficulty_step', posInt, 8, 'Sequence lengths are multiples of this (8 suits tensor cores).'),
  f('root_degree', posInt, 2, 'fixed_root: difficulty grows as (step / total)^(1 / root_degree).'),
  f('difficulty', listOf(posInt), null, 'fixed_discrete: the sequence lengths, in order.'),
  f('max_step', listOf(posInt), null, 'fixed_discrete: the last step of each difficulty but the last.'),
]);

const CURRICULUM = block([
  f('enabled', bool, false, 'Train on shorter sequences first (DeepSpeed\'s sequence-length curriculum).'),
  f('curriculum_type', oneOf(['seqlen']), 'seqlen', 'What grows: the sequence length.'),
  f('min_difficulty', posInt, null, 'Starting sequence length.'),
  f('max_difficulty', posInt, null, 'Final sequence length (at most seq_length).'),
  f('schedule_type', oneOf(['fixed_linear', 'fixed_root', 'fixed_discrete']), 'fixed_linear', 'How the length grows.'),
  f('schedule_config', CURRICULUM_SCHEDULE, null, 'The schedule\'s parameters.'),
]);

// ---------------------------------------------------------------------------------------------
// The table

export const SCHEMA = [
  ...group('model', [
    k('num_layers', posInt, REQUIRED, 'Number of transformer layers.'),
    k('hidden_size', posInt, REQUIRED, 'Transformer hidden size; must be divisible by num_attention_heads.'),
    k('num_attention_heads', posInt, REQUIRED, 'Number of attention (query) heads.'),
    k('num_kv_heads', posInt, null,
      'Key/value heads: equal to num_attention_heads is MHA, fewer is GQA, 1 is MQA; must divide num_attention_heads.',
      { defaultDoc: '= num_attention_heads' }),
    k('intermediate_size', posInt, null,
      'MLP width before GPT-NeoX\'s adjustment: gated activations use 2/3 of it split in two halves; rounded up to mlp_multiple_of.',
      { defaultDoc: '4 × hidden_size' }),
    k('expansion_factor', posFloat, null,
      'MLP width as a multiple of hidden_size (instead of intermediate_size; not both).',
      { defaultDoc: '4' }),
    k('mlp_multiple_of', posInt, 1, 'Round the MLP width up to a multiple of this.'),
    k('seq_length', posInt, REQUIRED, 'Training sequence length in tokens.'),
    k('max_position_embeddings', posInt, null,
      'Size of the position table (learned/sinusoidal) or the longest sequence supported; ≥ seq_length.',
      { defaultDoc: '= seq_length' }),
    k('sliding_window_width', posInt, null, 'Attend only to this many previous tokens (sliding window attention).'),
    k('pos_emb', oneOf(POS_EMB), 'learned', 'Positional embedding type.'),
    k('rotary_pct', float(0, 1), 1.0, 'Fraction of each head\'s dimensions that rotary embeddings rotate.'),
    k('rotary_emb_base', posInt, 10000, 'Base (theta) of the rotary embedding frequencies.'),
    k('rpe_num_buckets', posInt, 32, 'T5 relative position encoding (pos_emb: rpe): number of buckets.'),
    k('rpe_max_distance', posInt, 128, 'T5 relative position encoding (pos_emb: rpe): max distance.'),
    k('norm', oneOf(NORMS), 'layernorm', 'Normalization layer.'),
    k('layernorm_epsilon', posFloat, 1.0e-5, 'LayerNorm epsilon.'),
    k('rms_norm_epsilon', posFloat, 1.0e-8, 'RMSNorm epsilon.'),
    k('scalenorm_epsilon', posFloat, 1.0e-8, 'ScaleNorm epsilon.'),
    k('activation', oneOf(ACTIVATIONS), 'gelu',
      'MLP activation (GPT-NeoX\'s list; NeoX.ts implements gelu, relu, silu, swiglu, geglu).'),
    k('bias_gelu_fusion', bool, false,
      'GPT-NeoX\'s fused bias+GELU, which uses the tanh approximation: true selects tanh GELU, computed with the up-projection in one op (cuBLASLt\'s GELU epilogue on CUDA).'),
    k('gpt_j_residual', bool, false, 'Parallel residual: x + attn(ln1(x)) + mlp(ln2(x)) (GPT-J/Pythia/NeoX-20B).'),
    k('gpt_j_tied', bool, false, 'With gpt_j_residual, share one norm: x + attn(ln(x)) + mlp(ln(x)).'),
    k('no_weight_tying', bool, false, 'Untie the input embedding and the output layer.'),
    k('use_bias_in_attn_linear', bool, true, 'Bias terms in the attention QKV and output projections.'),
    k('use_bias_in_mlp', bool, true, 'Bias terms in the MLP projections.'),
    k('use_bias_in_norms', bool, true, 'Bias terms in the norms.'),
    k('init_method', oneOf(INIT_METHODS), 'normal', 'Weight init for all layers except residual outputs.'),
    k('output_layer_init_method', oneOf(INIT_METHODS), 'scaled_normal',
      'Weight init for layers that write into the residual stream (attention and MLP outputs).'),
    k('init_method_std', nonNegFloat, 0.02, 'Standard deviation of the normal inits.'),
    k('hidden_dropout', fraction, 0.0, 'Dropout on the residual branches.'),
    k('attention_dropout', fraction, 0.0, 'Dropout on the attention probabilities.'),
    k('make_vocab_size_divisible_by', posInt, 128,
      'Pad the vocabulary to a multiple of this × model_parallel_size (see padVocabSize).'),
    k('attention_config', { kind: 'attention_config' }, null,
      'Attention type per layer in GPT-NeoX\'s form, e.g. [[["global"], 12]] or [[["flash"], "all"]]; expanded to one entry per layer. NeoX.ts implements global and flash (the same math); GPT-NeoX\'s other types (local, sparse_*, bigbird, bslongformer, gmlp, amlp, rwkv, mamba) are an error naming the layers. For a sliding window use sliding_window_width.',
      { defaultDoc: '[[["global"], num_layers]]' }),
  ]),

  ...group('precision', [
    k('precision', oneOf(PRECISIONS), null,
      'Compute precision. Derived from fp16.enabled (bfloat16 with fp16.type bfloat16) / bf16.enabled when unset; fp32 when neither; an enabled block that disagrees is an error.',
      { defaultDoc: 'from fp16 / bf16, else fp32' }),
    k('fp16', FP16, null, 'fp16 mixed precision with loss scaling (DeepSpeed\'s block).'),
    k('bf16', BF16, null, 'bfloat16 mixed precision (DeepSpeed\'s block).'),
  ]),

  ...group('optimizer', [
    k('optimizer', OPTIMIZER, null, 'Optimizer type and hyperparameters (DeepSpeed\'s block).'),
    k('lr', posFloat, null, 'Peak learning rate; always taken from optimizer.params.lr.',
      { derivedOnly: true, defaultDoc: '= optimizer.params.lr' }),
    k('weight_decay', nonNegFloat, 0.1, 'Decoupled weight decay (not applied to biases and norms).'),
    k('gradient_clipping', nonNegFloat, 1.0, 'Clip the global gradient L2 norm to this; 0 disables.'),
  ]),

  ...group('learning rate', [
    k('lr_decay_style', oneOf(LR_DECAY_STYLES), 'linear', 'Learning-rate decay after warmup.'),
    k('lr_decay_iters', posInt, null, 'Iterations over which the learning rate decays.',
      { defaultDoc: 'train_iters × lr_decay_fraction, else train_iters' }),
    k('lr_decay_fraction', fraction, null, 'Decay over this fraction of train_iters (when lr_decay_iters is unset).'),
    k('min_lr', nonNegFloat, 0.0, 'Floor of the learning rate; must be ≤ optimizer.params.lr.'),
    k('warmup', fraction, 0.01, 'Warmup length as a fraction of the decay iterations (0.01 = 1%).'),
  ]),

  ...group('training', [
    k('train_iters', posInt, null, 'Number of optimizer steps to train for (or use train_epochs; not both).'),
    k('train_epochs', posInt, null, 'Train for this many epochs of the training data instead of train_iters.'),
    k('train_micro_batch_size_per_gpu', posInt, null, 'Sequences per GPU per forward/backward pass.',
      { defaultDoc: 'train_batch_size / (grad. accum. × dp)' }),
    k('gradient_accumulation_steps', posInt, null, 'Micro-batches accumulated per optimizer step.',
      { defaultDoc: 'train_batch_size / (micro batch × dp), else 1' }),
    k('train_batch_size', posInt, null,
      'Sequences per optimizer step = micro batch × gradient_accumulation_steps × data-parallel size.',
      { defaultDoc: 'micro batch × grad. accum. × dp' }),
    k('seed', nonNegInt, 1234, 'Random seed.'),
    k('eod_mask_loss', bool, false, 'Do not compute loss on end-of-document tokens.'),
    k('loss_chunk_tokens', nonNegInt, 0,
      'Compute the loss over chunks of this many tokens, so the tokens × vocabulary logits never exist at once (one extra output-head projection); 0 = all at once.',
      { ext: true }),
    k('curriculum_learning', CURRICULUM, null, 'Sequence-length curriculum: each batch is cut to the scheduled length.'),
    k('checkpoint_activations', bool, false, 'Recompute activations in the backward pass to save memory.'),
    k('checkpoint_num_layers', posInt, 1, 'Layers per activation-checkpointing chunk.'),
    k('eval_interval', posInt, 1000, 'Run validation every this many iterations.'),
    k('eval_iters', nonNegInt, 100, 'Validation batches per evaluation.'),
    k('exit_interval', posInt, null, 'Exit after an iteration divisible by this.'),
    k('sample_after_training', bool, false, 'Generate a few samples from the model when training ends.',
      { ext: true }),
  ]),

  ...group('data', [
    k('data_path', str, null,
      'Prefix of a Megatron .bin/.idx dataset, split into train/valid/test by `split`.'),
    k('train_data_paths', listOf(str), null, 'Training dataset prefixes (with valid_ and test_data_paths, instead of data_path).'),
    k('valid_data_paths', listOf(str), null, 'Validation dataset prefixes.'),
    k('test_data_paths', listOf(str), null, 'Test dataset prefixes.'),
    k('train_data_weights', listOf(nonNegFloat), null, 'Blending weight per training dataset.',
      { defaultDoc: '1.0 each' }),
    k('valid_data_weights', listOf(nonNegFloat), null, 'Blending weight per validation dataset.',
      { defaultDoc: '1.0 each' }),
    k('test_data_weights', listOf(nonNegFloat), null, 'Blending weight per test dataset.',
      { defaultDoc: '1.0 each' }),
    k('train_label_data_paths', listOf(str), null, 'Label datasets (from preprocess --mask-before-token), one per train_data_paths entry.'),
    k('valid_label_data_paths', listOf(str), null, 'Label datasets, one per valid_data_paths entry.'),
    k('test_label_data_paths', listOf(str), null, 'Label datasets, one per test_data_paths entry.'),
    k('weight_by_num_documents', bool, false,
      'Weight datasets by document count^weighted_sampler_alpha (overrides the weights).'),
    k('weighted_sampler_alpha', nonNegFloat, 1.0, 'Exponent for weight_by_num_documents.'),
    k('split', str, '969, 30, 1', 'Train, validation, test proportions of data_path, comma-separated.'),
    k('data_impl', oneOf(DATA_IMPLS), 'infer', 'Indexed dataset implementation.'),
    k('pack_impl', oneOf(PACK_IMPLS), 'packed', 'How documents are packed into sequences.'),
    k('allow_chopped', bool, true, 'With pack_impl other than packed: allow documents cut at seq_length.'),
    k('mmap_warmup', bool, false, 'Read through the mmap\'d data once at start.'),
    k('use_shared_fs', bool, true,
      'Data index caches are on a shared filesystem (built by global rank 0; else local rank 0 per node).'),
    k('preprocess_inputs', listOf(str), null,
      'Globs of raw text files: when data_path\'s .bin/.idx are missing, the trainer preprocesses these first.',
      { ext: true }),
  ]),

  ...group('tokenizer', [
    k('tokenizer_type', oneOf(TOKENIZER_TYPES), 'GPT2BPETokenizer', 'Tokenizer kind.'),
    k('vocab_file', str, null, 'Tokenizer vocabulary (tokenizer.json for HFTokenizer, vocab.json for GPT-2 BPE, ...).'),
    k('merge_file', str, null, 'BPE merges file (GPT2BPETokenizer).'),
  ]),

  ...group('checkpoint', [
    k('save', str, null, 'Directory to save checkpoints to.'),
    k('load', str, null, 'Directory to load a checkpoint from.'),
    k('checkpoint_factor', posFloat, null,
      'Save interval: every N iterations (checkpoint_scale linear) or a growth factor (log).',
      { aliases: ['save_interval'] }),
    k('checkpoint_scale', oneOf(CHECKPOINT_SCALES), 'linear', 'Spacing of checkpoint iterations.'),
    k('extra_save_iters', listOf(nonNegInt), null, 'Additional iterations at which to save.'),
    k('keep_last_n_checkpoints', posInt, null, 'Delete older checkpoints, keeping this many.'),
    k('finetune', bool, false, 'Load only the weights: no optimizer or RNG state, iteration restarts at 0.'),
    k('no_load_optim', bool, false, 'Do not load the optimizer state.'),
    k('no_load_rng', bool, false, 'Do not load the RNG state.'),
    k('no_save_optim', bool, false, 'Do not save the optimizer state.'),
    k('no_save_rng', bool, false, 'Do not save the RNG state.'),
  ]),

  ...group('logging', [
    k('log_interval', posInt, 100, 'Log training metrics every this many iterations.'),
    k('log_dir', str, null, 'Directory for log files (stdout/stderr copies, metrics JSONL).'),
    k('tensorboard_dir', str, null, 'Write TensorBoard event files here.'),
    k('use_wandb', bool, false,
      'Log every metric (train/loss, valid/loss, speed/..., as TensorBoard) and the config to Weights & Biases, from rank 0. ' +
      'API key: WANDB_API_KEY, else the wandb_host machine in ~/.netrc (or $NETRC); without one a warning and no W&B. ' +
      'WANDB_MODE=disabled turns it off; offline mode is not supported (a warning, no W&B). See docs/cli.md.'),
    k('wandb_project', str, 'neox', 'W&B project.'),
    k('wandb_group', str, null, 'W&B group; as in GPT-NeoX a random suffix is appended per launch (`{group}_{id}`, or the id alone when unset).'),
    k('wandb_run_name', str, null, 'W&B run display name (default: the random run id).'),
    k('wandb_team', str, null, 'W&B entity (team or user); unset: WANDB_ENTITY, else the default entity of the API key.'),
    k('wandb_host', str, 'https://api.wandb.ai', 'W&B server API address (self-hosted: its URL); WANDB_BASE_URL replaces the default.'),
    k('log_grad_norm', bool, false, 'Log per-parameter gradient norms.'),
    k('log_param_norm', bool, false, 'Log per-parameter norms.'),
    k('peak_theoretical_tflops', posFloat, null, 'Peak hardware TFLOP/s used to compute MFU.'),
  ]),

  ...group('parallelism', [
    k('pipe_parallel_size', nonNegInt, 0,
      'Pipeline stages; 0 and 1 both mean no pipeline parallelism. NeoX.ts does not implement pipeline parallelism: a config with more loads (and shows), but training refuses it.'),
    k('model_parallel_size', posInt, 1,
      'Tensor (model) parallel size. NeoX.ts does not implement tensor parallelism: a config with more than 1 loads (and shows; the vocabulary is still padded for it), but training refuses it.'),
    k('sequence_parallel', bool, false, 'Megatron sequence parallelism (only with model_parallel_size > 1).'),
    k('pipe_partition_method', str, 'type:transformer|mlp',
      'How layers are split across pipeline stages: parameters, uniform, or type:[regex].'),
    k('output_layer_parallelism', oneOf(['column']), 'column', 'Output layer split over the vocabulary.'),
    k('zero_optimization', ZERO, null, 'ZeRO sharding (DeepSpeed\'s block; defaults from GPT-NeoX).'),
  ]),

  ...group('launch', [
    k('launcher', oneOf(LAUNCHERS), 'pdsh', 'Multi-node launcher backend.'),
    k('hostfile', str, null, 'Hostfile: one "hostname slots=N" per line.'),
    k('include', str, null, 'Hosts/GPUs to use, DeepSpeed syntax: "worker-0@worker-1:0,2".'),
    k('exclude', str, null, 'Hosts/GPUs not to use, same syntax as include.'),
    k('num_gpus', posInt, null, 'GPUs per node (default: all).'),
    k('num_nodes', int(-1), -1, 'Nodes to use from the hostfile; -1 uses all.'),
    k('master_addr', str, null, 'Rendezvous address (default: the first host).'),
    k('master_port', int(1, 65535), 29500, 'Rendezvous port.'),
    k('device', oneOf(DEVICES), 'auto', 'Where to run: auto picks cuda when a GPU is found, else cpu.',
      { ext: true }),
  ]),

  ...group('generation', [
    k('text_gen_type', oneOf(TEXT_GEN_TYPES), null, 'Generation mode.',
      { defaultDoc: 'input-file if sample_input_file, else unconditional' }),
    k('temperature', nonNegFloat, 0.0, 'Sampling temperature; 0 is greedy.'),
    k('top_k', nonNegInt, 0, 'Sample from the k most likely tokens; 0 disables.'),
    k('top_p', fraction, 0.0, 'Nucleus sampling threshold; 0 disables.'),
    k('maximum_tokens', posInt, 64, 'Maximum tokens to generate.'),
    k('prompt_end', str, '\n', 'Separator between prompts in sample_input_file.'),
    k('sample_input_file', str, null, 'File of prompts, one per line.'),
    k('sample_output_file', str, 'samples.txt', 'Where generated samples are written.'),
    k('num_samples', posInt, 1, 'Number of unconditional samples.'),
    k('recompute', bool, false, 'Recompute attention over the whole sequence instead of using a KV cache.'),
  ]),

  ...group('evaluation', [
    k('eval_tasks', listOf(str), null, 'Evaluation tasks (lm-evaluation-harness names).'),
    k('eval_results_prefix', str, '', 'Prefix of the evaluation results file.'),
  ]),
];

export type SchemaKey = (typeof SCHEMA)[number]['key'];

// The interface above and the table must name the same keys.
type Missing = Exclude<SchemaKey, keyof NeoXConfig>;
type Extra = Exclude<keyof NeoXConfig, SchemaKey>;
const schemaMatchesInterface: [Missing, Extra] extends [never, never] ? true : never = true;
void schemaMatchesInterface;

export const SCHEMA_BY_KEY: ReadonlyMap<string, KeySpec> = new Map(SCHEMA.map((s) => [s.key, s]));

/** Alternative spelling → canonical key. */
export const ALIASES: ReadonlyMap<string, string> = new Map(
  SCHEMA.flatMap((s) => s.aliases.map((a) => [a, s.key] as [string, string])),
);

// ---------------------------------------------------------------------------------------------
// Keys accepted and reported as ignored: GPT-NeoX and DeepSpeed keys NeoX.ts does not act on.

export type IgnoreReason = 'deepspeed' | 'kernel' | 'runtime' | 'derived' | 'unimplemented';

export const IGNORE_REASONS: Readonly<Record<IgnoreReason, string>> = {
  deepspeed: 'DeepSpeed setting with no NeoX.ts counterpart',
  kernel: 'kernel/fusion choice; NeoX.ts picks its own kernels',
  runtime: 'set by GPT-NeoX at run time; not a config setting',
  derived: 'GPT-NeoX overwrites it from another key',
  unimplemented: 'GPT-NeoX feature not implemented in NeoX.ts',
};

function reasons(reason: IgnoreReason, keys: string): [string, IgnoreReason][] {
  return keys.trim().split(/\s+/).map((key) => [key, reason]);
}

export const IGNORED_KEYS: ReadonlyMap<string, IgnoreReason> = new Map([
  ...reasons('deepspeed', `
    deepspeed fp32_allreduce prescale_gradients gradient_predivide_factor sparse_gradients amp
    scheduler curriculum_seqlen steps_per_print wall_clock_breakdown dump_state
    flops_profiler communication_data_type autotuning autotuning_run activation_checkpointing
    data_efficiency tensorboard wandb csv_monitor elasticity comms_logger compression_training
    checkpoint data_types deepspeed_extra_args sparse_attention force_multi no_ssh_check comment
    account deepscale deepscale_config deepspeed_mpi deepspeed_slurm
    deepspeed_activation_checkpointing partition_activations contiguous_checkpointing
    checkpoint_in_cpu synchronize_each_layer profile_backward distributed_backend
    zero_allow_untested_optimizer hysteresis loss_scale loss_scale_window min_scale`),
  ...reasons('kernel', `
    scaled_upper_triang_masked_softmax_fusion scaled_masked_softmax_fusion bias_dropout_fusion
    rope_fusion layernorm_fusion rmsnorm_fusion use_flashattn_swiglu fused_kernels_build_path
    attention_softmax_in_fp32 apply_query_key_layer_scaling fp16_lm_cross_entropy
    use_cpu_initialization onnx_safe mamba_selective_scan_fusion mamba_causal_conv_fusion
    mamba_inner_func_fusion te_columnparallel te_rowparallel te_layernorm_mlp te_mha te_fp8_format
    te_fp8_wgrad te_fp8_amax_history_len te_fp8_amax_compute_algo te_fp8_margin te_fp8_mha`),
  ...reasons('runtime', `
    world_size is_pipe_parallel local_rank rank global_num_gpus iteration do_train do_valid do_test
    user_script git_hash config_files tensorboard_writer comet_experiment adlr_autoresume_object
    tokenizer padded_vocab_size lazy_mpu_init`),
  ...reasons('derived', `
    optimizer_type zero_stage zero_reduce_scatter zero_contiguous_gradients zero_reduce_bucket_size
    zero_allgather_bucket_size batch_size clip_grad dynamic_loss_scale`),
  ...reasons('unimplemented', `
    sparsity_config num_unique_layers param_sharing_style gmlp_attn_dim soft_prompt_tuning
    mamba_selective_fp32_params mamba_use_bias_in_conv mamba_use_bias_in_linears
    serve_model_weights weight_server_port online_dataserver_ips online_dataserver_ports dim_att
    head_size ffn_dim use_qk_layernorm opt_pos_emb_offset rotary_save_freqs_buffer
    use_bnb_optimizer s3_path s3_chunk_size checkpoint_validation_with_forward_pass
    override_lr_scheduler use_checkpoint_lr_scheduler use_comet comet_workspace comet_project
    comet_experiment_name comet_tags comet_others log_grad_pct_zeros log_optimizer_states
    log_gradient_noise_scale gradient_noise_scale_n_batches gradient_noise_scale_cpu_offload
    memory_profiling memory_profiling_path profile profile_step_start profile_step_stop
    wandb_init_all_ranks adlr_autoresume adlr_autoresume_interval short_seq_prob char_level_ppl
    use_mup coord_check save_base_shapes base_shapes_file mup_init_scale mup_attn_temp
    mup_output_temp mup_embedding_mult mup_rp_embedding_mult mup_width_scale moe_num_experts
    moe_expert_interval moe_top_k moe_router_type moe_lbl_in_fp32 moe_jitter_eps dataset_impl
    train_impl dpo_fp32 dpo_reference_free dpo_beta kto_fp32 kto_desirable_weight
    kto_undesirable_weight z_loss kto_beta fp32_reinforce kl_impl kl_div_beta
    reinforce_leave_one_out train_reward_data_paths
    test_reward_data_paths valid_reward_data_paths pos_train_data_paths
    neg_train_data_paths pos_train_label_data_paths neg_train_label_data_paths pos_valid_data_paths
    neg_valid_data_paths pos_valid_label_data_paths neg_valid_label_data_paths pos_test_data_paths
    neg_test_data_paths pos_test_label_data_paths neg_test_label_data_paths precompute_model_name
    return_logits num_workers`),
]);

/** For ignored keys that GPT-NeoX overwrites or that have a direct NeoX.ts counterpart: where to look. */
const IGNORE_NOTES: ReadonlyMap<string, string> = new Map([
  ['lr', 'GPT-NeoX overwrites it with `optimizer.params.lr`'],
  ['optimizer_type', 'GPT-NeoX overwrites it with `optimizer.type`'],
  ['zero_stage', 'GPT-NeoX overwrites it with `zero_optimization.stage`'],
  ['zero_reduce_scatter', 'GPT-NeoX overwrites it with `zero_optimization.reduce_scatter`'],
  ['zero_contiguous_gradients', 'GPT-NeoX overwrites it with `zero_optimization.contiguous_gradients`'],
  ['zero_reduce_bucket_size', 'GPT-NeoX overwrites it with `zero_optimization.reduce_bucket_size`'],
  ['zero_allgather_bucket_size', 'GPT-NeoX overwrites it with `zero_optimization.allgather_bucket_size`'],
  ['batch_size', 'GPT-NeoX overwrites it with `train_micro_batch_size_per_gpu`'],
  ['clip_grad', 'GPT-NeoX overwrites it with `gradient_clipping`'],
  ['dynamic_loss_scale', 'GPT-NeoX derives it from `fp16.loss_scale`'],
  ['hysteresis', 'Megatron loss-scaler setting unused under DeepSpeed; use `fp16.hysteresis`'],
  ['loss_scale', 'Megatron loss-scaler setting unused under DeepSpeed; use `fp16.loss_scale`'],
  ['loss_scale_window', 'Megatron loss-scaler setting unused under DeepSpeed; use `fp16.loss_scale_window`'],
  ['min_scale', 'Megatron loss-scaler setting unused under DeepSpeed; use `fp16.min_loss_scale`'],
  ['padded_vocab_size', 'computed from the tokenizer (see padVocabSize)'],
  ['num_workers', 'NeoX.ts reads data in-process'],
]);

/** Why an ignored (or derived-only) top-level key has no effect, for reports and docs. */
export function ignoreReasonText(key: string): string {
  const note = IGNORE_NOTES.get(key);
  if (note) return note;
  const reason = IGNORED_KEYS.get(key);
  return reason ? IGNORE_REASONS[reason] : 'not used by NeoX.ts';
}

// ---------------------------------------------------------------------------------------------
// Shared helpers

/** The default value of a field: a fresh copy; blocks are built from their fields' defaults. */
export function defaultOf(spec: FieldSpec): unknown {
  if (spec.type.kind === 'object') {
    return Object.fromEntries(spec.type.fields.map((s) => [s.key, defaultOf(s)]));
  }
  return spec.default === REQUIRED ? null : structuredClone(spec.default);
}

function pluralOf(t: FieldType): string {
  switch (t.kind) {
    case 'int':
    case 'float': {
      const noun = t.kind === 'int' ? 'integers' : 'numbers';
      if (t.min !== undefined && t.max !== undefined) return `${noun} in [${t.min}, ${t.max}]`;
      if (t.min === 0) return `${t.kind === 'float' && t.minExclusive ? 'positive' : 'non-negative'} ${noun}`;
      if (t.min === 1) return `positive ${noun}`;
      return noun;
    }
    case 'string':
      return 'strings';
    default:
      return `items that are ${describeType(t)}`;
  }
}

/** "a positive integer", "one of: learned, rotary, ...", "a list of 2 numbers in [0, 1]", ... */
export function describeType(t: FieldType): string {
  switch (t.kind) {
    case 'int':
      if (t.max !== undefined) return `an integer from ${t.min ?? '-∞'} to ${t.max}`;
      if (t.min === 1) return 'a positive integer';
      if (t.min === 0) return 'a non-negative integer';
      return t.min === undefined ? 'an integer' : `an integer ≥ ${t.min}`;
    case 'float':
      if (t.min !== undefined && t.max !== undefined) return `a number in [${t.min}, ${t.max}]`;
      if (t.min === 0) return t.minExclusive ? 'a positive number' : 'a non-negative number';
      return t.min === undefined ? 'a number' : `a number ≥ ${t.min}`;
    case 'bool':
      return 'true or false';
    case 'string':
      return 'a string';
    case 'enum':
      return `one of: ${t.values.join(', ')}`;
    case 'list':
      return `a list of ${t.length === undefined ? '' : `${t.length} `}${pluralOf(t.of)}`;
    case 'object':
      return `a block with keys ${t.fields.map((s) => s.key).join(', ')}`;
    case 'attention_config':
      return 'a list like [[["global"], 12]] or a list of attention types';
  }
}
