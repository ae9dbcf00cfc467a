// `neox prepare-data NAME`: download a known corpus (with resume), check it, extract it, preprocess it.
//
// defines: CorpusSpec, CORPORA, GPT2_VOCAB_URL, GPT2_MERGE_URL, PrepareOptions, PrepareResult,
//          prepareData, downloadFile, DownloadOptions, NoNetworkError, extractArchive, sha256File,
//          PREPARE_USAGE, parsePrepareArgs, runPrepareCli
//
// Source: gpt-neox tools/datasets/corpora.py (the corpus names, URLs and document counts; enwik8 is
// prepare_data.py's default; data dir from --data-dir, else $DATA_DIR, else ./data; GPT2BPETokenizer
// without --vocab-file downloads gpt2-vocab.json / gpt2-merges.txt into the data dir; output prefix
// `{data_dir}/{name}/{name}`, so data_path = `{data_dir}/{name}/{name}_text_document`; --append-eod;
// one worker for enwik8). GPT-NeoX publishes no checksums; the Pile's host publishes SHA256SUMS.txt
// beside the files, which is fetched and checked for `pile` and `pile_subset`. --sha256 checks any.
//
// Steps, each skipped when already done, so an interrupted run continues where it stopped:
//   download  to `{dir}/{file}.part`, resumed with an HTTP Range request (a server answering 200
//             restarts it), retried on a dropped connection, renamed when complete; file:// URLs
//             are copied the same way (offline tests, local mirrors)
//   check     sha256 where known; a mismatch deletes the file and stops
//   extract   .zip (stored/deflate), .tar, .tar.gz/.tgz into `{dir}/extracted/{file}/`, in archive
//             order, recorded in a manifest; lm_dataformat reads archive members the same way (one
//             document per member, .jsonl.zst members as JSON lines)
//   preprocess  the downloaded or extracted files, in order (preprocess.ts)
// Without a network, the error says so and where to put the files by hand.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as zlib from 'node:zlib';
import { preprocess, type PreprocessStats } from './preprocess.js';

export interface CorpusSpec {
  urls: string[];
  /** Documents, where GPT-NeoX knows it (progress only). */
  numDocs?: number;
  /** Published sha256 per file name. */
  sha256?: Record<string, string>;
  /** A sha256sum-style list published beside the files, fetched to check them. */
  checksumsUrl?: string;
}

const EYE = 'https://the-eye.eu/public/AI';
const PILE_SUMS = `${EYE}/pile/SHA256SUMS.txt`;

/** GPT-NeoX's DATA_DOWNLOADERS (tools/datasets/corpora.py), same names and URLs. */
export const CORPORA: Readonly<Record<string, CorpusSpec>> = {
  enron: { urls: ['http://eaidata.bmk.sh/data/enron_emails.jsonl.zst'], numDocs: 517401 },
  pile_subset: { urls: [`${EYE}/pile/train/00.jsonl.zst`], checksumsUrl: PILE_SUMS },
  pile: { urls: Array.from({ length: 30 }, (_, i) => `${EYE}/pile/train/${String(i).padStart(2, '0')}.jsonl.zst`), checksumsUrl: PILE_SUMS },
  github: { urls: ['http://eaidata.bmk.sh/data/github_small.jsonl.zst'] },
  arxiv: { urls: [`${EYE}/pile_preliminary_components/2020-09-08-arxiv-extracts-nofallback-until-2007-068.tar.gz`] },
  europarl: { urls: [`${EYE}/pile_preliminary_components/EuroParliamentProceedings_1996_2011.jsonl.zst`] },
  freelaw: { urls: [`${EYE}/pile_preliminary_components/FreeLaw_Opinions.jsonl.zst`] },
  nih: { urls: [`${EYE}/pile_preliminary_components/NIH_ExPORTER_awarded_grant_text.jsonl.zst`] },
  pubmed: { urls: [`${EYE}/pile_preliminary_components/PMC_extracts.tar.gz`] },
  books1: { urls: [`${EYE}/pile_preliminary_components/books1.tar.gz`] },
  books3: { urls: [`${EYE}/pile_preliminary_components/books3.tar.gz`] },
  hackernews: { urls: [`${EYE}/pile_preliminary_components/hn.tar.gz`], numDocs: 373000 },
  openwebtext2: { urls: ['https://huggingface.co/datasets/segyges/OpenWebText2/resolve/main/openwebtext2.jsonl.zst.tar'], numDocs: 17103000 },
  stackexchange: { urls: [`${EYE}/pile_preliminary_components/stackexchange_dataset.tar`] },
  ubuntu_irc: { urls: [`${EYE}/pile_preliminary_components/ubuntu_irc_until_2020_9_1.jsonl.zst`] },
  youtube_subtitles: { urls: [`${EYE}/pile_preliminary_components/yt_subs.jsonl.zst`] },
  c4: { urls: Array.from({ length: 1024 }, (_, i) => `https://the-eye.eu/eleuther_staging/c4/en/c4-train.${String(i).padStart(5, '0')}-of-01024.json.gz`) },
  c4_openwebtext: { urls: Array.from({ length: 512 }, (_, i) => `https://the-eye.eu/eleuther_staging/c4/realnewslike/c4-train.${String(i).padStart(5, '0')}-of-00512.json.gz`) },
  enwik8: { urls: ['http://mattmahoney.net/dc/enwik8.zip'] },
};

export const GPT2_VOCAB_URL = 'https://s3.amazonaws.com/models.huggingface.co/bert/gpt2-vocab.json';
export const GPT2_MERGE_URL = 'https://s3.amazonaws.com/models.huggingface.co/bert/gpt2-merges.txt';

/** A download failed because the host cannot be reached at all. */
export class NoNetworkError extends Error {
  override name = 'NoNetworkError';
}

// ---------------------------------------------------------------------------------------------
// Download with resume

export interface DownloadOptions {
  log?: (line: string) => void;
  /** Give up when no byte arrives for this long (default 60 s). */
  idleTimeoutMs?: number;
  /** Attempts on a dropped connection, each resuming (default 4). */
  attempts?: number;
  /** Draw a live progress bar on stderr (default: when stderr is a terminal and no log is given). */
  bar?: boolean;
}

/** Download `url` to `dest` through `dest.part`, resuming a partial file; returns the bytes of dest. */
export async function downloadFile(url: string, dest: string, opts: DownloadOptions = {}): Promise<number> {
  const log = opts.log ?? ((l: string) => process.stderr.write(l + '\n'));
  const part = `${dest}.part`;
  fs.mkdirSync(path.dirname(path.resolve(dest)), { recursive: true });
  const attempts = opts.attempts ?? 4;
  const bar = opts.bar ?? (opts.log === undefined && process.stderr.isTTY === true);
  for (let attempt = 1; ; attempt++) {
    try {
      const total = url.startsWith('file:') ? await copyLocal(url, part) : await fetchRange(url, part, opts.idleTimeoutMs ?? 60_000, bar);
      const got = fs.statSync(part).size;
      if (total !== null && got !== total) throw new Error(`${url}: got ${got} bytes, expected ${total}`);
      fs.renameSync(part, dest);
      return got;
    } catch (err) {
      if (err instanceof NoNetworkError || attempt >= attempts || !isTransient(err)) throw err;
      const have = fs.existsSync(part) ? fs.statSync(part).size : 0;
      log(`download of ${url} interrupted (${(err as Error).message}); resuming from byte ${have} (attempt ${attempt + 1} of ${attempts})`);
      await new Promise((r) => setTimeout(r, Math.min(200 * 2 ** attempt, 5000)));
    }
  }
}

/** file:// URLs: copy from where the partial file ends. */
async function copyLocal(url: string, part: string): Promise<number> {
  const src = fileURLToPath(url);
  if (!fs.existsSync(src)) throw new Error(`${url}: no such file`);
  const total = fs.statSync(src).size;
  let have = fs.existsSync(part) ? fs.statSync(part).size : 0;
  if (have > total) { fs.rmSync(part); have = 0; }
  await new Promise<void>((resolve, reject) => {
    const rs = fs.createReadStream(src, { start: have });
    const ws = fs.createWriteStream(part, { flags: have > 0 ? 'a' : 'w' });
    rs.on('error', reject);
    ws.on('error', reject);
    ws.on('finish', resolve);
    rs.pipe(ws);
  });
  return total;
}

class TransientError extends Error {}

function isTransient(err: unknown): boolean {
  return err instanceof TransientError;
}

const TRANSIENT_CODES = new Set(['ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'UND_ERR_SOCKET', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_CLOSED']);
const NO_NETWORK_CODES = new Set(['ENOTFOUND', 'EAI_AGAIN', 'ECONNREFUSED', 'ENETUNREACH', 'EHOSTUNREACH', 'UND_ERR_CONNECT_TIMEOUT', 'ENETDOWN']);

/** One HTTP(S) request for the bytes after `part`; appends them. Returns the full size if known. */
async function fetchRange(url: string, part: string, idleMs: number, bar: boolean): Promise<number | null> {
  let have = fs.existsSync(part) ? fs.statSync(part).size : 0;
  const abort = new AbortController();
  let timer = setTimeout(() => abort.abort(), idleMs);
  const poke = (): void => { clearTimeout(timer); timer = setTimeout(() => abort.abort(), idleMs); };
  let res: Response;
  try {
    res = await fetch(url, { headers: have > 0 ? { Range: `bytes=${have}-` } : {}, signal: abort.signal, redirect: 'follow' });
  } catch (err) {
    clearTimeout(timer);
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    const code = cause?.code ?? '';
    const host = safeHost(url);
    if (NO_NETWORK_CODES.has(code) || abort.signal.aborted) {
      throw new NoNetworkError(
        `cannot reach ${host} to download ${url} (${code || 'timed out'}${cause?.message ? `: ${cause.message}` : ''}). ` +
        'No network, or the host is down. Download the file elsewhere and place it at the path below, or pass ' +
        '--url with a mirror or a file:// URL, then run again.',
      );
    }
    const msg = `${url}: ${cause?.message ?? (err as Error).message}`;
    throw TRANSIENT_CODES.has(code) ? new TransientError(msg) : new Error(msg);
  }
  let total: number | null = null;
  const length = Number(res.headers.get('content-length') ?? NaN);
  if (res.status === 206) {
    const m = /bytes (\d+)-(\d+)\/(\d+|\*)/.exec(res.headers.get('content-range') ?? '');
    if (!m || Number(m[1]) !== have) {
      clearTimeout(timer);
      await res.body?.cancel();
      fs.rmSync(part, { force: true }); // the server resumed elsewhere: start over next attempt
      throw new TransientError(`${url}: server resumed at an unexpected offset (${res.headers.get('content-range')})`);
    }
    total = m[3] === '*' ? null : Number(m[3]);
  } else if (res.status === 200) {
    have = 0; // no Range support: start over
    total = Number.isFinite(length) ? length : null;
  } else if (res.status === 416 && have > 0) {
    clearTimeout(timer);
    await res.body?.cancel();
    const m = /bytes \*\/(\d+)/.exec(res.headers.get('content-range') ?? '');
    if (m && Number(m[1]) === have) return have; // already complete
    fs.rmSync(part, { force: true });
    throw new TransientError(`${url}: the partial download does not fit the file on the server; starting over`);
  } else {
    clearTimeout(timer);
    await res.body?.cancel();
    const msg = `${url}: HTTP ${res.status} ${res.statusText}`;
    if (res.status >= 500 || res.status === 429) throw new TransientError(msg);
    throw new Error(msg);
  }
  const fd = fs.openSync(part, have > 0 ? 'a' : 'w');
  const start = performance.now();
  let got = 0;
  let lastDraw = 0;
  try {
    if (!res.body) throw new TransientError(`${url}: empty response`);
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      poke();
      let done = 0;
      while (done < chunk.length) done += fs.writeSync(fd, chunk, done);
      got += chunk.length;
      const now = performance.now();
      if (bar && now - lastDraw > 200) {
        lastDraw = now;
        const mbs = got / Math.max(1e-3, (now - start) / 1000) / 1048576;
        const pct = total ? ` ${(((have + got) / total) * 100).toFixed(1)}%` : '';
        process.stderr.write(`\r\x1b[K  ${path.basename(part, '.part')}${pct} ${((have + got) / 1048576).toFixed(1)} MB, ${mbs.toFixed(2)} MB/s`);
      }
    }
  } catch (err) {
    if (err instanceof TransientError) throw err;
    throw new TransientError(`${url}: connection lost after ${have + got} bytes (${(err as Error).message})`);
  } finally {
    clearTimeout(timer);
    fs.closeSync(fd);
    if (bar) process.stderr.write('\r\x1b[K');
  }
  if (total === null && res.status === 200 && Number.isFinite(length)) total = length;
  if (total !== null && have + got < total) throw new TransientError(`${url}: connection closed after ${have + got} of ${total} bytes`);
  return total;
}

function safeHost(url: string): string {
  try { return new URL(url).host || url; } catch { return url; }
}

/** sha256 of a file, hex. */
export async function sha256File(file: string): Promise<string> {
  const h = crypto.createHash('sha256');
  for await (const chunk of fs.createReadStream(file, { highWaterMark: 4 << 20 })) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** sha256sum-format text → file path (without "./" and "*") → hash. */
function parseChecksums(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^([0-9a-fA-F]{64})\s+\*?(.+?)\s*$/.exec(line);
    if (m) out.set(m[2]!.replace(/^\.\//, ''), m[1]!.toLowerCase());
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Extraction

const MANIFEST = '.neox-extracted.json';

/** Is `file` an archive that extractArchive unpacks? */
export function isArchive(file: string): boolean {
  return /\.(zip|tar|tgz|tar\.gz)$/i.test(file);
}

/**
 * Unpack a .zip, .tar, .tar.gz or .tgz into `destDir` and return the member files in archive order.
 * A manifest in destDir makes a second call return the same list without unpacking again.
 */
export async function extractArchive(archive: string, destDir: string): Promise<string[]> {
  const manifestPath = path.join(destDir, MANIFEST);
  const size = fs.statSync(archive).size;
  if (fs.existsSync(manifestPath)) {
    const m = JSON.parse(fs.readFileSync(manifestPath, 'utf8')) as { archiveBytes: number; files: string[] };
    if (m.archiveBytes === size && m.files.every((f) => fs.existsSync(path.join(destDir, f)))) return m.files.map((f) => path.join(destDir, f));
  }
  fs.rmSync(destDir, { recursive: true, force: true });
  fs.mkdirSync(destDir, { recursive: true });
  const lower = archive.toLowerCase();
  let files: string[];
  if (lower.endsWith('.zip')) {
    files = await extractZip(archive, destDir);
  } else if (lower.endsWith('.tar')) {
    files = await extractTar(fs.createReadStream(archive, { highWaterMark: 4 << 20 }), destDir, archive);
  } else {
    const gunzip = zlib.createGunzip();
    const raw = fs.createReadStream(archive, { highWaterMark: 4 << 20 });
    raw.on('error', (err) => gunzip.destroy(err));
    files = await extractTar(raw.pipe(gunzip), destDir, archive);
  }
  fs.writeFileSync(manifestPath, JSON.stringify({ archive: path.basename(archive), archiveBytes: size, files }, null, 1));
  return files.map((f) => path.join(destDir, f));
}

/** A member path made safe to join under destDir (no absolute paths, no "..", no empty parts). */
function safeMember(name: string, archive: string): string | null {
  const parts = name.replace(/\\/g, '/').split('/').filter((p) => p !== '' && p !== '.');
  if (parts.some((p) => p === '..')) throw new Error(`${archive}: member '${name}' points outside the archive; refusing to extract`);
  return parts.length ? parts.join('/') : null;
}

/** ZIP: central directory at the end, stored (0) or deflated (8) members streamed to disk. */
async function extractZip(archive: string, destDir: string): Promise<string[]> {
  const fd = fs.openSync(archive, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    const tailLen = Math.min(size, 65557);
    const tail = Buffer.alloc(tailLen);
    fs.readSync(fd, tail, 0, tailLen, size - tailLen);
    let eocd = -1;
    for (let i = tailLen - 22; i >= 0; i--) if (tail.readUInt32LE(i) === 0x06054b50) { eocd = i; break; }
    if (eocd < 0) throw new Error(`${archive}: not a zip file (no end of central directory)`);
    const count = tail.readUInt16LE(eocd + 10);
    const cdSize = tail.readUInt32LE(eocd + 12);
    const cdOffset = tail.readUInt32LE(eocd + 16);
    if (count === 0xffff || cdOffset === 0xffffffff) throw new Error(`${archive}: ZIP64 archives are not supported; unzip it and pass the files to \`neox preprocess\``);
    const cd = Buffer.alloc(cdSize);
    fs.readSync(fd, cd, 0, cdSize, cdOffset);
    const files: string[] = [];
    let p = 0;
    for (let e = 0; e < count; e++) {
      if (cd.readUInt32LE(p) !== 0x02014b50) throw new Error(`${archive}: corrupt central directory entry ${e}`);
      const method = cd.readUInt16LE(p + 10);
      const csize = cd.readUInt32LE(p + 20);
      const usize = cd.readUInt32LE(p + 24);
      const nameLen = cd.readUInt16LE(p + 28);
      const extraLen = cd.readUInt16LE(p + 30);
      const commentLen = cd.readUInt16LE(p + 32);
      const local = cd.readUInt32LE(p + 42);
      const name = cd.toString('utf8', p + 46, p + 46 + nameLen);
      p += 46 + nameLen + extraLen + commentLen;
      if (name.endsWith('/')) continue; // directory
      if (csize === 0xffffffff || usize === 0xffffffff || local === 0xffffffff) throw new Error(`${archive}: member ${name} needs ZIP64, which is not supported`);
      const rel = safeMember(name, archive);
      if (!rel) continue;
      const lh = Buffer.alloc(30);
      fs.readSync(fd, lh, 0, 30, local);
      if (lh.readUInt32LE(0) !== 0x04034b50) throw new Error(`${archive}: corrupt local header of ${name}`);
      const dataStart = local + 30 + lh.readUInt16LE(26) + lh.readUInt16LE(28);
      const out = path.join(destDir, rel);
      fs.mkdirSync(path.dirname(out), { recursive: true });
      const src = fs.createReadStream(archive, { start: dataStart, end: dataStart + csize - 1, highWaterMark: 4 << 20 });
      if (method === 0) await pipeTo(src, out);
      else if (method === 8) await pipeTo(src.pipe(zlib.createInflateRaw()), out);
      else throw new Error(`${archive}: member ${name} uses compression method ${method}; only stored and deflate are supported`);
      if (fs.statSync(out).size !== usize) throw new Error(`${archive}: member ${name} unpacked to ${fs.statSync(out).size} bytes, expected ${usize}`);
      files.push(rel);
    }
    return files;
  } finally {
    fs.closeSync(fd);
  }
}

function pipeTo(src: NodeJS.ReadableStream, out: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const ws = fs.createWriteStream(out);
    src.on('error', reject);
    ws.on('error', reject);
    ws.on('finish', resolve);
    src.pipe(ws);
  });
}

/** tar (ustar, GNU long names, pax path) from a byte stream; regular files only. */
async function extractTar(stream: AsyncIterable<Buffer | Uint8Array>, destDir: string, archive: string): Promise<string[]> {
  const files: string[] = [];
  let buf = Buffer.alloc(0);
  let member: { fd: number; left: number; pad: number; rel: string } | null = null;
  let skip = 0; // bytes of a member we do not keep (and padding)
  let longName: string | null = null;
  let paxPath: string | null = null;
  let collecting: { kind: 'L' | 'x'; left: number; pad: number; parts: Buffer[] } | null = null;
  let ended = false;
  try {
    for await (const c of stream) {
      buf = buf.length ? Buffer.concat([buf, c as Buffer]) : Buffer.from(c as Buffer);
      for (;;) {
        if (ended) break;
        if (skip > 0) {
          const n = Math.min(skip, buf.length);
          buf = buf.subarray(n);
          skip -= n;
          if (skip > 0) break;
          continue;
        }
        if (member) {
          const n = Math.min(member.left, buf.length);
          let done = 0;
          while (done < n) done += fs.writeSync(member.fd, buf, done, n - done);
          buf = buf.subarray(n);
          member.left -= n;
          if (member.left > 0) break;
          fs.closeSync(member.fd);
          files.push(member.rel);
          skip = member.pad;
          member = null;
          continue;
        }
        if (collecting) {
          const n = Math.min(collecting.left, buf.length);
          collecting.parts.push(Buffer.from(buf.subarray(0, n)));
          buf = buf.subarray(n);
          collecting.left -= n;
          if (collecting.left > 0) break;
          const text = Buffer.concat(collecting.parts).toString('utf8');
          if (collecting.kind === 'L') longName = text.replace(/\0.*$/s, '');
          else paxPath = /(?:^|\n)\d+ path=([^\n]*)\n/.exec(text)?.[1] ?? paxPath;
          skip = collecting.pad;
          collecting = null;
          continue;
        }
        if (buf.length < 512) break;
        const h = buf.subarray(0, 512);
        buf = buf.subarray(512);
        if (h.every((b) => b === 0)) { ended = true; break; }
        const size = tarSize(h.subarray(124, 136), archive);
        const type = String.fromCharCode(h[156]!);
        const pad = (512 - (size % 512)) % 512;
        if (type === 'L' || type === 'x') { collecting = { kind: type, left: size, pad, parts: [] }; continue; }
        if (type === 'g') { skip = size + pad; continue; }
        let name = cString(h.subarray(0, 100));
        const magic = h.toString('latin1', 257, 262);
        if (magic === 'ustar') {
          const prefix = cString(h.subarray(345, 500));
          if (prefix) name = `${prefix}/${name}`;
        }
        name = paxPath ?? longName ?? name;
        paxPath = null;
        longName = null;
        if (type !== '0' && type !== '\0' && type !== '7') { skip = size + pad; continue; } // dirs, links, devices
        const rel = safeMember(name, archive);
        if (!rel) { skip = size + pad; continue; }
        const out = path.join(destDir, rel);
        fs.mkdirSync(path.dirname(out), { recursive: true });
        member = { fd: fs.openSync(out, 'w'), left: size, pad, rel };
        if (size === 0) { fs.closeSync(member.fd); files.push(rel); skip = pad; member = null; }
      }
    }
  } catch (err) {
    throw new Error(`${archive}: cannot extract (${(err as Error).message})`);
  } finally {
    if (member) fs.closeSync(member.fd);
  }
  if (member || collecting || (skip > 0 && !ended)) throw new Error(`${archive}: truncated tar archive`);
  return files;
}

function cString(b: Uint8Array): string {
  const end = b.indexOf(0);
  return Buffer.from(end >= 0 ? b.subarray(0, end) : b).toString('utf8');
}

function tarSize(field: Uint8Array, archive: string): number {
  if (field[0]! & 0x80) { // GNU base-256
    let v = 0;
    for (let i = 1; i < field.length; i++) v = v * 256 + field[i]!;
    return v;
  }
  const s = cString(field).trim();
  const v = s === '' ? 0 : parseInt(s, 8);
  if (!Number.isFinite(v)) throw new Error(`${archive}: bad tar header size '${s}'`);
  return v;
}

// ---------------------------------------------------------------------------------------------
// The command

export interface PrepareOptions {
  /** A CORPORA name (default enwik8). */
  name?: string;
  /** Default $DATA_DIR, else ./data. */
  dataDir?: string;
  /** Default GPT2BPETokenizer. */
  tokenizerType?: string;
  vocabFile?: string | null;
  mergeFile?: string | null;
  /** Tokenizing threads (default: the machine's cores; 1 for enwik8, as GPT-NeoX). */
  workers?: number;
  /** Download again even if the files are there. */
  forceRedownload?: boolean;
  /** Replace the corpus URLs (mirrors, file:// copies). */
  urls?: string[] | null;
  /** Expected sha256 of each file, in URL order (overrides published ones). */
  sha256?: string[] | null;
  log?: (line: string) => void;
  downloadOptions?: DownloadOptions;
}

export interface PrepareResult {
  name: string;
  dir: string;
  /** Files downloaded (or found), in URL order. */
  downloads: string[];
  /** Files preprocessed, in order. */
  inputs: string[];
  /** The config value for this corpus: `{dir}/{name}_text_document`. */
  dataPath: string;
  vocabFile: string | null;
  mergeFile: string | null;
  stats: PreprocessStats;
}

export async function prepareData(opts: PrepareOptions = {}): Promise<PrepareResult> {
  const log = opts.log ?? ((l: string) => process.stderr.write(l + '\n'));
  const name = (opts.name ?? 'enwik8').toLowerCase();
  const spec = CORPORA[name];
  if (!spec) throw new Error(`unknown dataset '${opts.name}'; choose from: ${Object.keys(CORPORA).join(', ')}`);
  const dataDir = opts.dataDir ?? process.env.DATA_DIR ?? './data';
  const dir = path.join(dataDir, name);
  fs.mkdirSync(dir, { recursive: true });
  const dl: DownloadOptions = { ...(opts.log ? { log: opts.log } : {}), ...opts.downloadOptions };
  const urls = opts.urls && opts.urls.length ? opts.urls : spec.urls;
  if (opts.sha256 && opts.sha256.length !== urls.length) throw new Error(`--sha256 gives ${opts.sha256.length} hashes for ${urls.length} files`);

  // Tokenizer files, as GPT-NeoX's maybe_download_gpt2_tokenizer_data.
  const tokenizerType = opts.tokenizerType ?? 'GPT2BPETokenizer';
  let vocabFile = opts.vocabFile ?? null;
  let mergeFile = opts.mergeFile ?? null;
  if (tokenizerType === 'GPT2BPETokenizer') {
    if (!vocabFile) vocabFile = await ensureFile(GPT2_VOCAB_URL, path.join(dataDir, 'gpt2-vocab.json'), dl, log);
    if (!mergeFile) mergeFile = await ensureFile(GPT2_MERGE_URL, path.join(dataDir, 'gpt2-merges.txt'), dl, log);
  } else if (tokenizerType === 'HFGPT2Tokenizer' && !vocabFile) {
    throw new Error('HFGPT2Tokenizer needs --vocab-file: a directory with vocab.json and merges.txt (or tokenizer.json); NeoX.ts does not download from the Hugging Face hub');
  } else if (!vocabFile && !['CharLevelTokenizer'].includes(tokenizerType)) {
    throw new Error(`${tokenizerType} needs --vocab-file`);
  }

  // Download and check.
  let published: Map<string, string> | null = null;
  const downloads: string[] = [];
  for (let i = 0; i < urls.length; i++) {
    const url = urls[i]!;
    const dest = path.join(dir, decodeURIComponent(path.basename(new URL(url, 'file:///').pathname)));
    const have = fs.existsSync(dest) && !opts.forceRedownload;
    if (!have) {
      if (opts.forceRedownload) fs.rmSync(dest, { force: true });
      log(`downloading ${url} → ${dest}${fs.existsSync(`${dest}.part`) ? ' (resuming)' : ''}`);
      try {
        const bytes = await downloadFile(url, dest, dl);
        log(`  ${(bytes / 1048576).toFixed(1)} MB`);
      } catch (err) {
        if (err instanceof NoNetworkError) throw new NoNetworkError(`${err.message}\n  path: ${dest}`);
        throw err;
      }
    } else {
      log(`found ${dest}`);
    }
    let expected = opts.sha256?.[i]?.toLowerCase() ?? spec.sha256?.[path.basename(dest)] ?? null;
    if (!expected && spec.checksumsUrl && !(opts.urls && opts.urls.length)) {
      published ??= await fetchChecksums(spec.checksumsUrl, dir, dl, log);
      const rel = new URL(url).pathname.slice(new URL(spec.checksumsUrl).pathname.replace(/[^/]*$/, '').length);
      expected = published?.get(rel) ?? null;
    }
    if (expected) {
      const got = await sha256File(dest);
      if (got !== expected) {
        fs.rmSync(dest, { force: true });
        throw new Error(`${dest}: sha256 ${got} does not match the published ${expected}; the file was deleted, run again to download it anew`);
      }
      log(`  sha256 ok (${expected.slice(0, 16)}…)`);
    }
    downloads.push(dest);
  }

  // Extract archives; everything else is read as it is.
  const inputs: string[] = [];
  for (const f of downloads) {
    if (isArchive(f)) {
      const to = path.join(dir, 'extracted', path.basename(f));
      log(`extracting ${f} → ${to}`);
      const members = await extractArchive(f, to);
      log(`  ${members.length} files`);
      inputs.push(...members);
    } else {
      inputs.push(f);
    }
  }
  if (inputs.length === 0) throw new Error(`${name}: nothing to preprocess (the archives were empty)`);

  const workers = opts.workers ?? (name === 'enwik8' ? 1 : Math.max(1, (os.availableParallelism?.() ?? os.cpus().length)));
  const stats = await preprocess({
    input: inputs, tokenizerType, vocabFile, mergeFile, appendEod: true, outputPrefix: path.join(dir, name),
    workers, numDocs: spec.numDocs ?? null, ...(opts.log ? { log: opts.log } : {}),
  });
  const dataPath = path.join(dir, `${name}_text_document`);
  log(`done: ${stats.documents} documents, ${stats.tokens} tokens → ${dataPath}.bin/.idx`);
  log(`config: data_path: ${dataPath}, tokenizer_type: ${tokenizerType}${vocabFile ? `, vocab_file: ${vocabFile}` : ''}${mergeFile ? `, merge_file: ${mergeFile}` : ''}`);
  return { name, dir, downloads, inputs, dataPath, vocabFile, mergeFile, stats };
}

async function ensureFile(url: string, dest: string, dl: DownloadOptions, log: (l: string) => void): Promise<string> {
  if (!fs.existsSync(dest)) {
    log(`downloading ${url} → ${dest}`);
    try {
      await downloadFile(url, dest, dl);
    } catch (err) {
      if (err instanceof NoNetworkError) {
        throw new NoNetworkError(`${err.message}\n  path: ${dest}\n  (or give --vocab-file/--merge-file, or --tokenizer-type CharLevelTokenizer)`);
      }
      throw err;
    }
  }
  return dest;
}

/** The host's checksum list, or null (with a warning) when it cannot be had. */
async function fetchChecksums(url: string, dir: string, dl: DownloadOptions, log: (l: string) => void): Promise<Map<string, string> | null> {
  const dest = path.join(dir, path.basename(new URL(url).pathname));
  try {
    if (!fs.existsSync(dest)) await downloadFile(url, dest, dl);
    return parseChecksums(fs.readFileSync(dest, 'utf8'));
  } catch (err) {
    log(`warning: could not get the published checksums ${url} (${(err as Error).message.split('\n')[0]}); files are not verified`);
    return null;
  }
}

// ---------------------------------------------------------------------------------------------
// Command line

export const PREPARE_USAGE = `usage: neox prepare-data [NAME] [options]

Downloads a corpus from GPT-NeoX's list, checks it, extracts it and preprocesses it into
DATA_DIR/NAME/NAME_text_document.bin/.idx (the data_path to put in a config).

  NAME                      ${Object.keys(CORPORA).join(', ')}
                            (default: enwik8)
  --data-dir DIR            where to put it (default: $DATA_DIR, else ./data)
  --tokenizer-type TYPE     default GPT2BPETokenizer (its vocab/merges are downloaded into DIR
                            unless --vocab-file/--merge-file are given)
  --vocab-file PATH         tokenizer vocabulary
  --merge-file PATH         BPE merges
  --workers N               tokenizing threads (default: all cores; 1 for enwik8)
  --force-redownload        download again even if the files are there
  --url URL[,URL...]        download from these URLs instead (mirrors, file:// paths)
  --sha256 HEX[,HEX...]     expected sha256 of each file, in URL order
  --list                    print the corpus names and URLs
`;

export function parsePrepareArgs(argv: string[]): PrepareOptions & { list?: boolean } {
  const out: PrepareOptions & { list?: boolean } = {};
  const valued: Record<string, (v: string) => void> = {
    '--data-dir': (v) => { out.dataDir = v; },
    '--tokenizer-type': (v) => { out.tokenizerType = v; },
    '--vocab-file': (v) => { out.vocabFile = v; },
    '--merge-file': (v) => { out.mergeFile = v; },
    '--workers': (v) => {
      const n = Number(v);
      if (!/^\d+$/.test(v) || n < 1) throw new Error(`--workers: '${v}' is not a positive integer`);
      out.workers = n;
    },
    '--url': (v) => { out.urls = v.split(',').map((s) => s.trim()).filter((s) => s); },
    '--sha256': (v) => {
      out.sha256 = v.split(',').map((s) => s.trim());
      for (const h of out.sha256) if (!/^[0-9a-fA-F]{64}$/.test(h)) throw new Error(`--sha256: '${h}' is not a sha256 hex digest`);
    },
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const eq = arg.indexOf('=');
    const key = arg.startsWith('--') && eq > 0 ? arg.slice(0, eq) : arg;
    if (key === '--force-redownload') out.forceRedownload = true;
    else if (key === '--list') out.list = true;
    else if (valued[key]) {
      const v = eq > 0 && arg.startsWith('--') ? arg.slice(eq + 1) : argv[++i];
      if (v === undefined) throw new Error(`option ${key} needs a value`);
      valued[key]!(v);
    } else if (arg.startsWith('-')) throw new Error(`unknown option ${arg}\n\n${PREPARE_USAGE}`);
    else if (out.name === undefined) out.name = arg;
    else throw new Error(`unexpected argument '${arg}' (one dataset name at a time)`);
  }
  return out;
}

export async function runPrepareCli(argv: string[]): Promise<number> {
  if (argv.includes('-h') || argv.includes('--help')) {
    process.stdout.write(PREPARE_USAGE);
    return 0;
  }
  try {
    const opts = parsePrepareArgs(argv);
    if (opts.list) {
      for (const [name, spec] of Object.entries(CORPORA)) {
        const more = spec.urls.length > 1 ? ` (+${spec.urls.length - 1} more)` : '';
        process.stdout.write(`${name.padEnd(18)} ${spec.urls[0]}${more}\n`);
      }
      return 0;
    }
    await prepareData(opts);
    return 0;
  } catch (err) {
    process.stderr.write(`neox prepare-data: ${(err as Error).message}\n`);
    return err instanceof NoNetworkError ? 3 : 1;
  }
}
