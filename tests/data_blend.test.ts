// Tests for weighted blending, label files and train_epochs (src/data/blendable.ts, loader.ts,
// gpt2_dataset.ts) against tests/fixtures/data/blend_golden.json, written by
// tools/make_blend_fixtures.py: a numpy re-statement of GPT-NeoX's data_utils.py, gpt2_dataset.py,
// blendable_dataset.py and helpers.cpp over several seeds, sizes and blends.

import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

import {
  BlendableDataset, buildBlendingIndex, normalizeWeights, numpySum, weightsByNumDocs,
} from '../src/data/blendable.js';
import { GPT2Dataset, indexMapPaths, LABEL_PAD, type SampleDataset } from '../src/data/gpt2_dataset.js';
import { IndexedDataset, IndexedDatasetBuilder } from '../src/data/indexed_dataset.js';
import { BatchIterator, buildDatasets, labelPrefixFor } from '../src/data/loader.js';

const FIXTURES = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../tests/fixtures/data');

interface BlendCase {
  name: string;
  seq_length: number;
  seed: number;
  num_samples: number | null;
  train_epochs: boolean;
  weights: number[];
  weight_by_num_documents: boolean;
  weighted_sampler_alpha: number;
  masked: Record<string, number>;
  datasets: Array<{ sizes: number[] }>;
  normalized_weights: number[];
  dataset_num_samples: Array<number | null>;
  blend_weights: number[];
  per_dataset: Array<{ num_epochs: number; length: number; doc_idx: number[]; sample_idx: number[]; shuffle_idx: number[] }>;
  size: number;
  dataset_index: number[];
  dataset_sample_index: number[];
  samples: Array<{ k: number; text: number[]; labels?: number[] }>;
}
const golden = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'blend_golden.json'), 'utf8')) as { cases: BlendCase[] };

const tmpDirs: string[] = [];
function tmpDir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'neox-blend-'));
  tmpDirs.push(d);
  return d;
}
after(() => { for (const d of tmpDirs) fs.rmSync(d, { recursive: true, force: true }); });
const quiet = (): void => {};

// Same token function as the Python reference.
const token = (ds: number, doc: number, pos: number): number => (ds * 1000003 + doc * 7919 + pos * 31) % 50000 + 2;

/** The case's datasets on disk: {dir}/ds{i}_text_document (+ _label_document where masked). */
function writeCase(c: BlendCase, dir: string): string[] {
  return c.datasets.map(({ sizes }, i) => {
    const prefix = path.join(dir, `ds${i}_text_document`);
    const b = new IndexedDatasetBuilder(prefix, 'u16');
    for (let doc = 0; doc < sizes.length; doc++) {
      b.addItem(Array.from({ length: sizes[doc]! }, (_, p) => token(i, doc, p)));
      b.endDocument();
    }
    b.finalize();
    const masked = c.masked[String(i)];
    if (masked !== undefined) {
      const l = new IndexedDatasetBuilder(path.join(dir, `ds${i}_label_document`), 'i32');
      for (let doc = 0; doc < sizes.length; doc++) {
        l.addItem(Array.from({ length: sizes[doc]! }, (_, p) => (p < masked ? LABEL_PAD : token(i, doc, p))));
        l.endDocument();
      }
      l.finalize();
    }
    return prefix;
  });
}

function checkBlend(c: BlendCase, blend: BlendableDataset): void {
  assert.equal(blend.length, c.size, `${c.name}: size`);
  assert.deepEqual(blend.weights, c.blend_weights, `${c.name}: weights after np.sum`);
  assert.deepEqual(Array.from(blend.index.datasetIndex), c.dataset_index, `${c.name}: dataset_index`);
  const nth = Array.from({ length: c.size }, (_, k) => blend.index.sampleIndex(k));
  assert.deepEqual(nth, c.dataset_sample_index, `${c.name}: dataset_sample_index`);
  c.per_dataset.forEach((p, i) => {
    const g = blend.datasets[i] as GPT2Dataset;
    assert.equal(g.numEpochs, p.num_epochs, `${c.name}[${i}]: epochs`);
    assert.equal(g.length, p.length, `${c.name}[${i}]: length`);
    assert.deepEqual(Array.from(g.docIdx), p.doc_idx, `${c.name}[${i}]: doc_idx`);
    assert.deepEqual(Array.from(g.sampleIdx), p.sample_idx, `${c.name}[${i}]: sample_idx`);
    assert.deepEqual(Array.from(g.shuffleIdx), p.shuffle_idx, `${c.name}[${i}]: shuffle_idx`);
  });
  assert.equal(blend.hasLabels, Object.keys(c.masked).length > 0);
  for (const s of c.samples) {
    assert.deepEqual(Array.from(blend.get(s.k)), s.text, `${c.name}: sample ${s.k}`);
    if (s.labels) assert.deepEqual(Array.from(blend.getLabels(s.k)), s.labels, `${c.name}: labels of sample ${s.k}`);
  }
}

test('blend_weights_and_sample_counts_match_gpt_neox', () => {
  for (const c of golden.cases) {
    const weights = c.weight_by_num_documents
      ? weightsByNumDocs(c.datasets.map((d) => d.sizes.length), c.weighted_sampler_alpha)
      : c.weights;
    const norm = normalizeWeights(weights, c.num_samples);
    assert.deepEqual(norm.weights, c.normalized_weights, c.name);
    assert.deepEqual(norm.numSamples, c.dataset_num_samples, c.name);
  }
  assert.deepEqual(normalizeWeights([1, 3], 100), { weights: [0.25, 0.75], numSamples: [26, 76] });
  assert.throws(() => normalizeWeights([0, 0], 10), /sum to more than 0/);
  assert.throws(() => normalizeWeights([1, -1], 10), /≥ 0/);
});

test('numpy_sum_is_pairwise', () => {
  // Values whose sum depends on the order: 1e16 + 1 + 1 ... sequentially loses the ones.
  const a = [1e16, ...Array.from({ length: 15 }, () => 1)];
  let seq = 0;
  for (const x of a) seq += x;
  assert.equal(seq, 1e16);
  // 8 accumulators: seven of them sum ones before meeting 1e16 (numpy gives 1.0000000000000014e+16)
  assert.equal(numpySum(a), 10000000000000014);
  assert.equal(numpySum([0.1, 0.2, 0.3]), 0.1 + 0.2 + 0.3);
});

test('blending_indices_break_ties_like_helpers_cpp', () => {
  const b = buildBlendingIndex([0.5, 0.5], 6);
  assert.deepEqual(Array.from(b.datasetIndex), [0, 1, 0, 1, 0, 1]);
  const c = buildBlendingIndex([0.2, 0.8], 1000);
  assert.deepEqual(Array.from(c.counts), [200, 800]);
  // sampleIndex across the 256-sample checkpoints equals a running count.
  const seen = [0, 0];
  for (let k = 0; k < 1000; k++) {
    const d = c.datasetIndex[k]!;
    assert.equal(c.sampleIndex(k), seen[d]);
    seen[d]!++;
  }
  assert.throws(() => buildBlendingIndex(new Array(255).fill(1 / 255), 10), /1 to 254 datasets/);
});

test('blended_datasets_match_numpy_reference', () => {
  for (const c of golden.cases) {
    const dir = tmpDir();
    const prefixes = writeCase(c, dir);
    const weights = c.normalized_weights;
    const datasets = prefixes.map((p, i) => {
      const indexed = new IndexedDataset(p);
      const labelPrefix = labelPrefixFor(p);
      const documents = Int32Array.from({ length: indexed.length }, (_, d) => d);
      return new GPT2Dataset(`train_${i}`, indexed, documents, c.dataset_num_samples[i]!, c.seq_length, c.seed, {
        numEpochs: c.train_epochs ? 1 : null, labels: labelPrefix ? new IndexedDataset(labelPrefix) : null, log: quiet,
      });
    });
    checkBlend(c, new BlendableDataset('train', datasets, weights));
  }
});

test('build_datasets_blends_train_data_paths_from_config', () => {
  for (const c of golden.cases) {
    const dir = tmpDir();
    const prefixes = writeCase(c, dir);
    const cfg = {
      train_data_paths: prefixes, train_data_weights: c.weights, weight_by_num_documents: c.weight_by_num_documents,
      weighted_sampler_alpha: c.weighted_sampler_alpha, seq_length: c.seq_length, seed: c.seed, train_batch_size: 1,
      ...(c.train_epochs ? { train_epochs: 1, train_iters: null } : { train_iters: c.num_samples! }),
    };
    const d = buildDatasets(cfg, { log: quiet });
    assert.equal(d.valid, null);
    assert.equal(d.test, null);
    checkBlend(c, d.train as BlendableDataset);
    // Index maps cached beside each dataset under GPT-NeoX's names.
    prefixes.forEach((p, i) => {
      const paths = indexMapPaths(p, `train_${i}`, c.dataset_num_samples[i]!, c.seq_length, c.seed);
      for (const f of Object.values(paths)) assert.ok(fs.existsSync(f), f);
    });
    if (c.train_epochs) {
      assert.ok(fs.readdirSync(dir).some((f) => f.includes('_train_0_indexmap_Nonens_')));
      assert.equal(d.trainIters, c.size); // one epoch, batch 1, no accumulation
    }
  }
});

test('valid_and_test_paths_blend_separately_with_their_own_counts', () => {
  const c = golden.cases.find((x) => x.name === 'three_weighted')!;
  const prefixes = writeCase(c, tmpDir());
  const d = buildDatasets({
    train_data_paths: prefixes, valid_data_paths: [prefixes[2]!], test_data_paths: prefixes.slice(0, 2),
    train_data_weights: [0.3, 0.3, 0.4], seq_length: 7, seed: 42, train_iters: 60, train_batch_size: 1,
    eval_interval: 20, eval_iters: 5,
  }, { log: quiet });
  assert.deepEqual(d.numSamples, [60, 20, 5]);
  const valid = d.valid as BlendableDataset;
  const test = d.test as BlendableDataset;
  assert.equal((valid.datasets[0] as GPT2Dataset).name, 'valid_0');
  assert.equal((test.datasets[1] as GPT2Dataset).name, 'test_1');
  assert.equal((test.datasets[1] as GPT2Dataset).numSamples, Math.ceil(5 * 0.5 * 1.005));
  assert.throws(() => buildDatasets({ train_data_paths: prefixes, train_data_weights: [1, 2], seq_length: 7, train_iters: 1, train_batch_size: 1 }),
    /train_data_weights has 2 entries for 3 train_data_paths/);
  assert.throws(() => buildDatasets({ train_data_paths: ['nope/x'], seq_length: 7, train_iters: 1, train_batch_size: 1 }), /dataset not found/);
});

test('train_epochs_counts_iterations_and_refuses_what_gpt_neox_refuses', () => {
  const c = golden.cases.find((x) => x.name === 'train_epochs')!;
  const prefixes = writeCase(c, tmpDir());
  const base = { train_data_paths: prefixes, seq_length: c.seq_length, seed: c.seed, train_batch_size: 4, gradient_accumulation_steps: 2 };
  const d = buildDatasets({ ...base, train_epochs: 3 }, { log: quiet });
  // loader batch = 4 / 2 = 2 samples; (size // 2) · 3 epochs // 2 accumulation steps
  assert.equal(d.trainIters, Math.floor((Math.floor(c.size / 2) * 3) / 2));
  assert.throws(() => buildDatasets({ ...base, train_epochs: 1, train_iters: 5 }), /not both/);
  assert.throws(() => buildDatasets({ ...base, train_epochs: 1, weight_by_num_documents: true }), /weight_by_num_documents is not supported with train_epochs/);
  assert.throws(() => buildDatasets({ ...base, train_epochs: 1, train_data_weights: [1, 2] }), /train_data_weights other than 1.0/);
  assert.throws(() => buildDatasets({ ...base }), /set train_iters or train_epochs/);
  assert.throws(() => buildDatasets({ ...base, train_iters: 4, pack_impl: 'unpacked' }), /pack_impl 'unpacked' is not supported/);
});

test('data_path_split_with_train_epochs_uses_one_epoch_per_split', () => {
  const c = golden.cases.find((x) => x.name === 'one_path')!;
  const dir = tmpDir();
  const [prefix] = writeCase(c, dir);
  const d = buildDatasets({ data_path: prefix, split: '80,20,0', seq_length: 5, train_epochs: 2, train_batch_size: 2 }, { log: quiet });
  assert.deepEqual(d.numSamples, [null, null, null]);
  assert.equal((d.train as GPT2Dataset).numEpochs, 1);
  assert.equal(d.trainIters, Math.floor(d.train!.length / 2) * 2);
  assert.ok(fs.readdirSync(dir).some((f) => f === 'ds0_text_document_train_indexmap_Nonens_5sl_1234s_packedpi_ac_doc_idx.npy'));
  // allow_chopped: false drops "_ac" from the cache names, as in GPT-NeoX
  buildDatasets({ data_path: prefix, split: '80,20,0', seq_length: 5, train_iters: 3, train_batch_size: 2, allow_chopped: false }, { log: quiet });
  assert.ok(fs.readdirSync(dir).some((f) => f === 'ds0_text_document_train_indexmap_6ns_5sl_1234s_packedpi_doc_idx.npy'));
});

test('label_files_drive_labels_and_loss_mask', () => {
  const c = golden.cases.find((x) => x.name === 'labels')!;
  const dir = tmpDir();
  const prefixes = writeCase(c, dir);
  assert.equal(labelPrefixFor(prefixes[0]!), path.join(dir, 'ds0_label_document'));
  assert.equal(labelPrefixFor(prefixes[1]!), null);
  const d = buildDatasets({ train_data_paths: prefixes, seq_length: c.seq_length, seed: c.seed, train_iters: 30, train_batch_size: 1 }, { log: quiet });
  const train = d.train!;
  assert.ok(train.hasLabels);
  const it = new BatchIterator(train, 2, 0, { eodMaskLoss: true, eodId: -7 });
  const T = c.seq_length;
  for (let k = 0; k < 5; k++) {
    const b = it.batch(k);
    for (let r = 0; r < b.rows; r++) {
      const s = b.samples[r]!;
      const text = train.get(s);
      const labels = train.getLabels!(s);
      for (let t = 0; t < T; t++) {
        const y = labels[t + 1]!;
        // GPT-NeoX's _get_batch: labels = where(label >= 0, label, 0)[1:], loss mask = label[1:] >= 0
        assert.equal(b.labels[r * T + t], y < 0 ? 0 : y);
        assert.equal(b.lossMask[r * T + t], y < 0 ? 0 : 1);
        assert.equal(b.tokens[r * T + t], text[t]);
      }
    }
  }
  // Some positions are masked, and unmasked labels equal the next token.
  const b = it.batch(0);
  assert.ok(b.lossMask.some((m) => m === 0));
  // Explicit train_label_data_paths win, and must match the text file item for item.
  assert.throws(() => buildDatasets({
    train_data_paths: prefixes, train_label_data_paths: [prefixes[1]!, prefixes[0]!], seq_length: c.seq_length,
    train_iters: 30, train_batch_size: 1,
  }, { log: quiet }), /label file .* does not match/);
  assert.throws(() => buildDatasets({ data_path: prefixes[0]!, train_label_data_paths: [prefixes[0]!], seq_length: 8, train_iters: 1, train_batch_size: 1 }),
    /needs train_data_paths, not data_path/);
});

test('label_file_in_split_mode_is_picked_up', () => {
  const c = golden.cases.find((x) => x.name === 'labels')!;
  const dir = tmpDir();
  const [prefix] = writeCase(c, dir);
  const d = buildDatasets({ data_path: prefix, split: '1', seq_length: 8, train_iters: 10, train_batch_size: 1 }, { log: quiet });
  const train = d.train as GPT2Dataset;
  assert.ok(train.hasLabels);
  // Label samples read the label file through the same maps; masked = first 3 tokens of a document.
  let masked = 0;
  for (let i = 0; i < train.length; i++) {
    const text = train.get(i);
    const labels = train.getLabels(i);
    for (let t = 0; t < text.length; t++) {
      if (labels[t] === LABEL_PAD) masked++;
      else assert.equal(labels[t], text[t]);
    }
  }
  assert.ok(masked > 0);
});

test('blend_without_labels_in_one_dataset_trains_on_its_tokens', () => {
  const mk = (name: string, v: number, labels: boolean): SampleDataset => ({
    name, length: 4, seqLength: 3, hasLabels: labels,
    get: () => new Int32Array([v, v + 1, v + 2, v + 3]),
    ...(labels ? { getLabels: () => new Int32Array([LABEL_PAD, LABEL_PAD, v + 2, v + 3]) } : {}),
  });
  const blend = new BlendableDataset('train', [mk('a', 10, true), mk('b', 20, false)], [1, 1]);
  assert.equal(blend.length, 8);
  assert.deepEqual(Array.from(blend.getLabels(0)), [LABEL_PAD, LABEL_PAD, 12, 13]);
  assert.deepEqual(Array.from(blend.getLabels(1)), [20, 21, 22, 23]);
  assert.throws(() => new BlendableDataset('x', [mk('a', 1, false), { ...mk('b', 1, false), seqLength: 4 }], [1, 1]), /disagree on seq_length/);
});
