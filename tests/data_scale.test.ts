// Tests for preprocessing at scale and the data tools: compressed inputs (zstd, gzip, parquet),
// worker threads, --mask-before-token label files, progress lines, `neox data inspect|count|merge`,
// and `neox prepare-data` (file:// URLs, archives, checksums, HTTP resume on a loopback server).
// Fixtures: tests/fixtures/data/sample.jsonl(.zst) (made with the zstd CLI: two frames, one with a
// checksum), parquet_*.parquet (tests/fixtures/data/make_parquet_fixtures.py, pyarrow).

import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import * as zlib from 'node:zlib';

import { IndexedDataset, IndexedDatasetBuilder } from '../src/data/indexed_dataset.js';
import { countTokens, formatSummary, inspectDataset } from '../src/data/inspect.js';
import { mergeDatasets } from '../src/data/merge.js';
import {
  CORPORA, downloadFile, extractArchive, NoNetworkError, parsePrepareArgs, prepareData, sha256File,
} from '../src/data/prepare_data.js';
import { expandInputs, inputFormat, maskBeforeToken, parseMaskTokens, parsePreprocessArgs, preprocess } from '../src/data/preprocess.js';
import { CharLevelTokenizer } from '../src/data/tokenizer.js';

const FIXTURES = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../tests/fixtures/data');
const TOKENIZERS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../tests/fixtures/tokenizers');

const tmpDirs: string[] = [];
function tmpDir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'neox-scale-'));
  tmpDirs.push(d);
  return d;
}
after(() => { for (const d of tmpDirs) fs.rmSync(d, { recursive: true, force: true }); });
const quiet = (): void => {};
const enc = (s: string): number[] => [...Buffer.from(s, 'utf8')];

function items(prefix: string): number[][] {
  const ds = new IndexedDataset(prefix);
  const out = Array.from({ length: ds.length }, (_, i) => Array.from(ds.get(i)));
  ds.close();
  return out;
}

async function charLevel(input: string | string[], outputPrefix: string, extra: Partial<Parameters<typeof preprocess>[0]> = {}) {
  return preprocess({ input, tokenizerType: 'CharLevelTokenizer', appendEod: true, outputPrefix, log: quiet, ...extra });
}

/** A zstd frame of raw (stored) blocks: lets a test write any amount of zstd data without a compressor. */
function zstdRawFrame(data: Uint8Array): Buffer {
  const parts: Buffer[] = [Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x38])]; // magic, no FCS/checksum, window 128 KiB
  const max = 1 << 17;
  for (let at = 0; at < data.length || at === 0; at += max) {
    const block = data.subarray(at, Math.min(data.length, at + max));
    const last = at + max >= data.length ? 1 : 0;
    const h = (block.length << 3) | last; // block type 0 = raw
    parts.push(Buffer.from([h & 0xff, (h >> 8) & 0xff, (h >> 16) & 0xff]), Buffer.from(block));
    if (data.length === 0) break;
  }
  return Buffer.concat(parts);
}

// ---------------------------------------------------------------------------------------------
// Input formats

test('input_formats_follow_lm_dataformat_names', () => {
  assert.deepEqual(inputFormat('a.jsonl.zst'), { kind: 'jsonl', compression: 'zst' });
  assert.deepEqual(inputFormat('c4-train.00000-of-01024.json.gz'), { kind: 'jsonl', compression: 'gz' });
  assert.deepEqual(inputFormat('x.jsonl.gz'), { kind: 'jsonl', compression: 'gz' });
  assert.deepEqual(inputFormat('lines.gz'), { kind: 'lines', compression: 'gz' });
  assert.deepEqual(inputFormat('book.txt.zst'), { kind: 'text', compression: 'zst' });
  assert.deepEqual(inputFormat('d.parquet'), { kind: 'parquet', compression: 'none' });
  assert.deepEqual(inputFormat('enwik8'), { kind: 'text', compression: 'none' });
  assert.throws(() => inputFormat('enwik8.zip'), /an archive; extract it first .*prepare-data/);
  assert.throws(() => inputFormat('books3.tar.gz'), /an archive/);
  assert.throws(() => inputFormat('openwebtext2.jsonl.zst.tar'), /an archive/);
  assert.throws(() => inputFormat('a.jsonl.xz'), /compression is not supported/);
});

test('zstd_input_streams_frames_and_matches_plain_jsonl', async () => {
  const dir = tmpDir();
  const a = await charLevel(path.join(FIXTURES, 'sample.jsonl.zst'), path.join(dir, 'z'));
  const b = await charLevel(path.join(FIXTURES, 'sample.jsonl'), path.join(dir, 'p'));
  const want = [[...enc('zstd one'), 0], [...enc('zweite Zeile é'), 0], [...enc('para a\n\npara b'), 0], [...enc('last line without newline'), 0]];
  assert.deepEqual(items(path.join(dir, 'z_text_document')), want);
  assert.deepEqual(items(path.join(dir, 'p_text_document')), want);
  assert.equal(a.bytes, b.bytes); // uncompressed bytes
  assert.equal(a.rawBytes, fs.statSync(path.join(FIXTURES, 'sample.jsonl.zst')).size);

  // Several MB across many frames and 4 MiB read chunks; a line spans frame boundaries.
  const lines: string[] = [];
  for (let i = 0; i < 60000; i++) lines.push(JSON.stringify({ text: `document ${i} ${'x'.repeat(i % 97)} é` }));
  const text = Buffer.from(lines.join('\n') + '\n');
  const frames: Buffer[] = [];
  for (let at = 0; at < text.length; at += 1_000_003) frames.push(zstdRawFrame(text.subarray(at, at + 1_000_003)));
  fs.writeFileSync(path.join(dir, 'big.jsonl.zst'), Buffer.concat(frames));
  fs.writeFileSync(path.join(dir, 'big.jsonl'), text);
  const z = await charLevel(path.join(dir, 'big.jsonl.zst'), path.join(dir, 'bz'));
  await charLevel(path.join(dir, 'big.jsonl'), path.join(dir, 'bp'));
  assert.equal(z.documents, 60000);
  assert.ok(fs.readFileSync(path.join(dir, 'bz_text_document.bin')).equals(fs.readFileSync(path.join(dir, 'bp_text_document.bin'))));
  assert.ok(fs.readFileSync(path.join(dir, 'bz_text_document.idx')).equals(fs.readFileSync(path.join(dir, 'bp_text_document.idx'))));

  // Compressed blocks at scale, where the zstd command line tool is installed.
  if (spawnSync('zstd', ['--version']).status === 0) {
    assert.equal(spawnSync('zstd', ['-q', '-3', path.join(dir, 'big.jsonl'), '-o', path.join(dir, 'cli.jsonl.zst')]).status, 0);
    await charLevel(path.join(dir, 'cli.jsonl.zst'), path.join(dir, 'bc'));
    assert.ok(fs.readFileSync(path.join(dir, 'bc_text_document.bin')).equals(fs.readFileSync(path.join(dir, 'bp_text_document.bin'))));
  }

  // Truncated data is an error naming the file, and leaves no output.
  fs.writeFileSync(path.join(dir, 'cut.jsonl.zst'), frames[0]!.subarray(0, 5000));
  await assert.rejects(charLevel(path.join(dir, 'cut.jsonl.zst'), path.join(dir, 'cut')), /cut\.jsonl\.zst: corrupt or truncated zstd data/);
  assert.ok(!fs.existsSync(path.join(dir, 'cut_text_document.bin')));
});

test('gzip_inputs_json_lines_and_plain_lines', async () => {
  const dir = tmpDir();
  // Two gzip members back to back, as `cat a.gz b.gz` makes.
  const member = (s: string): Buffer => zlib.gzipSync(Buffer.from(s));
  fs.writeFileSync(path.join(dir, 'c4.json.gz'), Buffer.concat([member('{"text": "one"}\n{"text": "two"}\n'), member('{"text": "three"}\n')]));
  fs.writeFileSync(path.join(dir, 'lines.gz'), member('alpha\n\nbeta\n'));
  const s = await charLevel(`${dir}/c4.json.gz,${dir}/lines.gz`, path.join(dir, 'g'), { appendEod: false });
  assert.equal(s.documents, 5);
  assert.deepEqual(items(path.join(dir, 'g_text_document')), ['one', 'two', 'three', 'alpha', 'beta'].map(enc));
  fs.writeFileSync(path.join(dir, 'bad.json.gz'), member('{"text": "x"}\n').subarray(0, 12));
  await assert.rejects(charLevel(path.join(dir, 'bad.json.gz'), path.join(dir, 'b')), /bad\.json\.gz: corrupt or truncated gzip data/);
  // A directory picks up compressed files too.
  assert.deepEqual(expandInputs(dir), ['bad.json.gz', 'c4.json.gz', 'lines.gz'].map((f) => path.join(dir, f)));
});

// ---------------------------------------------------------------------------------------------
// Parquet

const PARQUET = ['snappy', 'gzip', 'zstd', 'brotli', 'none'].map((c) => path.join(FIXTURES, `parquet_${c}.parquet`));
const haveParquet = PARQUET.every((f) => fs.existsSync(f));

test('parquet_reads_text_columns_with_every_supported_codec', { skip: haveParquet ? false : 'parquet fixtures not generated' }, async () => {
  const expected = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'parquet_expected.json'), 'utf8')) as { text: string[]; title: string[] };
  for (const file of PARQUET) {
    const dir = tmpDir();
    const s = await preprocess({
      input: file, jsonlKeys: ['text', 'title'], tokenizerType: 'CharLevelTokenizer', outputPrefix: path.join(dir, 'q'), log: quiet,
    });
    assert.equal(s.documents, expected.text.length, file);
    assert.deepEqual(items(path.join(dir, 'q_text_document')), expected.text.map(enc), file);
    assert.deepEqual(items(path.join(dir, 'q_title_document')), expected.title.map(enc), file);
  }
  const dir = tmpDir();
  await assert.rejects(preprocess({ input: PARQUET[0]!, jsonlKeys: ['body'], tokenizerType: 'CharLevelTokenizer', outputPrefix: path.join(dir, 'x'), log: quiet }),
    /no column 'body' \(columns: .*text.*\); choose them with --jsonl-keys/);
  const lz4 = path.join(FIXTURES, 'parquet_lz4.parquet');
  if (fs.existsSync(lz4)) {
    await assert.rejects(preprocess({ input: lz4, tokenizerType: 'CharLevelTokenizer', outputPrefix: path.join(dir, 'l'), log: quiet }),
      /parquet compression LZ4(_RAW)? is not supported/);
  }
});

// A small parquet writer (thrift compact metadata, PLAIN pages, one page per column chunk), so the
// reader is tested on every codec without pyarrow; the pyarrow fixtures above cover dictionary pages.
class Thrift {
  bytes: number[] = [];
  private last: number[] = [0];
  private varint(v: bigint): void {
    do { let b = Number(v & 0x7fn); v >>= 7n; if (v) b |= 0x80; this.bytes.push(b); } while (v);
  }
  private zigzag(v: number): void { const b = BigInt(v); this.varint((b << 1n) ^ (b >> 63n)); }
  private field(id: number, type: number): void {
    const d = id - this.last[this.last.length - 1]!;
    this.bytes.push((d << 4) | type);
    this.last[this.last.length - 1] = id;
  }
  i32(id: number, v: number): this { this.field(id, 5); this.zigzag(v); return this; }
  i64(id: number, v: number): this { this.field(id, 6); this.zigzag(v); return this; }
  str(id: number, v: string): this { this.field(id, 8); const b = Buffer.from(v); this.varint(BigInt(b.length)); this.bytes.push(...b); return this; }
  struct(id: number, body: (t: Thrift) => void): this { this.field(id, 12); this.last.push(0); body(this); this.last.pop(); this.bytes.push(0); return this; }
  list(id: number, elem: 5 | 8 | 12, items: Array<number | string | ((t: Thrift) => void)>): this {
    this.field(id, 9);
    this.bytes.push(items.length < 15 ? (items.length << 4) | elem : 0xf0 | elem);
    if (items.length >= 15) this.varint(BigInt(items.length));
    for (const it of items) {
      if (elem === 5) this.zigzag(it as number);
      else if (elem === 8) { const b = Buffer.from(it as string); this.varint(BigInt(b.length)); this.bytes.push(...b); }
      else { this.last.push(0); (it as (t: Thrift) => void)(this); this.last.pop(); this.bytes.push(0); }
    }
    return this;
  }
  end(): Buffer { this.bytes.push(0); return Buffer.from(this.bytes); }
}

const CODECS: Record<string, [number, (b: Buffer) => Buffer]> = {
  none: [0, (b) => b],
  snappy: [1, (b) => { // literal-only snappy: varint length, then literals of up to 60 bytes
    const out: number[] = [];
    let n = b.length;
    do { let x = n & 0x7f; n >>>= 7; if (n) x |= 0x80; out.push(x); } while (n);
    for (let i = 0; i < b.length; i += 60) { const lit = b.subarray(i, i + 60); out.push((lit.length - 1) << 2, ...lit); }
    return Buffer.from(out);
  }],
  gzip: [2, (b) => zlib.gzipSync(b)],
  brotli: [4, (b) => zlib.brotliCompressSync(b)],
  lz4: [5, (b) => b],
  zstd: [6, (b) => zstdRawFrame(b)],
};

/** Required UTF-8 columns, `groupRows` rows per row group, pages compressed with `codec`. */
function writeParquet(file: string, columns: Record<string, string[]>, groupRows: number, codec: string): void {
  const [codecId, compress] = CODECS[codec]!;
  const names = Object.keys(columns);
  const rows = columns[names[0]!]!.length;
  const parts: Buffer[] = [Buffer.from('PAR1')];
  let offset = 4;
  const groups: Array<(t: Thrift) => void> = [];
  for (let start = 0; start < rows; start += groupRows) {
    const n = Math.min(groupRows, rows - start);
    const chunks: Array<(t: Thrift) => void> = [];
    let groupBytes = 0;
    for (const name of names) {
      const plain = Buffer.concat(columns[name]!.slice(start, start + n).flatMap((v) => {
        const b = Buffer.from(v);
        const len = Buffer.alloc(4);
        len.writeUInt32LE(b.length);
        return [len, b];
      }));
      const packed = compress(plain);
      const header = new Thrift().i32(1, 0).i32(2, plain.length).i32(3, packed.length)
        .struct(5, (t) => { t.i32(1, n).i32(2, 0).i32(3, 3).i32(4, 3); }).end();
      const pageOffset = offset;
      parts.push(header, packed);
      offset += header.length + packed.length;
      groupBytes += header.length + plain.length;
      const total = header.length + packed.length;
      chunks.push((t) => {
        t.i64(2, pageOffset).struct(3, (m) => {
          m.i32(1, 6).list(2, 5, [0]).list(3, 8, [name]).i32(4, codecId).i64(5, n)
            .i64(6, header.length + plain.length).i64(7, total).i64(9, pageOffset);
        });
      });
    }
    groups.push((t) => { t.list(1, 12, chunks).i64(2, groupBytes).i64(3, n); });
  }
  const schema: Array<(t: Thrift) => void> = [
    (t) => { t.str(4, 'schema').i32(5, names.length); },
    ...names.map((name) => (t: Thrift) => { t.i32(1, 6).i32(3, 0).str(4, name).i32(6, 0); }),
  ];
  const meta = new Thrift().i32(1, 1).list(2, 12, schema).i64(3, rows).list(4, 12, groups).end();
  const len = Buffer.alloc(4);
  len.writeUInt32LE(meta.length);
  parts.push(meta, len, Buffer.from('PAR1'));
  fs.writeFileSync(file, Buffer.concat(parts));
}

test('parquet_pages_of_every_codec_from_a_minimal_writer', async () => {
  const dir = tmpDir();
  const text = ['alpha', 'Grüße 🦜', 'x'.repeat(500), '', 'last'];
  const id = ['1', '2', '3', '4', '5'];
  for (const codec of ['none', 'snappy', 'gzip', 'brotli', 'zstd']) {
    const file = path.join(dir, `${codec}.parquet`);
    writeParquet(file, { id, text }, 2, codec);
    const s = await charLevel(file, path.join(dir, codec), { appendEod: false });
    assert.equal(s.documents, 4, codec); // the empty row is skipped, as an empty JSON line's text
    assert.deepEqual(items(path.join(dir, `${codec}_text_document`)), text.filter((t) => t).map(enc), codec);
    const both = await preprocess({ input: file, jsonlKeys: ['id', 'text'], tokenizerType: 'CharLevelTokenizer', outputPrefix: path.join(dir, `${codec}2`), log: quiet });
    assert.equal(both.documents, 5, codec);
  }
  writeParquet(path.join(dir, 'lz4.parquet'), { text }, 2, 'lz4');
  await assert.rejects(charLevel(path.join(dir, 'lz4.parquet'), path.join(dir, 'l')), /lz4\.parquet: parquet compression LZ4 is not supported/);
  await assert.rejects(preprocess({ input: path.join(dir, 'none.parquet'), jsonlKeys: ['body'], tokenizerType: 'CharLevelTokenizer', outputPrefix: path.join(dir, 'x'), log: quiet }),
    /no column 'body' \(columns: id, text\); choose them with --jsonl-keys/);
});

test('parquet_garbage_is_a_clear_error', async () => {
  const dir = tmpDir();
  fs.writeFileSync(path.join(dir, 'x.parquet'), 'not parquet at all');
  await assert.rejects(charLevel(path.join(dir, 'x.parquet'), path.join(dir, 'x')), /x\.parquet: not a readable parquet file/);
});

// ---------------------------------------------------------------------------------------------
// Workers

test('workers_write_the_same_bytes_in_input_order', async () => {
  const dir = tmpDir();
  const docs = Array.from({ length: 3000 }, (_, i) => JSON.stringify({ text: `Doc ${i}: ${'héllo wörld, '.repeat(i % 13)}🦜 ${i * 7919}` }));
  fs.writeFileSync(path.join(dir, 'in.jsonl'), docs.join('\n') + '\n');
  const tok = {
    tokenizerType: 'GPT2BPETokenizer', vocabFile: path.join(TOKENIZERS, 'bytelevel', 'vocab.json'),
    mergeFile: path.join(TOKENIZERS, 'bytelevel', 'merges.txt'), appendEod: true, log: quiet,
  };
  const one = await preprocess({ ...tok, input: path.join(dir, 'in.jsonl'), outputPrefix: path.join(dir, 'w1'), workers: 1 });
  const three = await preprocess({ ...tok, input: path.join(dir, 'in.jsonl'), outputPrefix: path.join(dir, 'w3'), workers: 3 });
  assert.equal(three.documents, 3000);
  assert.equal(three.tokens, one.tokens);
  for (const ext of ['bin', 'idx']) {
    assert.ok(fs.readFileSync(path.join(dir, `w1_text_document.${ext}`)).equals(fs.readFileSync(path.join(dir, `w3_text_document.${ext}`))), ext);
  }
  // An encode error inside a worker (tiktoken refuses special-token text) fails the run with its
  // message and leaves no output.
  fs.writeFileSync(path.join(dir, 'special.jsonl'), `${docs.slice(0, 300).join('\n')}\n{"text": "a <|endoftext|> b"}\n`);
  await assert.rejects(
    preprocess({ input: path.join(dir, 'special.jsonl'), tokenizerType: 'TiktokenTokenizer', vocabFile: 'gpt2', outputPrefix: path.join(dir, 'wx'), workers: 2, log: quiet }),
    /tokenizer worker: .*endoftext/s,
  );
  assert.ok(!fs.existsSync(path.join(dir, 'wx_text_document.bin')));
});

// ---------------------------------------------------------------------------------------------
// Masked fine-tuning labels

test('mask_before_token_follows_gpt_neox', async () => {
  assert.deepEqual(parseMaskTokens('65,66'), [65, 66]);
  assert.deepEqual(parseMaskTokens(' 1, [2] ,x3,'), [1, 2, 3]); // GPT-NeoX drops non-digits
  assert.throws(() => parseMaskTokens('a,b'), /no token ids/);
  // First occurrence, masked up to and including it; no occurrence: unchanged (GPT-NeoX's kmp + mask).
  assert.deepEqual(Array.from(maskBeforeToken([5, 1, 2, 7, 1, 2, 9], [1, 2])), [-100, -100, -100, 7, 1, 2, 9]);
  assert.deepEqual(Array.from(maskBeforeToken([1, 1, 1, 2], [1, 1, 2])), [-100, -100, -100, -100]);
  assert.deepEqual(Array.from(maskBeforeToken([4, 5, 6], [9])), [4, 5, 6]);
  assert.deepEqual(parsePreprocessArgs(['--input', 'a', '--tokenizer-type', 'T', '--output-prefix', 'p', '--mask-before-token', '65,58']).maskBeforeToken, [65, 58]);

  const dir = tmpDir();
  fs.writeFileSync(path.join(dir, 'sft.jsonl'), [
    JSON.stringify({ text: 'Q: hi A: yes' }),
    JSON.stringify({ text: 'no answer marker' }),
  ].join('\n') + '\n');
  const pattern = enc('A:');
  const s = await charLevel(path.join(dir, 'sft.jsonl'), path.join(dir, 'm'), { maskBeforeToken: pattern });
  assert.deepEqual(s.outputs.map((o) => o.key), ['text', 'label']);
  const text = new IndexedDataset(path.join(dir, 'm_text_document'));
  const label = new IndexedDataset(path.join(dir, 'm_label_document'));
  assert.equal(text.dtype, 'i32'); // GPT-NeoX stores both as int32 in this mode
  assert.equal(label.dtype, 'i32');
  const t0 = Array.from(text.get(0));
  assert.deepEqual(t0, [...enc('Q: hi A: yes'), 0]);
  const cut = 'Q: hi A:'.length;
  assert.deepEqual(Array.from(label.get(0)), [...new Array(cut).fill(-100), ...t0.slice(cut)]);
  assert.deepEqual(Array.from(label.get(1)), Array.from(text.get(1)));
  text.close();
  label.close();
  await assert.rejects(preprocess({ input: path.join(dir, 'sft.jsonl'), jsonlKeys: ['text', 'q'], tokenizerType: 'CharLevelTokenizer', outputPrefix: path.join(dir, 'n'), maskBeforeToken: [1], log: quiet }),
    /takes one --jsonl-keys key/);
});

// ---------------------------------------------------------------------------------------------
// Progress

test('progress_lines_every_log_interval_documents', async () => {
  const dir = tmpDir();
  fs.writeFileSync(path.join(dir, 'p.jsonl'), Array.from({ length: 700 }, (_, i) => JSON.stringify({ text: `d${i}` })).join('\n'));
  const lines: string[] = [];
  await preprocess({ input: path.join(dir, 'p.jsonl'), tokenizerType: 'CharLevelTokenizer', outputPrefix: path.join(dir, 'o'), logInterval: 300, numDocs: 700, log: (l) => lines.push(l) });
  const progress = lines.filter((l) => l.startsWith('Processed'));
  assert.equal(progress.length, 2);
  assert.match(progress[0]!, /^Processed 300\/700 documents \([\d.]+ docs\/s, [\d.]+ MB\/s\)\.$/);
  assert.match(progress[1]!, /^Processed 600\/700 documents/);
});

// ---------------------------------------------------------------------------------------------
// inspect, count, merge

function writeDataset(prefix: string, docs: number[][], dtype: 'u16' | 'i32' = 'u16'): void {
  const b = new IndexedDatasetBuilder(prefix, dtype);
  for (const d of docs) { b.addItem(d); b.endDocument(); }
  b.finalize();
}

test('inspect_and_count_describe_a_dataset', () => {
  const dir = tmpDir();
  const prefix = path.join(dir, 'c_text_document');
  writeDataset(prefix, [enc('hello world'), [], enc('x')]);
  writeDataset(path.join(dir, 'c_label_document'), [enc('hello world'), [], enc('x')], 'i32');
  const s = inspectDataset(prefix, { count: 5, tokenizer: new CharLevelTokenizer() });
  assert.deepEqual([s.dtype, s.documents, s.docIdxEntries, s.tokens, s.minLength, s.maxLength, s.emptyDocuments], ['u16', 3, 4, 12, 0, 11, 1]);
  assert.deepEqual(s.firstTokens, enc('hello'));
  assert.equal(s.decoded, 'hello');
  assert.equal(s.labelFile, path.join(dir, 'c_label_document'));
  assert.match(formatSummary(s), /documents\s+3 \(doc_idx 4 entries\)/);
  assert.equal(inspectDataset(prefix, { document: 2 }).decoded, null);
  assert.throws(() => inspectDataset(prefix, { document: 3 }), /document 3 out of range/);
  assert.deepEqual(countTokens([prefix, `${prefix}.bin`]).map((c) => c.tokens), [12, 12]);
});

test('merge_concatenates_like_preprocessing_everything_at_once', async () => {
  const dir = tmpDir();
  fs.mkdirSync(path.join(dir, 'parts'));
  const texts = [['a1', 'a2'], ['b1'], ['c1', 'c2', 'c3']];
  for (let i = 0; i < texts.length; i++) {
    fs.writeFileSync(path.join(dir, `in${i}.jsonl`), texts[i]!.map((t) => JSON.stringify({ text: t })).join('\n'));
    await charLevel(path.join(dir, `in${i}.jsonl`), path.join(dir, 'parts', `p${i}`));
  }
  await charLevel([0, 1, 2].map((i) => path.join(dir, `in${i}.jsonl`)), path.join(dir, 'all'));
  const r = mergeDatasets(path.join(dir, 'merged'), [path.join(dir, 'parts')]); // a directory: its pairs in name order
  assert.deepEqual(r.inputs.map((p) => path.basename(p)), ['p0_text_document', 'p1_text_document', 'p2_text_document']);
  assert.equal(r.documents, 6);
  for (const ext of ['bin', 'idx']) {
    assert.ok(fs.readFileSync(path.join(dir, `merged.${ext}`)).equals(fs.readFileSync(path.join(dir, `all_text_document.${ext}`))), ext);
  }
  // Prefixes in the order given; dtypes must agree; unpaired files are named.
  const back = mergeDatasets(path.join(dir, 'back'), [path.join(dir, 'parts', 'p2_text_document'), path.join(dir, 'parts', 'p0_text_document.bin')]);
  assert.deepEqual(items(back.prefix), [...texts[2]!, ...texts[0]!].map((t) => [...enc(t), 0]));
  writeDataset(path.join(dir, 'wide'), [[1, 2]], 'i32');
  assert.throws(() => mergeDatasets(path.join(dir, 'bad'), [path.join(dir, 'wide'), path.join(dir, 'all_text_document')]), /holds u16 tokens but .* holds i32/);
  fs.writeFileSync(path.join(dir, 'parts', 'orphan.bin'), '');
  assert.throws(() => mergeDatasets(path.join(dir, 'o'), [path.join(dir, 'parts')]), /orphan: \.idx file missing/);
  assert.throws(() => mergeDatasets(path.join(dir, 'all_text_document'), [path.join(dir, 'all_text_document')]), /is one of the inputs/);
});

// ---------------------------------------------------------------------------------------------
// prepare-data

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(b: Uint8Array): number {
  let c = 0xffffffff;
  for (const x of b) c = CRC_TABLE[(c ^ x) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** A .zip with deflated members (local headers, central directory, end record). */
function makeZip(members: Array<[string, string]>): Buffer {
  const locals: Buffer[] = [];
  const central: Buffer[] = [];
  let offset = 0;
  for (const [name, text] of members) {
    const data = Buffer.from(text);
    const packed = zlib.deflateRawSync(data);
    const nameBuf = Buffer.from(name);
    const lh = Buffer.alloc(30);
    lh.writeUInt32LE(0x04034b50, 0); lh.writeUInt16LE(20, 4); lh.writeUInt16LE(8, 8);
    lh.writeUInt32LE(crc32(data), 14); lh.writeUInt32LE(packed.length, 18); lh.writeUInt32LE(data.length, 22);
    lh.writeUInt16LE(nameBuf.length, 26);
    const ch = Buffer.alloc(46);
    ch.writeUInt32LE(0x02014b50, 0); ch.writeUInt16LE(20, 4); ch.writeUInt16LE(20, 6); ch.writeUInt16LE(8, 10);
    ch.writeUInt32LE(crc32(data), 16); ch.writeUInt32LE(packed.length, 20); ch.writeUInt32LE(data.length, 24);
    ch.writeUInt16LE(nameBuf.length, 28); ch.writeUInt32LE(offset, 42);
    locals.push(lh, nameBuf, packed);
    central.push(ch, nameBuf);
    offset += 30 + nameBuf.length + packed.length;
  }
  const cd = Buffer.concat(central);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0); end.writeUInt16LE(members.length, 8); end.writeUInt16LE(members.length, 10);
  end.writeUInt32LE(cd.length, 12); end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, cd, end]);
}

/** A ustar archive of regular files (plus a directory entry), as `tar -cf` writes. */
function makeTar(members: Array<[string, string | Buffer]>): Buffer {
  const blocks: Buffer[] = [];
  const header = (name: string, size: number, type: string): Buffer => {
    const h = Buffer.alloc(512);
    h.write(name, 0, 'utf8');
    h.write('0000644\0', 100); h.write('0000000\0', 108); h.write('0000000\0', 116);
    h.write(size.toString(8).padStart(11, '0') + '\0', 124);
    h.write('00000000000\0', 136);
    h.write(type, 156);
    h.write('ustar\0', 257); h.write('00', 263);
    h.fill(' ', 148, 156);
    let sum = 0;
    for (const b of h) sum += b;
    h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148);
    return h;
  };
  blocks.push(header('docs/', 0, '5'));
  for (const [name, content] of members) {
    const data = Buffer.isBuffer(content) ? content : Buffer.from(content);
    blocks.push(header(name, data.length, '0'), data, Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

test('prepare_data_lists_gpt_neox_corpora', () => {
  assert.deepEqual(CORPORA.enwik8!.urls, ['http://mattmahoney.net/dc/enwik8.zip']);
  assert.equal(CORPORA.pile!.urls.length, 30);
  assert.equal(CORPORA.pile!.urls[29], 'https://the-eye.eu/public/AI/pile/train/29.jsonl.zst');
  assert.equal(CORPORA.enron!.numDocs, 517401);
  assert.equal(CORPORA.c4!.urls.length, 1024);
  const o = parsePrepareArgs(['pile_subset', '--data-dir', 'd', '--tokenizer-type', 'CharLevelTokenizer', '--workers=2', '--url', 'file:///a,file:///b']);
  assert.deepEqual([o.name, o.dataDir, o.tokenizerType, o.workers, o.urls], ['pile_subset', 'd', 'CharLevelTokenizer', 2, ['file:///a', 'file:///b']]);
  assert.throws(() => parsePrepareArgs(['--sha256', 'abc']), /not a sha256/);
  assert.throws(() => parsePrepareArgs(['a', 'b']), /one dataset name/);
});

test('prepare_data_offline_from_file_urls_zip_and_tar_gz', async () => {
  const src = tmpDir();
  const data = tmpDir();
  fs.writeFileSync(path.join(src, 'enwik8.zip'), makeZip([['enwik8', '<mediawiki>\n  <page>Ä</page>\n</mediawiki>\n']]));
  const logs: string[] = [];
  const log = (l: string): void => { logs.push(l); };
  const r = await prepareData({
    name: 'enwik8', dataDir: data, tokenizerType: 'CharLevelTokenizer', urls: [pathToFileURL(path.join(src, 'enwik8.zip')).href], log,
  });
  assert.equal(r.dataPath, path.join(data, 'enwik8', 'enwik8_text_document'));
  assert.deepEqual(items(r.dataPath), [[...enc('<mediawiki>\n  <page>Ä</page>\n</mediawiki>\n'), 0]]);
  assert.ok(logs.some((l) => l.includes(`data_path: ${r.dataPath}`)));
  // A second run finds the download and the extracted files and only preprocesses again.
  const again: string[] = [];
  await prepareData({ name: 'enwik8', dataDir: data, tokenizerType: 'CharLevelTokenizer', urls: [pathToFileURL(path.join(src, 'enwik8.zip')).href], log: (l) => again.push(l) });
  assert.ok(again.some((l) => l.startsWith('found ')));
  assert.ok(!again.some((l) => l.startsWith('downloading')));

  // .tar.gz of text files: one document per member, in archive order; empty members skipped.
  const tar = makeTar([['docs/b.txt', 'second'], ['docs/a.txt', 'first'], ['docs/empty.txt', '']]);
  fs.writeFileSync(path.join(src, 'hn.tar.gz'), zlib.gzipSync(tar));
  const sha = await sha256File(path.join(src, 'hn.tar.gz'));
  const h = await prepareData({
    name: 'hackernews', dataDir: data, tokenizerType: 'CharLevelTokenizer', urls: [pathToFileURL(path.join(src, 'hn.tar.gz')).href], sha256: [sha], log: quiet,
  });
  assert.deepEqual(h.inputs.map((f) => path.relative(path.join(data, 'hackernews', 'extracted', 'hn.tar.gz'), f)), ['docs/b.txt', 'docs/a.txt', 'docs/empty.txt']);
  assert.deepEqual(items(h.dataPath), [[...enc('second'), 0], [...enc('first'), 0]]);

  // A wrong checksum deletes the file and says so.
  await assert.rejects(prepareData({
    name: 'hackernews', dataDir: tmpDir(), tokenizerType: 'CharLevelTokenizer', urls: [pathToFileURL(path.join(src, 'hn.tar.gz')).href],
    sha256: ['0'.repeat(64)], log: quiet,
  }), /sha256 [0-9a-f]{64} does not match the published 0{64}; the file was deleted/);
  // .jsonl.zst.tar (OpenWebText2's packaging): members are read as JSON lines.
  fs.writeFileSync(path.join(src, 'owt.jsonl.zst.tar'), makeTar([['docs/x.jsonl.zst', fs.readFileSync(path.join(FIXTURES, 'sample.jsonl.zst'))]]));
  const o = await prepareData({ name: 'openwebtext2', dataDir: data, tokenizerType: 'CharLevelTokenizer', urls: [pathToFileURL(path.join(src, 'owt.jsonl.zst.tar')).href], log: quiet });
  assert.equal(o.stats.documents, 4);
  await assert.rejects(extractArchive(path.join(src, 'hn.tar.gz').replace('hn.tar.gz', 'missing.zip'), path.join(src, 'x')), /ENOENT|no such file/);
  await assert.rejects(prepareData({ name: 'nope', dataDir: data, log: quiet }), /unknown dataset 'nope'; choose from: enron, /);
});

test('tar_members_cannot_escape_the_extraction_directory', async () => {
  const dir = tmpDir();
  fs.writeFileSync(path.join(dir, 'evil.tar'), makeTar([['../../evil.txt', 'x']]));
  await assert.rejects(extractArchive(path.join(dir, 'evil.tar'), path.join(dir, 'out')), /points outside the archive/);
  assert.ok(!fs.existsSync(path.join(dir, '..', 'evil.txt')));
});

/** A loopback server for `body` with HTTP Range support; `mode` changes its behaviour. */
async function serve(body: Buffer, mode: 'range' | 'no-range' | 'drop-once'): Promise<{ url: string; ranges: Array<string | undefined>; close: () => Promise<void> }> {
  const ranges: Array<string | undefined> = [];
  let dropped = false;
  const server = http.createServer((req, res) => {
    ranges.push(req.headers.range);
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    if (m && mode !== 'no-range') {
      const start = Number(m[1]);
      if (start >= body.length) { res.writeHead(416, { 'Content-Range': `bytes */${body.length}` }).end(); return; }
      res.writeHead(206, { 'Content-Range': `bytes ${start}-${body.length - 1}/${body.length}`, 'Content-Length': body.length - start });
      res.end(body.subarray(start));
      return;
    }
    res.writeHead(200, { 'Content-Length': body.length });
    if (mode === 'drop-once' && !dropped) {
      dropped = true;
      res.write(body.subarray(0, 1000), () => res.destroy()); // connection lost mid-body
      return;
    }
    res.end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/corpus.jsonl.zst`, ranges,
    close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}

test('download_resumes_with_http_range_on_loopback', { timeout: 20000 }, async () => {
  const body = Buffer.from(Array.from({ length: 50000 }, (_, i) => (i * 31) & 0xff));
  const dir = tmpDir();
  const dl = { log: quiet, idleTimeoutMs: 5000, bar: false };

  // A partial file is continued from where it stopped.
  const s1 = await serve(body, 'range');
  try {
    const dest = path.join(dir, 'a.bin');
    fs.writeFileSync(`${dest}.part`, body.subarray(0, 12345));
    assert.equal(await downloadFile(s1.url, dest, dl), body.length);
    assert.deepEqual(s1.ranges, ['bytes=12345-']);
    assert.ok(fs.readFileSync(dest).equals(body));
    assert.ok(!fs.existsSync(`${dest}.part`));
    // A .part that is already complete: the server answers 416, the file is kept.
    const done = path.join(dir, 'done.bin');
    fs.writeFileSync(`${done}.part`, body);
    assert.equal(await downloadFile(s1.url, done, dl), body.length);
    assert.ok(fs.readFileSync(done).equals(body));
  } finally {
    await s1.close();
  }

  // A server without Range support sends everything again: the partial file is replaced.
  const s2 = await serve(body, 'no-range');
  try {
    const dest = path.join(dir, 'b.bin');
    fs.writeFileSync(`${dest}.part`, Buffer.alloc(777, 9));
    await downloadFile(s2.url, dest, dl);
    assert.ok(fs.readFileSync(dest).equals(body));
  } finally {
    await s2.close();
  }

  // A connection dropped mid-body is resumed with a Range request.
  const s3 = await serve(body, 'drop-once');
  try {
    const dest = path.join(dir, 'c.bin');
    await downloadFile(s3.url, dest, dl);
    assert.ok(fs.readFileSync(dest).equals(body));
    assert.equal(s3.ranges[0], undefined);
    assert.match(s3.ranges[1] ?? '', /^bytes=\d+-$/);
  } finally {
    await s3.close();
  }
});

test('no_network_is_said_clearly', { timeout: 20000 }, async () => {
  // A port with nothing listening: connection refused, as on a machine without a network.
  const server = http.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((r) => server.close(() => r()));
  const data = tmpDir();
  await assert.rejects(
    prepareData({ name: 'enwik8', dataDir: data, tokenizerType: 'CharLevelTokenizer', urls: [`http://127.0.0.1:${port}/enwik8.zip`], log: quiet }),
    (e: Error) => e instanceof NoNetworkError && /cannot reach 127\.0\.0\.1:\d+/.test(e.message) && /No network/.test(e.message)
      && e.message.includes(path.join(data, 'enwik8', 'enwik8.zip')),
  );
});
