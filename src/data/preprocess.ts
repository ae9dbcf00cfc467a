// `neox preprocess`: text files → Megatron mmap .bin/.idx, one output pair per JSON key.
//
// defines: PreprocessOptions, PreprocessStats, PREPROCESS_USAGE, parsePreprocessArgs, preprocess,
//          runPreprocessCli, expandInputs, globFiles, RawDocument, DocumentEncoder, inProcessEncoder
//
// Source: gpt-neox tools/datasets/preprocess_data.py (option names, outputs
// `{prefix}_{key}_document.bin/.idx`, one item per document, EOD appended to the item with
// --append-eod, empty documents skipped, token dtype by vocabulary size) and lm_dataformat's reader
// (.txt = one document per file; .jsonl = one JSON object per line; a bare JSON string line is a
// document; a list of strings is joined with "\n\n"; a directory means its files, sorted).
//
// Deliberate differences from GPT-NeoX, which reads only `text` and writes that same text under every
// --jsonl-keys name: each key here reads its own field. A line where every key is empty is skipped
// (GPT-NeoX's empty-document filter); when only some are, those keys get an empty item (or just EOD)
// so the per-key outputs stay aligned document for document. Blank lines are skipped. A malformed
// line (bad JSON or UTF-8, missing key) is fatal unless --skip-malformed; either way the message
// names file:line. Progress "MB/s" counts input bytes (GPT-NeoX counts characters). --num-docs only
// completes the progress line, as in GPT-NeoX. --workers is accepted; encoding runs in this thread
// for now, behind the DocumentEncoder seam where a worker pool slots in.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { bestTokenDtype, IndexedDatasetBuilder } from './indexed_dataset.js';
import { buildTokenizer, type Tokenizer, type TokenizerConfig } from './tokenizer.js';

export interface PreprocessOptions {
  /** Files, directories and globs (`*`, `?`, `**`), comma-separated or as a list. */
  input: string | string[];
  /** JSON fields to tokenize, one output dataset each. Default ["text"]. */
  jsonlKeys?: string[];
  tokenizerType: string;
  vocabFile?: string | null;
  mergeFile?: string | null;
  appendEod?: boolean;
  /** Outputs are `{outputPrefix}_{key}_document.bin/.idx`. */
  outputPrefix: string;
  /** Default 1. */
  workers?: number;
  /** Log progress every this many documents. Default 100. */
  logInterval?: number;
  /** Expected document count, for the progress line. */
  numDocs?: number | null;
  skipMalformed?: boolean;
  /** Where progress lines go; default stderr. */
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
  /** Tokens written, over all keys. */
  tokens: number;
  /** Input bytes read. */
  bytes: number;
  seconds: number;
  skippedMalformed: number;
  skippedEmpty: number;
  files: string[];
  outputs: PreprocessOutput[];
}

export const PREPROCESS_USAGE = `usage: neox preprocess --input PATHS --tokenizer-type TYPE --output-prefix PREFIX [options]

input data:
  --input PATHS             files, directories or globs (* ? **), comma-separated; .jsonl (one JSON
                            object per line) and .txt or any other text file (one document per file)
  --jsonl-keys KEY [KEY ...]  JSON fields to tokenize, one output each (default: text)
  --num-docs N              number of documents, if known, for the progress line
  --skip-malformed          skip malformed JSON lines with a warning instead of stopping

tokenizer:
  --tokenizer-type TYPE     CharLevelTokenizer (HFTokenizer, HFGPT2Tokenizer, GPT2BPETokenizer,
                            SPMTokenizer, TiktokenTokenizer: not implemented yet)
  --vocab-file PATH         vocabulary file
  --merge-file PATH         BPE merges file
  --append-eod              append the end-of-document token to every document

output data:
  --output-prefix PREFIX    writes PREFIX_{key}_document.bin and .idx
  --dataset-impl mmap       the only format written

runtime:
  --workers N               worker count (accepted; encoding runs in one thread for now)
  --log-interval N          documents between progress lines (default 100)
`;

// ---------------------------------------------------------------------------------------------
// Arguments

type OptSpec = { key: keyof ParsedArgs; kind: 'string' | 'int' | 'flag' | 'list' };
type ParsedArgs = {
  input?: string; jsonlKeys?: string[]; numDocs?: number; tokenizerType?: string; vocabFile?: string;
  mergeFile?: string; appendEod?: boolean; ftfy?: boolean; outputPrefix?: string; datasetImpl?: string;
  workers?: number; logInterval?: number; skipMalformed?: boolean;
};
const OPTIONS: Record<string, OptSpec> = {
  '--input': { key: 'input', kind: 'string' },
  '--jsonl-keys': { key: 'jsonlKeys', kind: 'list' },
  '--num-docs': { key: 'numDocs', kind: 'int' },
  '--tokenizer-type': { key: 'tokenizerType', kind: 'string' },
  '--vocab-file': { key: 'vocabFile', kind: 'string' },
  '--merge-file': { key: 'mergeFile', kind: 'string' },
  '--append-eod': { key: 'appendEod', kind: 'flag' },
  '--ftfy': { key: 'ftfy', kind: 'flag' },
  '--output-prefix': { key: 'outputPrefix', kind: 'string' },
  '--dataset-impl': { key: 'datasetImpl', kind: 'string' },
  '--workers': { key: 'workers', kind: 'int' },
  '--log-interval': { key: 'logInterval', kind: 'int' },
  '--skip-malformed': { key: 'skipMalformed', kind: 'flag' },
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
  return {
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
}

/** The whole command: help, parse, run, summary. Returns the process exit code. */
export async function runPreprocessCli(argv: string[], log: (line: string) => void = stderrLine): Promise<number> {
  if (argv.includes('-h') || argv.includes('--help')) {
    process.stdout.write(PREPROCESS_USAGE);
    return 0;
  }
  try {
    const opts = parsePreprocessArgs(argv);
    const stats = await preprocess({ ...opts, log });
    for (const o of stats.outputs) log(`wrote ${o.binPath} and ${o.idxPath}: ${o.documents} documents, ${o.tokens} tokens`);
    log(`done: ${stats.documents} documents, ${stats.tokens} tokens, ${(stats.bytes / 1048576).toFixed(2)} MB in ${stats.seconds.toFixed(2)} s`);
    return 0;
  } catch (err) {
    log(`neox preprocess: ${(err as Error).message}`);
    return 1;
  }
}

// ---------------------------------------------------------------------------------------------
// Inputs

const SUPPORTED = ['.jsonl', '.txt'];
const NOT_YET: Array<[RegExp, string]> = [
  [/\.zst$/, 'zstd-compressed input (.zst)'],
  [/\.parquet$/, 'parquet input'],
];

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
        .filter((f) => fs.statSync(f).isFile() && (hasExt(f, SUPPORTED) || NOT_YET.some(([re]) => re.test(f))));
      if (inDir.length === 0) throw new Error(`input ${entry}: directory has no ${SUPPORTED.join(' or ')} files`);
      files.push(...inDir);
    } else if (fs.existsSync(entry)) {
      files.push(entry);
    } else {
      throw new Error(`input ${entry}: no such file or directory`);
    }
  }
  for (const f of files) checkInputType(f);
  return files;
}

function checkInputType(file: string): void {
  for (const [re, what] of NOT_YET) {
    if (re.test(file)) throw new Error(`input ${file}: ${what} is not supported yet; decompress/convert it to .jsonl`);
  }
  // Anything that is not .jsonl is read as one plain-text document (.txt, .md, source files...).
}

function hasExt(file: string, exts: string[]): boolean {
  return exts.some((e) => file.endsWith(e));
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
  /** 1-based line for .jsonl, 0 for a whole .txt file. */
  line: number;
  /** (keys,) text per key, in jsonlKeys order. */
  texts: string[];
}

class MalformedInput extends Error {}

interface ReadContext {
  keys: string[];
  skipMalformed: boolean;
  onSkip: (where: string, reason: string) => void;
  /** Input bytes consumed so far, counted by the readers. */
  bytesRead: number;
}

function* readDocuments(files: string[], ctx: ReadContext): Generator<RawDocument> {
  for (const file of files) {
    if (file.endsWith('.jsonl')) yield* readJsonl(file, ctx);
    else yield* readTxt(file, ctx);
  }
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

function* readTxt(file: string, ctx: ReadContext): Generator<RawDocument> {
  const bytes = fs.readFileSync(file);
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
  yield { file, line: 0, texts: ctx.keys.map(() => text) };
}

function* readJsonl(file: string, ctx: ReadContext): Generator<RawDocument> {
  let lineNo = 0;
  for (const [raw, consumed] of readLines(file)) {
    lineNo++;
    ctx.bytesRead += consumed;
    let reason: string;
    try {
      const line = strictUtf8.decode(raw[raw.length - 1] === 0x0d ? raw.subarray(0, raw.length - 1) : raw);
      if (line.trim() === '') continue;
      const texts = extractTexts(JSON.parse(line) as unknown, ctx.keys);
      if (typeof texts === 'string') reason = texts;
      else { yield { file, line: lineNo, texts }; continue; }
    } catch (err) {
      reason = err instanceof SyntaxError ? `malformed JSON (${err.message})`
        : err instanceof TypeError ? 'not valid UTF-8' : (err as Error).message;
    }
    if (!ctx.skipMalformed) throw new MalformedInput(`${file}:${lineNo}: ${reason} (use --skip-malformed to skip such lines)`);
    ctx.onSkip(`${file}:${lineNo}`, reason);
  }
}

/** The text for each key, or a string saying why the line is malformed. */
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

/** Lines of a file as raw bytes without the "\n", and the bytes each took; 4 MiB chunks at a time. */
function* readLines(file: string): Generator<[Uint8Array, number]> {
  const fd = fs.openSync(file, 'r');
  try {
    const chunk = Buffer.allocUnsafe(4 << 20);
    let carry: Buffer[] = []; // pieces of a line that spans chunks
    let pos = 0;
    for (;;) {
      const n = fs.readSync(fd, chunk, 0, chunk.length, pos);
      if (n === 0) break;
      pos += n;
      let start = 0;
      for (let nl = chunk.indexOf(0x0a, 0); nl >= 0 && nl < n; nl = chunk.indexOf(0x0a, start)) {
        const piece = chunk.subarray(start, nl);
        const line = carry.length ? Buffer.concat([...carry, piece]) : Buffer.from(piece); // copy: chunk is reused
        yield [line, line.length + 1];
        carry = [];
        start = nl + 1;
      }
      if (start < n) carry.push(Buffer.from(chunk.subarray(start, n)));
    }
    if (carry.length) {
      const line = Buffer.concat(carry);
      yield [line, line.length];
    }
  } finally {
    fs.closeSync(fd);
  }
}

// ---------------------------------------------------------------------------------------------
// Encoding (the worker-pool seam)

/** Tokenizes batches of documents: ids[doc][key]. A worker pool implements the same interface. */
export interface DocumentEncoder {
  encode(batch: RawDocument[]): Promise<number[][][]>;
  close(): Promise<void>;
}

/** Encoder running in this thread. */
export function inProcessEncoder(tokenizer: Tokenizer, appendEod: boolean): DocumentEncoder {
  return {
    async encode(batch) {
      return batch.map((doc) => doc.texts.map((t) => {
        const ids = t === '' ? [] : tokenizer.encode(t);
        if (appendEod) ids.push(tokenizer.eodId);
        return ids;
      }));
    },
    async close() {},
  };
}

function makeEncoder(tokenizer: Tokenizer, _cfg: TokenizerConfig, appendEod: boolean, _workers: number): DocumentEncoder {
  // A worker pool (worker_threads, each building the tokenizer from _cfg, batches in flight, results
  // in order) replaces this when _workers > 1.
  return inProcessEncoder(tokenizer, appendEod);
}

// ---------------------------------------------------------------------------------------------
// The run

const BATCH_DOCS = 64;

/** Tokenize the inputs and write one .bin/.idx per key. */
export async function preprocess(opts: PreprocessOptions): Promise<PreprocessStats> {
  const log = opts.log ?? stderrLine;
  const keys = opts.jsonlKeys && opts.jsonlKeys.length ? opts.jsonlKeys : ['text'];
  if (new Set(keys).size !== keys.length) throw new Error(`--jsonl-keys has duplicates: ${keys.join(' ')}`);
  const workers = opts.workers ?? 1;
  const logInterval = opts.logInterval ?? 100;
  if (!Number.isInteger(workers) || workers < 1) throw new Error(`--workers must be ≥ 1, got ${workers}`);
  if (!Number.isInteger(logInterval) || logInterval < 1) throw new Error(`--log-interval must be ≥ 1, got ${logInterval}`);
  if (!opts.outputPrefix) throw new Error('--output-prefix is required');

  const tokCfg: TokenizerConfig = { tokenizer_type: opts.tokenizerType, vocab_file: opts.vocabFile, merge_file: opts.mergeFile };
  const tokenizer = buildTokenizer(tokCfg);
  const files = expandInputs(opts.input);
  const dtype = bestTokenDtype(tokenizer.vocabSize);
  log(`Vocab size: ${tokenizer.vocabSize} (${tokenizer.name}, tokens stored as ${dtype})`);
  log(`Output prefix: ${opts.outputPrefix}`);
  if (workers > 1) log(`note: --workers ${workers} accepted; encoding runs in one thread for now`);

  const builders = keys.map((key) => new IndexedDatasetBuilder(`${opts.outputPrefix}_${key}_document`, dtype));
  const encoder = makeEncoder(tokenizer, tokCfg, opts.appendEod ?? false, workers);
  let skippedMalformed = 0;
  let skippedEmpty = 0;
  let documents = 0;
  const start = performance.now();
  const progress = (): void => {
    const elapsed = (performance.now() - start) / 1000;
    const of = opts.numDocs ? `/${opts.numDocs}` : '';
    log(`Processed ${documents}${of} documents (${(documents / elapsed).toFixed(2)} docs/s, ${(ctx.bytesRead / elapsed / 1048576).toFixed(2)} MB/s).`);
  };

  const ctx: ReadContext = {
    keys,
    skipMalformed: opts.skipMalformed ?? false,
    onSkip: (where, reason) => { skippedMalformed++; log(`warning: ${where}: ${reason}; skipped`); },
    bytesRead: 0,
  };
  try {
    const docs = readDocuments(files, ctx);
    let batch: RawDocument[] = [];
    const writeBatch = async (): Promise<void> => {
      const encoded = await encoder.encode(batch);
      for (let d = 0; d < batch.length; d++) {
        for (let k = 0; k < keys.length; k++) {
          builders[k]!.addItem(encoded[d]![k]!);
          builders[k]!.endDocument();
        }
        documents++;
        if (documents % logInterval === 0) progress();
      }
      batch = [];
    };
    for (const doc of docs) {
      if (doc.texts.every((t) => t === '')) { skippedEmpty++; continue; }
      batch.push(doc);
      if (batch.length === BATCH_DOCS) await writeBatch();
    }
    if (batch.length) await writeBatch();
    const outputs = builders.map((b, k) => {
      const r = b.finalize();
      return { key: keys[k]!, prefix: b.prefix, binPath: r.binPath, idxPath: r.idxPath, documents: r.documents, tokens: r.tokens };
    });
    return {
      documents, tokens: outputs.reduce((a, o) => a + o.tokens, 0), bytes: ctx.bytesRead,
      seconds: (performance.now() - start) / 1000, skippedMalformed, skippedEmpty, files, outputs,
    };
  } catch (err) {
    for (const b of builders) b.abort();
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
