// Derived config values and cross-key checks, applied after merging (as GPT-NeoX's
// NeoXArgs.calculate_derived and validate_values do).
//
// defines: deriveConfig (checked values → NeoXConfig), padVocabSize, expandAttentionConfig,
//          assertTrainable (what loads and shows but cannot be trained: tensor/pipeline parallelism)
//
// Each rule is a small function; errors name every key involved and where it was set:
//   deriveBatchSizes   train_batch_size = micro batch × gradient_accumulation_steps × dp
//   derivePrecision    precision ⇄ fp16.enabled (+ fp16.type) / bf16.enabled
//   deriveSchedule     lr from optimizer.params.lr, lr_decay_iters, min_lr ≤ lr
//   deriveModel        max_position_embeddings, num_kv_heads, head divisibility, attention_config
//                      (types other than global/flash are an error naming the layers)
//   deriveData         train/valid/test paths and weights, split
//   deriveMisc         text_gen_type, checkpoint interval

import { ConfigError, where } from './errors.js';
import type { Loc } from './errors.js';
import type { LoadedConfig } from './load.js';
import { IMPLEMENTED_ATTENTION_TYPES } from './schema.js';
import type { AttentionType, NeoXConfig } from './schema.js';

/**
 * GPT-NeoX's _vocab_size_with_padding: the smallest size ≥ vocab divisible by
 * divisibleBy × modelParallel.
 */
export function padVocabSize(vocab: number, divisibleBy: number, modelParallel = 1): number {
  const multiple = divisibleBy * modelParallel;
  return Math.ceil(vocab / multiple) * multiple;
}

type AttentionPattern = [AttentionType[], number | 'all'];

/** GPT-NeoX's expand_attention_types: [[["global", "local"], 6]] → 12 entries. */
export function expandAttentionConfig(
  spec: readonly (AttentionType | AttentionPattern)[], numLayers: number,
): AttentionType[] {
  if (spec.every((item) => typeof item === 'string')) return [...(spec as AttentionType[])];
  const out: AttentionType[] = [];
  for (const item of spec as AttentionPattern[]) {
    const [types, count] = item;
    if (count === 'all') {
      // As in GPT-NeoX, "all" repeats this pattern over every layer and ends the list.
      if (numLayers % types.length !== 0) {
        throw new ConfigError(
          `\`attention_config\`: num_layers (${numLayers}) is not divisible by the pattern length ${types.length} of ${JSON.stringify(types)}`);
      }
      return Array.from({ length: numLayers }, (_, i) => types[i % types.length]!);
    }
    for (let i = 0; i < count; i++) out.push(...types);
  }
  return out;
}

/** Turns checked values (every schema key present) into the final config. */
export function deriveConfig(
  values: Record<string, unknown>, locs: ReadonlyMap<string, Loc>, worldSize: number,
): NeoXConfig {
  const c: Draft = values;
  /** "`key` (file line N)", or "`key` (default)" when it was not set. */
  const at = (key: string): string => {
    const loc = locs.get(key);
    return `\`${key}\` (${loc ? where(loc) : 'default'})`;
  };
  const fail = (message: string, key: string): ConfigError =>
    new ConfigError(message, { loc: locs.get(key), key });

  deriveBatchSizes(c, at, fail, worldSize);
  derivePrecision(c, at, fail);
  deriveSchedule(c, at, fail);
  deriveModel(c, at, fail);
  deriveData(c, at, fail);
  deriveMisc(c, at, fail);
  return c as NeoXConfig;
}

type At = (key: string) => string;
type Fail = (message: string, key: string) => ConfigError;
/** The checked values while rules fill in the rest; it is a NeoXConfig once every rule has run. */
type Draft = Record<string, any>;

/** As GPT-NeoX's calculate_batch_parameters: any two of the three determine the third. */
function deriveBatchSizes(c: Draft, at: At, fail: Fail, worldSize: number): void {
  if (!Number.isInteger(worldSize) || worldSize < 1) {
    throw new ConfigError(`world size must be a positive integer, got ${worldSize}`);
  }
  const pp = Math.max(1, c.pipe_parallel_size as number);
  const mp = Math.max(1, c.model_parallel_size as number);
  if (worldSize % (pp * mp) !== 0) {
    // Only possible with pp × mp > 1, which training refuses anyway (assertTrainable); say both.
    throw fail(`world size ${worldSize} is not divisible by pipe_parallel_size × model_parallel_size = `
      + `${pp} × ${mp}; set by ${at('pipe_parallel_size')} and ${at('model_parallel_size')}. `
      + `NeoX.ts does not implement ${[pp > 1 ? 'pipeline' : '', mp > 1 ? 'tensor' : ''].filter(Boolean).join(' or ')} `
      + 'parallelism yet: to train, set both to 1 (every GPU then holds the whole model and trains data-parallel); '
      + 'to only view the config as GPT-NeoX derives it, give a world size that is a multiple of '
      + `${pp * mp} (neox config show --world-size N)`, 'pipe_parallel_size');
  }
  const dp = worldSize / (pp * mp);
  const MB = 'train_micro_batch_size_per_gpu';
  const GA = 'gradient_accumulation_steps';
  const TB = 'train_batch_size';
  let mb = c[MB] as number | null;
  let ga = c[GA] as number | null;
  let tb = c[TB] as number | null;
  const dpText = `data-parallel size ${dp} (world size ${worldSize} / (pipe ${pp} × model ${mp}))`;
  const divide = (total: number, by: number, what: string, derivedKey: string): number => {
    if (total % by !== 0) {
      throw fail(`cannot derive \`${derivedKey}\`: ${at(TB)} = ${total} is not divisible by ${what} = ${by}`, TB);
    }
    return total / by;
  };

  if (tb === null && mb === null) {
    throw new ConfigError(`set \`${MB}\` or \`${TB}\` (with \`${GA}\`, any two of the three determine the third)`,
      { key: MB });
  }
  if (tb !== null && mb !== null && ga === null) {
    ga = divide(tb, mb * dp, `${MB} × ${dpText} = ${mb} × ${dp}`, GA);
  } else if (tb !== null && mb === null) {
    ga ??= 1;
    mb = divide(tb, ga * dp, `${GA} × ${dpText} = ${ga} × ${dp}`, MB);
  } else if (tb === null) {
    ga ??= 1;
    tb = mb! * ga * dp;
  }
  if (tb !== mb! * ga! * dp) {
    throw fail(`inconsistent batch sizes: ${at(TB)} = ${tb} but ${at(MB)} × ${at(GA)} × ${dpText} = `
      + `${mb} × ${ga} × ${dp} = ${mb! * ga! * dp}`, TB);
  }
  c[MB] = mb;
  c[GA] = ga;
  c[TB] = tb;
}

/**
 * As GPT-NeoX: an enabled fp16/bf16 block sets precision; an explicit precision that disagrees with an
 * enabled block is an error (GPT-NeoX asserts); an explicit precision turns its block on.
 *
 * `fp16: {enabled: true, type: bfloat16}` means bfloat16, as in GPT-NeoX 1.x (arguments.py before
 * 2023-05, commit 056e9caf: `fp16.get("type", precision) == "bfloat16"` → bfloat16), which Pythia-1B
 * was trained with and whose config still says so. GPT-NeoX 2.x ignores `type` and would train that
 * config in fp16; NeoX.ts follows the config's evident intent. Where the two versions differ and the
 * config does not say which it means (`type: bfloat16` on a block that is not enabled), it is an error.
 */
function derivePrecision(c: Draft, at: At, fail: Fail): void {
  const fp16 = c.fp16.enabled as boolean;
  const bf16 = c.bf16.enabled as boolean;
  const fp16Type = c.fp16.type as 'fp16' | 'bfloat16' | null;
  const fp16Means = fp16Type === 'bfloat16' ? 'bfloat16' : 'fp16';
  const fp16Block = fp16Type === 'bfloat16'
    ? `${at('fp16.enabled')} is true with ${at('fp16.type')} bfloat16 (GPT-NeoX 1.x's way of asking for bfloat16)`
    : `${at('fp16.enabled')} is true`;
  if (fp16 && bf16 && fp16Means !== 'bfloat16') {
    throw fail(`${at('fp16.enabled')} and ${at('bf16.enabled')} are both true; enable one`, 'bf16.enabled');
  }
  const implied = fp16 ? fp16Means : bf16 ? 'bfloat16' : null;
  if (implied !== null && c.precision !== null && c.precision !== implied) {
    const block = fp16 ? fp16Block : `${at('bf16.enabled')} is true`;
    throw fail(`${at('precision')} is ${c.precision} but ${block}; make them agree (or remove one)`, 'precision');
  }
  const chosen = (c.precision ?? implied) as string | null;
  if (fp16Type === 'bfloat16' && !fp16 && (chosen === null || chosen === 'fp16')) {
    // Unset: GPT-NeoX 1.x trained this in bfloat16, 2.x in fp32. fp16: that would enable this block.
    const asked = chosen === null ? 'no other key sets the precision' : `${at('precision')} is fp16`;
    throw fail(`${at('fp16.type')} is bfloat16 but \`fp16.enabled\` is not true and ${asked}: GPT-NeoX 1.x `
      + 'trained such a config in bfloat16, GPT-NeoX 2.x does not; say which you mean with `precision: bfloat16` '
      + 'or `precision: fp32`, or remove `fp16.type`', 'fp16.type');
  }
  c.precision = chosen ?? 'fp32';
  if (c.precision === 'fp16') c.fp16.enabled = true;
  if (c.precision === 'bfloat16') c.bf16.enabled = true;
}

function deriveSchedule(c: Draft, at: At, fail: Fail): void {
  c.lr = c.optimizer.params.lr;
  if (c.min_lr > c.lr) {
    throw fail(`${at('min_lr')} = ${c.min_lr} must be ≤ ${at('optimizer.params.lr')} = ${c.lr}`, 'min_lr');
  }
  if (c.train_iters !== null && c.train_epochs !== null) {
    throw fail(`set ${at('train_iters')} or ${at('train_epochs')}, not both`, 'train_epochs');
  }
  if (c.lr_decay_iters === null && c.train_iters !== null) {
    c.lr_decay_iters = c.lr_decay_fraction !== null
      ? Math.max(1, Math.floor(c.train_iters * c.lr_decay_fraction))
      : c.train_iters;
  }
}

function deriveModel(c: Draft, at: At, fail: Fail): void {
  c.max_position_embeddings ??= c.seq_length;
  if (c.max_position_embeddings < c.seq_length) {
    throw fail(`${at('max_position_embeddings')} = ${c.max_position_embeddings} must be ≥ `
      + `${at('seq_length')} = ${c.seq_length}`, 'max_position_embeddings');
  }

  c.attention_config = expandAttention(c, at, fail);
  if (c.hidden_size % c.num_attention_heads !== 0) {
    throw fail(`${at('hidden_size')} = ${c.hidden_size} must be divisible by `
      + `${at('num_attention_heads')} = ${c.num_attention_heads}`, 'hidden_size');
  }

  c.num_kv_heads ??= c.num_attention_heads;
  if (c.num_attention_heads % c.num_kv_heads !== 0) {
    throw fail(`${at('num_kv_heads')} = ${c.num_kv_heads} must divide `
      + `${at('num_attention_heads')} = ${c.num_attention_heads}`, 'num_kv_heads');
  }
  if (c.num_kv_heads < c.num_attention_heads && c.num_kv_heads % c.model_parallel_size !== 0) {
    throw fail(`${at('num_kv_heads')} = ${c.num_kv_heads} must be divisible by `
      + `${at('model_parallel_size')} = ${c.model_parallel_size} for grouped-query attention`, 'num_kv_heads');
  }

  if (c.intermediate_size !== null && c.expansion_factor !== null) {
    throw fail(`set ${at('intermediate_size')} or ${at('expansion_factor')}, not both`, 'expansion_factor');
  }
}

function expandAttention(c: Draft, at: At, fail: Fail): AttentionType[] {
  const spec = (c.attention_config ?? [[['global'], c.num_layers]]) as (AttentionType | AttentionPattern)[];
  let expanded: AttentionType[];
  try {
    expanded = expandAttentionConfig(spec, c.num_layers);
  } catch (err) {
    throw fail(`${at('attention_config')}: ${(err as Error).message.replace(/^`attention_config`: /, '')}`,
      'attention_config');
  }
  if (expanded.length !== c.num_layers) {
    // GPT-NeoX: "Length of attention config list must equal num_layers".
    throw fail(`${at('attention_config')} expands to ${expanded.length} layers but `
      + `${at('num_layers')} = ${c.num_layers}; the repeat counts must add up to num_layers (or end with "all")`,
    'attention_config');
  }
  // Which layers ask for each type NeoX.ts does not implement, in order of first appearance.
  const layersOf = new Map<string, number[]>();
  expanded.forEach((type, layer) => {
    if (IMPLEMENTED_ATTENTION_TYPES.includes(type)) return;
    layersOf.set(type, [...(layersOf.get(type) ?? []), layer]);
  });
  if (layersOf.size > 0) {
    const asks = [...layersOf].map(([type, layers]) => `${layerRanges(layers)} ask${layers.length === 1 ? 's' : ''} for '${type}'`);
    throw fail(`${at('attention_config')}: ${asks.join(' and ')} attention, which NeoX.ts does not implement `
      + `(it implements ${IMPLEMENTED_ATTENTION_TYPES.map((t) => `'${t}'`).join(' and ')}, the same math); `
      + 'use \'global\' or \'flash\' there '
      + '(and sliding_window_width for a sliding window over tokens, which differs from GPT-NeoX\'s '
      + 'block-sparse \'local\' pattern)', 'attention_config');
  }
  return expanded;
}

/** [0, 1, 2, 5, 7, 8] → "layers 0–2, 5, 7–8"; [3] → "layer 3". Layers count from 0, as GPT-NeoX's. */
function layerRanges(layers: number[]): string {
  const parts: string[] = [];
  for (let i = 0; i < layers.length;) {
    let j = i;
    while (j + 1 < layers.length && layers[j + 1] === layers[j]! + 1) j++;
    parts.push(j === i ? `${layers[i]}` : j === i + 1 ? `${layers[i]}, ${layers[j]}` : `${layers[i]}–${layers[j]}`);
    i = j + 1;
  }
  return `${layers.length === 1 ? 'layer' : 'layers'} ${parts.join(', ')}`;
}

function deriveData(c: Draft, at: At, fail: Fail): void {
  const splits = ['train', 'valid', 'test'] as const;
  const given = splits.filter((s) => c[`${s}_data_paths`] !== null);
  if (given.length > 0 && given.length < 3) {
    const missing = splits.filter((s) => !given.includes(s)).map((s) => `\`${s}_data_paths\``);
    throw fail(`${given.map((s) => at(`${s}_data_paths`)).join(' and ')} set, so ${missing.join(' and ')} `
      + 'must be set too (or use `data_path` alone)', `${given[0]}_data_paths`);
  }
  if (given.length === 3 && c.data_path !== null) {
    throw fail(`set ${at('data_path')} or train/valid/test_data_paths, not both`, 'data_path');
  }
  for (const s of splits) {
    const paths = c[`${s}_data_paths`] as string[] | null;
    const weightsKey = `${s}_data_weights`;
    if (paths === null) continue;
    c[weightsKey] ??= paths.map(() => 1.0);
    if (c[weightsKey].length !== paths.length) {
      throw fail(`${at(weightsKey)} has ${c[weightsKey].length} entries but ${at(`${s}_data_paths`)} has `
        + `${paths.length}`, weightsKey);
    }
  }

  const parts = (c.split as string).split(/[,/]/).map((p) => p.trim());
  const nums = parts.map(Number);
  if (parts.length > 3 || nums.some((n, i) => parts[i] === '' || !Number.isFinite(n) || n < 0)
    || nums.reduce((a, b) => a + b, 0) <= 0) {
    throw fail(`${at('split')} must be up to three non-negative proportions like "969, 30, 1", got `
      + `${JSON.stringify(c.split)}`, 'split');
  }
}

function deriveMisc(c: Draft, at: At, fail: Fail): void {
  c.text_gen_type ??= c.sample_input_file !== null ? 'input-file' : 'unconditional';
  if (c.save !== null && c.checkpoint_factor === null && c.extra_save_iters === null) {
    throw fail(`${at('save')} needs \`checkpoint_factor\` (the save interval) or \`extra_save_iters\``, 'save');
  }
}

/**
 * Refuses what loads (and `neox config show` shows, with GPT-NeoX's derivation) but NeoX.ts cannot
 * train: tensor and pipeline parallelism. Without this every rank would train data-parallel on the
 * whole model while the batch sizes were derived for world / (pipe × model) replicas. train() calls
 * it first, before any work. Throws a ConfigError naming each key, its value and where it was set.
 */
export function assertTrainable(loaded: LoadedConfig): void {
  const c = loaded.config;
  const whereSet = (key: string): string => {
    const loc = loaded.locs?.get(key);
    return loc ? ` in ${where(loc)}` : '';
  };
  const dp = c.train_batch_size / (c.train_micro_batch_size_per_gpu * c.gradient_accumulation_steps);
  const problems: string[] = [];
  let first: string | null = null;
  if (c.model_parallel_size > 1) {
    first ??= 'model_parallel_size';
    problems.push(`model_parallel_size is ${c.model_parallel_size}${whereSet('model_parallel_size')}: tensor parallelism is not `
      + 'implemented in NeoX.ts yet; set it to 1 (every GPU then holds the whole model and trains data-parallel)');
  }
  if (c.pipe_parallel_size > 1) {
    first ??= 'pipe_parallel_size';
    problems.push(`pipe_parallel_size is ${c.pipe_parallel_size}${whereSet('pipe_parallel_size')}: pipeline parallelism is not `
      + 'implemented in NeoX.ts yet; set it to 1 or 0 (both mean no pipeline: every GPU then holds the whole model '
      + 'and trains data-parallel)');
  }
  if (first !== null) {
    const replicas = dp * Math.max(1, c.pipe_parallel_size) * c.model_parallel_size;
    const batch = `The data-parallel size then becomes ${replicas} instead of ${dp}; the batch sizes are derived again for it`;
    throw new ConfigError(`${problems.join('; ')}. ${batch}.`, { loc: loaded.locs?.get(first), key: first });
  }
}
