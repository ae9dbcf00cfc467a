// From config to batches: train/valid/test datasets and the deterministic batch iterator.
//
// defines: DataConfig, Datasets, numSamplesPerSplit, buildDatasets, Batch, BatchIteratorOptions,
//          BatchIterator
//
// Source: gpt-neox megatron/data/data_utils.py (build_train_valid_test_data_loaders,
// build_train_valid_test_datasets), samplers.py (DistributedBatchSampler), training.py (_get_batch),
// utils.py (get_ltor_masks_and_position_ids).
//
// - Samples per split: train = train_iters · train_batch_size, valid = (train_iters // eval_interval
//   + 1) · eval_iters · train_batch_size, test = eval_iters · train_batch_size, where
//   train_batch_size is the global batch (micro batch × gradient accumulation × data parallel).
// - One `data_path` is split by document with `split`; each split is its own GPT2Dataset with the
//   same seed (GPT-NeoX does the same). train/valid/test_data_paths with weights (blending) are the
//   next step: they will build one GPT2Dataset per path and wrap them in a blend implementing
//   SampleDataset, in buildDatasets() where it now throws.
// - BatchIterator serves GPT-NeoX's sequential sampler: loader step k of global size B takes
//   samples start + k·B … start + k·B + B - 1 (wrapping over whole batches, like `cycle` over a
//   drop_last loader), data-parallel rank r gets rows r·B/W … (r+1)·B/W - 1. It is a pure function of
//   k, so resuming is constructing it with startSample = samples already consumed.

import { GPT2Dataset, splitDocuments, type SampleDataset } from './gpt2_dataset.js';
import { IndexedDataset } from './indexed_dataset.js';

/** The config keys the data module reads (GPT-NeoX names and defaults). */
export interface DataConfig {
  data_path?: string | null;
  train_data_paths?: string[] | null;
  valid_data_paths?: string[] | null;
  test_data_paths?: string[] | null;
  train_data_weights?: number[] | null;
  valid_data_weights?: number[] | null;
  test_data_weights?: number[] | null;
  /** Default "969, 30, 1". */
  split?: string;
  seq_length: number;
  /** Default 1234. */
  seed?: number;
  train_iters: number;
  /** Default 1000. */
  eval_interval?: number;
  /** Default 100. */
  eval_iters?: number;
  /** Global batch: micro batch × gradient accumulation steps × data-parallel size. */
  train_batch_size: number;
  /** Only "mmap" (and GPT-NeoX's default "infer", which we resolve to mmap) are supported. */
  data_impl?: string;
}

export interface Datasets {
  train: SampleDataset | null;
  valid: SampleDataset | null;
  test: SampleDataset | null;
  /** Samples requested per split. */
  numSamples: [number, number, number];
  /** Document boundaries [0, trainEnd, validEnd, numDocs] when data_path was split. */
  splits: [number, number, number, number] | null;
}

/** GPT-NeoX's train/valid/test sample counts. */
export function numSamplesPerSplit(cfg: DataConfig): [number, number, number] {
  const evalInterval = cfg.eval_interval ?? 1000;
  const evalIters = cfg.eval_iters ?? 100;
  const b = cfg.train_batch_size;
  for (const [k, v] of [['train_iters', cfg.train_iters], ['train_batch_size', b], ['eval_interval', evalInterval], ['eval_iters', evalIters]] as const) {
    if (!Number.isInteger(v) || v < 0) throw new Error(`${k} must be a non-negative integer, got ${v}`);
  }
  if (evalInterval === 0) throw new Error('eval_interval must be > 0');
  const validIters = (Math.floor(cfg.train_iters / evalInterval) + 1) * evalIters;
  return [cfg.train_iters * b, validIters * b, evalIters * b];
}

export interface BuildDatasetsOptions {
  /** Cache index maps beside the data (default true). */
  cache?: boolean;
  log?: (msg: string) => void;
}

/** Build the train/valid/test datasets from `data_path` + `split`, as GPT-NeoX does. */
export function buildDatasets(cfg: DataConfig, opts: BuildDatasetsOptions = {}): Datasets {
  const impl = cfg.data_impl ?? 'mmap';
  if (impl !== 'mmap' && impl !== 'infer') {
    throw new Error(`data_impl '${impl}' is not supported (only mmap); re-run \`neox preprocess\` to write mmap data`);
  }
  if (cfg.train_data_paths?.length || cfg.valid_data_paths?.length || cfg.test_data_paths?.length) {
    // Seam: one GPT2Dataset per path, num samples per path = ceil(N · w · 1.005), blended.
    throw new Error('train_data_paths/valid_data_paths/test_data_paths (weighted blending) are not implemented yet; use data_path with split');
  }
  if (!cfg.data_path) throw new Error('data_path is not set (the prefix of a .bin/.idx pair written by `neox preprocess`)');
  const numSamples = numSamplesPerSplit(cfg);
  const seed = cfg.seed ?? 1234;
  const log = opts.log ?? (() => {});

  const indexed = new IndexedDataset(cfg.data_path);
  const splits = splitDocuments(indexed.length, cfg.split ?? '969, 30, 1');
  log(` > dataset split of ${indexed.prefix} (${indexed.length} documents, ${indexed.totalTokens} tokens):`);
  const names = ['train', 'valid', 'test'] as const;
  const built = names.map((name, i) => {
    const [start, end] = [splits[i]!, splits[i + 1]!];
    log(`    ${name}: document indices in [${start}, ${end}) total of ${end - start} documents`);
    if (end <= start) return null;
    const documents = new Int32Array(end - start);
    for (let d = 0; d < documents.length; d++) documents[d] = start + d;
    return new GPT2Dataset(name, indexed, documents, numSamples[i]!, cfg.seq_length, seed, { cache: opts.cache, log });
  });
  return { train: built[0]!, valid: built[1]!, test: built[2]!, numSamples, splits };
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
    for (let r = 0; r < rows; r++) {
      const s = this.sampleIndex(k, r);
      samples.push(s);
      const text = this.dataset.get(s); // (T + 1,)
      if (text.length !== T + 1) throw new Error(`${this.dataset.name}: sample ${s} has ${text.length} tokens, expected ${T + 1}`);
      tokens.set(text.subarray(0, T), r * T);
      labels.set(text.subarray(1), r * T);
      for (let t = 0; t < T; t++) {
        // label < 0 (e.g. -100 from label files) never counts; EOD inputs optionally don't.
        const masked = text[t + 1]! < 0 || (this.eodMaskLoss && text[t]! === this.eodId);
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
