// safetensors: Hugging Face's tensor file format, written byte-identically to the Python
// `safetensors` library and read with positioned reads (a file is never read whole).
//
// defines: STDType, ST_DTYPES, stDTypeBits, isSTDType, toSTDType, fromSTDType, numel,
//          tensorByteSize                          dtype table and sizes
//          HostTensor, TensorDesc, TensorInfo, hostTensor, hostArrayOf
//                                                  host-side tensors as raw little-endian bytes
//          SafetensorsError                        every failure, naming the file and what is wrong
//          planSafetensors, serializeSafetensors   the header, byte for byte as the Rust serializer
//          writeSafetensors, writeSafetensorsFrom  to a file: all in memory / tensor by tensor
//          SafetensorsFile                         reader: validated header, read(name), readAll()
//          planShards, writeSharded, writeShardedFrom, readShardedIndex, ShardedSafetensors
//                                                  model-0000i-of-0000K shards + index json
//          writeFileAtomic, WriteResult, FileSink  temp + fsync + rename (used by checkpoint.ts)
//
// Layout (huggingface/safetensors safetensors/src/tensor.rs):
//   [u64 LE n][n bytes of UTF-8 JSON, padded with spaces to a multiple of 8][data]
//   JSON = {"__metadata__":{...},"name":{"dtype":"F32","shape":[..],"data_offsets":[b,e]},...}
//   written compactly (serde_json::to_string), `__metadata__` first when present, then tensors in
//   data order: sorted by the Rust `Dtype` enum descending (its declaration order is ascending
//   alignment: U64 I64 F64 C64 F32 U32 I32 BF16 F16 U16 I16 ... BOOL), ties by name in byte
//   order. Offsets are relative to the data start, contiguous from 0, and the last end is the
//   end of the file. The reader accepts any tensor order and unpadded headers, like Rust does.
//
// Metadata: the Python writer takes `Dict[str, str]` into a Rust std HashMap, so with two or more
// keys its `__metadata__` key order is random per process; no byte-identity exists there. We keep
// the caller's insertion order. Metadata left out means {"format": "pt"} (transformers refuses a
// file whose metadata lacks a known format); null writes no `__metadata__` (as Python's
// `save_file(t)`); an object is written exactly as given, so include `format` in it.

import { createHash, randomBytes, type Hash } from 'node:crypto';
import {
  closeSync, existsSync, fstatSync, fsyncSync, mkdirSync, openSync, readFileSync, readSync,
  readdirSync, renameSync, rmSync, statSync, writeSync,
} from 'node:fs';
import { open as openAsync, rename as renameAsync, rm as rmAsync, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

import { ITEM_SIZE, type DType, type HostArray } from '../tensor/dtype.js';

// ─── dtypes ──────────────────────────────────────────────────────────────────────────────────────

/** Every dtype of the Rust `Dtype` enum, in its declaration order (= sort rank, ascending). */
export const ST_DTYPES = [
  'BOOL', 'F4', 'F6_E2M3', 'F6_E3M2', 'U8', 'I8', 'F8_E5M2', 'F8_E4M3', 'F8_E8M0', 'F8_E4M3FNUZ',
  'F8_E5M2FNUZ', 'I16', 'U16', 'F16', 'BF16', 'I32', 'U32', 'F32', 'C64', 'F64', 'I64', 'U64',
] as const;
export type STDType = (typeof ST_DTYPES)[number];

const RANK = new Map<string, number>(ST_DTYPES.map((d, i) => [d, i]));

const BITS: Record<STDType, number> = {
  BOOL: 8, F4: 4, F6_E2M3: 6, F6_E3M2: 6, U8: 8, I8: 8, F8_E5M2: 8, F8_E4M3: 8, F8_E8M0: 8,
  F8_E4M3FNUZ: 8, F8_E5M2FNUZ: 8, I16: 16, U16: 16, F16: 16, BF16: 16, I32: 32, U32: 32, F32: 32,
  C64: 64, F64: 64, I64: 64, U64: 64,
};

const TO_ST: Record<DType, STDType> = {
  f32: 'F32', f64: 'F64', bf16: 'BF16', f16: 'F16', i32: 'I32', u16: 'U16', u8: 'U8',
};
const FROM_ST = new Map<STDType, DType>(Object.entries(TO_ST).map(([k, v]) => [v, k as DType]));

export function isSTDType(s: unknown): s is STDType {
  return typeof s === 'string' && RANK.has(s);
}

/** Bits per element (F4 is 4, F6_* are 6; everything else a whole number of bytes). */
export function stDTypeBits(dtype: STDType): number {
  return BITS[dtype];
}

export function toSTDType(dtype: DType): STDType {
  return TO_ST[dtype];
}

/** Our engine dtype for a safetensors dtype, or undefined where we have none (I64, F8_*, ...). */
export function fromSTDType(dtype: STDType): DType | undefined {
  return FROM_ST.get(dtype);
}

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Bytes of a tensor; throws when the shape is invalid or sub-byte elements end mid-byte. */
export function tensorByteSize(dtype: STDType, shape: readonly number[]): number {
  for (const d of shape) {
    if (!Number.isSafeInteger(d) || d < 0) {
      throw new SafetensorsError(`shape [${shape.join(', ')}] has a dimension that is not a ` +
        'non-negative integer');
    }
  }
  const bits = numel(shape) * BITS[dtype];
  if (!Number.isSafeInteger(bits)) {
    throw new SafetensorsError(`shape [${shape.join(', ')}] of ${dtype} overflows`);
  }
  if (bits % 8 !== 0) {
    throw new SafetensorsError(`${dtype} tensor of shape [${shape.join(', ')}] does not end on a ` +
      'byte boundary');
  }
  return bits / 8;
}

// ─── host tensors ────────────────────────────────────────────────────────────────────────────────

/** A tensor on the host: row-major, little-endian bytes. `shape: []` is a scalar. */
export interface HostTensor {
  dtype: STDType;
  shape: number[];
  data: Uint8Array;
}

/** A tensor without its bytes: enough to lay out a file. */
export interface TensorDesc {
  dtype: STDType;
  shape: readonly number[];
}

/** A tensor's entry in a file header; offsets are relative to the start of the data section. */
export interface TensorInfo {
  dtype: STDType;
  shape: number[];
  dataOffsets: [number, number];
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function requireLittleEndian(): void {
  if (!LITTLE_ENDIAN) throw new SafetensorsError('big-endian hosts are not supported');
}

/** Wraps a typed array (no copy) as a HostTensor of our dtype. */
export function hostTensor(dtype: DType, shape: readonly number[], values: HostArray): HostTensor {
  requireLittleEndian();
  if (values.BYTES_PER_ELEMENT !== ITEM_SIZE[dtype]) {
    throw new SafetensorsError(`${values.constructor.name} cannot hold ${dtype} values`);
  }
  const n = numel(shape);
  if (values.length !== n) {
    throw new SafetensorsError(`shape [${shape.join(', ')}] needs ${n} values, got ${values.length}`);
  }
  return {
    dtype: TO_ST[dtype],
    shape: [...shape],
    data: new Uint8Array(values.buffer, values.byteOffset, values.byteLength),
  };
}

/** The HostTensor's values as our engine's typed array (a view when aligned, else a copy). */
export function hostArrayOf(t: HostTensor): { dtype: DType; data: HostArray } {
  requireLittleEndian();
  const dtype = FROM_ST.get(t.dtype);
  if (dtype === undefined) throw new SafetensorsError(`no engine dtype for safetensors ${t.dtype}`);
  const size = ITEM_SIZE[dtype];
  let bytes = t.data;
  if (bytes.byteOffset % size !== 0) bytes = bytes.slice();
  const n = bytes.byteLength / size;
  const buf = bytes.buffer;
  const off = bytes.byteOffset;
  switch (dtype) {
    case 'f32': return { dtype, data: new Float32Array(buf, off, n) };
    case 'f64': return { dtype, data: new Float64Array(buf, off, n) };
    case 'i32': return { dtype, data: new Int32Array(buf, off, n) };
    case 'bf16': case 'f16': case 'u16': return { dtype, data: new Uint16Array(buf, off, n) };
    case 'u8': return { dtype, data: new Uint8Array(buf, off, n) };
  }
}

// ─── errors ──────────────────────────────────────────────────────────────────────────────────────

/** A safetensors failure. `name` is 'NeoxError' so the CLI prints the message, not a stack. */
export class SafetensorsError extends Error {
  override name = 'NeoxError';
  readonly file: string | undefined;
  constructor(message: string, file?: string) {
    super(file === undefined ? message : `${file}: ${message}`);
    this.file = file;
  }
}

// ─── header layout ───────────────────────────────────────────────────────────────────────────────

export const MAX_HEADER_SIZE = 100_000_000;
const N_LEN = 8;
const IO_CHUNK = 1 << 30; // read/write calls are capped near 2 GiB; stay well under

export type Metadata = Record<string, string>;
/** Tensors by name: a Map, a plain object, or [name, value] pairs (insertion order is kept). */
export type TensorSource<T> = Map<string, T> | Record<string, T> | Iterable<readonly [string, T]>;

function entriesOf<T>(src: TensorSource<T>): [string, T][] {
  const list: [string, T][] = [];
  const seen = new Set<string>();
  const it: Iterable<readonly [string, T]> =
    src instanceof Map || Symbol.iterator in (src as object)
      ? (src as Iterable<readonly [string, T]>)
      : Object.entries(src as Record<string, T>);
  for (const [name, value] of it) {
    if (seen.has(name)) throw new SafetensorsError(`tensor "${name}" given twice`);
    seen.add(name);
    list.push([name, value]);
  }
  return list;
}

/** UTF-16 strings compared in code point order (= UTF-8 byte order, = Rust `str` and Python). */
export function compareCodePoints(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x === y) continue;
    // Surrogates (D800-DFFF) encode code points above every BMP unit: move them above E000-FFFF.
    x = x >= 0xe000 ? x - 0x800 : x >= 0xd800 ? x + 0x2000 : x;
    y = y >= 0xe000 ? y - 0x800 : y >= 0xd800 ? y + 0x2000 : y;
    return x - y;
  }
  return a.length - b.length;
}

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

function checkName(name: string): void {
  if (name === '__metadata__') throw new SafetensorsError('"__metadata__" cannot name a tensor');
  if (LONE_SURROGATE.test(name)) {
    throw new SafetensorsError(`tensor name ${JSON.stringify(name)} is not valid Unicode`);
  }
}

/** A file's layout before any data is written. `header` holds the 8 length bytes too. */
export interface SafetensorsLayout {
  header: Uint8Array;
  /** Tensors in the order their bytes follow the header. */
  order: { name: string; info: TensorInfo }[];
  dataBytes: number;
  fileBytes: number;
}

/** Lays out a file exactly as the Rust `prepare()` does (sort, offsets, JSON, space padding). */
export function planSafetensors(tensors: TensorSource<TensorDesc>,
  metadata?: Metadata | null): SafetensorsLayout {
  const meta = metadata === undefined ? { format: 'pt' } : metadata;
  const items = entriesOf(tensors).map(([name, desc]) => {
    checkName(name);
    if (!isSTDType(desc.dtype)) {
      throw new SafetensorsError(`tensor "${name}": unknown dtype ${String(desc.dtype)}`);
    }
    return { name, dtype: desc.dtype, shape: [...desc.shape], bytes: tensorByteSize(desc.dtype, desc.shape) };
  });
  items.sort((a, b) => RANK.get(b.dtype)! - RANK.get(a.dtype)! || compareCodePoints(a.name, b.name));

  const parts: string[] = [];
  if (meta !== null) {
    const kv = Object.entries(meta).map(([k, v]) => {
      if (typeof v !== 'string') throw new SafetensorsError(`metadata "${k}" is not a string`);
      return `${JSON.stringify(k)}:${JSON.stringify(v)}`;
    });
    parts.push(`"__metadata__":{${kv.join(',')}}`);
  }
  const order: { name: string; info: TensorInfo }[] = [];
  let offset = 0;
  for (const t of items) {
    const info: TensorInfo = { dtype: t.dtype, shape: t.shape, dataOffsets: [offset, offset + t.bytes] };
    offset += t.bytes;
    order.push({ name: t.name, info });
    parts.push(`${JSON.stringify(t.name)}:{"dtype":"${t.dtype}","shape":[${t.shape.join(',')}],` +
      `"data_offsets":[${info.dataOffsets[0]},${info.dataOffsets[1]}]}`);
  }
  const json = new TextEncoder().encode(`{${parts.join(',')}}`);
  const n = Math.ceil(json.length / N_LEN) * N_LEN;
  if (n > MAX_HEADER_SIZE) {
    throw new SafetensorsError(`header of ${n} bytes exceeds the ${MAX_HEADER_SIZE}-byte limit`);
  }
  const header = new Uint8Array(N_LEN + n).fill(0x20, N_LEN + json.length);
  new DataView(header.buffer).setBigUint64(0, BigInt(n), true);
  header.set(json, N_LEN);
  return { header, order, dataBytes: offset, fileBytes: N_LEN + n + offset };
}

function checkData(name: string, t: HostTensor, info: TensorInfo): Uint8Array {
  const want = info.dataOffsets[1] - info.dataOffsets[0];
  if (!(t.data instanceof Uint8Array)) throw new SafetensorsError(`tensor "${name}": data is not bytes`);
  if (t.data.byteLength !== want) {
    throw new SafetensorsError(`tensor "${name}": ${t.dtype} [${t.shape.join(', ')}] needs ` +
      `${want} bytes, data has ${t.data.byteLength}`);
  }
  return t.data;
}

/** The whole file in memory (small files and tests; use writeSafetensors for models). */
export function serializeSafetensors(tensors: TensorSource<HostTensor>,
  metadata?: Metadata | null): Uint8Array {
  const map = new Map(entriesOf(tensors));
  const layout = planSafetensors(map, metadata);
  const out = new Uint8Array(layout.fileBytes);
  out.set(layout.header, 0);
  let pos = layout.header.length;
  for (const { name, info } of layout.order) {
    out.set(checkData(name, map.get(name)!, info), pos);
    pos += info.dataOffsets[1] - info.dataOffsets[0];
  }
  return out;
}

// ─── writing files ───────────────────────────────────────────────────────────────────────────────

export interface WriteResult {
  path: string;
  bytes: number;
  sha256: string;
}

export interface WriteOptions {
  /** Write to a temp file in the same folder and rename over `path` (default true). */
  atomic?: boolean;
  /** fsync the file before closing (default true). */
  fsync?: boolean;
}

/** Bytes going to one open file, hashed (sha256) on the way. */
export class FileSink {
  bytes = 0;
  private readonly hash: Hash = createHash('sha256');
  constructor(readonly fd: number) {}

  write(chunk: Uint8Array): void {
    this.hash.update(chunk);
    let off = 0;
    while (off < chunk.byteLength) {
      off += writeSync(this.fd, chunk, off, Math.min(IO_CHUNK, chunk.byteLength - off));
    }
    this.bytes += chunk.byteLength;
  }

  digest(): string {
    return this.hash.digest('hex');
  }
}

class AsyncFileSink {
  bytes = 0;
  private readonly hash: Hash = createHash('sha256');
  constructor(readonly fh: FileHandle) {}

  async write(chunk: Uint8Array): Promise<void> {
    this.hash.update(chunk);
    let off = 0;
    while (off < chunk.byteLength) {
      const { bytesWritten } = await this.fh.write(chunk, off, Math.min(IO_CHUNK, chunk.byteLength - off));
      off += bytesWritten;
    }
    this.bytes += chunk.byteLength;
  }

  digest(): string {
    return this.hash.digest('hex');
  }
}

function tempPathFor(path: string): string {
  return join(dirname(path), `.${basename(path)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
}

/** Fsyncs a directory so that renames and creations inside it survive a power cut. */
export function fsyncDir(dir: string): void {
  let fd: number;
  try {
    fd = openSync(dir, 'r');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EISDIR' || (e as NodeJS.ErrnoException).code === 'EPERM') {
      return; // platforms that cannot open a folder (Windows) have no folder fsync to do
    }
    throw e;
  }
  try {
    fsyncSync(fd);
  } catch (e) {
    // Some file systems refuse fsync on a folder; the data files themselves were fsynced.
    if ((e as NodeJS.ErrnoException).code !== 'EINVAL') throw e;
  } finally {
    closeSync(fd);
  }
}

/** Writes a file through `body`, hashing it; atomic (temp + rename) unless told otherwise. */
export function writeFileAtomic(path: string, body: (sink: FileSink) => void,
  opts: WriteOptions = {}): WriteResult {
  const atomic = opts.atomic ?? true;
  const target = atomic ? tempPathFor(path) : path;
  let fd = -1;
  try {
    fd = openSync(target, atomic ? 'wx' : 'w');
    const sink = new FileSink(fd);
    body(sink);
    if (opts.fsync ?? true) fsyncSync(fd);
    closeSync(fd);
    fd = -1;
    if (atomic) renameSync(target, path);
    return { path, bytes: sink.bytes, sha256: sink.digest() };
  } catch (e) {
    if (fd >= 0) closeSync(fd);
    if (atomic) rmSync(target, { force: true });
    throw e;
  }
}

async function writeFileAtomicAsync(path: string, body: (sink: AsyncFileSink) => Promise<void>,
  opts: WriteOptions = {}): Promise<WriteResult> {
  const atomic = opts.atomic ?? true;
  const target = atomic ? tempPathFor(path) : path;
  let fh: FileHandle | undefined;
  try {
    fh = await openAsync(target, atomic ? 'wx' : 'w');
    const sink = new AsyncFileSink(fh);
    await body(sink);
    if (opts.fsync ?? true) await fh.sync();
    await fh.close();
    fh = undefined;
    if (atomic) await renameAsync(target, path);
    return { path, bytes: sink.bytes, sha256: sink.digest() };
  } catch (e) {
    if (fh !== undefined) await fh.close();
    if (atomic) await rmAsync(target, { force: true });
    throw e;
  }
}

/** Writes tensors held in memory: header, then each tensor's bytes in file order. */
export function writeSafetensors(path: string, tensors: TensorSource<HostTensor>,
  metadata?: Metadata | null, opts?: WriteOptions): WriteResult {
  const map = new Map(entriesOf(tensors));
  const layout = planSafetensors(map, metadata);
  for (const { name, info } of layout.order) checkData(name, map.get(name)!, info);
  return writeFileAtomic(path, (sink) => {
    sink.write(layout.header);
    for (const { name } of layout.order) sink.write(map.get(name)!.data);
  }, opts);
}

/** One tensor's bytes: whole, or in chunks (for tensors too big for one buffer). */
export type TensorBytes = Uint8Array | Iterable<Uint8Array> | AsyncIterable<Uint8Array>;
/** Called once per tensor, in file order, when its bytes are due. */
export type TensorProducer =
  (name: string, desc: TensorDesc) => TensorBytes | Promise<TensorBytes>;

/**
 * Writes a file from descriptors, asking `produce` for each tensor's bytes only when they are
 * due, so a model larger than memory can be written straight from its source.
 */
export async function writeSafetensorsFrom(path: string, descs: TensorSource<TensorDesc>,
  produce: TensorProducer, metadata?: Metadata | null, opts?: WriteOptions): Promise<WriteResult> {
  const layout = planSafetensors(descs, metadata);
  return writeFileAtomicAsync(path, async (sink) => {
    await sink.write(layout.header);
    for (const { name, info } of layout.order) {
      const want = info.dataOffsets[1] - info.dataOffsets[0];
      const start = sink.bytes;
      const got = await produce(name, { dtype: info.dtype, shape: info.shape });
      if (got instanceof Uint8Array) {
        if (got.byteLength !== want) {
          throw new SafetensorsError(`tensor "${name}": producer gave ${got.byteLength} bytes, ` +
            `${info.dtype} [${info.shape.join(', ')}] needs ${want}`, path);
        }
        await sink.write(got);
        continue;
      }
      for await (const chunk of got) {
        if (sink.bytes - start + chunk.byteLength > want) {
          throw new SafetensorsError(`tensor "${name}": producer gave more than ${want} bytes`, path);
        }
        await sink.write(chunk);
      }
      if (sink.bytes - start !== want) {
        throw new SafetensorsError(`tensor "${name}": producer gave ${sink.bytes - start} bytes, ` +
          `needs ${want}`, path);
      }
    }
  }, opts);
}

// ─── reading files ───────────────────────────────────────────────────────────────────────────────

function readExactly(fd: number, buf: Uint8Array, position: number, path: string): void {
  let off = 0;
  while (off < buf.byteLength) {
    const n = readSync(fd, buf, off, Math.min(IO_CHUNK, buf.byteLength - off), position + off);
    if (n === 0) {
      throw new SafetensorsError(`unexpected end of file at byte ${position + off} ` +
        '(truncated or changed while reading)', path);
    }
    off += n;
  }
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isIndex(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/**
 * An opened safetensors file. The constructor reads and validates the header only; tensors are
 * read on demand with positioned reads. No descriptor stays open between calls.
 */
export class SafetensorsFile {
  readonly path: string;
  readonly fileSize: number;
  /** The JSON header's length in bytes (the u64 at the start of the file). */
  readonly headerSize: number;
  /** File offset where tensor data begins (8 + headerSize). */
  readonly dataStart: number;
  readonly metadata: Metadata | null;
  private readonly entries: Map<string, TensorInfo>;
  private readonly headerBytes: Uint8Array;

  constructor(path: string) {
    this.path = path;
    const fail = (what: string): never => {
      throw new SafetensorsError(`not a valid safetensors file: ${what}`, path);
    };
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch (e) {
      throw new SafetensorsError(`cannot open: ${(e as Error).message}`, path);
    }
    try {
      this.fileSize = fstatSync(fd).size;
      if (this.fileSize < N_LEN) fail(`${this.fileSize} bytes, too short for the 8-byte header length`);
      const lenBytes = new Uint8Array(N_LEN);
      readExactly(fd, lenBytes, 0, path);
      const n = new DataView(lenBytes.buffer).getBigUint64(0, true);
      if (n > BigInt(MAX_HEADER_SIZE)) {
        fail(`header length ${n} exceeds the ${MAX_HEADER_SIZE}-byte limit`);
      }
      this.headerSize = Number(n);
      this.dataStart = N_LEN + this.headerSize;
      if (this.dataStart > this.fileSize) {
        fail(`header length ${n} runs past the end of the ${this.fileSize}-byte file (truncated?)`);
      }
      this.headerBytes = new Uint8Array(this.dataStart);
      this.headerBytes.set(lenBytes, 0);
      readExactly(fd, this.headerBytes.subarray(N_LEN), N_LEN, path);
    } finally {
      closeSync(fd);
    }

    let text = '';
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(this.headerBytes.subarray(N_LEN));
    } catch {
      fail('header is not valid UTF-8');
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (e) {
      fail(`header is not valid JSON (${(e as Error).message})`);
    }
    if (!isPlainObject(json)) fail('header is not a JSON object');
    const header = json as Record<string, unknown>;

    let metadata: Metadata | null = null;
    const rawMeta = header['__metadata__'];
    if (rawMeta !== undefined && rawMeta !== null) {
      if (!isPlainObject(rawMeta)) fail('__metadata__ is not an object');
      metadata = {};
      for (const [k, v] of Object.entries(rawMeta as Record<string, unknown>)) {
        if (typeof v !== 'string') fail(`__metadata__ "${k}" is not a string`);
        metadata[k] = v as string;
      }
    }
    this.metadata = metadata;

    const list: [string, TensorInfo][] = [];
    for (const [name, raw] of Object.entries(header)) {
      if (name === '__metadata__') continue;
      const where = `tensor "${name}"`;
      if (!isPlainObject(raw)) fail(`${where} is not an object`);
      const r = raw as Record<string, unknown>;
      if (!isSTDType(r['dtype'])) fail(`${where}: unknown dtype ${JSON.stringify(r['dtype'])}`);
      const shape = r['shape'];
      if (!Array.isArray(shape) || !shape.every(isIndex)) {
        fail(`${where}: shape ${JSON.stringify(shape)} is not a list of non-negative integers`);
      }
      const offs = r['data_offsets'];
      if (!Array.isArray(offs) || offs.length !== 2 || !offs.every(isIndex)) {
        fail(`${where}: data_offsets ${JSON.stringify(offs)} is not [begin, end]`);
      }
      list.push([name, {
        dtype: r['dtype'] as STDType,
        shape: shape as number[],
        dataOffsets: [(offs as number[])[0]!, (offs as number[])[1]!],
      }]);
    }

    // Same checks as Rust `Metadata::validate`: sorted by offsets, the tensors must tile the data
    // section from 0 with no gap or overlap, each span exactly numel · itemsize.
    list.sort((a, b) => a[1].dataOffsets[0] - b[1].dataOffsets[0] ||
      a[1].dataOffsets[1] - b[1].dataOffsets[1]);
    let end = 0;
    let prev = '';
    for (const [name, info] of list) {
      const [b, e] = info.dataOffsets;
      if (e < b) fail(`tensor "${name}": data_offsets [${b}, ${e}] end before they begin`);
      if (b < end) {
        fail(`tensor "${name}": data_offsets [${b}, ${e}] overlap tensor "${prev}" ending at ${end}`);
      }
      if (b > end) {
        fail(`tensor "${name}": data_offsets [${b}, ${e}] leave a gap of ${b - end} bytes ` +
          (prev === '' ? 'at the start of the data' : `after tensor "${prev}"`));
      }
      let size = -1;
      try {
        size = tensorByteSize(info.dtype, info.shape);
      } catch (err) {
        fail(`tensor "${name}": ${(err as Error).message}`);
      }
      if (e - b !== size) {
        fail(`tensor "${name}": data_offsets [${b}, ${e}] span ${e - b} bytes, but ${info.dtype} ` +
          `[${info.shape.join(', ')}] needs ${size}`);
      }
      end = e;
      prev = name;
    }
    const expected = this.dataStart + end;
    if (expected > this.fileSize) {
      fail(`truncated: the header describes ${expected} bytes, the file has ${this.fileSize}`);
    }
    if (expected < this.fileSize) {
      fail(`${this.fileSize - expected} bytes after the last tensor (the header describes ` +
        `${expected} bytes, the file has ${this.fileSize})`);
    }
    this.entries = new Map(list);
  }

  /** Tensor names in the order their bytes lie in the file. */
  names(): string[] {
    return [...this.entries.keys()];
  }

  has(name: string): boolean {
    return this.entries.has(name);
  }

  info(name: string): TensorInfo {
    const info = this.entries.get(name);
    if (info === undefined) throw new SafetensorsError(`no tensor named "${name}"`, this.path);
    return { dtype: info.dtype, shape: [...info.shape], dataOffsets: [...info.dataOffsets] };
  }

  /** Bytes of tensor data (the file minus its header). */
  get dataBytes(): number {
    return this.fileSize - this.dataStart;
  }

  /** Reads one tensor into fresh memory. */
  read(name: string): HostTensor {
    const info = this.info(name);
    const fd = openSync(this.path, 'r');
    try {
      return this.readAt(fd, info);
    } finally {
      closeSync(fd);
    }
  }

  /**
   * Reads every tensor in file order through one descriptor. `onBytes` sees the header and then
   * every tensor's bytes in order, i.e. the whole file once: pass a hash to checksum while loading.
   */
  readAll(onBytes?: (chunk: Uint8Array) => void): Map<string, HostTensor> {
    onBytes?.(this.headerBytes);
    const out = new Map<string, HostTensor>();
    const fd = openSync(this.path, 'r');
    try {
      for (const [name, info] of this.entries) {
        const t = this.readAt(fd, info);
        onBytes?.(t.data);
        out.set(name, t);
      }
    } finally {
      closeSync(fd);
    }
    return out;
  }

  private readAt(fd: number, info: TensorInfo): HostTensor {
    const [b, e] = info.dataOffsets;
    const data = new Uint8Array(e - b); // its own ArrayBuffer: offset 0, so typed views align
    readExactly(fd, data, this.dataStart + b, this.path);
    return { dtype: info.dtype, shape: [...info.shape], data };
  }
}

// ─── shards ──────────────────────────────────────────────────────────────────────────────────────

export const SAFE_WEIGHTS_NAME = 'model.safetensors';
export const SAFE_WEIGHTS_INDEX_NAME = 'model.safetensors.index.json';

export interface ShardPlan {
  /** Files in order, each with its tensors in the caller's order. */
  shards: { file: string; names: string[]; bytes: number }[];
  weightMap: Map<string, string>;
  /** Sum of the tensors' data bytes (headers not counted), as transformers' `total_size`. */
  totalSize: number;
}

/**
 * Assigns tensors to shards as huggingface_hub's `split_state_dict_into_shards_factory` (used by
 * transformers' save_pretrained): walk tensors in order; a tensor larger than the limit gets a
 * shard of its own at once; otherwise start a new shard when adding it would pass the limit.
 * One shard is named `model.safetensors`; K > 1 are `model-0000i-of-0000K.safetensors`.
 */
export function planShards(tensors: TensorSource<TensorDesc>, maxShardBytes: number,
  prefix = 'model'): ShardPlan {
  if (!(maxShardBytes > 0)) throw new SafetensorsError('maxShardBytes must be positive');
  const groups: { names: string[]; bytes: number }[] = [];
  let current: { names: string[]; bytes: number } = { names: [], bytes: 0 };
  let totalSize = 0;
  for (const [name, desc] of entriesOf(tensors)) {
    const size = tensorByteSize(desc.dtype, desc.shape);
    totalSize += size;
    if (size > maxShardBytes) {
      groups.push({ names: [name], bytes: size });
      continue;
    }
    if (current.bytes + size > maxShardBytes) {
      groups.push(current);
      current = { names: [], bytes: 0 };
    }
    current.names.push(name);
    current.bytes += size;
  }
  if (current.names.length > 0 || groups.length === 0) groups.push(current);

  const k = groups.length;
  const pad = (i: number): string => String(i).padStart(5, '0');
  const shards = groups.map((g, i) => ({
    file: k === 1 ? `${prefix}.safetensors` : `${prefix}-${pad(i + 1)}-of-${pad(k)}.safetensors`,
    names: g.names,
    bytes: g.bytes,
  }));
  const weightMap = new Map<string, string>();
  for (const s of shards) for (const n of s.names) weightMap.set(n, s.file);
  return { shards, weightMap, totalSize };
}

/** Python `json.dumps(v, indent=2, sort_keys=True)` (ensure_ascii) for integers, strings, objects. */
export function pythonJsonDumps(value: unknown, indent = ''): string {
  if (value === null) return 'null';
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value)) throw new SafetensorsError(`cannot write ${value} as Python would`);
    return String(value);
  }
  if (typeof value === 'string') {
    return JSON.stringify(value).replace(/[\u007f-\uffff]/g,
      (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  }
  const inner = `${indent}  `;
  if (Array.isArray(value)) {
    if (value.length === 0) return '[]';
    return `[\n${value.map((v) => inner + pythonJsonDumps(v, inner)).join(',\n')}\n${indent}]`;
  }
  const entries = value instanceof Map ? [...value.entries()] as [string, unknown][]
    : Object.entries(value as Record<string, unknown>);
  if (entries.length === 0) return '{}';
  entries.sort((a, b) => compareCodePoints(a[0], b[0]));
  const body = entries.map(([k, v]) => `${inner}${pythonJsonDumps(k)}: ${pythonJsonDumps(v, inner)}`);
  return `{\n${body.join(',\n')}\n${indent}}`;
}

export interface ShardedWriteOptions extends WriteOptions {
  /** Per-file metadata (default {format: "pt"}, as save_pretrained writes). */
  metadata?: Metadata | null;
  /** Recent transformers also record `total_parameters` in the index metadata. */
  totalParameters?: number;
  /** File name stem (default "model"). */
  prefix?: string;
}

export interface ShardedWriteResult {
  files: WriteResult[];
  /** The index path, or null when everything fit in one `model.safetensors`. */
  indexPath: string | null;
  totalSize: number;
}

function indexJson(plan: ShardPlan, opts: ShardedWriteOptions): string {
  const metadata: Record<string, unknown> = { total_size: plan.totalSize };
  if (opts.totalParameters !== undefined) metadata['total_parameters'] = opts.totalParameters;
  return `${pythonJsonDumps({ metadata, weight_map: plan.weightMap })}\n`;
}

function finishShards(dir: string, plan: ShardPlan, opts: ShardedWriteOptions,
  files: WriteResult[]): ShardedWriteResult {
  const prefix = opts.prefix ?? 'model';
  const indexPath = join(dir, `${prefix}.safetensors.index.json`);
  const sharded = plan.shards.length > 1;
  if (sharded) {
    const text = new TextEncoder().encode(indexJson(plan, opts));
    writeFileAtomic(indexPath, (sink) => sink.write(text), opts);
  }
  // Remove what an earlier save with a different split left behind, as save_pretrained does.
  const keep = new Set(plan.shards.map((s) => s.file));
  const ours = new RegExp(`^${prefix.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}` +
    '(-\\d{5}-of-\\d{5})?\\.safetensors$');
  for (const f of readdirSync(dir)) {
    if (ours.test(f) && !keep.has(f)) rmSync(join(dir, f), { force: true });
  }
  if (!sharded) rmSync(indexPath, { force: true });
  return { files, indexPath: sharded ? indexPath : null, totalSize: plan.totalSize };
}

/** Writes tensors as save_pretrained would: shards of at most `maxShardBytes` plus an index. */
export function writeSharded(dir: string, tensors: TensorSource<HostTensor>, maxShardBytes: number,
  opts: ShardedWriteOptions = {}): ShardedWriteResult {
  const map = new Map(entriesOf(tensors));
  const plan = planShards(map, maxShardBytes, opts.prefix);
  mkdirSync(dir, { recursive: true });
  const files = plan.shards.map((s) =>
    writeSafetensors(join(dir, s.file), s.names.map((n) => [n, map.get(n)!] as const),
      opts.metadata, opts));
  return finishShards(dir, plan, opts, files);
}

/** writeSharded from descriptors, asking `produce` for each tensor's bytes when due. */
export async function writeShardedFrom(dir: string, descs: TensorSource<TensorDesc>,
  produce: TensorProducer, maxShardBytes: number,
  opts: ShardedWriteOptions = {}): Promise<ShardedWriteResult> {
  const map = new Map(entriesOf(descs));
  const plan = planShards(map, maxShardBytes, opts.prefix);
  mkdirSync(dir, { recursive: true });
  const files: WriteResult[] = [];
  for (const s of plan.shards) {
    files.push(await writeSafetensorsFrom(join(dir, s.file),
      s.names.map((n) => [n, map.get(n)!] as const), produce, opts.metadata, opts));
  }
  return finishShards(dir, plan, opts, files);
}

export interface ShardedIndex {
  /** Path of the index file. */
  path: string;
  dir: string;
  metadata: Record<string, unknown>;
  weightMap: Map<string, string>;
  /** Distinct shard files, sorted. */
  files: string[];
}

/** Reads `model.safetensors.index.json` from `dir` (or the index file given as a path). */
export function readShardedIndex(dir: string): ShardedIndex {
  let path = join(dir, SAFE_WEIGHTS_INDEX_NAME);
  if (dir.endsWith('.json') && existsSync(dir) && statSync(dir).isFile()) {
    path = dir;
    dir = dirname(dir);
  }
  const fail = (what: string): never => {
    throw new SafetensorsError(`not a valid safetensors index: ${what}`, path);
  };
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new SafetensorsError(`cannot read index: ${(e as Error).message}`, path);
  }
  if (!isPlainObject(json)) fail('not a JSON object');
  const root = json as Record<string, unknown>;
  const wm = root['weight_map'];
  if (!isPlainObject(wm)) fail('"weight_map" is missing or not an object');
  const meta = root['metadata'] ?? {};
  if (!isPlainObject(meta)) fail('"metadata" is not an object');
  const weightMap = new Map<string, string>();
  for (const [name, file] of Object.entries(wm as Record<string, unknown>)) {
    if (typeof file !== 'string') fail(`weight_map "${name}" is not a file name`);
    const f = file as string;
    if (f === '' || f.includes('/') || f.includes('\\') || f === '.' || f === '..') {
      fail(`weight_map "${name}" names "${f}", which is not a plain file name in the folder`);
    }
    weightMap.set(name, f);
  }
  const files = [...new Set(weightMap.values())].sort();
  for (const f of files) {
    if (!existsSync(join(dir, f))) fail(`shard "${f}" is listed but missing`);
  }
  return { path, dir, metadata: meta as Record<string, unknown>, weightMap, files };
}

/**
 * The tensors of a Hugging Face-style folder: `model.safetensors.index.json` and its shards, or a
 * single `model.safetensors`. Every shard header is validated on open, and the index must agree
 * with the shards (each listed tensor in its shard, no shard tensor missing from the index).
 */
export class ShardedSafetensors {
  readonly dir: string;
  readonly index: ShardedIndex | null;
  readonly files: Map<string, SafetensorsFile>;
  private readonly where = new Map<string, SafetensorsFile>();

  constructor(dir: string) {
    this.dir = dir;
    this.files = new Map();
    if (existsSync(join(dir, SAFE_WEIGHTS_INDEX_NAME))) {
      this.index = readShardedIndex(dir);
      for (const f of this.index.files) this.files.set(f, new SafetensorsFile(join(dir, f)));
      for (const [name, f] of this.index.weightMap) {
        const file = this.files.get(f)!;
        if (!file.has(name)) {
          throw new SafetensorsError(`index puts "${name}" in ${f}, which does not hold it`,
            this.index.path);
        }
        this.where.set(name, file);
      }
      for (const [f, file] of this.files) {
        for (const name of file.names()) {
          if (this.index.weightMap.get(name) !== f) {
            throw new SafetensorsError(`${f} holds "${name}", which the index does not map there`,
              this.index.path);
          }
        }
      }
    } else if (existsSync(join(dir, SAFE_WEIGHTS_NAME))) {
      this.index = null;
      const file = new SafetensorsFile(join(dir, SAFE_WEIGHTS_NAME));
      this.files.set(SAFE_WEIGHTS_NAME, file);
      for (const name of file.names()) this.where.set(name, file);
    } else {
      throw new SafetensorsError(`no ${SAFE_WEIGHTS_INDEX_NAME} or ${SAFE_WEIGHTS_NAME}`, dir);
    }
  }

  names(): string[] {
    return [...this.where.keys()];
  }

  has(name: string): boolean {
    return this.where.has(name);
  }

  private fileOf(name: string): SafetensorsFile {
    const f = this.where.get(name);
    if (f === undefined) throw new SafetensorsError(`no tensor named "${name}"`, this.dir);
    return f;
  }

  info(name: string): TensorInfo {
    return this.fileOf(name).info(name);
  }

  read(name: string): HostTensor {
    return this.fileOf(name).read(name);
  }
}
