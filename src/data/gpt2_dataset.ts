// GPT-NeoX's GPT2Dataset ("packed"): documents → shuffled fixed-length samples, same order as GPT-NeoX.
//
// defines: splitDocuments, numTokens, numEpochs, buildDocIdx, buildSampleIdx, buildShuffleIdx,
//          indexMapPaths, buildIndexMappings, GPT2Dataset, SampleDataset, readNpy, writeNpy, NpyArray,
//          LABEL_PAD
//
// Source: gpt-neox megatron/data/gpt2_dataset.py, helpers.cpp (build_sample_idx), data_utils.py
// (get_train_valid_test_split_). The three index maps and the RNG call order are GPT-NeoX's:
//   rng = RandomState(seed)
//   doc_idx     (E·D,)    int32   the split's documents tiled over E epochs, ONE shuffle over all of
//                                 them (GPT-NeoX has no "separate last epoch"; that is Megatron-LM's)
//   sample_idx  (S+1, 2)  int32 (int64 if 2·(S+1) ≥ 2^31-1)  (index into doc_idx, token offset) where
//                                 sample k starts; sample k = tokens [start_k, start_{k+1}] inclusive,
//                                 seq_length + 1 of them, so consecutive samples share one token
//   shuffle_idx (S,)      uint32 (int64 if S ≥ 2^32-2)  arange(S) shuffled by the same rng, after doc_idx
// with S = (E·tokens_per_epoch - 1) // seq_length. Like GPT-NeoX, `length` is S - 1 (its __len__ is
// min(len(shuffle_idx) - 1, len(sample_idx) - 1)), so the last shuffled sample is never served.
//
// Label files (masked fine-tuning, `preprocess --mask-before-token`): a second indexed dataset with the
// same item sizes, read through the same index maps; GPT-NeoX pads label samples with -100 (no loss).
// Indices past the shuffle index wrap modulo length, GPT-NeoX's IndexError fallback, which blending
// relies on when a dataset is asked for more samples than it holds (resolveIndex).
//
// Index maps are cached beside the data as .npy files with GPT-NeoX's names, so either tool reuses
// the other's: {prefix}_{name}_indexmap_{N}ns_{L}sl_{seed}s_packedpi_ac_{doc,sample,shuffle}_idx.npy
// ("packedpi" = pack_impl packed, "_ac" = allow_chopped, both GPT-NeoX defaults). Files are written
// to a temporary name and renamed, so concurrent ranks building the same map cannot tear it.
// Arrays are read whole into memory (GPT-NeoX memory-maps them); int64 maps become exact doubles.

import * as fs from 'node:fs';
import type { IndexedDataset } from './indexed_dataset.js';
import { RandomState } from './mt19937.js';

/** An integer index array; int64 data is held as exact doubles. */
export type IndexArray = Int32Array | Uint32Array | Float64Array;

/** Label value of positions without loss (GPT-NeoX's -100, also its label padding). */
export const LABEL_PAD = -100;

/** Anything that serves samples of seq_length + 1 tokens by index (GPT2Dataset, BlendableDataset). */
export interface SampleDataset {
  readonly name: string;
  readonly length: number;
  readonly seqLength: number;
  /** True when samples come with labels from a label file (getLabels). */
  readonly hasLabels?: boolean;
  /** (seq_length + 1,) token ids of sample i, 0 ≤ i < length. */
  get(i: number): Int32Array;
  /** (seq_length + 1,) labels of sample i, LABEL_PAD where no loss is taken; when hasLabels. */
  getLabels?(i: number): Int32Array;
}

// ---------------------------------------------------------------------------------------------
// Splits

/**
 * GPT-NeoX's get_train_valid_test_split_: "969,30,1" (or "a/b/c", or fewer numbers) → document
 * boundaries [0, trainEnd, validEnd, numDocs]. Weights are normalized, each part is rounded with
 * Python's round-half-to-even, and the rounding surplus is taken off every boundary after 0.
 */
export function splitDocuments(numDocs: number, splitString: string): [number, number, number, number] {
  const sep = splitString.includes(',') ? ',' : splitString.includes('/') ? '/' : null;
  const parts = sep === null ? [splitString] : splitString.split(sep);
  const weights = parts.map((s) => {
    const v = s.trim() === '' ? NaN : Number(s);
    if (!Number.isFinite(v)) throw new Error(`split '${splitString}': '${s}' is not a number`);
    return v;
  });
  while (weights.length < 3) weights.push(0);
  weights.length = 3;
  let sum = 0;
  for (const w of weights) sum += w;
  if (!(sum > 0)) throw new Error(`split '${splitString}': the weights must sum to more than 0`);
  const idx = [0];
  weights.forEach((w, i) => idx.push(idx[i]! + roundHalfEven((w / sum) * numDocs)));
  const diff = idx[3]! - numDocs;
  for (let i = 1; i < 4; i++) idx[i] = idx[i]! - diff;
  return idx as [number, number, number, number];
}

/** Python 3's round() on a float: nearest integer, ties to even. */
function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f; // exact for |x| < 2^52
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

// ---------------------------------------------------------------------------------------------
// Index-map construction (pure functions)

/** Tokens in one epoch of `documents`: Σ sizes[documents]. */
export function numTokens(documents: ArrayLike<number>, sizes: ArrayLike<number>): number {
  let total = 0;
  for (let i = 0; i < documents.length; i++) total += sizes[documents[i]!]!;
  return total;
}

/** Smallest number of epochs whose tokens give numSamples samples: (E·T - 1) // L ≥ numSamples. */
export function numEpochs(tokensPerEpoch: number, seqLength: number, numSamples: number): number {
  if (tokensPerEpoch <= 0) throw new Error('numEpochs: the documents hold no tokens');
  let epochs = 0;
  let total = 0;
  for (;;) {
    epochs += 1;
    total += tokensPerEpoch;
    // -1: each sample reads seq_length + 1 tokens, the last one shared with the next sample.
    if (Math.floor((total - 1) / seqLength) >= numSamples) return epochs;
  }
}

/** (E·D,) int32: `documents` repeated numEpochs times, then shuffled by `rng` as one array. */
export function buildDocIdx(documents: ArrayLike<number>, epochs: number, rng: RandomState): Int32Array {
  const d = documents.length;
  const docIdx = new Int32Array(epochs * d);
  for (let e = 0; e < epochs; e++) for (let i = 0; i < d; i++) docIdx[e * d + i] = documents[i]!;
  rng.shuffle(docIdx);
  return docIdx;
}

/**
 * (S+1, 2) row-major: (index into docIdx, offset in that document) at which each sample starts;
 * helpers.cpp build_sample_idx. int32 unless 2·(S+1) reaches 2^31 - 1 (then int64, held as doubles).
 */
export function buildSampleIdx(
  sizes: ArrayLike<number>, docIdx: ArrayLike<number>, seqLength: number, epochs: number, tokensPerEpoch: number,
): Int32Array | Float64Array {
  if (!(seqLength > 1)) throw new Error(`buildSampleIdx: seq_length must be > 1, got ${seqLength}`);
  if (!(epochs > 0)) throw new Error('buildSampleIdx: need at least one epoch');
  if (!(tokensPerEpoch > 1)) throw new Error('buildSampleIdx: need more than one token per epoch');
  const numSamples = Math.floor((epochs * tokensPerEpoch - 1) / seqLength);
  // GPT-NeoX decides the dtype from the true quotient, before flooring.
  const use32 = 2 * ((epochs * tokensPerEpoch - 1) / seqLength + 1) < 2147483647;
  const out = use32 ? new Int32Array(2 * (numSamples + 1)) : new Float64Array(2 * (numSamples + 1));
  let sampleIndex = 0;
  let docIdxIndex = 0;
  let docOffset = 0;
  out[0] = 0;
  out[1] = 0;
  sampleIndex++;
  while (sampleIndex <= numSamples) {
    let remaining = seqLength + 1;
    while (remaining !== 0) {
      if (docIdxIndex >= docIdx.length) throw new Error('buildSampleIdx: ran past the end of doc_idx');
      const docLength = sizes[docIdx[docIdxIndex]!]! - docOffset;
      remaining -= docLength;
      if (remaining <= 0) {
        // The sample ends inside this document; the next one starts on its last token.
        docOffset += remaining + docLength - 1;
        remaining = 0;
      } else {
        docIdxIndex++;
        docOffset = 0;
      }
    }
    out[2 * sampleIndex] = docIdxIndex;
    out[2 * sampleIndex + 1] = docOffset;
    sampleIndex++;
  }
  return out;
}

/** (size,) arange(size) shuffled by `rng`; uint32 unless size ≥ 2^32 - 2 (then int64 as doubles). */
export function buildShuffleIdx(size: number, rng: RandomState): Uint32Array | Float64Array {
  const out = size >= 0xffffffff - 1 ? new Float64Array(size) : new Uint32Array(size);
  for (let i = 0; i < size; i++) out[i] = i;
  rng.shuffle(out);
  return out;
}

export interface IndexMapPaths { docIdx: string; sampleIdx: string; shuffleIdx: string }

/** GPT-NeoX's cache file names for one dataset split. `numSamples` null prints as Python's None. */
export function indexMapPaths(
  dataPrefix: string, name: string, numSamples: number | null, seqLength: number, seed: number,
  packImpl = 'packed', allowChopped = true,
): IndexMapPaths {
  const base = `${dataPrefix}_${name}_indexmap_${numSamples ?? 'None'}ns_${seqLength}sl_${seed}s_${packImpl}pi${allowChopped ? '_ac' : ''}`;
  return { docIdx: `${base}_doc_idx.npy`, sampleIdx: `${base}_sample_idx.npy`, shuffleIdx: `${base}_shuffle_idx.npy` };
}

export interface IndexMappings {
  docIdx: Int32Array;            // (E·D,)
  sampleIdx: IndexArray;         // (S+1, 2) row-major
  shuffleIdx: IndexArray;        // (S,)
  numEpochs: number;
  paths: IndexMapPaths | null;   // null when not cached
}

export interface IndexMappingOptions {
  /** Cache the maps as .npy beside the data (GPT-NeoX's behaviour). Default true. */
  cache?: boolean;
  /** Fixed epoch count instead of deriving it from numSamples (GPT-NeoX's train_epochs). */
  numEpochs?: number | null;
  /** GPT-NeoX's allow_chopped (default true): only names the cache files ("_ac") for pack_impl packed. */
  allowChopped?: boolean;
  log?: (msg: string) => void;
}

/** Load the cached maps, or build (and cache) them exactly as GPT-NeoX's _build_index_mappings. */
export function buildIndexMappings(
  name: string, dataPrefix: string, documents: Int32Array, sizes: Int32Array,
  numSamples: number | null, seqLength: number, seed: number, opts: IndexMappingOptions = {},
): IndexMappings {
  const log = opts.log ?? (() => {});
  const tokensPerEpoch = numTokens(documents, sizes);
  let epochs = opts.numEpochs ?? null;
  if (!epochs) {
    if (numSamples === null) throw new Error(`${name}: need numSamples or numEpochs`);
    epochs = numEpochs(tokensPerEpoch, seqLength, numSamples);
  }
  const totalSamples = Math.floor((epochs * tokensPerEpoch - 1) / seqLength);
  const paths = opts.cache === false ? null : indexMapPaths(dataPrefix, name, numSamples, seqLength, seed, 'packed', opts.allowChopped ?? true);

  if (paths && fs.existsSync(paths.docIdx) && fs.existsSync(paths.sampleIdx) && fs.existsSync(paths.shuffleIdx)) {
    log(` > loading index maps ${paths.docIdx.replace(/_doc_idx\.npy$/, '_*')}`);
    const doc = readNpy(paths.docIdx);
    const sample = readNpy(paths.sampleIdx);
    const shuffle = readNpy(paths.shuffleIdx);
    expectShape(paths.docIdx, doc, [epochs * documents.length]);
    expectShape(paths.sampleIdx, sample, [totalSamples + 1, 2]);
    expectShape(paths.shuffleIdx, shuffle, [totalSamples]);
    if (!(doc.data instanceof Int32Array)) throw new Error(`${paths.docIdx}: expected int32 data, found ${doc.descr}`);
    return {
      docIdx: doc.data, sampleIdx: asIndexArray(paths.sampleIdx, sample), shuffleIdx: asIndexArray(paths.shuffleIdx, shuffle),
      numEpochs: epochs, paths,
    };
  }

  log(` > building index maps for ${name}: ${documents.length} documents, ${epochs} epoch(s), ${totalSamples} samples`);
  const rng = new RandomState(seed);
  const docIdx = buildDocIdx(documents, epochs, rng);
  const sampleIdx = buildSampleIdx(sizes, docIdx, seqLength, epochs, tokensPerEpoch);
  // -1: sample i spans sample_idx[i] .. sample_idx[i+1]
  const shuffleIdx = buildShuffleIdx(sampleIdx.length / 2 - 1, rng);
  let written: IndexMapPaths | null = paths;
  if (paths) {
    try {
      writeNpy(paths.docIdx, docIdx, [docIdx.length], '<i4');
      writeNpy(paths.sampleIdx, sampleIdx, [sampleIdx.length / 2, 2], sampleIdx instanceof Int32Array ? '<i4' : '<i8');
      writeNpy(paths.shuffleIdx, shuffleIdx, [shuffleIdx.length], shuffleIdx instanceof Uint32Array ? '<u4' : '<i8');
    } catch (err) {
      // A read-only data directory should not stop training; the maps are cheap to rebuild.
      log(` > WARNING: could not cache index maps beside ${dataPrefix} (${(err as Error).message}); keeping them in memory`);
      written = null;
    }
  }
  return { docIdx, sampleIdx, shuffleIdx, numEpochs: epochs, paths: written };
}

function asIndexArray(file: string, a: NpyArray): IndexArray {
  if (['<i4', '<u4', '<i8', '<u8'].includes(a.descr)) return a.data as IndexArray;
  throw new Error(`${file}: expected a 32- or 64-bit integer array, found ${a.descr}`);
}

function expectShape(file: string, a: NpyArray, shape: number[]): void {
  if (a.shape.length !== shape.length || a.shape.some((v, i) => v !== shape[i])) {
    throw new Error(
      `${file}: shape (${a.shape.join(', ')}) does not match this dataset, which needs (${shape.join(', ')}); the cached index map is stale or corrupt, delete it to rebuild`,
    );
  }
}

// ---------------------------------------------------------------------------------------------
// The dataset

export interface GPT2DatasetOptions extends IndexMappingOptions {
  /** Prefix for the cached index maps; default: the indexed dataset's prefix (GPT-NeoX's choice). */
  dataPrefix?: string;
  /** Label file with the same item sizes (`{prefix}_label_document`), or null. */
  labels?: IndexedDataset | null;
}

export class GPT2Dataset implements SampleDataset {
  readonly name: string;
  readonly indexed: IndexedDataset;
  readonly seqLength: number;
  readonly seed: number;
  readonly numSamples: number | null;
  readonly numEpochs: number;
  readonly docIdx: Int32Array;       // (E·D,)
  readonly sampleIdx: IndexArray;    // (S+1, 2)
  readonly shuffleIdx: IndexArray;   // (S,)
  /** GPT-NeoX's __len__: one less than the shuffle index. */
  readonly length: number;
  readonly indexMapPaths: IndexMapPaths | null;
  readonly labels: IndexedDataset | null;
  readonly hasLabels: boolean;

  /**
   * `documents`: (D,) ids of this split's documents in `indexed`. `numSamples`: samples wanted (the
   * maps hold at least that many, rounded up to whole epochs); null with opts.numEpochs set.
   */
  constructor(
    name: string, indexed: IndexedDataset, documents: Int32Array, numSamples: number | null,
    seqLength: number, seed: number, opts: GPT2DatasetOptions = {},
  ) {
    if (documents.length === 0) throw new Error(`${name}: no documents`);
    for (let i = 0; i < documents.length; i++) {
      const d = documents[i]!;
      if (d < 0 || d >= indexed.length) throw new Error(`${name}: document id ${d} out of range [0, ${indexed.length})`);
    }
    if (!Number.isInteger(seqLength) || seqLength < 2) throw new Error(`${name}: seq_length must be an integer ≥ 2, got ${seqLength}`);
    const labels = opts.labels ?? null;
    if (labels) checkLabelsMatch(indexed, labels);
    this.labels = labels;
    this.hasLabels = labels !== null;
    this.name = name;
    this.indexed = indexed;
    this.seqLength = seqLength;
    this.seed = seed;
    this.numSamples = numSamples;
    const maps = buildIndexMappings(
      name, opts.dataPrefix ?? indexed.prefix, documents, indexed.sizes, numSamples, seqLength, seed, opts,
    );
    this.docIdx = maps.docIdx;
    this.sampleIdx = maps.sampleIdx;
    this.shuffleIdx = maps.shuffleIdx;
    this.numEpochs = maps.numEpochs;
    this.indexMapPaths = maps.paths;
    this.length = Math.max(0, Math.min(this.shuffleIdx.length - 1, this.sampleIdx.length / 2 - 1));
  }

  /**
   * GPT-NeoX's __getitem__ index rule: i itself while the shuffle index has it (so index `length`,
   * the last shuffled sample, is served too), else i % length (its IndexError fallback).
   */
  resolveIndex(i: number): number {
    if (!Number.isInteger(i) || i < 0) throw new RangeError(`${this.name}: sample ${i} is not a non-negative integer`);
    if (i < this.shuffleIdx.length) return i;
    if (this.length === 0) throw new RangeError(`${this.name}: no samples`);
    return i % this.length;
  }

  /** (seq_length + 1,) tokens of sample i (0 ≤ i ≤ length), in GPT-NeoX's order. */
  get(i: number): Int32Array {
    return this.gather(this.indexed, i, 0);
  }

  /** (seq_length + 1,) labels of sample i from the label file, LABEL_PAD-padded as GPT-NeoX. */
  getLabels(i: number): Int32Array {
    if (!this.labels) throw new Error(`${this.name}: no label file`);
    return this.gather(this.labels, i, LABEL_PAD);
  }

  private gather(source: IndexedDataset, i: number, pad: number): Int32Array {
    if (!Number.isInteger(i) || i < 0 || i >= this.shuffleIdx.length) {
      throw new RangeError(`${this.name}: sample ${i} out of range [0, ${this.length})`);
    }
    const out = new Int32Array(this.seqLength + 1); // padded like GPT-NeoX if ever short
    const k = this.shuffleIdx[i]!;
    const docF = this.sampleIdx[2 * k]!;
    const offF = this.sampleIdx[2 * k + 1]!;
    const docL = this.sampleIdx[2 * k + 2]!;
    const offL = this.sampleIdx[2 * k + 3]!;
    let at: number;
    if (docF === docL) {
      at = readClipped(source, this.docIdx[docF]!, offF, offL - offF + 1, out, 0);
    } else {
      at = readClipped(source, this.docIdx[docF]!, offF, source.sizes[this.docIdx[docF]!]! - offF, out, 0);
      for (let d = docF + 1; d < docL; d++) {
        const doc = this.docIdx[d]!;
        at = readClipped(source, doc, 0, source.sizes[doc]!, out, at);
      }
      at = readClipped(source, this.docIdx[docL]!, 0, offL + 1, out, at);
    }
    if (pad !== 0) out.fill(pad, at);
    return out;
  }
}

/** Read into out[at..], truncating at seq_length + 1 as GPT-NeoX does; returns the new position. */
function readClipped(source: IndexedDataset, doc: number, offset: number, length: number, out: Int32Array, at: number): number {
  const n = Math.min(length, out.length - at);
  if (n > 0) source.read(doc, offset, n, out, at);
  return at + Math.max(0, n);
}

/** A label file must have the text file's items, token for token. */
function checkLabelsMatch(text: IndexedDataset, labels: IndexedDataset): void {
  const bad = (why: string): Error => new Error(`label file ${labels.prefix} does not match ${text.prefix}: ${why}`);
  if (labels.length !== text.length) throw bad(`${labels.length} items vs ${text.length}`);
  for (let i = 0; i < text.length; i++) {
    if (labels.sizes[i] !== text.sizes[i]) throw bad(`item ${i} has ${labels.sizes[i]} labels for ${text.sizes[i]} tokens`);
  }
}

// ---------------------------------------------------------------------------------------------
// .npy (format 1.0-3.0 read, 1.0 write; C order only), enough for the index maps

export interface NpyArray {
  descr: string;
  shape: number[];
  /** Flat C-order data; 64-bit integers as exact doubles. */
  data: Int32Array | Uint32Array | Float64Array | Int16Array | Uint16Array | Int8Array | Uint8Array | Float32Array;
}

const NPY_MAGIC = Buffer.from('\x93NUMPY', 'latin1');

/** Write `data` as a .npy with numpy's own header layout (np.save), via a temp file + rename. */
export function writeNpy(file: string, data: ArrayLike<number>, shape: number[], descr: '<i4' | '<u4' | '<i8' | '<u2' | '|u1'): void {
  const count = shape.reduce((a, b) => a * b, 1);
  if (count !== data.length) throw new Error(`writeNpy(${file}): shape (${shape}) has ${count} elements, data has ${data.length}`);
  const shapeRepr = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shapeRepr}, }`;
  // numpy leaves room for the first axis to grow to 21 digits, then pads to 64-byte alignment.
  if (shape.length > 0) header += ' '.repeat(Math.max(0, 21 - String(shape[0]).length));
  const hlen = header.length + 1;
  const pad = 64 - ((NPY_MAGIC.length + 2 + 2 + hlen) % 64);
  const head = Buffer.alloc(NPY_MAGIC.length + 4);
  NPY_MAGIC.copy(head, 0);
  head[6] = 1;
  head[7] = 0;
  head.writeUInt16LE(hlen + pad, 8);
  const headerBytes = Buffer.from(header + ' '.repeat(pad) + '\n', 'latin1');

  let body: Uint8Array;
  switch (descr) {
    case '<i4': body = u8(Int32Array.from(data)); break;
    case '<u4': body = u8(Uint32Array.from(data)); break;
    case '<u2': body = u8(Uint16Array.from(data)); break;
    case '|u1': body = Uint8Array.from(data); break;
    case '<i8': {
      const words = new Uint32Array(2 * data.length); // (n, 2) lo, hi
      for (let i = 0; i < data.length; i++) {
        const v = data[i]!;
        const hi = Math.floor(v / 4294967296);
        words[2 * i] = v - hi * 4294967296;
        words[2 * i + 1] = hi >>> 0;
      }
      body = u8(words);
      break;
    }
  }
  const tmp = `${file}.tmp-${process.pid}-${Date.now().toString(36)}`;
  try {
    const fd = fs.openSync(tmp, 'w');
    try {
      for (const part of [head, headerBytes, body]) {
        let done = 0;
        while (done < part.length) done += fs.writeSync(fd, part, done, Math.min(1 << 30, part.length - done));
      }
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, file);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  }
}

/** Read a C-order .npy of a little-endian integer or float dtype. */
export function readNpy(file: string): NpyArray {
  const fd = fs.openSync(file, 'r');
  try {
    const fileBytes = fs.fstatSync(fd).size;
    const pre = Buffer.alloc(12);
    fs.readSync(fd, pre, 0, 12, 0);
    if (!pre.subarray(0, 6).equals(NPY_MAGIC)) throw new Error(`${file}: not a .npy file (bad magic)`);
    const major = pre[6]!;
    let hlen: number;
    let hstart: number;
    if (major === 1) { hlen = pre.readUInt16LE(8); hstart = 10; }
    else if (major === 2 || major === 3) { hlen = pre.readUInt32LE(8); hstart = 12; }
    else throw new Error(`${file}: unsupported .npy version ${major}.${pre[7]}`);
    const hbuf = Buffer.alloc(hlen);
    fs.readSync(fd, hbuf, 0, hlen, hstart);
    const header = hbuf.toString(major === 3 ? 'utf8' : 'latin1');
    const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
    const fortran = /'fortran_order':\s*(True|False)/.exec(header)?.[1];
    const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
    if (descr === undefined || fortran === undefined || shapeText === undefined) {
      throw new Error(`${file}: cannot parse .npy header ${JSON.stringify(header.trim())}`);
    }
    if (fortran === 'True') throw new Error(`${file}: Fortran-order arrays are not supported`);
    const shape = shapeText.split(',').map((s) => s.trim()).filter((s) => s !== '').map((s) => Number(s));
    const count = shape.reduce((a, b) => a * b, 1);
    const item: Record<string, number> = { '<i4': 4, '<u4': 4, '<i8': 8, '<u8': 8, '<i2': 2, '<u2': 2, '|i1': 1, '|u1': 1, '<f4': 4, '<f8': 8 };
    const size = item[descr];
    if (size === undefined) throw new Error(`${file}: unsupported dtype '${descr}'`);
    const dataStart = hstart + hlen;
    if (dataStart + count * size !== fileBytes) {
      throw new Error(`${file}: expected ${count * size} data bytes for shape (${shape.join(', ')}) of ${descr}, file holds ${fileBytes - dataStart}`);
    }
    const raw = new Uint8Array(count * size);
    let done = 0;
    while (done < raw.length) {
      const n = fs.readSync(fd, raw, done, Math.min(1 << 30, raw.length - done), dataStart + done);
      if (n === 0) throw new Error(`${file}: short read`);
      done += n;
    }
    const b = raw.buffer;
    let data: NpyArray['data'];
    switch (descr) {
      case '<i4': data = new Int32Array(b); break;
      case '<u4': data = new Uint32Array(b); break;
      case '<i2': data = new Int16Array(b); break;
      case '<u2': data = new Uint16Array(b); break;
      case '|i1': data = new Int8Array(b); break;
      case '|u1': data = raw; break;
      case '<f4': data = new Float32Array(b); break;
      case '<f8': data = new Float64Array(b); break;
      default: { // '<i8' | '<u8'
        const w = new Uint32Array(b); // (count, 2) lo, hi
        const out = new Float64Array(count);
        const signed = descr === '<i8';
        for (let i = 0; i < count; i++) {
          const hi = signed ? w[2 * i + 1]! | 0 : w[2 * i + 1]!;
          if (hi >= 0x200000 || hi < -0x200000) throw new Error(`${file}: value at ${i} exceeds 2^53`);
          out[i] = hi * 4294967296 + w[2 * i]!;
        }
        data = out;
      }
    }
    return { descr, shape, data };
  } finally {
    fs.closeSync(fd);
  }
}

function u8(a: Int32Array | Uint32Array | Uint16Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}
