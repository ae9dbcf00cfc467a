// Weighted blending of datasets, as GPT-NeoX's BlendableDataset builds it.
//
// defines: normalizeWeights, weightsByNumDocs, numpySum, BlendingIndex, buildBlendingIndex,
//          BlendableDataset
//
// Source: gpt-neox megatron/data/data_utils.py (get_normalized_weights_and_num_samples,
// weights_by_num_docs), blendable_dataset.py, helpers.cpp (build_blending_indices). The float
// arithmetic follows the source step by step so that ties break the same way:
//   1. weights / Python sum(weights) (left to right); each dataset is asked for
//      ceil(num_samples · w · 1.005) samples (its own GPT2Dataset, index maps named `train_{i}` …)
//   2. BlendableDataset: size = Σ len(dataset_i); weights normalised again by np.sum (numpy's pairwise
//      summation, numpySum here)
//   3. sample k goes to the dataset with the largest w_d · max(k, 1) − used_d (first on ties), and
//      is that dataset's sample number used_d.
// weight_by_num_documents: p_i = n_i / N, q_i = p_i^α / Σ p^α, weight_i ∝ q_i · (1 − p_i).
//
// GPT-NeoX keeps dataset_index (u8) and dataset_sample_index (i64) for every blended sample, 9 bytes
// each. Here the sample index is recomputed from dataset_index and a count of each dataset's use at
// every 256th sample (BlendingIndex), about 1 + D/32 bytes per sample for D datasets.

import { LABEL_PAD, type SampleDataset } from './gpt2_dataset.js';

/** get_normalized_weights_and_num_samples: weights / Σ, and ceil(n · w · 1.005) samples each (null: no count). */
export function normalizeWeights(weights: number[], numSamples: number | null): { weights: number[]; numSamples: Array<number | null> } {
  if (weights.length === 0) throw new Error('blending needs at least one weight');
  for (const w of weights) {
    if (!Number.isFinite(w) || w < 0) throw new Error(`blending weights must be finite and ≥ 0, got ${weights.join(', ')}`);
  }
  let sum = 0;
  for (const w of weights) sum += w; // Python's sum(): left to right
  if (!(sum > 0)) throw new Error(`blending weights must sum to more than 0, got ${weights.join(', ')}`);
  const normalized = weights.map((w) => w / sum);
  const counts = normalized.map((w) => (numSamples === null ? null : Math.ceil(numSamples * w * 1.005)));
  return { weights: normalized, numSamples: counts };
}

/** GPT-NeoX's weights_by_num_docs: weights from document counts, low-resource groups boosted by α < 1. */
export function weightsByNumDocs(numDocs: number[], alpha = 0.3): number[] {
  if (numDocs.length === 1) return [1.0];
  let total = 0;
  for (const n of numDocs) total += n;
  if (!(total > 0)) throw new Error('weight_by_num_documents: the datasets hold no documents');
  const unbiased = numDocs.map((n) => n / total);
  const probs = unbiased.map((p) => p ** alpha);
  let probSum = 0;
  for (const p of probs) probSum += p;
  const normProbs = probs.map((p) => p / probSum);
  const weights = normProbs.map((p, i) => p * (1 - unbiased[i]!));
  let wSum = 0;
  for (const w of weights) wSum += w;
  return weights.map((w) => w / wSum);
}

/** np.sum of a float64 array: numpy's pairwise summation (blocks of 8 accumulators up to 128). */
export function numpySum(a: ArrayLike<number>): number {
  return pairwise(a, 0, a.length);
}

function pairwise(a: ArrayLike<number>, start: number, n: number): number {
  if (n < 8) {
    let res = 0;
    for (let i = 0; i < n; i++) res += a[start + i]!;
    return res;
  }
  if (n <= 128) {
    const r = new Float64Array(8);
    for (let j = 0; j < 8; j++) r[j] = a[start + j]!;
    let i = 8;
    for (; i < n - (n % 8); i += 8) for (let j = 0; j < 8; j++) r[j] = r[j]! + a[start + i + j]!;
    let res = ((r[0]! + r[1]!) + (r[2]! + r[3]!)) + ((r[4]! + r[5]!) + (r[6]! + r[7]!));
    for (; i < n; i++) res += a[start + i]!;
    return res;
  }
  let n2 = Math.floor(n / 2);
  n2 -= n2 % 8;
  return pairwise(a, start, n2) + pairwise(a, start + n2, n - n2);
}

const BLOCK = 256;

/**
 * build_blending_indices' output, compactly: datasetIndex (size,) u8 as GPT-NeoX's, and
 * sampleIndex(k) = how many earlier samples went to the same dataset (its dataset_sample_index).
 */
export class BlendingIndex {
  readonly size: number;
  readonly numDatasets: number;
  /** (size,) dataset of each blended sample. */
  readonly datasetIndex: Uint8Array;
  /** (ceil(size / 256), D) samples taken from each dataset before every 256th blended sample. */
  private readonly checkpoints: Float64Array;
  /** (D,) samples taken from each dataset in total. */
  readonly counts: Float64Array;

  constructor(datasetIndex: Uint8Array, numDatasets: number) {
    this.size = datasetIndex.length;
    this.numDatasets = numDatasets;
    this.datasetIndex = datasetIndex;
    const D = numDatasets;
    this.checkpoints = new Float64Array(Math.ceil(this.size / BLOCK) * D);
    const used = new Float64Array(D);
    for (let k = 0; k < this.size; k++) {
      if (k % BLOCK === 0) this.checkpoints.set(used, (k / BLOCK) * D);
      const d = datasetIndex[k]!;
      used[d] = used[d]! + 1;
    }
    this.counts = used;
  }

  /** GPT-NeoX's dataset_sample_index[k]. */
  sampleIndex(k: number): number {
    if (!Number.isInteger(k) || k < 0 || k >= this.size) throw new RangeError(`blended sample ${k} out of range [0, ${this.size})`);
    const d = this.datasetIndex[k]!;
    const block = Math.floor(k / BLOCK);
    let n = this.checkpoints[block * this.numDatasets + d]!;
    const idx = this.datasetIndex;
    for (let j = block * BLOCK; j < k; j++) if (idx[j] === d) n++;
    return n;
  }
}

/** helpers.cpp build_blending_indices over normalised `weights`, for `size` samples. */
export function buildBlendingIndex(weights: ArrayLike<number>, size: number): BlendingIndex {
  const D = weights.length;
  if (D < 1 || D >= 255) throw new Error(`blending supports 1 to 254 datasets, got ${D}`);
  if (!Number.isSafeInteger(size) || size < 0) throw new Error(`blending size must be a non-negative integer, got ${size}`);
  const w = Float64Array.from(weights);
  const used = new Float64Array(D);
  const datasetIndex = new Uint8Array(size);
  for (let k = 0; k < size; k++) {
    const s = Math.max(k, 1);
    let best = 0;
    let bestErr = w[0]! * s - used[0]!;
    for (let d = 1; d < D; d++) {
      const err = w[d]! * s - used[d]!;
      if (err > bestErr) { bestErr = err; best = d; }
    }
    datasetIndex[k] = best;
    used[best] = used[best]! + 1;
  }
  return new BlendingIndex(datasetIndex, D);
}

/** Interleaves datasets by weight: GPT-NeoX's BlendableDataset (same size, same order). */
export class BlendableDataset implements SampleDataset {
  readonly name: string;
  readonly datasets: SampleDataset[];
  /** Weights after GPT-NeoX's second normalisation (by np.sum). */
  readonly weights: number[];
  readonly length: number;
  readonly seqLength: number;
  readonly hasLabels: boolean;
  readonly index: BlendingIndex;

  /**
   * `datasets` answer any sample index as GPT-NeoX's GPT2Dataset does (wrapping past their end);
   * give each a `resolveIndex` for that, as GPT2Dataset has. `weights` need not be normalised.
   */
  constructor(name: string, datasets: Array<SampleDataset & { resolveIndex?(i: number): number }>, weights: number[]) {
    if (datasets.length === 0) throw new Error(`${name}: nothing to blend`);
    if (datasets.length !== weights.length) {
      throw new Error(`${name}: ${datasets.length} datasets but ${weights.length} weights`);
    }
    const seq = datasets[0]!.seqLength;
    for (const d of datasets) {
      if (d.seqLength !== seq) throw new Error(`${name}: datasets disagree on seq_length (${d.seqLength} vs ${seq})`);
    }
    const sum = numpySum(weights);
    if (!(sum > 0)) throw new Error(`${name}: weights must sum to more than 0`);
    this.name = name;
    this.datasets = datasets;
    this.weights = weights.map((w) => w / sum);
    this.seqLength = seq;
    this.hasLabels = datasets.some((d) => d.hasLabels);
    let size = 0;
    for (const d of datasets) size += d.length;
    this.length = size;
    this.index = buildBlendingIndex(this.weights, size);
  }

  /** (dataset, sample within it) of blended sample i, after GPT-NeoX's out-of-range wrap. */
  locate(i: number): { dataset: number; sample: number } {
    const dataset = this.index.datasetIndex[i]!;
    const sample = this.index.sampleIndex(i);
    const ds = this.datasets[dataset] as SampleDataset & { resolveIndex?(i: number): number };
    return { dataset, sample: ds.resolveIndex ? ds.resolveIndex(sample) : sample % ds.length };
  }

  get(i: number): Int32Array {
    const { dataset, sample } = this.locate(i);
    return this.datasets[dataset]!.get(sample);
  }

  /** Labels of sample i; a dataset without a label file in a blend that has them trains on every token. */
  getLabels(i: number): Int32Array {
    const { dataset, sample } = this.locate(i);
    const ds = this.datasets[dataset]!;
    if (ds.hasLabels && ds.getLabels) return ds.getLabels(sample);
    const text = ds.get(sample);
    return text.map((t) => (t < 0 ? LABEL_PAD : t));
  }
}
