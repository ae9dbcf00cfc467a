// Preprocessing throughput: MB/s and tokens/s of `neox preprocess` for each tokenizer, 1 and 2 workers.
//
//   node dist/bench/preprocess.js [--mb 24] [--workers 1,2] [--tokenizers char,gpt2bpe,hf-bytelevel,tiktoken]
//        [--pin] [--python] [--write-docs] [--keep DIR]
//
// The corpus is JSON lines built from the repository's own prose and code (docs/, src/, tests/:
// English with identifiers, numbers and punctuation), paragraphs shuffled deterministically and
// repeated to --mb MB. Tokenizers: CharLevelTokenizer; GPT2BPETokenizer and HFTokenizer with
// GPT-2's real 50,257-token vocabulary, rebuilt as vocab.json/merges.txt and a byte-level BPE
// tokenizer.json from js-tiktoken's r50k ranks (merges recovered by running BPE below each token's
// rank, as the tiktoken→HF converters do); TiktokenTokenizer "gpt2" for reference.
// Each configuration runs in a fresh child process (own JIT warm-up, own memory); with --pin it is
// pinned by taskset to as many cores as workers. --python also times Hugging Face `tokenizers` on the
// same corpus and tokenizer.json (encode per document in one thread, as GPT-NeoX's preprocess_data.py
// does per process, and encode_batch with RAYON_NUM_THREADS = workers), where python3 has it.
// Prints a table and one JSON line per configuration; --write-docs replaces the "Preprocessing"
// section of docs/benchmarks.md. Benchmarks never assert a speed.

import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { preprocess } from '../src/data/preprocess.js';
import { loadTiktokenRanks } from '../src/data/tokenizers/tiktoken.js';
import { BYTE_TO_CHAR } from '../src/data/tokenizers/unicode.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

interface Config { tokenizer: string; workers: number; corpus: string; files: string }
interface Result {
  impl: string; tokenizer: string; workers: number; mb: number; seconds: number; mbPerS: number; tokensPerS: number;
  documents: number; tokens: number; note?: string;
}

const TOKENIZERS: Record<string, (files: string) => { tokenizerType: string; vocabFile?: string; mergeFile?: string }> = {
  char: () => ({ tokenizerType: 'CharLevelTokenizer' }),
  gpt2bpe: (d) => ({ tokenizerType: 'GPT2BPETokenizer', vocabFile: path.join(d, 'gpt2-vocab.json'), mergeFile: path.join(d, 'gpt2-merges.txt') }),
  'hf-bytelevel': (d) => ({ tokenizerType: 'HFTokenizer', vocabFile: path.join(d, 'gpt2-tokenizer.json') }),
  tiktoken: () => ({ tokenizerType: 'TiktokenTokenizer', vocabFile: 'gpt2' }),
};

// ---------------------------------------------------------------------------------------------
// Inputs

/** Deterministic JSON-lines corpus of about `mb` MB from the repository's text files. */
function buildCorpus(file: string, mb: number): void {
  const sources: string[] = [];
  const walk = (dir: string): void => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = path.join(dir, e.name);
      if (e.isDirectory() && !e.name.startsWith('.') && e.name !== 'fixtures') walk(p);
      else if (/\.(md|ts|py|cu)$/.test(e.name)) sources.push(fs.readFileSync(p, 'utf8'));
    }
  };
  for (const d of ['docs', 'src', 'tests', 'tools', 'bench']) if (fs.existsSync(path.join(ROOT, d))) walk(path.join(ROOT, d));
  // no special-token strings: tiktoken's encode() refuses them
  const paragraphs = sources.flatMap((s) => s.split(/\n\s*\n/)).map((p) => p.trim()).filter((p) => p.length > 20 && !p.includes('<|'));
  let x = 12345;
  const rand = (n: number): number => { x = (Math.imul(x, 1103515245) + 12345) >>> 0; return x % n; };
  const target = mb * 1048576;
  const out = fs.openSync(file, 'w');
  let bytes = 0;
  while (bytes < target) {
    const parts: string[] = [];
    const n = 1 + rand(12);
    for (let i = 0; i < n; i++) parts.push(paragraphs[rand(paragraphs.length)]!);
    const line = JSON.stringify({ text: parts.join('\n\n') }) + '\n';
    fs.writeSync(out, line);
    bytes += Buffer.byteLength(line);
  }
  fs.closeSync(out);
}

/** GPT-2's vocab.json, merges.txt and a byte-level BPE tokenizer.json, from js-tiktoken's r50k ranks. */
function buildGpt2Files(dir: string): void {
  const { ranks, decoder } = loadTiktokenRanks('gpt2');
  const bl = (latin1: string): string => Array.from(latin1, (c) => BYTE_TO_CHAR[c.charCodeAt(0)]!).join('');
  const vocab: Record<string, number> = {};
  decoder.forEach((tok, id) => { vocab[bl(tok)] = id; });
  vocab['<|endoftext|>'] = 50256;
  const merges: string[] = [];
  for (let r = 0; r < decoder.length; r++) {
    const tok = decoder[r]!;
    if (tok.length < 2) continue;
    // BPE on the token's bytes with only lower ranks: the last merge left standing is the token's
    let parts = Array.from(tok);
    for (;;) {
      let best = -1;
      let bestRank = Infinity;
      for (let i = 0; i + 1 < parts.length; i++) {
        const rk = ranks.get(parts[i]! + parts[i + 1]!);
        if (rk !== undefined && rk < bestRank && rk < r) { bestRank = rk; best = i; }
      }
      if (best < 0) break;
      parts = [...parts.slice(0, best), parts[best]! + parts[best + 1]!, ...parts.slice(best + 2)];
    }
    if (parts.length !== 2) throw new Error(`gpt2 rank ${r}: BPE left ${parts.length} parts`);
    merges.push(`${bl(parts[0]!)} ${bl(parts[1]!)}`);
  }
  fs.writeFileSync(path.join(dir, 'gpt2-vocab.json'), JSON.stringify(vocab));
  fs.writeFileSync(path.join(dir, 'gpt2-merges.txt'), `#version: 0.2\n${merges.join('\n')}\n`);
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
  fs.writeFileSync(path.join(dir, 'gpt2-tokenizer.json'), JSON.stringify({
    version: '1.0', truncation: null, padding: null,
    added_tokens: [{ id: 50256, content: '<|endoftext|>', single_word: false, lstrip: false, rstrip: false, normalized: true, special: true }],
    normalizer: null, pre_tokenizer: byteLevel, post_processor: { ...byteLevel, trim_offsets: false }, decoder: byteLevel,
    model: {
      type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '', fuse_unk: false,
      byte_fallback: false, vocab, merges,
    },
  }));
}

// ---------------------------------------------------------------------------------------------
// One configuration (child process)

async function runOne(cfg: Config): Promise<Result> {
  const tok = TOKENIZERS[cfg.tokenizer]!(cfg.files);
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'neox-bench-pp-'));
  try {
    const s = await preprocess({ input: cfg.corpus, ...tok, appendEod: true, outputPrefix: path.join(out, 'b'), workers: cfg.workers, log: () => {} });
    const mb = s.bytes / 1048576;
    return {
      impl: 'neox.ts', tokenizer: cfg.tokenizer, workers: cfg.workers, mb, seconds: s.seconds, mbPerS: mb / s.seconds,
      tokensPerS: s.tokens / s.seconds, documents: s.documents, tokens: s.tokens,
    };
  } finally {
    fs.rmSync(out, { recursive: true, force: true });
  }
}

const PYTHON = String.raw`
import json, os, sys, time
from tokenizers import Tokenizer
corpus, tok_path, mode = sys.argv[1], sys.argv[2], sys.argv[3]
tok = Tokenizer.from_file(tok_path)
with open(corpus, encoding="utf-8") as f:
    texts = [json.loads(line)["text"] for line in f]
nbytes = sum(len(t.encode("utf-8")) for t in texts)
t0 = time.perf_counter()
if mode == "encode":
    n = sum(len(tok.encode(t).ids) + 1 for t in texts)
else:
    n = sum(len(e.ids) + 1 for e in tok.encode_batch(texts))
dt = time.perf_counter() - t0
import tokenizers
print(json.dumps({"seconds": dt, "bytes": nbytes, "tokens": n, "documents": len(texts), "version": tokenizers.__version__}))
`;

function runPython(corpus: string, files: string, workers: number, mode: 'encode' | 'encode_batch', pin: boolean): Result | null {
  const args = ['-c', PYTHON, corpus, path.join(files, 'gpt2-tokenizer.json'), mode];
  const env = { ...process.env, RAYON_NUM_THREADS: String(workers), TOKENIZERS_PARALLELISM: 'true' };
  const cmd = pin ? 'taskset' : 'python3';
  const argv = pin ? ['-c', cores(workers), 'python3', ...args] : args;
  const r = spawnSync(cmd, argv, { env, encoding: 'utf8', maxBuffer: 1 << 24 });
  if (r.status !== 0) {
    process.stderr.write(`python tokenizers (${mode}) unavailable: ${(r.stderr || r.error?.message || '').trim().split('\n').at(-1)}\n`);
    return null;
  }
  const j = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { seconds: number; bytes: number; tokens: number; documents: number; version: string };
  const mb = j.bytes / 1048576;
  return {
    impl: `python tokenizers ${j.version} ${mode}`, tokenizer: 'hf-bytelevel', workers: mode === 'encode' ? 1 : workers, mb,
    seconds: j.seconds, mbPerS: mb / j.seconds, tokensPerS: j.tokens / j.seconds, documents: j.documents, tokens: j.tokens,
    note: 'tokenization only (JSON parsed before timing), no .bin writing',
  };
}

function cores(n: number): string {
  return n === 1 ? '0' : `0-${n - 1}`;
}

// ---------------------------------------------------------------------------------------------
// Driver

function machine(): string {
  const cpu = os.cpus();
  return `${cpu[0]?.model.trim() ?? 'unknown CPU'}, ${cpu.length} logical cores, ${Math.round(os.totalmem() / 2 ** 30)} GiB, ${os.platform()} ${os.release()}, Node ${process.version}`;
}

function table(results: Result[]): string {
  const lines = [
    '| implementation | tokenizer | workers | MB/s | tokens/s | MB | seconds |',
    '|---|---|---:|---:|---:|---:|---:|',
  ];
  for (const r of results) {
    lines.push(`| ${r.impl} | ${r.tokenizer} | ${r.workers} | ${r.mbPerS.toFixed(2)} | ${Math.round(r.tokensPerS).toLocaleString('en-US')} | ${r.mb.toFixed(1)} | ${r.seconds.toFixed(2)} |`);
  }
  return lines.join('\n');
}

function writeDocs(results: Result[], mb: number, pinned: boolean): void {
  const file = path.join(ROOT, 'docs', 'benchmarks.md');
  const when = new Date().toISOString().slice(0, 10);
  const section = `## Preprocessing

\`node dist/bench/preprocess.js --mb ${mb}${pinned ? ' --pin' : ''}\` on ${when}, ${machine()}.
Corpus: ${mb} MB of JSON lines from the repository's own docs and sources. GPT-2 BPE and HF byte-level BPE use
GPT-2's 50,257-token vocabulary (rebuilt from js-tiktoken's r50k ranks); MB/s counts uncompressed input
bytes, tokens include the EOD appended to each document. "workers" = tokenizing threads (1 = tokenize
in the main thread)${pinned ? '; each run pinned with taskset to that many cores' : ''}.${results.some((r) => r.impl.startsWith('python'))
    ? '\nPython rows time the Hugging Face `tokenizers` library on the same corpus and tokenizer.json (tokenization\nonly: JSON parsed before timing, nothing written).' : ''}

${table(results)}
`;
  let doc = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '# Benchmarks\n';
  const re = /## Preprocessing\n[\s\S]*?(?=\n## |$)/;
  doc = re.test(doc) ? doc.replace(re, section.trimEnd() + '\n') : `${doc.trimEnd()}\n\n${section}`;
  fs.writeFileSync(file, doc.endsWith('\n') ? doc : doc + '\n');
  process.stderr.write(`updated ${file}\n`);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      mb: { type: 'string', default: '24' },
      workers: { type: 'string', default: '1,2' },
      tokenizers: { type: 'string', default: 'char,gpt2bpe,hf-bytelevel,tiktoken' },
      pin: { type: 'boolean', default: false },
      python: { type: 'boolean', default: false },
      'write-docs': { type: 'boolean', default: false },
      keep: { type: 'string' },
      one: { type: 'string' },
    },
  });
  if (values.one) { // child process: one configuration, result as JSON on stdout
    process.stdout.write(JSON.stringify(await runOne(JSON.parse(values.one) as Config)) + '\n');
    return;
  }
  const mb = Number(values.mb);
  const workers = values.workers!.split(',').map(Number);
  const names = values.tokenizers!.split(',');
  for (const n of names) if (!TOKENIZERS[n]) throw new Error(`unknown tokenizer '${n}' (${Object.keys(TOKENIZERS).join(', ')})`);
  const pin = values.pin! && spawnSync('taskset', ['-c', '0', 'true']).status === 0;
  const dir = values.keep ?? fs.mkdtempSync(path.join(os.tmpdir(), 'neox-bench-'));
  fs.mkdirSync(dir, { recursive: true });
  const corpus = path.join(dir, 'corpus.jsonl');
  if (!fs.existsSync(corpus)) buildCorpus(corpus, mb);
  if (!fs.existsSync(path.join(dir, 'gpt2-tokenizer.json'))) buildGpt2Files(dir);
  process.stderr.write(`corpus ${corpus} (${(fs.statSync(corpus).size / 1048576).toFixed(1)} MB); ${machine()}\n`);

  const results: Result[] = [];
  const self = fileURLToPath(import.meta.url);
  for (const tokenizer of names) {
    for (const w of workers) {
      const cfg: Config = { tokenizer, workers: w, corpus, files: dir };
      const argv = [self, '--one', JSON.stringify(cfg)];
      const out = pin ? execFileSync('taskset', ['-c', cores(w), process.execPath, ...argv], { encoding: 'utf8' })
        : execFileSync(process.execPath, argv, { encoding: 'utf8' });
      const r = JSON.parse(out.trim().split('\n').at(-1)!) as Result;
      results.push(r);
      process.stdout.write(JSON.stringify(r) + '\n');
    }
  }
  if (values.python) {
    for (const w of workers) {
      const r = runPython(corpus, dir, w, w === 1 ? 'encode' : 'encode_batch', pin);
      if (r) { results.push(r); process.stdout.write(JSON.stringify(r) + '\n'); }
    }
    const b1 = runPython(corpus, dir, 1, 'encode_batch', pin);
    if (b1) { results.push(b1); process.stdout.write(JSON.stringify(b1) + '\n'); }
  }
  process.stderr.write(`\n${table(results)}\n`);
  if (values['write-docs']) writeDocs(results, mb, pin);
  if (!values.keep) fs.rmSync(dir, { recursive: true, force: true });
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
