// Tests for src/data: .bin/.idx format, tokenizer, preprocess, numpy RNG, GPT2Dataset index maps,
// splits, batches. Golden numbers: tests/fixtures/data/numpy_golden.json and npy_*.npy, made by
// tests/fixtures/data/make_numpy_golden.py with numpy; others quoted from numpy's test suite and
// the C++ standard, named where used.

import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

import {
  BatchIterator, bestTokenDtype, buildDatasets, buildDocIdx, buildSampleIdx, buildShuffleIdx, buildTokenizer,
  CharLevelTokenizer, encodeIndexHeader, expandInputs, GPT2Dataset, globFiles, IndexedDataset,
  IndexedDatasetBuilder, indexMapPaths, numEpochs, numSamplesPerSplit, numTokens, parsePreprocessArgs,
  preprocess, RandomState, readNpy, splitDocuments, writeNpy, type SampleDataset,
} from '../src/data/index.js';

const FIXTURES = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../tests/fixtures/data');
const golden = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'numpy_golden.json'), 'utf8')) as {
  raw_u32: Record<string, number[]>;
  raw_u32_1234_index_999: number;
  raw_u32_after_2000_seed_7: number[];
  init_by_array: Record<string, number[]>;
  random_sample_1234: number[];
  randint_small_1234: number[];
  randint_large_1234: number[];
  shuffle_arange_seed_1234: Record<string, number[]>;
  index_maps: Array<{
    sizes: number[]; documents: [number, number]; num_epochs: number; seq_length: number; seed: number;
    doc_idx: number[]; shuffle_idx: number[];
  }>;
  splits: Array<{ split: string; size: number; bounds: number[] }>;
};

const tmpDirs: string[] = [];
function tmpDir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'neox-data-'));
  tmpDirs.push(d);
  return d;
}
after(() => { for (const d of tmpDirs) fs.rmSync(d, { recursive: true, force: true }); });
const quiet = (): void => {};

/** Write a dataset with one item per document. */
function writeDataset(prefix: string, docs: number[][], dtype: 'u16' | 'i32' = 'u16'): IndexedDataset {
  const b = new IndexedDatasetBuilder(prefix, dtype);
  for (const d of docs) { b.addItem(d); b.endDocument(); }
  b.finalize();
  return new IndexedDataset(prefix);
}

/** Deterministic pseudo-random documents (token values < 500) of the given sizes. */
function docsOfSizes(sizes: number[]): number[][] {
  let x = 12345;
  return sizes.map((n) => Array.from({ length: n }, () => { x = (x * 1103515245 + 12345) % 2147483648; return 2 + (x % 498); }));
}

// ---------------------------------------------------------------------------------------------
// mt19937

test('mt19937_matches_cpp_standard_10000th_output', () => {
  // C++11 [rand.predef]: the 10000th output of a default-constructed std::mt19937 (seed 5489).
  const rs = new RandomState(5489);
  let v = 0;
  for (let i = 0; i < 10000; i++) v = rs.randomU32();
  assert.equal(v, 4123659995);
});

test('mt19937_matches_numpy_test_suite_values', () => {
  // numpy/random/tests/test_randomstate.py, seed 1234567890.
  const seed = 1234567890;
  const rs = new RandomState(seed);
  const want = [0.61879477158567997, 0.59162362775974664, 0.88868358904449662, 0.89165480011560816, 0.4575674820298663, 0.7781880808593471];
  for (const w of want) assert.ok(Math.abs(rs.randomSample() - w) < 1e-15);
  const a = [1, 2, 3, 4, 5, 6, 7, 8, 9, 0];
  new RandomState(seed).shuffle(a);
  assert.deepEqual(a, [0, 1, 9, 6, 2, 4, 5, 8, 7, 3]); // test_shuffle
  const ri = new RandomState(seed);
  assert.deepEqual(Array.from({ length: 6 }, () => ri.randint(-99, 99)), [31, 3, -52, 41, -48, -66]); // test_randint
});

test('mt19937_matches_numpy_golden_streams', () => {
  for (const [seed, want] of Object.entries(golden.raw_u32)) {
    const rs = new RandomState(Number(seed));
    assert.deepEqual(want.map(() => rs.randomU32()), want, `seed ${seed}`);
  }
  const rs = new RandomState(1234);
  for (let i = 0; i < 999; i++) rs.randomU32();
  assert.equal(rs.randomU32(), golden.raw_u32_1234_index_999);
  const r7 = new RandomState(7);
  for (let i = 0; i < 2000; i++) r7.randomU32();
  assert.deepEqual([r7.randomU32(), r7.randomU32(), r7.randomU32()], golden.raw_u32_after_2000_seed_7);
  for (const [key, want] of Object.entries(golden.init_by_array)) {
    const r = new RandomState(JSON.parse(key) as number[]);
    assert.deepEqual(want.map(() => r.randomU32()), want, `init_by_array ${key}`);
  }
  const rsS = new RandomState(1234);
  assert.deepEqual(golden.random_sample_1234.map(() => rsS.randomSample()), golden.random_sample_1234);
  const rsI = new RandomState(1234);
  assert.deepEqual(golden.randint_small_1234.map(() => rsI.randint(-5, 1000)), golden.randint_small_1234);
  const rsL = new RandomState(1234);
  // 64-bit masked rejection path of random_interval
  assert.deepEqual(golden.randint_large_1234.map(() => rsL.randomInterval(1e12 - 1)), golden.randint_large_1234);
});

test('mt19937_shuffle_matches_numpy', () => {
  for (const [n, want] of Object.entries(golden.shuffle_arange_seed_1234)) {
    const a = new Int32Array(Number(n)).map((_, i) => i);
    new RandomState(1234).shuffle(a);
    assert.deepEqual(Array.from(a), want, `n=${n}`);
  }
});

test('mt19937_rejects_bad_seeds', () => {
  assert.throws(() => new RandomState(-1), /between 0 and 2\*\*32 - 1/);
  assert.throws(() => new RandomState(2 ** 32), /between 0 and 2\*\*32 - 1/);
  assert.throws(() => new RandomState(1.5), /seed/);
  assert.throws(() => new RandomState([]), /non-empty/);
});

// ---------------------------------------------------------------------------------------------
// indexed dataset

test('idx_header_is_byte_exact', () => {
  const dir = tmpDir();
  const prefix = path.join(dir, 'd');
  const b = new IndexedDatasetBuilder(prefix + '.bin', 'u16');
  b.addItem([1, 2, 3]); b.endDocument();
  b.addItem([65535]); b.endDocument();
  b.finalize();
  // Hand-built: magic, version 1, dtype 8 (u16), len 2, doc_count 3, sizes, pointers, doc_idx.
  const want = Buffer.concat([
    Buffer.from('MMIDIDX\x00\x00', 'latin1'),
    Buffer.from([1, 0, 0, 0, 0, 0, 0, 0]),
    Buffer.from([8]),
    Buffer.from([2, 0, 0, 0, 0, 0, 0, 0]),
    Buffer.from([3, 0, 0, 0, 0, 0, 0, 0]),
    Buffer.from([3, 0, 0, 0, 1, 0, 0, 0]),
    Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0]),
    Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]),
  ]);
  assert.deepEqual(fs.readFileSync(prefix + '.idx'), want);
  assert.deepEqual(fs.readFileSync(prefix + '.bin'), Buffer.from([1, 0, 2, 0, 3, 0, 255, 255]));
  assert.deepEqual(encodeIndexHeader('u16', 2, 3), want.subarray(0, 34));
  assert.deepEqual(fs.readdirSync(dir).sort(), ['d.bin', 'd.idx']); // no temp files left
});

for (const dtype of ['u16', 'i32'] as const) {
  test(`idx_round_trip_${dtype}`, () => {
    const dir = tmpDir();
    const big = dtype === 'i32' ? 200000 : 60000;
    const docs = [[5, 6, 7, big], [], [0], Array.from({ length: 70000 }, (_, i) => i % 1000)];
    const ds = writeDataset(path.join(dir, 'x'), docs, dtype);
    assert.equal(ds.dtype, dtype);
    assert.equal(ds.length, 4);
    assert.deepEqual(Array.from(ds.sizes), docs.map((d) => d.length));
    assert.deepEqual(Array.from(ds.docIdx), [0, 1, 2, 3, 4]);
    assert.equal(ds.totalTokens, 4 + 0 + 1 + 70000);
    docs.forEach((d, i) => assert.deepEqual(Array.from(ds.get(i)), d));
    assert.deepEqual(Array.from(ds.get(0, 1, 2)), [6, 7]);
    assert.deepEqual(Array.from(ds.get(0, 2)), [7, big]);
    assert.deepEqual(Array.from(ds.get(3, 69998)), [998, 999]);
    assert.throws(() => ds.get(0, 3, 2), /cannot read 2 from offset 3/);
    assert.throws(() => ds.get(4), /out of range/);
    ds.close();
  });
}

test('builder_rejects_tokens_outside_dtype_and_abort_leaves_nothing', () => {
  const dir = tmpDir();
  const b = new IndexedDatasetBuilder(path.join(dir, 'y'), 'u16');
  assert.throws(() => b.addItem([1, 65536]), /does not fit dtype u16/);
  assert.throws(() => b.addItem([-1]), /does not fit dtype u16/);
  b.addItem([1]);
  assert.ok(!fs.existsSync(path.join(dir, 'y.bin')), 'nothing under the real name before finalize');
  b.abort();
  assert.deepEqual(fs.readdirSync(dir), []);
  assert.equal(bestTokenDtype(512), 'u16');
  assert.equal(bestTokenDtype(65499), 'u16');
  assert.equal(bestTokenDtype(65500), 'i32');
  assert.equal(bestTokenDtype(50277), 'u16');
});

test('idx_corruption_gives_clear_errors', () => {
  const dir = tmpDir();
  const prefix = path.join(dir, 'c');
  writeDataset(prefix, [[1, 2, 3], [4, 5]]).close();
  const good = fs.readFileSync(prefix + '.idx');
  const goodBin = fs.readFileSync(prefix + '.bin');
  const withIdx = (buf: Buffer): (() => IndexedDataset) => () => { fs.writeFileSync(prefix + '.idx', buf); return new IndexedDataset(prefix); };
  const patch = (at: number, bytes: number[]): Buffer => { const b = Buffer.from(good); Buffer.from(bytes).copy(b, at); return b; };

  assert.throws(withIdx(patch(0, [0x58])), (e: Error) => /c\.idx/.test(e.message) && /bad magic/.test(e.message));
  assert.throws(withIdx(Buffer.concat([Buffer.from('TNTIDX\x00\x00', 'latin1'), Buffer.alloc(40)])), /legacy "cached".*not supported.*re-run `neox preprocess`/);
  assert.throws(withIdx(patch(9, [2])), /unsupported index version 2/);
  assert.throws(withIdx(patch(17, [9])), /unknown dtype code 9/);
  assert.throws(withIdx(good.subarray(0, good.length - 8)), /size mismatch: header says 2 items and 3 doc_idx entries/);
  assert.throws(withIdx(patch(18, [3])), /size mismatch/);
  assert.throws(withIdx(good.subarray(0, 20)), /truncated header/);
  fs.writeFileSync(prefix + '.idx', good);
  fs.writeFileSync(prefix + '.bin', goodBin.subarray(0, 8));
  assert.throws(() => new IndexedDataset(prefix), /c\.bin: item 1 .* runs past the end of the file/);
  fs.rmSync(prefix + '.bin');
  assert.throws(() => new IndexedDataset(prefix), /dataset not found: .*c\.bin does not exist/);
});

// ---------------------------------------------------------------------------------------------
// tokenizer

test('charlevel_round_trips_unicode', () => {
  const tok = buildTokenizer({ tokenizer_type: 'CharLevelTokenizer' });
  assert.equal(tok.vocabSize, 512);
  assert.equal(tok.eodId, 0);
  assert.equal(tok.padId, 1);
  assert.deepEqual(tok.encode('aé'), [97, 0xc3, 0xa9]); // UTF-8 bytes, as GPT-NeoX
  for (const s of ['hello\nworld\t!', '日本語のテキスト', '🦜🚀 emoji 👩‍👩‍👧', 'mixed: Ωμέγα 中文 \u0000 \uFEFFbom', '']) {
    assert.equal(tok.decode(tok.encode(s)), s);
  }
  assert.equal(tok.decode([104, 105, 300]), 'hi\uFFFD');
  assert.equal(tok.decode(new Int32Array([0xe4, 0xb8, 0xad])), '中');
  assert.ok(buildTokenizer({ tokenizer_type: 'charleveltokenizer' }) instanceof CharLevelTokenizer);
});

test('tokenizer_names_give_clear_errors', () => {
  for (const t of ['HFTokenizer', 'HFGPT2Tokenizer', 'GPT2BPETokenizer', 'SPMTokenizer']) {
    assert.throws(() => buildTokenizer({ tokenizer_type: t, vocab_file: 'v.json', merge_file: 'm.txt' }), new RegExp(`${t} vocab_file not found: v\\.json`));
  }
  assert.throws(() => buildTokenizer({ tokenizer_type: 'TiktokenTokenizer', vocab_file: 'v.json' }), /unknown or unavailable encoding "v.json"/);
  assert.throws(() => buildTokenizer({ tokenizer_type: 'HFTokenzier' }), /unknown tokenizer_type 'HFTokenzier'; did you mean 'HFTokenizer'\?/);
  assert.throws(() => buildTokenizer({ tokenizer_type: 'sentencepiece' }), /valid: GPT2BPETokenizer, SPMTokenizer/);
});

// ---------------------------------------------------------------------------------------------
// preprocess

test('preprocess_txt_and_jsonl_with_append_eod', async () => {
  const dir = tmpDir();
  fs.writeFileSync(path.join(dir, 'a.txt'), 'ab\ncd');
  fs.writeFileSync(path.join(dir, 'b.jsonl'), [
    '{"text": "hi", "meta": {"x": 1}}',
    '',
    '{"text": ""}',
    '"bare string"',
    '{"text": ["p1", "p2"]}',
    '{"text": "é"}\r',
  ].join('\n') + '\n');
  const lines: string[] = [];
  const stats = await preprocess({
    input: `${dir}/a.txt,${dir}/b.jsonl`, tokenizerType: 'CharLevelTokenizer', appendEod: true,
    outputPrefix: path.join(dir, 'out', 'corpus'), logInterval: 2, log: (l) => lines.push(l),
  });
  const enc = (s: string): number[] => [...Buffer.from(s, 'utf8')];
  const want = [[...enc('ab\ncd'), 0], [...enc('hi'), 0], [...enc('bare string'), 0], [...enc('p1\n\np2'), 0], [...enc('é'), 0]];
  assert.equal(stats.documents, 5);
  assert.equal(stats.skippedEmpty, 1);
  assert.equal(stats.tokens, want.reduce((a, d) => a + d.length, 0));
  assert.equal(stats.bytes, fs.statSync(path.join(dir, 'a.txt')).size + fs.statSync(path.join(dir, 'b.jsonl')).size);
  assert.equal(stats.outputs.length, 1);
  const out = stats.outputs[0]!;
  assert.equal(out.binPath, path.join(dir, 'out', 'corpus_text_document.bin'));
  const ds = new IndexedDataset(out.prefix);
  assert.equal(ds.dtype, 'u16');
  assert.deepEqual(Array.from({ length: ds.length }, (_, i) => Array.from(ds.get(i))), want);
  assert.deepEqual(Array.from(ds.docIdx), [0, 1, 2, 3, 4, 5]);
  assert.ok(lines.some((l) => /^Processed 2 documents \([\d.]+ docs\/s, [\d.]+ MB\/s\)\.$/.test(l)), lines.join('\n'));
  ds.close();
});

test('preprocess_multiple_keys_and_no_eod', async () => {
  const dir = tmpDir();
  fs.writeFileSync(path.join(dir, 'k.jsonl'), '{"q": "x", "a": "yz"}\n{"q": "", "a": "w"}\n');
  const stats = await preprocess({
    input: [path.join(dir, '*.jsonl')], jsonlKeys: ['q', 'a'], tokenizerType: 'CharLevelTokenizer',
    outputPrefix: path.join(dir, 'o'), log: quiet,
  });
  assert.deepEqual(stats.outputs.map((o) => o.key), ['q', 'a']);
  const q = new IndexedDataset(path.join(dir, 'o_q_document'));
  const a = new IndexedDataset(path.join(dir, 'o_a_document'));
  assert.deepEqual([Array.from(q.get(0)), Array.from(q.get(1))], [[120], []]);
  assert.deepEqual([Array.from(a.get(0)), Array.from(a.get(1))], [[121, 122], [119]]);
});

test('preprocess_malformed_line_names_file_and_line', async () => {
  const dir = tmpDir();
  const file = path.join(dir, 'bad.jsonl');
  fs.writeFileSync(file, '{"text": "ok"}\n{"text": "broken\n{"other": 1}\n{"text": "fine"}\n');
  const prefix = path.join(dir, 'o');
  await assert.rejects(
    preprocess({ input: file, tokenizerType: 'CharLevelTokenizer', outputPrefix: prefix, log: quiet }),
    (e: Error) => e.message.startsWith(`${file}:2: malformed JSON`) && /--skip-malformed/.test(e.message),
  );
  assert.deepEqual(fs.readdirSync(dir), ['bad.jsonl'], 'a failed run leaves no output');
  const warnings: string[] = [];
  const stats = await preprocess({
    input: file, tokenizerType: 'CharLevelTokenizer', outputPrefix: prefix, skipMalformed: true, log: (l) => warnings.push(l),
  });
  assert.equal(stats.documents, 2);
  assert.equal(stats.skippedMalformed, 2);
  assert.ok(warnings.some((w) => w.includes(`${file}:2: malformed JSON`)));
  assert.ok(warnings.some((w) => w.includes(`${file}:3: missing key 'text'`)));
});

test('preprocess_inputs_globs_and_unsupported_types', () => {
  const dir = tmpDir();
  fs.mkdirSync(path.join(dir, 'a', 'b'), { recursive: true });
  for (const f of ['x.jsonl', 'a/y.jsonl', 'a/b/z.jsonl', 'a/b/n.txt', 'a/skip.md', 'a/.hidden.jsonl']) fs.writeFileSync(path.join(dir, f), '');
  assert.deepEqual(globFiles(`${dir}/**/*.jsonl`), ['a/b/z.jsonl', 'a/y.jsonl', 'x.jsonl'].map((f) => path.join(dir, f)));
  assert.deepEqual(globFiles(`${dir}/a/*`), ['a/skip.md', 'a/y.jsonl'].map((f) => path.join(dir, f)));
  assert.deepEqual(globFiles(`${dir}/?.jsonl`), [path.join(dir, 'x.jsonl')]);
  assert.deepEqual(expandInputs(`${dir}/a, ${dir}/x.jsonl`), [path.join(dir, 'a', 'y.jsonl'), path.join(dir, 'x.jsonl')]);
  fs.writeFileSync(path.join(dir, 'c.jsonl.zst'), '');
  fs.writeFileSync(path.join(dir, 'd.parquet'), '');
  assert.deepEqual(expandInputs(path.join(dir, 'c.jsonl.zst')), [path.join(dir, 'c.jsonl.zst')]);
  // Any other named file is one plain-text document (the quickstart reads .md and .ts sources).
  assert.deepEqual(expandInputs(path.join(dir, 'a', 'skip.md')), [path.join(dir, 'a', 'skip.md')]);
  assert.throws(() => expandInputs(path.join(dir, 'nope.jsonl')), /no such file/);
  assert.throws(() => expandInputs(`${dir}/*.csv`), /no files match/);
});

test('preprocess_args_parse_like_gpt_neox', () => {
  const o = parsePreprocessArgs([
    '--input', 'a.jsonl,b.jsonl', '--jsonl-keys', 'text', 'code', '--tokenizer-type=CharLevelTokenizer',
    '--append-eod', '--output-prefix', 'out/x', '--workers', '4', '--log-interval', '10', '--num-docs', '7', '--skip-malformed',
  ]);
  assert.deepEqual(o, {
    input: 'a.jsonl,b.jsonl', jsonlKeys: ['text', 'code'], tokenizerType: 'CharLevelTokenizer', vocabFile: null,
    mergeFile: null, appendEod: true, outputPrefix: 'out/x', workers: 4, logInterval: 10, numDocs: 7, skipMalformed: true,
  });
  const d = parsePreprocessArgs(['--input', 'a', '--tokenizer-type', 'T', '--output-prefix', 'p']);
  assert.deepEqual([d.jsonlKeys, d.appendEod, d.workers, d.logInterval], [['text'], false, 1, 100]);
  assert.throws(() => parsePreprocessArgs(['--input', 'a', '--tokenizer-type', 'T']), /missing required option --output-prefix/);
  assert.throws(() => parsePreprocessArgs(['--inptu', 'a']), /unknown option --inptu; did you mean --input\?/);
  assert.throws(() => parsePreprocessArgs(['--input', 'a', '--tokenizer-type', 'T', '--output-prefix', 'p', '--workers', 'x']), /not an integer/);
  assert.throws(() => parsePreprocessArgs(['--input', 'a', '--tokenizer-type', 'T', '--output-prefix', 'p', '--ftfy']), /--ftfy is not supported/);
});

// ---------------------------------------------------------------------------------------------
// splits and index maps

test('split_boundaries_match_gpt_neox_formula', () => {
  for (const c of golden.splits) assert.deepEqual(splitDocuments(c.size, c.split), c.bounds, `${c.split} of ${c.size}`);
  assert.deepEqual(splitDocuments(1000, '969, 30, 1'), [0, 969, 999, 1000]);
  assert.throws(() => splitDocuments(10, '0,0,0'), /sum to more than 0/);
  assert.throws(() => splitDocuments(10, '1,x,1'), /'x' is not a number/);
});

test('num_epochs_and_tokens_follow_gpt_neox', () => {
  assert.equal(numTokens(new Int32Array([1, 3]), new Int32Array([10, 20, 30, 40])), 60);
  assert.equal(numEpochs(100, 10, 9), 1);   // (100 - 1) // 10 = 9
  assert.equal(numEpochs(100, 10, 10), 2);  // needs the 101st token
  assert.equal(numEpochs(5, 8, 3), 5);      // (25 - 1) // 8 = 3
});

test('index_maps_match_numpy_golden', () => {
  for (const c of golden.index_maps) {
    const documents = new Int32Array(c.documents[1] - c.documents[0]).map((_, i) => c.documents[0] + i);
    const rng = new RandomState(c.seed);
    const docIdx = buildDocIdx(documents, c.num_epochs, rng);
    assert.deepEqual(Array.from(docIdx), c.doc_idx);
    const tokens = numTokens(documents, c.sizes);
    const sampleIdx = buildSampleIdx(c.sizes, docIdx, c.seq_length, c.num_epochs, tokens);
    assert.ok(sampleIdx instanceof Int32Array);
    assert.equal(sampleIdx.length / 2 - 1, c.shuffle_idx.length);
    const shuffleIdx = buildShuffleIdx(sampleIdx.length / 2 - 1, rng);
    assert.ok(shuffleIdx instanceof Uint32Array);
    assert.deepEqual(Array.from(shuffleIdx), c.shuffle_idx);
  }
});

test('gpt2_dataset_index_maps_cached_under_gpt_neox_names', () => {
  const c = golden.index_maps[1]!;
  const dir = tmpDir();
  const prefix = path.join(dir, 'g_text_document');
  const ds = writeDataset(prefix, docsOfSizes(c.sizes));
  const documents = new Int32Array(c.documents[1] - c.documents[0]).map((_, i) => c.documents[0] + i);
  const tokens = numTokens(documents, c.sizes);
  const numSamples = Math.floor((c.num_epochs * tokens - 1) / c.seq_length) - 3;
  const g = new GPT2Dataset('train', ds, documents, numSamples, c.seq_length, c.seed);
  assert.equal(g.numEpochs, c.num_epochs);
  assert.deepEqual(Array.from(g.docIdx), c.doc_idx);
  assert.deepEqual(Array.from(g.shuffleIdx), c.shuffle_idx);
  assert.equal(g.length, c.shuffle_idx.length - 1); // GPT-NeoX's __len__ drops the last sample
  const paths = indexMapPaths(prefix, 'train', numSamples, c.seq_length, c.seed);
  assert.equal(path.basename(paths.docIdx), `g_text_document_train_indexmap_${numSamples}ns_${c.seq_length}sl_${c.seed}s_packedpi_ac_doc_idx.npy`);
  assert.deepEqual(g.indexMapPaths, paths);
  for (const p of Object.values(paths)) assert.ok(fs.existsSync(p), p);
  assert.equal(readNpy(paths.docIdx).descr, '<i4');
  assert.deepEqual(readNpy(paths.sampleIdx).shape, [c.shuffle_idx.length + 1, 2]);
  assert.equal(readNpy(paths.shuffleIdx).descr, '<u4');

  // Second build loads the cache and serves identical samples.
  const again = new GPT2Dataset('train', ds, documents, numSamples, c.seq_length, c.seed);
  for (const i of [0, 1, 17, again.length - 1]) assert.deepEqual(again.get(i), g.get(i));
  // A cache that does not fit the dataset is refused, naming the file.
  writeNpy(paths.shuffleIdx, [0, 1, 2], [3], '<u4');
  assert.throws(() => new GPT2Dataset('train', ds, documents, numSamples, c.seq_length, c.seed), (e: Error) => e.message.includes(paths.shuffleIdx) && /stale or corrupt/.test(e.message));
});

test('sample_idx_invariants_cover_the_packed_stream', () => {
  const sizes = [5, 1, 9, 3, 17, 2, 8, 1, 1, 12];
  const dir = tmpDir();
  const docs = docsOfSizes(sizes);
  const ds = writeDataset(path.join(dir, 's'), docs);
  const documents = new Int32Array(sizes.length).map((_, i) => i);
  for (const L of [2, 4, 7, 16, 40]) {
    const g = new GPT2Dataset('train', ds, documents, 30, L, 7, { cache: false });
    const stream = Array.from(g.docIdx).flatMap((d) => docs[d]!); // packed token stream, doc_idx order
    const S = g.sampleIdx.length / 2 - 1;
    assert.ok(S >= 30);
    assert.equal(S, Math.floor((stream.length - 1) / L));
    // Sample k (before shuffling) is stream[k·L .. k·L + L]: L + 1 tokens, sharing one with k + 1.
    const unshuffled = (k: number): number[] => {
      const out: number[] = [];
      let [d, off] = [g.sampleIdx[2 * k]!, g.sampleIdx[2 * k + 1]!];
      while (out.length < L + 1) {
        const doc = docs[g.docIdx[d]!]!;
        out.push(...doc.slice(off, off + L + 1 - out.length));
        d++; off = 0;
      }
      return out;
    };
    for (let k = 0; k < S; k++) {
      assert.deepEqual(unshuffled(k), stream.slice(k * L, k * L + L + 1), `L=${L} sample ${k}`);
    }
    assert.ok(S * L + 1 <= stream.length); // the last sample stays inside the stream
    // get(i) serves sample shuffle_idx[i]
    const seen = new Set<number>();
    for (let i = 0; i < g.length; i++) {
      const k = g.shuffleIdx[i]!;
      seen.add(k);
      const s = g.get(i);
      assert.equal(s.length, L + 1);
      assert.deepEqual(Array.from(s), stream.slice(k * L, k * L + L + 1));
    }
    assert.equal(seen.size, g.length);
  }
});

test('npy_writer_matches_numpy_save_bytes_and_reader_reads_numpy', () => {
  const dir = tmpDir();
  const cases: Array<[string, number[], number[], '<i4' | '<i8' | '<u4']> = [
    ['npy_i4_1d.npy', [3, -1, 7, 2147483647], [4], '<i4'],
    ['npy_i8_2d.npy', [0, 0, 1, 5, 2, 2 ** 40], [3, 2], '<i8'],
    ['npy_u4_1d.npy', [4294967295, 0, 12], [3], '<u4'],
  ];
  for (const [name, data, shape, descr] of cases) {
    const ours = path.join(dir, name);
    writeNpy(ours, data, shape, descr);
    assert.deepEqual(fs.readFileSync(ours), fs.readFileSync(path.join(FIXTURES, name)), name);
    const r = readNpy(path.join(FIXTURES, name));
    assert.equal(r.descr, descr);
    assert.deepEqual(r.shape, shape);
    assert.deepEqual(Array.from(r.data), data);
  }
});

// ---------------------------------------------------------------------------------------------
// loader

test('num_samples_per_split_like_gpt_neox', () => {
  assert.deepEqual(
    numSamplesPerSplit({ seq_length: 8, train_iters: 320, eval_interval: 100, eval_iters: 10, train_batch_size: 4 }),
    [1280, (3 + 1) * 10 * 4, 40],
  );
});

function buildSmall(dir: string, split = '8,1,1'): ReturnType<typeof buildDatasets> {
  const sizes = Array.from({ length: 40 }, (_, i) => 3 + ((i * 7) % 11));
  writeDataset(path.join(dir, 'corpus_text_document'), docsOfSizes(sizes));
  return buildDatasets({
    data_path: path.join(dir, 'corpus_text_document'), split, seq_length: 8, seed: 1234,
    train_iters: 20, eval_interval: 10, eval_iters: 2, train_batch_size: 4,
  });
}

test('build_datasets_splits_documents', () => {
  const dir = tmpDir();
  const d = buildSmall(dir);
  assert.deepEqual(d.splits, [0, 32, 36, 40]);
  assert.deepEqual(d.numSamples, [80, 24, 8]);
  assert.ok(d.train && d.valid && d.test);
  assert.ok(d.train.length >= 80 && d.valid.length >= 24 && d.test.length >= 8);
  const names = fs.readdirSync(dir).filter((f) => f.endsWith('.npy')).sort();
  assert.equal(names.length, 9);
  assert.ok(names.includes('corpus_text_document_valid_indexmap_24ns_8sl_1234s_packedpi_ac_shuffle_idx.npy'));
  assert.equal(buildSmall(tmpDir(), '1,0,0').valid, null);
  assert.throws(() => buildDatasets({ train_data_paths: ['a'], seq_length: 8, train_iters: 1, train_batch_size: 1 }), /dataset not found/);
});

test('batch_iterator_shifts_labels_and_is_deterministic_from_k', () => {
  const dir = tmpDir();
  const train = buildSmall(dir).train!;
  const it = new BatchIterator(train, 4);
  const b0 = it.batch(0);
  assert.equal(b0.rows, 4);
  assert.equal(b0.tokens.length, 4 * 8);
  for (let r = 0; r < 4; r++) {
    const text = train.get(r);
    assert.deepEqual(Array.from(b0.tokens.subarray(r * 8, r * 8 + 8)), Array.from(text.subarray(0, 8)));
    assert.deepEqual(Array.from(b0.labels.subarray(r * 8, r * 8 + 8)), Array.from(text.subarray(1)));
  }
  assert.ok(b0.lossMask.every((m) => m === 1));
  // Deterministic from k; resuming at sample k·B gives the same batches.
  assert.deepEqual(new BatchIterator(train, 4).batch(5), it.batch(5));
  assert.deepEqual(new BatchIterator(train, 4, 5 * 4).batch(0), it.batch(5));
  const seq = new BatchIterator(train, 4);
  seq.nextBatch(); seq.nextBatch();
  assert.deepEqual(seq.nextBatch(), it.batch(2));
  // Wraps over whole batches like cycle() over a drop_last loader.
  const nb = Math.floor(train.length / 4);
  assert.deepEqual(it.batch(nb + 1), it.batch(1));
});

test('batch_iterator_data_parallel_slices_rows_and_masks_eod', () => {
  const dir = tmpDir();
  const train = buildSmall(dir).train!;
  const whole = new BatchIterator(train, 4).batch(3);
  const parts = [0, 1].map((rank) => new BatchIterator(train, 4, 0, { rank, worldSize: 2 }).batch(3));
  assert.deepEqual(parts.map((p) => p.rows), [2, 2]);
  assert.deepEqual([...parts[0]!.samples, ...parts[1]!.samples], whole.samples);
  assert.deepEqual(Array.from(parts[1]!.tokens), Array.from(whole.tokens.subarray(16)));
  assert.throws(() => new BatchIterator(train, 3, 0, { worldSize: 2 }), /multiple of the data-parallel world size/);

  // eod_mask_loss: GPT-NeoX zeroes the loss where the input token is EOD.
  const fake: SampleDataset = { name: 'fake', length: 2, seqLength: 4, get: () => new Int32Array([5, 0, 6, 7, 0]) };
  const b = new BatchIterator(fake, 1, 0, { eodMaskLoss: true, eodId: 0 }).batch(0);
  assert.deepEqual(Array.from(b.tokens), [5, 0, 6, 7]);
  assert.deepEqual(Array.from(b.labels), [0, 6, 7, 0]);
  assert.deepEqual(Array.from(b.lossMask), [1, 0, 1, 1]);
  assert.deepEqual(Array.from(new BatchIterator(fake, 1).batch(0).lossMask), [1, 1, 1, 1]);
});
