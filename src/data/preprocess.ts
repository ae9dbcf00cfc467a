// `neox preprocess`: text files → Megatron mmap .bin/.idx, one output pair per JSON key.
//
// defines: PreprocessOptions, PreprocessStats, PreprocessOutput, PREPROCESS_USAGE, parsePreprocessArgs,
//          preprocess, runPreprocessCli, expandInputs, globFiles, inputFormat, InputFormat, RawDocument,
//          readDocuments, DocumentEncoder, inProcessEncoder, workerPoolEncoder, parseMaskTokens,
//          maskBeforeToken
//
// Source: gpt-neox tools/datasets/preprocess_data.py (option names, outputs
// `{prefix}_{key}_document.bin/.idx`, one item per document, EOD appended to the item with
// --append-eod, empty documents skipped, token dtype by vocabulary size), preprocess_data_with_mask.py
// (--mask-before-token: `{prefix}_label_document`, labels -100 up to and including the first occurrence
// of the token pattern, unchanged when it does not occur; text and label stored as int32) and
// lm_dataformat's reader: .txt = one document per file; .jsonl (also .jsonl.zst, .json.gz,
// .jsonl.gz) = one JSON object per line, a bare JSON string line is a document, a list of strings is
// joined with "\n\n"; other .gz = one document per line; a directory means its files, sorted.
// Beyond lm_dataformat: .parquet (the --jsonl-keys columns, row group by row group, through hyparquet;
// snappy, gzip, brotli, zstd pages), other .zst = one document per file. Archives (.zip, .tar, .tar.gz)
// are refused: `neox prepare-data` extracts its downloads first.
//
// Compressed inputs are decompressed as streams (fzstd, node:zlib), never whole files. With
// --workers N > 1, N worker threads tokenize batches (preprocess_worker.ts) while this thread reads,
// parses and writes; batches are written in input order, so the output is identical for any N.
// Progress goes to stderr: a live bar on a terminal, else GPT-NeoX's "Processed N documents (… docs/s,
// … MB/s)." every --log-interval documents. MB/s counts uncompressed input bytes (GPT-NeoX counts
// characters).
//
// Deliberate differences from GPT-NeoX, which reads only `text` and writes that same text under every
// --jsonl-keys name: each key here reads its own field. A line where every key is empty is skipped
// (GPT-NeoX's empty-document filter); when only some are, those keys get an empty item (or just EOD)
// so the per-key outputs stay aligned document for document. Blank lines are skipped. A malformed
// line (bad JSON or UTF-8, missing key) is fatal unless --skip-malformed; either way the message
// names file:line. --num-docs only completes the progress line, as in GPT-NeoX. --mask-before-token
// takes exactly one --jsonl-keys key (GPT-NeoX writes every key's items into the one label file).

import * as fs from 'node:fs';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import * as zlib from 'node:zlib';
import { Decompress as ZstdDecompress, decompress as zstdDecompress } from 'fzstd';
import { bestTokenDtype, IndexedDatasetBuilder, type TokenDType } from './indexed_dataset.js';
import { encodeTexts, type EncodedBatch, type WorkerInit, type WorkerReply, type WorkerRequest } from './preprocess_worker.js';
import { buildTokenizer, type Tokenizer, type TokenizerConfig } from './tokenizer.js';

export interface PreprocessOptions {
  /** Files, directories and globs (`*`, `?`, `**`), comma-separated or as a list. */
  input: string | string[];
  /** JSON fields (parquet columns) to tokenize, one output dataset each. Default ["text"]. */
  jsonlKeys?: string[];
  tokenizerType: string;
  vocabFile?: string | null;
  mergeFile?: string | null;
  appendEod?: boolean;
  /** Outputs are `{outputPrefix}_{key}_document.bin/.idx`. */
  outputPrefix: string;
  /** Tokenizing threads; 1 (default) tokenizes in this thread. */
  workers?: number;
  /** Log progress every this many documents. Default 100. */
  logInterval?: number;
  /** Expected document count, for the progress line. */
  numDocs?: number | null;
  skipMalformed?: boolean;
  /** Token ids of the pattern before which (inclusive) labels are -100; writes `{prefix}_label_document`. */
  maskBeforeToken?: number[] | null;
  /** Where progress lines go; default stderr (a live bar when it is a terminal). */
  log?: (line: string) => void;
}

export interface PreprocessOutput {
  key: string;
  prefix: string;
  binPath: string;
  idxPath: string;
  documents: number;
  tokens: number;
}

export interface PreprocessStats {
  documents: number;
  /** Tokens written, over all keys (label files not counted). */
  tokens: number;
  /** Input bytes read, uncompressed. */
  bytes: number;
  /** Input bytes read from disk (compressed size for .zst/.gz). */
  rawBytes: number;
  seconds: number;
  skippedMalformed: number;
  skippedEmpty: number;
  files: string[];
  outputs: PreprocessOutput[];
}

export const PREPROCESS_USAGE = `usage: neox preprocess --input PATHS --tokenizer-type TYPE --output-prefix PREFIX [options]

input data:
  --input PATHS             files, directories or globs (* ? **), comma-separated: .jsonl, .jsonl.zst,
                            .json.gz/.jsonl.gz (one JSON object per line), .parquet (columns named by
                            --jsonl-keys), .gz (one document per line), .txt, .zst or any other file
                            (one document per file)
  --jsonl-keys KEY [KEY ...]  JSON fields to tokenize, one output each (default: text)
  --num-docs N              number of documents, if known, for the progress line
  --skip-malformed          skip malformed JSON lines with a warning instead of stopping
  --mask-before-token IDS   comma-separated token ids: also write PREFIX_label_document with labels
                            -100 up to and including the first occurrence of these tokens (masked
                            fine-tuning; text and labels stored as int32, as GPT-NeoX)

tokenizer:
  --tokenizer-type TYPE     GPT2BPETokenizer, HFTokenizer, HFGPT2Tokenizer, SPMTokenizer,
                            TiktokenTokenizer or CharLevelTokenizer
  --vocab-file PATH         vocabulary file (tokenizer.json for HFTokenizer, an encoding name for tiktoken)
  --merge-file PATH         BPE merges file
  --append-eod              append the end-of-document token to every document

output data:
  --output-prefix PREFIX    writes PREFIX_{key}_document.bin and .idx
  --dataset-impl mmap       the only format written

runtime:
  --workers N               tokenizing threads (default 1: this thread)
  --log-interval N          documents between progress lines (default 100)
`;

// ---------------------------------------------------------------------------------------------
// Arguments

type OptSpec = { key: keyof ParsedArgs; kind: 'string' | 'int' | 'flag' | 'list' };
type ParsedArgs = {
  input?: string; jsonlKeys?: string[]; numDocs?: number; tokenizerType?: string; vocabFile?: string;
  mergeFile?: string; appendEod?: boolean; ftfy?: boolean; outputPrefix?: string; datasetImpl?: string;
  workers?: number; logInterval?: number; skipMalformed?: boolean; maskBeforeToken?: string;
};
const OPTIONS: Record<string, OptSpec> = {
  '--input': { key: 'input', kind: 'string' },
  '--jsonl-keys': { key: 'jsonlKeys', kind: 'list' },
  '--num-docs': { key: 'numDocs', kind: 'int' },
  '--tokenizer-type': { key: 'tokenizerType', kind: 'string' },
  '--vocab-file': { key: 'vocabFile', kind: 'string' },
  '--vocab': { key: 'vocabFile', kind: 'string' }, // GPT-NeoX's corpora.py spells it so
  '--merge-file': { key: 'mergeFile', kind: 'string' },
  '--append-eod': { key: 'appendEod', kind: 'flag' },
  '--ftfy': { key: 'ftfy', kind: 'flag' },
  '--output-prefix': { key: 'outputPrefix', kind: 'string' },
  '--dataset-impl': { key: 'datasetImpl', kind: 'string' },
  '--workers': { key: 'workers', kind: 'int' },
  '--log-interval': { key: 'logInterval', kind: 'int' },
  '--skip-malformed': { key: 'skipMalformed', kind: 'flag' },
  '--mask-before-token': { key: 'maskBeforeToken', kind: 'string' },
};

/**
 * Parse `neox preprocess` arguments (GPT-NeoX's names; `--opt value` or `--opt=value`). Throws with
 * a message naming the problem. `-h`/`--help` is for the caller (see runPreprocessCli).
 */
export function parsePreprocessArgs(argv: string[]): PreprocessOptions {
  const got: ParsedArgs = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith('--')) throw new Error(`unexpected argument '${arg}'\n\n${PREPROCESS_USAGE}`);
    const eq = arg.indexOf('=');
    const name = eq >= 0 ? arg.slice(0, eq) : arg;
    const spec = OPTIONS[name];
    if (!spec) {
      const guess = nearest(name, Object.keys(OPTIONS));
      throw new Error(`unknown option ${name}${guess ? `; did you mean ${guess}?` : ''}\n\n${PREPROCESS_USAGE}`);
    }
    const takeValue = (): string => {
      if (eq >= 0) return arg.slice(eq + 1);
      const v = argv[i + 1];
      if (v === undefined || v.startsWith('--')) throw new Error(`option ${name} needs a value`);
      i++;
      return v;
    };
    switch (spec.kind) {
      case 'flag':
        if (eq >= 0) throw new Error(`option ${name} takes no value`);
        (got as Record<string, unknown>)[spec.key] = true;
        break;
      case 'string':
        (got as Record<string, unknown>)[spec.key] = takeValue();
        break;
      case 'int': {
        const v = takeValue();
        const n = Number(v);
        if (!/^-?\d+$/.test(v.trim()) || !Number.isSafeInteger(n)) throw new Error(`option ${name}: '${v}' is not an integer`);
        (got as Record<string, unknown>)[spec.key] = n;
        break;
      }
      case 'list': {
        const values: string[] = eq >= 0 ? [arg.slice(eq + 1)] : [];
        while (eq < 0 && i + 1 < argv.length && !argv[i + 1]!.startsWith('--')) values.push(argv[++i]!);
        if (values.length === 0 || values.some((v) => v === '')) throw new Error(`option ${name} needs at least one value`);
        (got as Record<string, unknown>)[spec.key] = values;
        break;
      }
    }
  }
  const missing = (['--input', '--tokenizer-type', '--output-prefix'] as const).filter((o) => got[OPTIONS[o]!.key] === undefined);
  if (missing.length) throw new Error(`missing required option${missing.length > 1 ? 's' : ''} ${missing.join(', ')}\n\n${PREPROCESS_USAGE}`);
  if (got.ftfy) throw new Error('--ftfy is not supported (it needs the Python ftfy package); clean the text before preprocessing');
  if (got.datasetImpl !== undefined && got.datasetImpl !== 'mmap') {
    throw new Error(`--dataset-impl ${got.datasetImpl} is not supported; only mmap is written`);
  }
  const opts: PreprocessOptions = {
    input: got.input!,
    jsonlKeys: got.jsonlKeys ?? ['text'],
    tokenizerType: got.tokenizerType!,
    vocabFile: got.vocabFile ?? null,
    mergeFile: got.mergeFile ?? null,
    appendEod: got.appendEod ?? false,
    outputPrefix: got.outputPrefix!,
    workers: got.workers ?? 1,
    logInterval: got.logInterval ?? 100,
    numDocs: got.numDocs ?? null,
    skipMalformed: got.skipMalformed ?? false,
  };
  if (got.maskBeforeToken !== undefined) opts.maskBeforeToken = parseMaskTokens(got.maskBeforeToken);
  return opts;
}

/** The whole command: help, parse, run, summary. Returns the process exit code. */
export async function runPreprocessCli(argv: string[], log?: (line: string) => void): Promise<number> {
  if (argv.includes('-h') || argv.includes('--help')) {
    process.stdout.write(PREPROCESS_USAGE);
    return 0;
  }
  const say = log ?? stderrLine;
  try {
    const opts = parsePreprocessArgs(argv);
    const stats = await preprocess(log ? { ...opts, log } : opts);
    for (const o of stats.outputs) say(`wrote ${o.binPath} and ${o.idxPath}: ${o.documents} documents, ${o.tokens} tokens`);
    say(`done: ${stats.documents} documents, ${stats.tokens} tokens, ${(stats.bytes / 1048576).toFixed(2)} MB in ${stats.seconds.toFixed(2)} s`);
    return 0;
  } catch (err) {
    say(`neox preprocess: ${(err as Error).message}`);
    return 1;
  }
}

// ---------------------------------------------------------------------------------------------
// Inputs

/** How a file is read: `kind` of documents inside, and the compression around them. */
export interface InputFormat {
  kind: 'jsonl' | 'text' | 'lines' | 'parquet';
  compression: 'none' | 'zst' | 'gz';
}

const ARCHIVES = /\.(zip|tar|tgz|tar\.gz|tar\.xz|tar\.bz2|tar\.zst|7z|rar)$/i;
const UNSUPPORTED: Array<[RegExp, string]> = [
  [/\.(xz|bz2|lz4|br)$/i, 'this compression is not supported (zstd and gzip are); decompress it first'],
  [/\.json\.zst$/i, 'a .json.zst (one JSON array) is not supported; convert it to .jsonl.zst'],
];
/** Extensions a directory input picks up. */
const DIR_EXTS = ['.jsonl', '.txt', '.zst', '.gz', '.parquet'];

/** The reading rule for `file`, from its name; throws for archives and unsupported compressions. */
export function inputFormat(file: string): InputFormat {
  const f = file.toLowerCase();
  if (ARCHIVES.test(f)) {
    throw new Error(`input ${file}: an archive; extract it first (\`neox prepare-data\` extracts the archives it downloads)`);
  }
  for (const [re, why] of UNSUPPORTED) if (re.test(f)) throw new Error(`input ${file}: ${why}`);
  if (f.endsWith('.parquet')) return { kind: 'parquet', compression: 'none' };
  if (f.endsWith('.jsonl')) return { kind: 'jsonl', compression: 'none' };
  if (f.endsWith('.jsonl.zst')) return { kind: 'jsonl', compression: 'zst' };
  if (f.endsWith('.jsonl.gz') || f.endsWith('.json.gz')) return { kind: 'jsonl', compression: 'gz' };
  if (f.endsWith('.gz')) return { kind: 'lines', compression: 'gz' }; // lm_dataformat: a line per document
  if (f.endsWith('.zst')) return { kind: 'text', compression: 'zst' };
  return { kind: 'text', compression: 'none' }; // .txt, .md, sources...: one document per file
}

/** Input spec (comma-separated string or list) → the ordered list of files to read. */
export function expandInputs(input: string | string[]): string[] {
  const entries = (Array.isArray(input) ? input : [input]).flatMap((s) => s.split(',')).map((s) => s.trim()).filter((s) => s);
  if (entries.length === 0) throw new Error('--input is empty');
  const files: string[] = [];
  for (const entry of entries) {
    if (/[*?]/.test(entry)) {
      const matched = globFiles(entry);
      if (matched.length === 0) throw new Error(`input ${entry}: no files match`);
      files.push(...matched);
    } else if (fs.existsSync(entry) && fs.statSync(entry).isDirectory()) {
      // Like lm_dataformat: the directory's files, sorted, those with a readable extension (but,
      // as with globs, not dot-files).
      const inDir = fs.readdirSync(entry).filter((f) => !f.startsWith('.')).sort().map((f) => path.join(entry, f))
        .filter((f) => fs.statSync(f).isFile() && DIR_EXTS.some((e) => f.toLowerCase().endsWith(e)));
      if (inDir.length === 0) throw new Error(`input ${entry}: directory has no ${DIR_EXTS.join(', ')} files`);
      files.push(...inDir);
    } else if (fs.existsSync(entry)) {
      files.push(entry);
    } else {
      throw new Error(`input ${entry}: no such file or directory`);
    }
  }
  for (const f of files) inputFormat(f);
  return files;
}

/**
 * Files matching `pattern`, sorted: `*` and `?` within one path segment (not matching a leading
 * dot), `**` any number of directories. Node 20 has no fs.globSync.
 */
export function globFiles(pattern: string): string[] {
  const segs = pattern.split(/[\\/]+/);
  const absolute = path.isAbsolute(pattern);
  let first = segs.findIndex((s) => /[*?]/.test(s));
  if (first < 0) first = segs.length;
  const base = segs.slice(0, first).join('/') || (absolute ? '/' : '.');
  const out = new Set<string>();
  walkGlob(base, segs.slice(first), out);
  return [...out].sort();
}

function walkGlob(at: string, segs: string[], out: Set<string>): void {
  if (segs.length === 0) {
    if (isFile(at)) out.add(at);
    return;
  }
  const [seg, ...rest] = segs as [string, ...string[]];
  if (seg === '**') {
    walkGlob(at, rest, out); // zero directories
    for (const e of listDir(at)) if (e.isDirectory() && !e.name.startsWith('.')) walkGlob(path.join(at, e.name), segs, out);
    return;
  }
  if (!/[*?]/.test(seg)) {
    walkGlob(path.join(at, seg), rest, out);
    return;
  }
  const re = segmentRegex(seg);
  for (const e of listDir(at)) {
    if (!re.test(e.name)) continue;
    const p = path.join(at, e.name);
    if (rest.length === 0) { if (isFile(p)) out.add(p); } else if (e.isDirectory() || isDir(p)) walkGlob(p, rest, out);
  }
}

function segmentRegex(seg: string): RegExp {
  let re = seg.startsWith('.') ? '' : '(?!\\.)';
  for (const ch of seg) {
    if (ch === '*') re += '[^/]*';
    else if (ch === '?') re += '[^/]';
    else re += ch.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

function listDir(dir: string): fs.Dirent[] {
  try { return fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)); } catch { return []; }
}
function isFile(p: string): boolean { try { return fs.statSync(p).isFile(); } catch { return false; } }
function isDir(p: string): boolean { try { return fs.statSync(p).isDirectory(); } catch { return false; } }

// ---------------------------------------------------------------------------------------------
// Reading documents

/** One input document: its text for each JSON key, and where it came from. */
export interface RawDocument {
  file: string;
  /** 1-based line (.jsonl, .gz) or row (.parquet); 0 for a whole-file document. */
  line: number;
  /** (keys,) text per key, in jsonlKeys order. */
  texts: string[];
  /** UTF-8 bytes this document took in the input (uncompressed). */
  bytes: number;
}

class MalformedInput extends Error {}

export interface ReadContext {
  keys: string[];
  skipMalformed: boolean;
  onSkip: (where: string, reason: string) => void;
  /** Input bytes consumed so far, uncompressed. */
  bytesRead: number;
  /** Input bytes consumed so far from disk (compressed where compressed). */
  rawBytesRead: number;
}

const CHUNK = 4 << 20;

/** Documents of every file in order; malformed input throws or is skipped per ctx. */
export async function* readDocuments(files: string[], ctx: ReadContext): AsyncGenerator<RawDocument> {
  for (const file of files) {
    const fmt = inputFormat(file);
    const rawStart = ctx.rawBytesRead;
    switch (fmt.kind) {
      case 'parquet': yield* readParquet(file, ctx); break;
      case 'jsonl': yield* readJsonl(file, byteChunks(file, fmt.compression, ctx), ctx); break;
      case 'lines': yield* readLineDocs(file, byteChunks(file, fmt.compression, ctx), ctx); break;
      case 'text': yield* readWholeFile(file, byteChunks(file, fmt.compression, ctx), ctx); break;
    }
    ctx.rawBytesRead = rawStart + fs.statSync(file).size; // exact at file end whatever the reader counted
  }
}

/** The file's bytes, decompressed, in chunks that are never reused (consumers may keep views). */
async function* byteChunks(file: string, compression: InputFormat['compression'], ctx: ReadContext): AsyncGenerator<Uint8Array> {
  const fh = await fs.promises.open(file, 'r');
  try {
    const raw = async function* (): AsyncGenerator<Uint8Array> {
      for (;;) {
        const buf = Buffer.allocUnsafe(CHUNK);
        const { bytesRead } = await fh.read(buf, 0, CHUNK, null);
        if (bytesRead === 0) return;
        ctx.rawBytesRead += bytesRead;
        yield buf.subarray(0, bytesRead);
      }
    };
    if (compression === 'none') {
      yield* raw();
    } else if (compression === 'zst') {
      let out: Uint8Array[] = [];
      const dec = new ZstdDecompress((chunk) => { if (chunk.length) out.push(chunk); });
      const push = (data: Uint8Array, final: boolean): void => {
        try {
          dec.push(data, final);
        } catch (err) {
          throw new Error(`${file}: corrupt or truncated zstd data (${(err as Error).message})`);
        }
      };
      for await (const chunk of raw()) {
        push(chunk, false);
        if (out.length) { yield* out; out = []; }
      }
      push(new Uint8Array(0), true);
      if (out.length) yield* out;
    } else {
      const gunzip = zlib.createGunzip();
      const feed = (async () => {
        for await (const chunk of raw()) {
          if (!gunzip.write(chunk)) await new Promise((r) => gunzip.once('drain', r));
        }
        gunzip.end();
      })();
      feed.catch((err: Error) => gunzip.destroy(err));
      try {
        for await (const chunk of gunzip) yield chunk as Buffer;
      } catch (err) {
        throw new Error(`${file}: corrupt or truncated gzip data (${(err as Error).message})`);
      }
      await feed;
    }
  } finally {
    await fh.close();
  }
}

/** Lines as raw bytes without "\n", and the bytes each took in the stream. */
async function* lines(chunks: AsyncIterable<Uint8Array>): AsyncGenerator<[Uint8Array, number]> {
  let carry: Uint8Array[] = []; // pieces of a line that spans chunks
  for await (const c of chunks) {
    const chunk = Buffer.from(c.buffer, c.byteOffset, c.byteLength);
    let start = 0;
    for (let nl = chunk.indexOf(0x0a); nl >= 0; nl = chunk.indexOf(0x0a, start)) {
      const piece = chunk.subarray(start, nl);
      const line = carry.length ? Buffer.concat([...carry, piece]) : piece;
      yield [line, line.length + 1];
      carry = [];
      start = nl + 1;
    }
    if (start < chunk.length) carry.push(chunk.subarray(start));
  }
  if (carry.length) {
    const line = Buffer.concat(carry);
    yield [line, line.length];
  }
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

function decodeLine(raw: Uint8Array): string {
  return strictUtf8.decode(raw[raw.length - 1] === 0x0d ? raw.subarray(0, raw.length - 1) : raw);
}

/** Report a malformed record: fatal, or counted and skipped with --skip-malformed. */
function malformed(ctx: ReadContext, where: string, reason: string): void {
  if (!ctx.skipMalformed) throw new MalformedInput(`${where}: ${reason} (use --skip-malformed to skip such lines)`);
  ctx.onSkip(where, reason);
}

async function* readJsonl(file: string, chunks: AsyncIterable<Uint8Array>, ctx: ReadContext): AsyncGenerator<RawDocument> {
  let lineNo = 0;
  for await (const [raw, consumed] of lines(chunks)) {
    lineNo++;
    ctx.bytesRead += consumed;
    let reason: string;
    try {
      const line = decodeLine(raw);
      if (line.trim() === '') continue;
      const texts = extractTexts(JSON.parse(line) as unknown, ctx.keys);
      if (typeof texts === 'string') reason = texts;
      else { yield { file, line: lineNo, texts, bytes: consumed }; continue; }
    } catch (err) {
      reason = err instanceof SyntaxError ? `malformed JSON (${err.message})`
        : err instanceof TypeError ? 'not valid UTF-8' : (err as Error).message;
    }
    malformed(ctx, `${file}:${lineNo}`, reason);
  }
}

/** lm_dataformat's .gz rule: every non-blank line is a document (for every key). */
async function* readLineDocs(file: string, chunks: AsyncIterable<Uint8Array>, ctx: ReadContext): AsyncGenerator<RawDocument> {
  let lineNo = 0;
  for await (const [raw, consumed] of lines(chunks)) {
    lineNo++;
    ctx.bytesRead += consumed;
    let text: string;
    try {
      text = decodeLine(raw);
    } catch {
      malformed(ctx, `${file}:${lineNo}`, 'not valid UTF-8');
      continue;
    }
    if (text.trim() === '') continue;
    yield { file, line: lineNo, texts: ctx.keys.map(() => text), bytes: consumed };
  }
}

async function* readWholeFile(file: string, chunks: AsyncIterable<Uint8Array>, ctx: ReadContext): AsyncGenerator<RawDocument> {
  const parts: Uint8Array[] = [];
  for await (const c of chunks) parts.push(c);
  const bytes = Buffer.concat(parts);
  ctx.bytesRead += bytes.length;
  let text: string;
  try {
    text = strictUtf8.decode(bytes);
  } catch {
    if (!ctx.skipMalformed) throw new MalformedInput(`${file}: not valid UTF-8`);
    ctx.onSkip(file, 'not valid UTF-8');
    return;
  }
  // GPT-NeoX feeds a .txt file's text to every key.
  yield { file, line: 0, texts: ctx.keys.map(() => text), bytes: bytes.length };
}

/** The text for each key, or a string saying why the record is malformed. */
function extractTexts(value: unknown, keys: string[]): string[] | string {
  if (typeof value === 'string') value = { text: value }; // lm_dataformat: a bare string is a document
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return 'expected a JSON object';
  const obj = value as Record<string, unknown>;
  const texts: string[] = [];
  for (const key of keys) {
    const v = obj[key];
    if (typeof v === 'string') texts.push(v);
    else if (Array.isArray(v) && v.every((p) => typeof p === 'string')) texts.push(v.join('\n\n'));
    else if (v === undefined) return `missing key '${key}'`;
    else return `key '${key}' is not a string`;
  }
  return texts;
}

/** Parquet page decompressors beyond hyparquet's built-in snappy. */
const PARQUET_COMPRESSORS = {
  GZIP: (input: Uint8Array): Uint8Array => zlib.gunzipSync(input),
  BROTLI: (input: Uint8Array): Uint8Array => zlib.brotliDecompressSync(input),
  ZSTD: (input: Uint8Array, outputLength: number): Uint8Array => zstdDecompress(input, new Uint8Array(outputLength)),
};

/** Rows of a parquet file, one row group at a time; --jsonl-keys name the columns. */
async function* readParquet(file: string, ctx: ReadContext): AsyncGenerator<RawDocument> {
  const { asyncBufferFromFile, parquetMetadataAsync, parquetRead, parquetSchema } = await import('hyparquet');
  const buffer = await asyncBufferFromFile(file);
  let metadata;
  try {
    metadata = await parquetMetadataAsync(buffer);
  } catch (err) {
    throw new Error(`${file}: not a readable parquet file (${(err as Error).message})`);
  }
  const columns = parquetSchema(metadata).children.map((c) => c.element.name);
  const missing = ctx.keys.filter((k) => !columns.includes(k));
  if (missing.length) {
    throw new Error(`${file}: no column ${missing.map((k) => `'${k}'`).join(', ')} (columns: ${columns.join(', ')}); choose them with --jsonl-keys`);
  }
  const total = Number(metadata.num_rows);
  const fileBytes = buffer.byteLength;
  const rawStart = ctx.rawBytesRead;
  let row = 0;
  for (const group of metadata.row_groups) {
    const n = Number(group.num_rows);
    let rows: Array<Record<string, unknown>> = [];
    try {
      await parquetRead({
        file: buffer, metadata, columns: ctx.keys, rowStart: row, rowEnd: row + n, rowFormat: 'object',
        compressors: PARQUET_COMPRESSORS, onComplete: (r) => { rows = r; },
      });
    } catch (err) {
      const msg = (err as Error).message;
      const codec = /unsupported compression codec: (\w+)/.exec(msg)?.[1];
      throw new Error(codec
        ? `${file}: parquet compression ${codec} is not supported (snappy, gzip, brotli, zstd and uncompressed are); rewrite the file with one of those`
        : `${file}: rows ${row}..${row + n}: ${msg}`);
    }
    for (let i = 0; i < rows.length; i++) {
      const texts = extractTexts(rows[i], ctx.keys);
      const where = `${file}:row ${row + i + 1}`;
      if (typeof texts === 'string') { malformed(ctx, where, texts); continue; }
      let bytes = 0;
      for (const t of texts) bytes += Buffer.byteLength(t, 'utf8');
      ctx.bytesRead += bytes;
      yield { file, line: row + i + 1, texts, bytes };
    }
    row += n;
    ctx.rawBytesRead = rawStart + Math.round((fileBytes * row) / Math.max(1, total));
  }
}

// ---------------------------------------------------------------------------------------------
// Encoding: in this thread, or a pool of worker threads

/** Tokenizes batches of texts; a batch's ids come back packed (EncodedBatch), in request order. */
export interface DocumentEncoder {
  encode(texts: string[]): Promise<EncodedBatch>;
  close(): Promise<void>;
}

/** Encoder running in this thread. */
export function inProcessEncoder(tokenizer: Tokenizer, appendEod: boolean): DocumentEncoder {
  return {
    async encode(texts) { return encodeTexts(tokenizer, texts, appendEod); },
    async close() {},
  };
}

/**
 * `n` worker threads (preprocess_worker.ts), each building the tokenizer from `cfg`. A batch goes to
 * the least busy worker; a worker's failure fails every pending batch with its message.
 */
export function workerPoolEncoder(cfg: TokenizerConfig, appendEod: boolean, n: number): DocumentEncoder {
  const init: WorkerInit = { kind: 'neox-preprocess', tokenizer: cfg, appendEod };
  const script = new URL('./preprocess_worker.js', import.meta.url);
  type Pending = { resolve: (b: EncodedBatch) => void; reject: (e: Error) => void; worker: number };
  const pending = new Map<number, Pending>();
  const load = new Array<number>(n).fill(0);
  let failure: Error | null = null;
  let closing = false;
  let nextSeq = 0;
  const fail = (err: Error): void => {
    failure ??= err;
    for (const p of pending.values()) p.reject(failure);
    pending.clear();
  };
  const workers = Array.from({ length: n }, (_, w) => {
    const worker = new Worker(script, { workerData: init });
    worker.on('message', (reply: WorkerReply) => {
      if ('error' in reply) {
        fail(new Error(reply.seq < 0 ? reply.error : `tokenizer worker: ${reply.error}`));
        return;
      }
      const p = pending.get(reply.seq);
      if (!p) return;
      pending.delete(reply.seq);
      load[w]!--;
      p.resolve({ lengths: reply.lengths, ids: reply.ids });
    });
    worker.on('error', (err) => fail(new Error(`tokenizer worker ${w} crashed: ${err.message}`)));
    worker.on('exit', (code) => { if (!closing) fail(new Error(`tokenizer worker ${w} exited with code ${code}`)); });
    return worker;
  });
  return {
    encode(texts) {
      if (failure) return Promise.reject(failure);
      let w = 0;
      for (let i = 1; i < n; i++) if (load[i]! < load[w]!) w = i;
      const seq = nextSeq++;
      load[w]!++;
      return new Promise<EncodedBatch>((resolve, reject) => {
        pending.set(seq, { resolve, reject, worker: w });
        workers[w]!.postMessage({ seq, texts } satisfies WorkerRequest);
      });
    },
    async close() {
      closing = true;
      await Promise.all(workers.map((wk) => wk.terminate()));
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Masked fine-tuning labels (preprocess_data_with_mask.py)

/** "--mask-before-token 1,2,3" → [1, 2, 3]; like GPT-NeoX, non-digits in each item are dropped. */
export function parseMaskTokens(spec: string): number[] {
  const ids = spec.split(',').map((s) => s.replace(/[^0-9]/g, '')).filter((s) => s !== '').map(Number);
  if (ids.length === 0) throw new Error(`--mask-before-token '${spec}': no token ids (give them comma-separated, e.g. 0,1,1270)`);
  return ids;
}

/** Labels of one item: -100 up to and including the first occurrence of `pattern`; ids unchanged if none. */
export function maskBeforeToken(ids: ArrayLike<number>, pattern: readonly number[]): Int32Array {
  const out = Int32Array.from(ids);
  const m = pattern.length;
  for (let i = 0; i + m <= out.length; i++) {
    let j = 0;
    while (j < m && out[i + j] === pattern[j]) j++;
    if (j === m) {
      out.fill(-100, 0, i + m);
      break;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Progress

interface ProgressCounts { documents: number; tokens: number; bytes: number; rawBytes: number }

/** A live bar on a terminal; else GPT-NeoX's progress line every `interval` documents. */
class Progress {
  private readonly start = performance.now();
  private lastDraw = 0;
  private lastLogged = 0;
  constructor(
    private readonly mode: 'bar' | 'lines',
    private readonly out: (line: string) => void,
    private readonly interval: number,
    private readonly totalRawBytes: number,
    private readonly numDocs: number | null,
  ) {}

  update(c: ProgressCounts): void {
    if (this.mode === 'lines') {
      // one line per crossed multiple of the interval, as GPT-NeoX logs at i % log_interval == 0
      while (this.lastLogged + this.interval <= c.documents) {
        this.lastLogged += this.interval;
        const elapsed = this.elapsed();
        const of = this.numDocs ? `/${this.numDocs}` : '';
        this.out(`Processed ${this.lastLogged}${of} documents (${(this.lastLogged / elapsed).toFixed(2)} docs/s, ${(c.bytes / elapsed / 1048576).toFixed(2)} MB/s).`);
      }
      return;
    }
    const now = performance.now();
    if (now - this.lastDraw < 150) return;
    this.lastDraw = now;
    process.stderr.write(`\r\x1b[K${this.bar(c)}`);
  }

  finish(c: ProgressCounts): void {
    if (this.mode === 'bar') process.stderr.write(`\r\x1b[K${this.bar(c)}\n`);
  }

  private elapsed(): number {
    return Math.max(1e-6, (performance.now() - this.start) / 1000);
  }

  private bar(c: ProgressCounts): string {
    const elapsed = this.elapsed();
    const frac = this.numDocs ? Math.min(1, c.documents / this.numDocs)
      : this.totalRawBytes > 0 ? Math.min(1, c.rawBytes / this.totalRawBytes) : 0;
    const width = 24;
    const filled = Math.round(frac * width);
    const eta = frac > 0 && frac < 1 ? ` ETA ${clock((elapsed * (1 - frac)) / frac)}` : '';
    return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${(frac * 100).toFixed(1).padStart(5)}% ` +
      `${c.documents.toLocaleString('en-US')}${this.numDocs ? `/${this.numDocs.toLocaleString('en-US')}` : ''} docs, ` +
      `${(c.documents / elapsed).toFixed(1)} docs/s, ${(c.bytes / elapsed / 1048576).toFixed(2)} MB/s, ` +
      `${(c.tokens / elapsed / 1e6).toFixed(2)} M tok/s, ${clock(elapsed)}${eta}`;
  }
}

function clock(seconds: number): string {
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${sec}` : `${m}:${sec}`;
}

// ---------------------------------------------------------------------------------------------
// The run

/** Documents and text per batch sent to the encoder: whichever limit is reached first. */
const BATCH_DOCS = 256;
const BATCH_CHARS = 1 << 20;

/** Tokenize the inputs and write one .bin/.idx per key (and the label file with maskBeforeToken). */
export async function preprocess(opts: PreprocessOptions): Promise<PreprocessStats> {
  const keys = opts.jsonlKeys && opts.jsonlKeys.length ? opts.jsonlKeys : ['text'];
  if (new Set(keys).size !== keys.length) throw new Error(`--jsonl-keys has duplicates: ${keys.join(' ')}`);
  const workers = opts.workers ?? 1;
  const logInterval = opts.logInterval ?? 100;
  if (!Number.isInteger(workers) || workers < 1) throw new Error(`--workers must be ≥ 1, got ${workers}`);
  if (!Number.isInteger(logInterval) || logInterval < 1) throw new Error(`--log-interval must be ≥ 1, got ${logInterval}`);
  if (!opts.outputPrefix) throw new Error('--output-prefix is required');
  const mask = opts.maskBeforeToken && opts.maskBeforeToken.length ? opts.maskBeforeToken : null;
  if (mask) {
    if (keys.includes('label')) throw new Error("--jsonl-keys must not include 'label' with --mask-before-token: the label file is generated");
    if (keys.length !== 1) throw new Error(`--mask-before-token takes one --jsonl-keys key, got ${keys.length} (${keys.join(' ')})`);
  }
  const log = opts.log ?? stderrLine;
  const barOnTty = opts.log === undefined && process.stderr.isTTY === true;

  const tokCfg: TokenizerConfig = { tokenizer_type: opts.tokenizerType, vocab_file: opts.vocabFile, merge_file: opts.mergeFile };
  const tokenizer = buildTokenizer(tokCfg);
  const files = expandInputs(opts.input);
  // GPT-NeoX's mask script stores text and labels as int32 whatever the vocabulary.
  const dtype: TokenDType = mask ? 'i32' : bestTokenDtype(tokenizer.vocabSize);
  log(`Vocab size: ${tokenizer.vocabSize} (${tokenizer.name}, tokens stored as ${dtype})`);
  log(`Output prefix: ${opts.outputPrefix}`);

  const builders = keys.map((key) => new IndexedDatasetBuilder(`${opts.outputPrefix}_${key}_document`, dtype));
  const labelBuilder = mask ? new IndexedDatasetBuilder(`${opts.outputPrefix}_label_document`, 'i32') : null;
  const allBuilders = labelBuilder ? [...builders, labelBuilder] : builders;
  const encoder = workers > 1 ? workerPoolEncoder(tokCfg, opts.appendEod ?? false, workers) : inProcessEncoder(tokenizer, opts.appendEod ?? false);
  const totalRawBytes = files.reduce((a, f) => a + fs.statSync(f).size, 0);
  const progress = new Progress(barOnTty ? 'bar' : 'lines', log, logInterval, totalRawBytes, opts.numDocs ?? null);
  const counts: ProgressCounts = { documents: 0, tokens: 0, bytes: 0, rawBytes: 0 };
  let skippedMalformed = 0;
  let skippedEmpty = 0;
  const start = performance.now();
  const ctx: ReadContext = {
    keys,
    skipMalformed: opts.skipMalformed ?? false,
    onSkip: (where, reason) => {
      skippedMalformed++;
      if (barOnTty) process.stderr.write('\r\x1b[K');
      log(`warning: ${where}: ${reason}; skipped`);
    },
    bytesRead: 0,
    rawBytesRead: 0,
  };

  // Batches in flight, oldest first: written in this order whatever order the workers finish in.
  const queue: Array<{ docs: RawDocument[]; result: Promise<EncodedBatch> }> = [];
  const maxInFlight = workers > 1 ? 3 * workers : 1;
  const writeOldest = async (): Promise<void> => {
    const { docs, result } = queue.shift()!;
    const enc = await result;
    let at = 0;
    let t = 0;
    for (const doc of docs) {
      for (let k = 0; k < keys.length; k++) {
        const ids = enc.ids.subarray(at, at + enc.lengths[t]!);
        at += enc.lengths[t++]!;
        builders[k]!.addItem(ids);
        builders[k]!.endDocument();
        if (labelBuilder) {
          labelBuilder.addItem(maskBeforeToken(ids, mask!));
          labelBuilder.endDocument();
        }
        counts.tokens += ids.length;
      }
      counts.documents++;
      counts.bytes += doc.bytes;
    }
    counts.rawBytes = ctx.rawBytesRead;
    progress.update(counts);
  };
  let batch: RawDocument[] = [];
  let batchChars = 0;
  const submit = async (): Promise<void> => {
    const texts = batch.flatMap((d) => d.texts);
    const result = encoder.encode(texts);
    result.catch(() => {}); // rejection is handled when this batch is written
    queue.push({ docs: batch, result });
    batch = [];
    batchChars = 0;
    while (queue.length >= maxInFlight) await writeOldest();
  };

  try {
    for await (const doc of readDocuments(files, ctx)) {
      if (doc.texts.every((t) => t === '')) { skippedEmpty++; continue; }
      batch.push(doc);
      for (const t of doc.texts) batchChars += t.length;
      if (batch.length >= BATCH_DOCS || batchChars >= BATCH_CHARS) await submit();
    }
    if (batch.length) await submit();
    while (queue.length) await writeOldest();
    counts.rawBytes = ctx.rawBytesRead;
    progress.finish(counts);
    const results = allBuilders.map((b) => b.finalize());
    const outputs = results.map((r, k) => ({
      key: k < keys.length ? keys[k]! : 'label', prefix: allBuilders[k]!.prefix, binPath: r.binPath, idxPath: r.idxPath,
      documents: r.documents, tokens: r.tokens,
    }));
    return {
      documents: counts.documents, tokens: counts.tokens, bytes: ctx.bytesRead, rawBytes: ctx.rawBytesRead,
      seconds: (performance.now() - start) / 1000, skippedMalformed, skippedEmpty, files, outputs,
    };
  } catch (err) {
    if (barOnTty) process.stderr.write('\n');
    for (const b of allBuilders) b.abort();
    throw err;
  } finally {
    await encoder.close();
  }
}

function stderrLine(line: string): void {
  process.stderr.write(line + '\n');
}

function nearest(s: string, options: string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const o of options) {
    const d = levenshtein(s, o);
    if (d < bestD) { bestD = d; best = o; }
  }
  return bestD <= 4 ? best : undefined;
}

function levenshtein(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length]!;
}
