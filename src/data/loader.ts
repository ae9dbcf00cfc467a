// From config to batches: train/valid/test datasets (split or blended) and the deterministic batch
// iterator.
//
// defines: DataConfig, Datasets, numSamplesPerSplit, buildDatasets, labelPrefixFor, Batch,
//          BatchIteratorOptions, BatchIterator
//
// Source: gpt-neox megatron/data/data_utils.py (build_train_valid_test_data_loaders,
// build_train_valid_test_datasets, build_weighted_datasets, validate_train_epochs), training.py
// (_get_batch, update_iterations), samplers.py (DistributedBatchSampler), utils.py
// (get_ltor_masks_and_position_ids).
//
// - Samples per split: train = train_iters · train_batch_size, valid = (train_iters // eval_interval
//   + 1) · eval_iters · train_batch_size, test = eval_iters · train_batch_size, where
//   train_batch_size is the global batch (micro batch × gradient accumulation × data parallel).
// - `data_path` is split by document with `split`; each split is its own GPT2Dataset with the same
//   seed. `train_data_paths` (and valid_/test_) are blended instead: dataset i of a split is a
//   GPT2Dataset named `{split}_{i}` over all of its documents, asked for ceil(N · w_i · 1.005)
//   samples, and the split is a BlendableDataset over them (blendable.ts), even for one path.
// - train_epochs (instead of train_iters): every dataset is built for exactly one epoch (index maps
//   named `…_Nonens_…`), and train_iters = (len(train) // loader batch) · train_epochs // gradient
//   accumulation steps, as GPT-NeoX's update_iterations.
// - Labels: `{split}_label_data_paths` name label files as in GPT-NeoX. Beyond GPT-NeoX, a data path
//   `X_text_document` with `X_label_document` beside it (what `preprocess --mask-before-token`
//   writes) uses it without being told, in split mode too. Labels < 0 take no loss.
// - BatchIterator serves GPT-NeoX's sequential sampler: loader step k of global size B takes
//   samples start + k·B … start + k·B + B - 1 (wrapping over whole batches, like `cycle` over a
//   drop_last loader), data-parallel rank r gets rows r·B/W … (r+1)·B/W - 1. It is a pure function of
//   k, so resuming is constructing it with startSample = samples already consumed.

import * as fs from 'node:fs';
import { BlendableDataset, normalizeWeights, weightsByNumDocs } from './blendable.js';
import { GPT2Dataset, splitDocuments, type SampleDataset } from './gpt2_dataset.js';
import { IndexedDataset, indexPaths } from './indexed_dataset.js';

/** The config keys the data module reads (GPT-NeoX names and defaults). */
export interface DataConfig {
  data_path?: string | null;
  train_data_paths?: string[] | null;
  valid_data_paths?: string[] | null;
  test_data_paths?: string[] | null;
  train_data_weights?: number[] | null;
  valid_data_weights?: number[] | null;
  test_data_weights?: number[] | null;
  /** Label files for masked fine-tuning, one per data path (GPT-NeoX keys). */
  train_label_data_paths?: string[] | null;
  valid_label_data_paths?: string[] | null;
  test_label_data_paths?: string[] | null;
  /** Weight the blend by document counts (default false). */
  weight_by_num_documents?: boolean;
  /** Exponent for weight_by_num_documents (default 1.0). */
  weighted_sampler_alpha?: number;
  /** Default "969, 30, 1". */
  split?: string;
  seq_length: number;
  /** Default 1234. */
  seed?: number;
  /** Optimizer steps; or set train_epochs instead. */
  train_iters?: number | null;
  /** Epochs of the training data instead of train_iters (GPT-NeoX's train_epochs). */
  train_epochs?: number | null;
  /** Default 1. Used with train_epochs to count iterations. */
  gradient_accumulation_steps?: number;
  /** Default 1000. */
  eval_interval?: number;
  /** Default 100. */
  eval_iters?: number;
  /** Global batch: micro batch × gradient accumulation steps × data-parallel size. */
  train_batch_size: number;
  /** Only "mmap" (and GPT-NeoX's default "infer", which we resolve to mmap) are supported. */
  data_impl?: string;
  /** Only "packed" (the default) is supported. */
  pack_impl?: string;
  /** Default true; names the index-map files ("_ac"). */
  allow_chopped?: boolean;
}

export interface Datasets {
  train: SampleDataset | null;
  valid: SampleDataset | null;
  test: SampleDataset | null;
  /** Samples requested per split (null with train_epochs: one epoch each). */
  numSamples: [number | null, number | null, number | null];
  /** Document boundaries [0, trainEnd, validEnd, numDocs] when data_path was split. */
  splits: [number, number, number, number] | null;
  /** train_iters, or with train_epochs the count GPT-NeoX derives from the train dataset. */
  trainIters: number;
}

/** GPT-NeoX's train/valid/test sample counts. */
export function numSamplesPerSplit(cfg: DataConfig): [number, number, number] {
  const evalInterval = cfg.eval_interval ?? 1000;
  const evalIters = cfg.eval_iters ?? 100;
  const b = cfg.train_batch_size;
  const trainIters = cfg.train_iters;
  for (const [k, v] of [['train_iters', trainIters], ['train_batch_size', b], ['eval_interval', evalInterval], ['eval_iters', evalIters]] as const) {
    if (!Number.isInteger(v) || (v as number) < 0) throw new Error(`${k} must be a non-negative integer, got ${v}`);
  }
  if (evalInterval === 0) throw new Error('eval_interval must be > 0');
  const validIters = (Math.floor(trainIters! / evalInterval) + 1) * evalIters;
  return [trainIters! * b, validIters * b, evalIters * b];
}

export interface BuildDatasetsOptions {
  /** Cache index maps beside the data (default true). */
  cache?: boolean;
  log?: (msg: string) => void;
}

type Split = 'train' | 'valid' | 'test';
const SPLITS: readonly Split[] = ['train', 'valid', 'test'];

/** `X_text_document` → `X_label_document` when both its files exist (preprocess --mask-before-token). */
export function labelPrefixFor(dataPrefix: string): string | null {
  const { prefix } = indexPaths(dataPrefix);
  const m = /^(.*)_text_document$/.exec(prefix);
  if (!m) return null;
  const label = indexPaths(`${m[1]}_label_document`);
  return fs.existsSync(label.binPath) && fs.existsSync(label.idxPath) ? label.prefix : null;
}

/** Build the train/valid/test datasets from `data_path` + `split`, or by blending the *_data_paths. */
export function buildDatasets(cfg: DataConfig, opts: BuildDatasetsOptions = {}): Datasets {
  const impl = cfg.data_impl ?? 'mmap';
  if (impl !== 'mmap' && impl !== 'infer') {
    throw new Error(`data_impl '${impl}' is not supported (only mmap); re-run \`neox preprocess\` to write mmap data`);
  }
  if ((cfg.pack_impl ?? 'packed') !== 'packed') {
    throw new Error(`pack_impl '${cfg.pack_impl}' is not supported; only 'packed' (GPT-NeoX's default) is implemented`);
  }
  const epochsMode = cfg.train_epochs !== undefined && cfg.train_epochs !== null;
  if (epochsMode) validateTrainEpochs(cfg);
  else if (cfg.train_iters === undefined || cfg.train_iters === null) throw new Error('set train_iters or train_epochs');
  const numSamples: [number | null, number | null, number | null] = epochsMode ? [null, null, null] : numSamplesPerSplit(cfg);
  const log = opts.log ?? (() => {});
  const ctx: BuildContext = {
    seqLength: cfg.seq_length, seed: cfg.seed ?? 1234, numEpochs: epochsMode ? 1 : null,
    cache: opts.cache, allowChopped: cfg.allow_chopped ?? true, log, opened: new Map(),
  };

  const blended = SPLITS.some((s) => (cfg[`${s}_data_paths`] ?? []).length > 0);
  let built: [SampleDataset | null, SampleDataset | null, SampleDataset | null];
  let splits: [number, number, number, number] | null = null;
  if (blended) {
    if ((cfg.train_data_paths ?? []).length === 0) throw new Error('valid_data_paths/test_data_paths need train_data_paths too');
    built = SPLITS.map((s, i) => buildBlend(s, cfg, numSamples[i]!, ctx)) as typeof built;
  } else {
    if (!cfg.data_path) throw new Error('data_path is not set (the prefix of a .bin/.idx pair written by `neox preprocess`), nor train_data_paths');
    for (const s of SPLITS) {
      if ((cfg[`${s}_label_data_paths`] ?? []).length) throw new Error(`${s}_label_data_paths needs ${s}_data_paths, not data_path (as in GPT-NeoX)`);
    }
    const indexed = open(cfg.data_path, ctx);
    const labels = openLabels(cfg.data_path, null, indexed, ctx);
    splits = splitDocuments(indexed.length, cfg.split ?? '969, 30, 1');
    log(` > dataset split of ${indexed.prefix} (${indexed.length} documents, ${indexed.totalTokens} tokens):`);
    built = SPLITS.map((name, i) => {
      const [start, end] = [splits![i]!, splits![i + 1]!];
      log(`    ${name}: document indices in [${start}, ${end}) total of ${end - start} documents`);
      if (end <= start) return null;
      const documents = new Int32Array(end - start);
      for (let d = 0; d < documents.length; d++) documents[d] = start + d;
      return new GPT2Dataset(name, indexed, documents, numSamples[i]!, ctx.seqLength, ctx.seed, gptOptions(ctx, labels));
    }) as typeof built;
  }

  let trainIters = cfg.train_iters ?? 0;
  if (epochsMode) {
    const gas = cfg.gradient_accumulation_steps ?? 1;
    if (!Number.isInteger(gas) || gas < 1 || cfg.train_batch_size % gas !== 0) {
      throw new Error(`train_batch_size ${cfg.train_batch_size} must be a multiple of gradient_accumulation_steps ${gas}`);
    }
    const loaderBatch = cfg.train_batch_size / gas; // micro batch × data-parallel size
    const loaderLen = built[0] ? Math.floor(built[0].length / loaderBatch) : 0;
    trainIters = Math.floor((loaderLen * cfg.train_epochs!) / gas);
    log(` > train_epochs ${cfg.train_epochs}: ${loaderLen} loader steps of ${loaderBatch} samples per epoch → ${trainIters} iterations`);
  }
  return { train: built[0], valid: built[1], test: built[2], numSamples, splits, trainIters };
}

interface BuildContext {
  seqLength: number;
  seed: number;
  numEpochs: number | null;
  cache: boolean | undefined;
  allowChopped: boolean;
  log: (msg: string) => void;
  /** Indexed datasets by prefix, opened once even when a path repeats. */
  opened: Map<string, IndexedDataset>;
}

function open(prefix: string, ctx: BuildContext): IndexedDataset {
  const key = indexPaths(prefix).prefix;
  let ds = ctx.opened.get(key);
  if (!ds) { ds = new IndexedDataset(key); ctx.opened.set(key, ds); }
  return ds;
}

/** The label file of a data path: the configured one, else `X_label_document` beside `X_text_document`. */
function openLabels(dataPrefix: string, configured: string | null | undefined, text: IndexedDataset, ctx: BuildContext): IndexedDataset | null {
  const prefix = configured ?? labelPrefixFor(dataPrefix);
  if (!prefix) return null;
  const labels = open(prefix, ctx);
  if (labels === text) return null;
  ctx.log(` > labels for ${text.prefix} from ${labels.prefix}`);
  return labels;
}

function gptOptions(ctx: BuildContext, labels: IndexedDataset | null): ConstructorParameters<typeof GPT2Dataset>[6] {
  return { cache: ctx.cache, log: ctx.log, numEpochs: ctx.numEpochs, allowChopped: ctx.allowChopped, labels };
}

/** One split of build_weighted_datasets + BlendableDataset; null when the split has no paths. */
function buildBlend(split: Split, cfg: DataConfig, numSamples: number | null, ctx: BuildContext): SampleDataset | null {
  const paths = cfg[`${split}_data_paths`] ?? [];
  if (paths.length === 0) return null;
  const labelPaths = cfg[`${split}_label_data_paths`] ?? [];
  if (labelPaths.length > paths.length) throw new Error(`${split}_label_data_paths has more entries (${labelPaths.length}) than ${split}_data_paths (${paths.length})`);
  const indexed = paths.map((p) => open(p, ctx));
  let weights = cfg[`${split}_data_weights`] ?? paths.map(() => 1.0);
  if (weights.length !== paths.length) {
    throw new Error(`${split}_data_weights has ${weights.length} entries for ${paths.length} ${split}_data_paths`);
  }
  if (cfg.weight_by_num_documents) {
    weights = weightsByNumDocs(indexed.map((d) => d.length), cfg.weighted_sampler_alpha ?? 1.0);
  }
  const norm = normalizeWeights(weights, numSamples);
  ctx.log(` > ${split}: blending ${paths.length} dataset(s), weights ${norm.weights.map((w) => w.toPrecision(4)).join(', ')}`);
  const datasets = indexed.map((ds, i) => {
    const documents = new Int32Array(ds.length);
    for (let d = 0; d < documents.length; d++) documents[d] = d;
    const labels = openLabels(paths[i]!, labelPaths[i], ds, ctx);
    return new GPT2Dataset(`${split}_${i}`, ds, documents, norm.numSamples[i]!, ctx.seqLength, ctx.seed, gptOptions(ctx, labels));
  });
  return new BlendableDataset(split, datasets, norm.weights);
}

/** GPT-NeoX's validate_train_epochs. */
function validateTrainEpochs(cfg: DataConfig): void {
  const e = cfg.train_epochs!;
  if (!Number.isInteger(e) || e < 1) throw new Error(`train_epochs must be a positive integer, got ${e}`);
  if (cfg.train_iters) throw new Error('set train_iters or train_epochs, not both');
  if (cfg.weight_by_num_documents) throw new Error('weight_by_num_documents is not supported with train_epochs (as in GPT-NeoX)');
  if (cfg.train_data_weights && !cfg.train_data_weights.every((w) => w === 1.0)) {
    throw new Error('train_data_weights other than 1.0 are not supported with train_epochs (as in GPT-NeoX)');
  }
}

/** One data-parallel rank's rows of one loader step. */
export interface Batch {
  /** (rows, T) input ids = text[:, :-1]. */
  tokens: Int32Array;
  /** (rows, T) targets = text[:, 1:]. */
  labels: Int32Array;
  /** (rows, T) 1 where the loss counts. */
  lossMask: Float32Array;
  rows: number;
  seqLength: number;
  /** (rows,) dataset sample index of each row. */
  samples: number[];
}

export interface BatchIteratorOptions {
  rank?: number;
  worldSize?: number;
  /** GPT-NeoX's eod_mask_loss: zero the loss where the INPUT token is EOD (data == eod in get_ltor_masks). */
  eodMaskLoss?: boolean;
  eodId?: number;
}

/**
 * Deterministic batches from a SampleDataset. `batchSize` is the loader step's size over all
 * data-parallel ranks (micro batch × world size, GPT-NeoX's DistributedBatchSampler batch_size);
 * each rank gets batchSize / worldSize rows. Batch k depends only on (k, startSample, rank).
 */
export class BatchIterator implements Iterable<Batch> {
  readonly dataset: SampleDataset;
  readonly batchSize: number;
  readonly startSample: number;
  readonly rank: number;
  readonly worldSize: number;
  readonly rowsPerRank: number;
  readonly seqLength: number;
  /** Samples in whole batches; sample indices wrap modulo this (drop_last + cycle). */
  readonly period: number;
  private readonly eodMaskLoss: boolean;
  private readonly eodId: number;
  /** Next k served by nextBatch(). */
  position = 0;

  constructor(dataset: SampleDataset, batchSize: number, startSample = 0, opts: BatchIteratorOptions = {}) {
    const rank = opts.rank ?? 0;
    const worldSize = opts.worldSize ?? 1;
    if (!Number.isInteger(batchSize) || batchSize < 1) throw new Error(`batch size must be a positive integer, got ${batchSize}`);
    if (!Number.isInteger(worldSize) || worldSize < 1 || batchSize % worldSize !== 0) {
      throw new Error(`batch size ${batchSize} must be a multiple of the data-parallel world size ${worldSize}`);
    }
    if (!Number.isInteger(rank) || rank < 0 || rank >= worldSize) throw new Error(`rank ${rank} out of range [0, ${worldSize})`);
    if (!Number.isInteger(startSample) || startSample < 0) throw new Error(`startSample must be a non-negative integer, got ${startSample}`);
    if (opts.eodMaskLoss && opts.eodId === undefined) throw new Error('eodMaskLoss needs eodId');
    this.dataset = dataset;
    this.batchSize = batchSize;
    this.startSample = startSample;
    this.rank = rank;
    this.worldSize = worldSize;
    this.rowsPerRank = batchSize / worldSize;
    this.seqLength = dataset.seqLength;
    this.period = Math.floor(dataset.length / batchSize) * batchSize;
    if (this.period === 0) {
      throw new Error(`${dataset.name}: ${dataset.length} samples do not fill one batch of ${batchSize}`);
    }
    this.eodMaskLoss = opts.eodMaskLoss ?? false;
    this.eodId = opts.eodId ?? -1;
  }

  /** Dataset sample index of `row` (0-based within this rank) of loader step k. */
  sampleIndex(k: number, row: number): number {
    return (this.startSample + k * this.batchSize + this.rank * this.rowsPerRank + row) % this.period;
  }

  /** Loader step k (k = 0, 1, …), this rank's rows. */
  batch(k: number): Batch {
    if (!Number.isInteger(k) || k < 0) throw new RangeError(`batch index must be a non-negative integer, got ${k}`);
    const rows = this.rowsPerRank;
    const T = this.seqLength;
    const tokens = new Int32Array(rows * T);    // (rows, T)
    const labels = new Int32Array(rows * T);    // (rows, T)
    const lossMask = new Float32Array(rows * T); // (rows, T)
    const samples: number[] = [];
    const withLabels = this.dataset.hasLabels === true && this.dataset.getLabels !== undefined;
    for (let r = 0; r < rows; r++) {
      const s = this.sampleIndex(k, r);
      samples.push(s);
      const text = this.dataset.get(s); // (T + 1,)
      if (text.length !== T + 1) throw new Error(`${this.dataset.name}: sample ${s} has ${text.length} tokens, expected ${T + 1}`);
      // GPT-NeoX's _get_batch: with a label file, labels = label[1:] (negative → 0, no loss);
      // without, labels = text[1:], and negative ids never count either.
      const target = withLabels ? this.dataset.getLabels!(s) : text; // (T + 1,)
      if (target.length !== T + 1) throw new Error(`${this.dataset.name}: labels of sample ${s} have ${target.length} entries, expected ${T + 1}`);
      tokens.set(text.subarray(0, T), r * T);
      for (let t = 0; t < T; t++) {
        const y = target[t + 1]!;
        labels[r * T + t] = withLabels && y < 0 ? 0 : y;
        const masked = y < 0 || (this.eodMaskLoss && text[t]! === this.eodId);
        lossMask[r * T + t] = masked ? 0 : 1;
      }
    }
    return { tokens, labels, lossMask, rows, seqLength: T, samples };
  }

  /** batch(position), then position + 1. */
  nextBatch(): Batch {
    return this.batch(this.position++);
  }

  *[Symbol.iterator](): Iterator<Batch> {
    for (;;) yield this.nextBatch();
  }
}
