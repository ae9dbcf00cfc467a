// Tests for src/data/tokenizers: every GPT-NeoX tokenizer_type against ids made by the reference
// libraries (HF tokenizers, transformers' GPT2Tokenizer(Fast), sentencepiece, tiktoken) on small
// tokenizers trained for the purpose by tools/make_tokenizer_fixtures.py (tests/fixtures/tokenizers;
// versions in each expected.json), round trips on arbitrary Unicode, eod/pad ids, vocabulary sizes,
// errors that name the file, the regex translation, and preprocess with a real tokenizer.

import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

import { buildTokenizer, CharLevelTokenizer, IndexedDataset, preprocess, type Tokenizer } from '../src/data/index.js';
import { HFTokenizer, loadTiktokenRanks, translateRegex } from '../src/data/tokenizers/index.js';

const FIXTURES = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../tests/fixtures/tokenizers');

interface Case {
  text: string;
  ids?: number[];
  decoded?: string;
  error?: string;
}
interface Expected {
  name: string;
  tokenizer_type: string;
  vocab_file: string;
  merge_file: string | null;
  reference: string;
  vocab_size: number;
  eod_id: number | null;
  pad_id: number | null;
  base?: string;
  patch?: Record<string, unknown>;
  spm_ids?: { unk: number; bos: number; eos: number; pad: number };
  expected_sha256?: string;
  cases: Case[];
}

const tmpDirs: string[] = [];
function tmpDir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'neox-tok-'));
  tmpDirs.push(d);
  return d;
}
after(() => { for (const d of tmpDirs) fs.rmSync(d, { recursive: true, force: true }); });

const fixtureNames = fs.readdirSync(FIXTURES).filter((d) => fs.existsSync(path.join(FIXTURES, d, 'expected.json'))).sort();

function expected(name: string): Expected {
  return JSON.parse(fs.readFileSync(path.join(FIXTURES, name, 'expected.json'), 'utf8')) as Expected;
}

/** A variant's tokenizer.json: the base file with the patch's top-level keys (model: merged). */
function patched(exp: Expected): string {
  const base = JSON.parse(fs.readFileSync(path.join(FIXTURES, exp.base!), 'utf8')) as Record<string, unknown>;
  for (const [k, v] of Object.entries(exp.patch!)) {
    base[k] = k === 'model' ? { ...(base.model as object), ...(v as object) } : v;
  }
  const file = path.join(tmpDir(), 'tokenizer.json');
  fs.writeFileSync(file, JSON.stringify(base));
  return file;
}

const built = new Map<string, Tokenizer>();
function tokenizerFor(name: string): Tokenizer {
  let tok = built.get(name);
  if (!tok) {
    const exp = expected(name);
    const vocab = exp.tokenizer_type === 'TiktokenTokenizer' ? exp.vocab_file
      : exp.patch ? patched(exp) : path.join(FIXTURES, exp.vocab_file);
    tok = buildTokenizer({
      tokenizer_type: exp.tokenizer_type, vocab_file: vocab,
      merge_file: exp.merge_file ? path.join(FIXTURES, exp.merge_file) : null,
    });
    built.set(name, tok);
  }
  return tok;
}

// eod and pad ids. Where GPT-NeoX defines them (non-null in expected.json) they must agree; where it
// has none, or SentencePiece's piece_to_id("<|endoftext|>") falls back to <unk>, our documented
// fallback applies (HF: </s> / [SEP] and [PAD]; SPM: eos and pad_id; otherwise pad = eod).
const EOD_PAD: Record<string, [number, number]> = {
  bert_cased: [3, 0], bpe_affixes: [1, 1], bytelevel: [0, 1], gpt2bpe: [0, 0], hfgpt2: [0, 560],
  llama3: [0, 1], metaspace_first: [2, 2], roberta: [0, 1], spbpe: [2, 2], spm_bpe: [2, 2], spm_char: [2, 2],
  spm_unigram: [4, 3], spm_word: [2, 2], t5_precompiled: [4, 3], tiktoken_cl100k_base: [100257, 100257],
  tiktoken_o200k_base: [199999, 199999], tiktoken_p50k_base: [50256, 50256], tiktoken_r50k_base: [50256, 50256],
  unigram: [1, 2], wordlevel: [1, 1], wordlevel_invert: [1, 1], wordpiece: [3, 0],
};

// ---------------------------------------------------------------------------------------------
// Reference ids, decoding, sizes

test('fixtures_cover_every_tokenizer_family', () => {
  const types = new Set(fixtureNames.map((n) => expected(n).tokenizer_type));
  for (const t of ['HFTokenizer', 'GPT2BPETokenizer', 'HFGPT2Tokenizer', 'SPMTokenizer', 'TiktokenTokenizer']) {
    assert.ok(types.has(t), `no fixture for ${t}`);
  }
  assert.deepEqual(Object.keys(EOD_PAD).sort(), fixtureNames);
});

for (const name of fixtureNames) {
  test(`${name}_ids_match_reference`, () => {
    const exp = expected(name);
    const tok = tokenizerFor(name);
    assert.ok(exp.cases.length >= 30);
    for (const c of exp.cases) {
      const what = `${name} (${exp.reference}) on ${JSON.stringify(c.text).slice(0, 60)}`;
      if (c.error !== undefined) {
        assert.throws(() => tok.encode(c.text), /special token/, what);
        continue;
      }
      assert.deepEqual(tok.encode(c.text), c.ids, what);
      assert.equal(tok.decode(c.ids!), c.decoded, `decode: ${what}`);
    }
  });

  test(`${name}_vocab_size_eod_pad`, () => {
    const exp = expected(name);
    const tok = tokenizerFor(name);
    assert.equal(tok.vocabSize, exp.vocab_size);
    const [eod, pad] = EOD_PAD[name]!;
    assert.equal(tok.eodId, eod);
    assert.equal(tok.padId, pad);
    const neoxEodIsUnk = exp.spm_ids !== undefined && exp.eod_id === exp.spm_ids.unk;
    if (exp.eod_id !== null && !neoxEodIsUnk) assert.equal(tok.eodId, exp.eod_id, 'eod as GPT-NeoX defines it');
    if (neoxEodIsUnk) assert.equal(tok.eodId, exp.spm_ids!.eos, 'no <|endoftext|> piece: eos, not <unk>');
    if (exp.pad_id !== null) assert.equal(tok.padId, exp.pad_id, 'pad as GPT-NeoX defines it');
  });
}

test('decode_skips_special_tokens_for_HFTokenizer_and_keeps_them_for_GPT2', () => {
  const hf = tokenizerFor('bytelevel');
  const ids = hf.encode('a<|endoftext|>b');
  assert.ok(ids.includes(0));
  assert.equal(hf.decode(ids), 'ab');
  assert.equal((hf as HFTokenizer).pipeline.decode(ids, false), 'a<|endoftext|>b');
  const gpt2 = tokenizerFor('gpt2bpe');
  assert.equal(gpt2.decode(gpt2.encode('a<|endoftext|>b')), 'a<|endoftext|>b');
  assert.equal(hf.decode([999999, ...hf.encode('x')]), 'x', 'unknown ids are skipped');
});

test('tiktoken_ranks_hash_to_the_published_sha256', () => {
  for (const name of ['r50k_base', 'p50k_base', 'cl100k_base', 'o200k_base']) {
    const published = expected(`tiktoken_${name}`).expected_sha256;
    assert.match(published ?? '', /^[0-9a-f]{64}$/);
    const { decoder } = loadTiktokenRanks(name);
    const hash = createHash('sha256');
    decoder.forEach((bytes, rank) => hash.update(`${Buffer.from(bytes, 'latin1').toString('base64')} ${rank}\n`));
    assert.equal(hash.digest('hex'), published, `${name}: the .tiktoken file these ranks make`);
  }
});

test('tiktoken_known_ids', () => {
  // from tiktoken's README and tests
  const cl = tokenizerFor('tiktoken_cl100k_base');
  assert.deepEqual(cl.encode('hello world'), [15339, 1917]);
  assert.deepEqual(cl.encode('tiktoken is great!'), [83, 1609, 5963, 374, 2294, 0]);
  assert.deepEqual(tokenizerFor('tiktoken_r50k_base').encode('hello world'), [31373, 995]);
  assert.throws(() => cl.encode('x <|endoftext|>'), /special token "<\|endoftext\|>"/);
});

test('truncation_and_padding_from_the_file_apply_as_in_hf', () => {
  // HF truncates the content to max_length minus what the post-processor adds, then pads.
  const base = JSON.parse(fs.readFileSync(fixture('wordpiece', 'tokenizer.json'), 'utf8')) as Record<string, unknown>;
  const file = path.join(tmpDir(), 'tokenizer.json');
  fs.writeFileSync(file, JSON.stringify({
    ...base,
    truncation: { direction: 'Right', max_length: 5, strategy: 'LongestFirst', stride: 0 },
    padding: { strategy: { Fixed: 8 }, direction: 'Right', pad_to_multiple_of: null, pad_id: 0, pad_type_id: 0, pad_token: '[PAD]' },
  }));
  const tok = buildTokenizer({ tokenizer_type: 'HFTokenizer', vocab_file: file });
  const plain = tokenizerFor('wordpiece');
  const full = plain.encode('the quick brown fox jumps');
  assert.ok(full.length > 5);
  assert.deepEqual(tok.encode('the quick brown fox jumps'), [...full.slice(0, 4), full[full.length - 1]!, 0, 0, 0]);
  assert.deepEqual(tok.encode('the'), [...plain.encode('the'), ...new Array(8 - plain.encode('the').length).fill(0)]);
});

// ---------------------------------------------------------------------------------------------
// Round trips on arbitrary Unicode

/** mulberry32 */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const RANGES: Array<[number, number]> = [
  [0x20, 0x7e], [0x20, 0x7e], [0x20, 0x7e], [0x00, 0x1f], [0x7f, 0xa0], [0xa1, 0x24f], [0x300, 0x36f],
  [0x370, 0x4ff], [0x590, 0x6ff], [0x900, 0x97f], [0x1100, 0x11ff], [0x2000, 0x206f], [0x3000, 0x30ff],
  [0x4e00, 0x9fff], [0xac00, 0xd7a3], [0xe000, 0xe0ff], [0xfe00, 0xfe0f], [0xfff0, 0xffff],
  [0x1d400, 0x1d7ff], [0x1f300, 0x1faff], [0x10000, 0x10fff], [0xe0000, 0xe007f], [0x10fff0, 0x10ffff],
];

function randomText(r: () => number): string {
  const n = Math.floor(r() * 60);
  let s = '';
  for (let i = 0; i < n; i++) {
    const [a, b] = RANGES[Math.floor(r() * RANGES.length)]!;
    s += String.fromCodePoint(a + Math.floor(r() * (b - a + 1)));
  }
  return s;
}

const ROUND_TRIP_TEXTS = [
  'Emoji 🦜🚀 👩‍👩‍👧 👍🏽 🇯🇵 🏳️‍🌈 ❤️ 🫠',
  '日本語のテキスト 中文文本 한국어 텍스트',
  'e\u0301 a\u0308 n\u0303 \u0915\u094d\u0937 \u0e01\u0e34 Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334',
  '\x00\x01\x02\x07\x08\x0b\x0c\x0e\x1b\x1c\x1f\x7f\x80\x85\x9f control',
  ' '.repeat(1000) + 'x' + '\t'.repeat(100) + '\n'.repeat(300) + ' \t\r\n'.repeat(50),
  '\u00a0\u1680\u2000\u2001\u2002\u2003\u2009\u200a\u200b\u200c\u200d\u2028\u2029\u202f\u205f\u3000\ufeff',
  'مرحبا بالعالم עברית ‎‏ RTL',
  '\ufffd\ufffe\uffff\u{10ffff}\u{e0001}\u{1d11e}\u{1f9ea}',
  "can't won't I'M 'S 'll ſ K",
  '',
];

function checkRoundTrip(tok: Tokenizer, label: string, normalize: (s: string) => string = (s) => s): void {
  const r = rng(1234);
  const texts = [...ROUND_TRIP_TEXTS, ...Array.from({ length: 300 }, () => randomText(r))];
  for (const t of texts) {
    const ids = tok.encode(t);
    assert.equal(tok.decode(ids), normalize(t), `${label}: ${JSON.stringify(t).slice(0, 100)}`);
  }
}

test('byte_level_tokenizers_round_trip_arbitrary_unicode', () => {
  checkRoundTrip(tokenizerFor('gpt2bpe'), 'GPT2BPETokenizer');
  checkRoundTrip(tokenizerFor('hfgpt2'), 'HFGPT2Tokenizer');
  checkRoundTrip(tokenizerFor('llama3'), 'HFTokenizer (Llama-3 layout)');
  // GPT-NeoX-20B's layout normalizes to NFC first
  checkRoundTrip(tokenizerFor('bytelevel'), 'HFTokenizer (GPT-NeoX layout)', (s) => s.normalize('NFC'));
  checkRoundTrip(new CharLevelTokenizer(), 'CharLevelTokenizer');
});

test('byte_fallback_tokenizers_round_trip_arbitrary_unicode', () => {
  checkRoundTrip(tokenizerFor('spbpe'), 'HFTokenizer (Llama-2 layout)');
  checkRoundTrip(tokenizerFor('spm_bpe'), 'SPMTokenizer (BPE, byte_fallback, identity)');
});

test('tiktoken_round_trips_arbitrary_unicode', () => {
  for (const name of ['tiktoken_r50k_base', 'tiktoken_cl100k_base', 'tiktoken_o200k_base']) {
    checkRoundTrip(tokenizerFor(name), name);
  }
});

// ---------------------------------------------------------------------------------------------
// Errors name the file

function fixture(...p: string[]): string {
  return path.join(FIXTURES, ...p);
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

test('missing_files_are_named', () => {
  const dir = tmpDir();
  const gone = path.join(dir, 'nope', 'file');
  const cases: Array<[string, Record<string, string | null>, RegExp]> = [
    ['HFTokenizer', { vocab_file: gone }, new RegExp(`HFTokenizer vocab_file not found: ${escapeRe(gone)}`)],
    ['HFTokenizer', { vocab_file: null }, /HFTokenizer vocab_file is not set/],
    ['HFTokenizer', { vocab_file: dir }, new RegExp(`HFTokenizer vocab_file ${escapeRe(dir)} is a directory`)],
    ['GPT2BPETokenizer', { vocab_file: gone, merge_file: fixture('bytelevel', 'merges.txt') }, /GPT2BPETokenizer vocab_file not found/],
    ['GPT2BPETokenizer', { vocab_file: fixture('bytelevel', 'vocab.json'), merge_file: gone }, new RegExp(`GPT2BPETokenizer merge_file not found: ${escapeRe(gone)}`)],
    ['GPT2BPETokenizer', { vocab_file: fixture('bytelevel', 'vocab.json') }, /GPT2BPETokenizer merge_file is not set/],
    ['HFGPT2Tokenizer', { vocab_file: null }, /HFGPT2Tokenizer vocab_file is not set: .*does not do/],
    ['HFGPT2Tokenizer', { vocab_file: dir }, new RegExp(`${escapeRe(dir)} has neither tokenizer.json nor vocab.json \\+ merges.txt`)],
    ['HFGPT2Tokenizer', { vocab_file: gone }, /HFGPT2Tokenizer vocab_file not found/],
    ['SPMTokenizer', { vocab_file: gone }, new RegExp(`SPMTokenizer vocab_file not found: ${escapeRe(gone)}`)],
    ['TiktokenTokenizer', { vocab_file: 'cl200k_base' }, /unknown or unavailable encoding "cl200k_base".*cl100k_base/],
    ['TiktokenTokenizer', { vocab_file: null }, /TiktokenTokenizer vocab_file is not set/],
  ];
  for (const [type, files, re] of cases) {
    assert.throws(() => buildTokenizer({ tokenizer_type: type, ...files }), re, `${type} ${JSON.stringify(files)}`);
  }
});

test('corrupt_files_are_named', () => {
  const dir = tmpDir();
  const write = (name: string, data: string | Buffer): string => {
    const f = path.join(dir, name);
    fs.writeFileSync(f, data);
    return f;
  };
  const hf = (file: string): Tokenizer => buildTokenizer({ tokenizer_type: 'HFTokenizer', vocab_file: file });
  let f = write('bad.json', '{"model": {');
  assert.throws(() => hf(f), new RegExp(`HFTokenizer vocab_file ${escapeRe(f)} is not valid JSON`));
  f = write('nomodel.json', '{"version": "1.0"}');
  assert.throws(() => hf(f), new RegExp(`${escapeRe(f)}: not a tokenizer.json \\(no "model" object\\)`));
  const base = JSON.parse(fs.readFileSync(fixture('bytelevel', 'tokenizer.json'), 'utf8')) as Record<string, any>;
  f = write('norm.json', JSON.stringify({ ...base, normalizer: { type: 'Fancy' } }));
  assert.throws(() => hf(f), new RegExp(`${escapeRe(f)}: unsupported normalizer type "Fancy"`));
  f = write('merge.json', JSON.stringify({ ...base, model: { ...base.model, merges: ['Ġ zzz'] } }));
  assert.throws(() => hf(f), new RegExp(`${escapeRe(f)}: merge 1 \\("Ġ" "zzz"\\) uses "zzz", which is not in the vocabulary`));
  f = write('regex.json', JSON.stringify({ ...base, pre_tokenizer: { type: 'Split', pattern: { Regex: 'a++' }, behavior: 'Isolated', invert: false } }));
  assert.throws(() => hf(f), /possessive quantifier/);

  const gpt2 = (v: string, m: string): Tokenizer => buildTokenizer({ tokenizer_type: 'GPT2BPETokenizer', vocab_file: v, merge_file: m });
  const vocab = fixture('bytelevel', 'vocab.json');
  const merges = fixture('bytelevel', 'merges.txt');
  f = write('vocab.json', '["a", "b"]');
  assert.throws(() => gpt2(f, merges), new RegExp(`${escapeRe(f)} is not a GPT-2 vocab.json`));
  f = write('noeot.json', '{"a": 0, "b": 1}');
  assert.throws(() => gpt2(f, merges), /has no <\|endoftext\|> token/);
  f = write('merges.txt', '#version: 0.2\nĠ t\nthis line is wrong\n');
  assert.throws(() => gpt2(vocab, f), new RegExp(`${escapeRe(f)}:3: not a merge`));

  const spm = (file: string): Tokenizer => buildTokenizer({ tokenizer_type: 'SPMTokenizer', vocab_file: file });
  const model = fs.readFileSync(fixture('spm', 'spm_unigram.model'));
  f = write('truncated.model', model.subarray(0, Math.floor(model.length / 2)));
  assert.throws(() => spm(f), new RegExp(`${escapeRe(f)}: not a valid SentencePiece model`));
  f = write('json.model', fs.readFileSync(fixture('bytelevel', 'tokenizer.json')));
  assert.throws(() => spm(f), new RegExp(`${escapeRe(f)}: not a valid SentencePiece model`));
  f = write('empty.model', Buffer.alloc(0));
  assert.throws(() => spm(f), new RegExp(`${escapeRe(f)}: not a valid SentencePiece model \\(no pieces\\)`));
});

test('missing_end_token_is_reported_when_eod_is_read', () => {
  const dir = tmpDir();
  const f = path.join(dir, 'tokenizer.json');
  fs.writeFileSync(f, JSON.stringify({ model: { type: 'WordLevel', vocab: { a: 0, '<unk>': 1 }, unk_token: '<unk>' }, pre_tokenizer: { type: 'WhitespaceSplit' } }));
  const tok = buildTokenizer({ tokenizer_type: 'HFTokenizer', vocab_file: f });
  assert.deepEqual(tok.encode('a b a'), [0, 1, 0]);
  assert.throws(() => tok.eodId, new RegExp(`${escapeRe(f)} has no end-of-document token`));
  assert.throws(() => tok.padId, /has no end-of-document token/);
});

// ---------------------------------------------------------------------------------------------
// Regex translation

test('regex_whitespace_is_unicode_white_space_as_the_reference_engines', () => {
  const probes = JSON.parse(fs.readFileSync(fixture('probes.json'), 'utf8')) as {
    python_regex_s: number[]; onig_s: number[]; onig_candidates: number[];
  };
  const onig = translateRegex('\\s', 'onig', 'test');
  const matches = (re: RegExp, cp: number): boolean => { re.lastIndex = 0; return re.test(String.fromCodePoint(cp)); };
  for (const cp of probes.onig_candidates) {
    assert.equal(matches(onig, cp), probes.onig_s.includes(cp), `U+${cp.toString(16)}`);
  }
  const all: number[] = [];
  for (let cp = 0; cp < 0x110000; cp++) if ((cp < 0xd800 || cp > 0xdfff) && matches(translateRegex('\\s', 'rust', 'test'), cp)) all.push(cp);
  assert.deepEqual(all, probes.python_regex_s, 'the regex module (GPT2Tokenizer) and ours agree on every code point');
});

test('regex_translation_of_oniguruma_syntax', () => {
  const re = translateRegex("(?i:'s|'t|'re)|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+", 'onig', 'test');
  assert.deepEqual("'S'ſ'RE 12345 x!!".match(re), ["'S", "'ſ", "'RE", '123', '45', '!!']);
  assert.deepEqual('a\u0085b'.match(translateRegex('\\S+', 'onig', 'test')), ['a', 'b']);
  assert.deepEqual('x1٣'.match(translateRegex('\\d', 'onig', 'test')), ['1', '٣']);
  assert.deepEqual('a\rb\nc'.match(translateRegex('.+', 'onig', 'test')), ['a\rb', 'c']);
  assert.deepEqual('ab\ncd'.match(translateRegex('^\\w', 'onig', 'test')), ['a', 'c']);
  assert.deepEqual('ab\ncd'.match(translateRegex('^\\w', 'rust', 'test')), ['a']);
  assert.deepEqual('日本x'.match(translateRegex('\\p{Han}+', 'onig', 'test')), ['日本']);
  assert.throws(() => translateRegex('(?>a)', 'onig', 'f.json'), /f\.json: regex "\(\?>a\)" uses an atomic group/);
});

// ---------------------------------------------------------------------------------------------
// Through preprocess

test('preprocess_with_gpt2_bpe_appends_eod', async () => {
  const dir = tmpDir();
  const docs = ['Hello, world!', 'Byte-level BPE 🦜 日本語', 'The end.'];
  fs.writeFileSync(path.join(dir, 'in.jsonl'), docs.map((t) => JSON.stringify({ text: t })).join('\n') + '\n');
  const stats = await preprocess({
    input: path.join(dir, 'in.jsonl'), tokenizerType: 'GPT2BPETokenizer', vocabFile: fixture('bytelevel', 'vocab.json'),
    mergeFile: fixture('bytelevel', 'merges.txt'), appendEod: true, outputPrefix: path.join(dir, 'out'), log: () => {},
  });
  const tok = tokenizerFor('gpt2bpe');
  const ds = new IndexedDataset(stats.outputs[0]!.prefix);
  assert.equal(ds.dtype, 'u16');
  assert.deepEqual(Array.from({ length: ds.length }, (_, i) => Array.from(ds.get(i))), docs.map((t) => [...tok.encode(t), tok.eodId]));
  ds.close();
});
