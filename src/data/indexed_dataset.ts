// Megatron / GPT-NeoX "mmap" indexed dataset: a `.bin` of concatenated token items and an `.idx`.
//
// defines: TokenDType, DTYPE_CODES, bestTokenDtype, indexPaths, IndexedDatasetBuilder, IndexedDataset
//
// `.idx` layout (little-endian), bit-compatible with gpt-neox megatron/data/indexed_dataset.py:
//   0   9        magic "MMIDIDX\0\0"
//   9   8        version u64 = 1
//   17  1        dtype code u8 (1 u8, 2 i8, 3 i16, 4 i32, 5 i64, 6 f32, 7 f64, 8 u16)
//   18  8        len: number of items u64
//   26  8        doc_count: length of doc_idx u64
//   34  4·len    sizes    i32 (len,)        tokens per item
//   ..  8·len    pointers i64 (len,)        byte offset of each item in .bin
//   ..  8·doc    doc_idx  i64 (doc_count,)  item index where each document starts, then the end
// `.bin` has no header. The legacy "cached" format (`TNTIDX\0\0`) is detected and refused.
//
// The builder streams items to disk and writes both files under temporary names, renamed at
// finalize(), so a crash never leaves a half dataset under the real name. The reader keeps the
// index in memory (sizes as i32, pointers and doc_idx as exact doubles) and reads tokens through a
// file descriptor, so a multi-GB .bin is never loaded.

import * as fs from 'node:fs';
import * as path from 'node:path';

export type TokenDType = 'u8' | 'i8' | 'i16' | 'i32' | 'i64' | 'f32' | 'f64' | 'u16';

export const DTYPE_CODES: Readonly<Record<TokenDType, number>> = {
  u8: 1, i8: 2, i16: 3, i32: 4, i64: 5, f32: 6, f64: 7, u16: 8,
};
const CODE_TO_DTYPE: ReadonlyMap<number, TokenDType> = new Map(
  Object.entries(DTYPE_CODES).map(([k, v]) => [v, k as TokenDType]),
);
const ITEM_BYTES: Readonly<Record<TokenDType, number>> = {
  u8: 1, i8: 1, i16: 2, i32: 4, i64: 8, f32: 4, f64: 8, u16: 2,
};
/** Inclusive value range of the integer dtypes (i64 limited to what a JS number holds exactly). */
const INT_RANGE: Partial<Record<TokenDType, [number, number]>> = {
  u8: [0, 255], i8: [-128, 127], i16: [-32768, 32767], u16: [0, 65535],
  i32: [-2147483648, 2147483647], i64: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
};

const MAGIC = Buffer.from('MMIDIDX\x00\x00', 'latin1'); // 9 bytes
const LEGACY_MAGIC = Buffer.from('TNTIDX\x00\x00', 'latin1'); // 8 bytes
const VERSION = 1;
const HEADER_BYTES = 34;
const TWO_32 = 4294967296;
const READ_CHUNK = 1 << 30; // readSync moves at most 2 GiB at once; stay well below

/** GPT-NeoX's rule (`__best_fitting_dtype`): u16 when the vocabulary is below 65500, else i32. */
export function bestTokenDtype(vocabSize: number): TokenDType {
  return vocabSize < 65500 ? 'u16' : 'i32';
}

/** `prefix`, or a path ending in .bin/.idx → the dataset prefix and both file names. */
export function indexPaths(prefixOrPath: string): { prefix: string; binPath: string; idxPath: string } {
  const prefix = /\.(bin|idx)$/.test(prefixOrPath) ? prefixOrPath.slice(0, -4) : prefixOrPath;
  return { prefix, binPath: `${prefix}.bin`, idxPath: `${prefix}.idx` };
}

/** A growable Int32Array / Float64Array, so millions of documents don't become boxed numbers. */
class GrowableArray<T extends Int32Array | Float64Array> {
  length = 0;
  constructor(public data: T, private readonly make: (n: number) => T) {}
  push(v: number): void {
    if (this.length === this.data.length) {
      const next = this.make(Math.max(1024, this.data.length * 2));
      next.set(this.data);
      this.data = next;
    }
    this.data[this.length++] = v;
  }
  view(): T { return this.data.subarray(0, this.length) as T; }
}

/**
 * Streams token items into `{prefix}.bin` and writes `{prefix}.idx` at finalize().
 * Same call sequence as GPT-NeoX's MMapIndexedDatasetBuilder: addItem per item, endDocument after
 * the items of a document (the preprocessor writes one item per document).
 */
export class IndexedDatasetBuilder {
  readonly prefix: string;
  readonly binPath: string;
  readonly idxPath: string;
  readonly dtype: TokenDType;
  private readonly tmpBin: string;
  private readonly tmpIdx: string;
  private fd: number | null;
  private readonly sizes = new GrowableArray(new Int32Array(1024), (n) => new Int32Array(n)); // (len,)
  private readonly docIdx = new GrowableArray(new Float64Array(1024), (n) => new Float64Array(n)); // (doc_count,)
  private buf: Buffer = Buffer.allocUnsafe(1 << 20); // write buffer, flushed when full
  private bufUsed = 0;
  private binBytes = 0;
  private tokens = 0;

  constructor(prefixOrBinPath: string, dtype: TokenDType) {
    if (!(dtype in DTYPE_CODES)) throw new Error(`IndexedDatasetBuilder: unknown dtype '${dtype}'`);
    const p = indexPaths(prefixOrBinPath);
    this.prefix = p.prefix;
    this.binPath = p.binPath;
    this.idxPath = p.idxPath;
    this.dtype = dtype;
    const tag = `.tmp-${process.pid}-${Date.now().toString(36)}`;
    this.tmpBin = this.binPath + tag;
    this.tmpIdx = this.idxPath + tag;
    fs.mkdirSync(path.dirname(path.resolve(this.binPath)), { recursive: true });
    this.fd = fs.openSync(this.tmpBin, 'w');
    this.docIdx.push(0);
  }

  /** Number of items added so far. */
  get length(): number { return this.sizes.length; }
  /** Number of tokens added so far. */
  get totalTokens(): number { return this.tokens; }

  /** Append one item (a document's tokens, usually). Values must fit `dtype`. */
  addItem(tokens: ArrayLike<number>): void {
    const fd = this.openFd();
    const n = tokens.length;
    if (n > 2147483647) throw new RangeError('IndexedDatasetBuilder: item longer than 2^31 - 1 tokens');
    const itemBytes = ITEM_BYTES[this.dtype];
    const range = INT_RANGE[this.dtype];
    const nbytes = n * itemBytes;
    if (nbytes > this.buf.length - this.bufUsed) {
      this.flush(fd);
      if (nbytes > this.buf.length) this.buf = Buffer.allocUnsafe(nbytes);
    }
    const dv = new DataView(this.buf.buffer, this.buf.byteOffset + this.bufUsed, nbytes);
    for (let i = 0; i < n; i++) {
      const v = tokens[i]!;
      if (range && !(Number.isInteger(v) && v >= range[0] && v <= range[1])) {
        throw new RangeError(
          `IndexedDatasetBuilder(${this.binPath}): token ${v} at position ${i} of item ${this.sizes.length} does not fit dtype ${this.dtype}`,
        );
      }
      writeValue(dv, i * itemBytes, this.dtype, v);
    }
    this.bufUsed += nbytes;
    this.binBytes += nbytes;
    this.tokens += n;
    this.sizes.push(n);
  }

  /** Mark the end of a document: doc_idx gets the number of items so far. */
  endDocument(): void {
    this.openFd();
    this.docIdx.push(this.sizes.length);
  }

  /** Flush the .bin, write the .idx, and rename both into place. */
  finalize(): { binPath: string; idxPath: string; items: number; documents: number; tokens: number } {
    const fd = this.openFd();
    this.flush(fd);
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    this.fd = null;
    try {
      const sizes = this.sizes.view();
      const docIdx = this.docIdx.view();
      const header = encodeIndexHeader(this.dtype, sizes.length, docIdx.length);
      // pointers = exclusive cumulative sum of sizes, in bytes (GPT-NeoX `_get_pointers`)
      const pointers = new Float64Array(sizes.length);
      const itemBytes = ITEM_BYTES[this.dtype];
      for (let i = 1, acc = 0; i < sizes.length; i++) { acc += sizes[i - 1]! * itemBytes; pointers[i] = acc; }
      const ifd = fs.openSync(this.tmpIdx, 'w');
      try {
        writeAll(ifd, header);
        writeAll(ifd, new Uint8Array(sizes.buffer, sizes.byteOffset, sizes.byteLength));
        writeAll(ifd, int64Bytes(pointers));
        writeAll(ifd, int64Bytes(docIdx));
        fs.fsyncSync(ifd);
      } finally {
        fs.closeSync(ifd);
      }
      // .bin first: a reader needs both, and the .idx is the one it opens first.
      fs.renameSync(this.tmpBin, this.binPath);
      fs.renameSync(this.tmpIdx, this.idxPath);
    } catch (err) {
      this.removeTemps();
      throw err;
    }
    return {
      binPath: this.binPath, idxPath: this.idxPath,
      items: this.sizes.length, documents: this.docIdx.length - 1, tokens: this.tokens,
    };
  }

  /** Give up: close and delete the temporary files. Safe to call more than once. */
  abort(): void {
    if (this.fd !== null) {
      try { fs.closeSync(this.fd); } catch { /* already closed */ }
      this.fd = null;
    }
    this.removeTemps();
  }

  private openFd(): number {
    if (this.fd === null) throw new Error(`IndexedDatasetBuilder(${this.binPath}): already finalized or aborted`);
    return this.fd;
  }

  private flush(fd: number): void {
    if (this.bufUsed > 0) writeAll(fd, this.buf.subarray(0, this.bufUsed));
    this.bufUsed = 0;
  }

  private removeTemps(): void {
    for (const p of [this.tmpBin, this.tmpIdx]) fs.rmSync(p, { force: true });
  }
}

/** The 34-byte .idx header. */
export function encodeIndexHeader(dtype: TokenDType, len: number, docCount: number): Buffer {
  const h = Buffer.alloc(HEADER_BYTES);
  MAGIC.copy(h, 0);
  h.writeBigUInt64LE(BigInt(VERSION), 9);
  h.writeUInt8(DTYPE_CODES[dtype], 17);
  h.writeBigUInt64LE(BigInt(len), 18);
  h.writeBigUInt64LE(BigInt(docCount), 26);
  return h;
}

/**
 * Reader for a `.bin`/`.idx` pair. `prefix` is the path without extension (a path ending in .bin
 * or .idx is accepted too). Call close() when done, or let the process exit.
 */
export class IndexedDataset {
  readonly prefix: string;
  readonly binPath: string;
  readonly idxPath: string;
  readonly dtype: TokenDType;
  /** (len,) tokens per item. */
  readonly sizes: Int32Array;
  /** (len,) byte offset of each item in .bin (exact integers as doubles). */
  readonly pointers: Float64Array;
  /** (doc_count,) first item of each document, then the item count. */
  readonly docIdx: Float64Array;
  /** Sum of sizes. */
  readonly totalTokens: number;
  private fd: number | null;
  private readonly itemBytes: number;

  constructor(prefixOrPath: string) {
    const p = indexPaths(prefixOrPath);
    this.prefix = p.prefix;
    this.binPath = p.binPath;
    this.idxPath = p.idxPath;
    for (const f of [this.idxPath, this.binPath]) {
      if (!fs.existsSync(f)) {
        throw new Error(
          `dataset not found: ${f} does not exist (a data path is a prefix to which .bin and .idx are appended)`,
        );
      }
    }
    const idx = readIndex(this.idxPath);
    this.dtype = idx.dtype;
    this.sizes = idx.sizes;
    this.pointers = idx.pointers;
    this.docIdx = idx.docIdx;
    this.itemBytes = ITEM_BYTES[this.dtype];

    // Every item must lie inside the .bin.
    const binBytes = fs.statSync(this.binPath).size;
    let total = 0;
    for (let i = 0; i < this.sizes.length; i++) {
      const size = this.sizes[i]!;
      const ptr = this.pointers[i]!;
      if (size < 0) throw new Error(`${this.idxPath}: item ${i} has negative size ${size}`);
      if (ptr < 0 || ptr + size * this.itemBytes > binBytes) {
        throw new Error(
          `${this.binPath}: item ${i} (byte ${ptr}, ${size} tokens of ${this.dtype}) runs past the end of the file (${binBytes} bytes); the .bin is truncated or does not belong to ${this.idxPath}`,
        );
      }
      total += size;
    }
    this.totalTokens = total;
    this.fd = fs.openSync(this.binPath, 'r');
  }

  /** Number of items (documents, for datasets written by the preprocessor). */
  get length(): number { return this.sizes.length; }

  /** Tokens of item `i` from `offset`, `length` of them (default: to the end of the item). */
  get(i: number, offset = 0, length?: number): Int32Array {
    const n = length ?? this.sizes[i]! - offset;
    const out = new Int32Array(Math.max(0, n));
    this.read(i, offset, n, out, 0);
    return out;
  }

  /** Like get(), into `out[outOffset .. outOffset + length)`, without allocating the result. */
  read(i: number, offset: number, length: number, out: Int32Array, outOffset: number): void {
    if (!Number.isInteger(i) || i < 0 || i >= this.sizes.length) {
      throw new RangeError(`${this.prefix}: item ${i} out of range [0, ${this.sizes.length})`);
    }
    const size = this.sizes[i]!;
    if (!Number.isInteger(offset) || !Number.isInteger(length) || offset < 0 || length < 0 || offset + length > size) {
      throw new RangeError(`${this.prefix}: item ${i} has ${size} tokens; cannot read ${length} from offset ${offset}`);
    }
    if (outOffset + length > out.length) throw new RangeError('IndexedDataset.read: output array too small');
    if (length === 0) return;
    const nbytes = length * this.itemBytes;
    const bytes = new Uint8Array(nbytes); // fresh buffer: aligned for the typed views below
    const got = readFully(this.openFd(), bytes, this.pointers[i]! + offset * this.itemBytes);
    if (got !== nbytes) throw new Error(`${this.binPath}: short read of item ${i} (${got} of ${nbytes} bytes)`);
    decodeInto(this.dtype, bytes, out, outOffset, length, this.binPath);
  }

  close(): void {
    if (this.fd !== null) fs.closeSync(this.fd);
    this.fd = null;
  }

  private openFd(): number {
    if (this.fd === null) throw new Error(`${this.prefix}: dataset is closed`);
    return this.fd;
  }
}

function readIndex(idxPath: string): { dtype: TokenDType; sizes: Int32Array; pointers: Float64Array; docIdx: Float64Array } {
  const fileBytes = fs.statSync(idxPath).size;
  const fd = fs.openSync(idxPath, 'r');
  try {
    const head = Buffer.alloc(HEADER_BYTES);
    const got = readFully(fd, head, 0);
    if (got >= LEGACY_MAGIC.length && head.subarray(0, LEGACY_MAGIC.length).equals(LEGACY_MAGIC)) {
      throw new Error(
        `${idxPath}: this is Megatron's legacy "cached" IndexedDataset format (magic TNTIDX), which is not supported; re-run \`neox preprocess\` to write the mmap format`,
      );
    }
    if (got < MAGIC.length || !head.subarray(0, MAGIC.length).equals(MAGIC)) {
      throw new Error(`${idxPath}: not a Megatron mmap index (bad magic ${JSON.stringify(head.subarray(0, MAGIC.length).toString('latin1'))}, expected "MMIDIDX\\x00\\x00")`);
    }
    if (got < HEADER_BYTES) throw new Error(`${idxPath}: truncated header (${got} of ${HEADER_BYTES} bytes)`);
    const version = head.readBigUInt64LE(9);
    if (version !== BigInt(VERSION)) throw new Error(`${idxPath}: unsupported index version ${version} (expected ${VERSION})`);
    const code = head.readUInt8(17);
    const dtype = CODE_TO_DTYPE.get(code);
    if (dtype === undefined) throw new Error(`${idxPath}: unknown dtype code ${code} (valid: 1..8)`);
    const len64 = head.readBigUInt64LE(18);
    const doc64 = head.readBigUInt64LE(26);
    const expected = BigInt(HEADER_BYTES) + 12n * len64 + 8n * doc64;
    if (expected !== BigInt(fileBytes)) {
      throw new Error(
        `${idxPath}: size mismatch: header says ${len64} items and ${doc64} doc_idx entries, which needs ${expected} bytes, but the file has ${fileBytes}`,
      );
    }
    const len = Number(len64);
    const docCount = Number(doc64);
    const sizes = new Int32Array(len);
    readFully(fd, new Uint8Array(sizes.buffer), HEADER_BYTES);
    const pointers = readInt64s(fd, HEADER_BYTES + 4 * len, len, idxPath, 'pointers');
    const docIdx = readInt64s(fd, HEADER_BYTES + 12 * len, docCount, idxPath, 'doc_idx');
    return { dtype, sizes, pointers, docIdx };
  } finally {
    fs.closeSync(fd);
  }
}

/** Read `n` little-endian i64 at `pos` into doubles, refusing values beyond 2^53. */
function readInt64s(fd: number, pos: number, n: number, file: string, what: string): Float64Array {
  const words = new Uint32Array(2 * n); // (n, 2) lo, hi
  readFully(fd, new Uint8Array(words.buffer), pos);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const lo = words[2 * i]!;
    const hi = words[2 * i + 1]! | 0; // signed high word
    if (hi < -0x200000 || hi >= 0x200000) throw new Error(`${file}: ${what}[${i}] does not fit a safe integer`);
    out[i] = hi * TWO_32 + lo;
  }
  return out;
}

/** Little-endian int64 bytes of integer values held in a Float64Array (exact below 2^53). */
export function int64Bytes(values: Float64Array): Uint8Array {
  const words = new Uint32Array(2 * values.length); // (n, 2) lo, hi
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    const hi = Math.floor(v / TWO_32);
    words[2 * i] = v - hi * TWO_32;
    words[2 * i + 1] = hi >>> 0;
  }
  return new Uint8Array(words.buffer);
}

function writeValue(dv: DataView, at: number, dtype: TokenDType, v: number): void {
  switch (dtype) {
    case 'u8': dv.setUint8(at, v); break;
    case 'i8': dv.setInt8(at, v); break;
    case 'i16': dv.setInt16(at, v, true); break;
    case 'u16': dv.setUint16(at, v, true); break;
    case 'i32': dv.setInt32(at, v, true); break;
    case 'i64': dv.setBigInt64(at, BigInt(v), true); break;
    case 'f32': dv.setFloat32(at, v, true); break;
    case 'f64': dv.setFloat64(at, v, true); break;
  }
}

/** Little-endian bytes of `dtype` → Int32Array (hosts are little-endian: x86-64, aarch64). */
function decodeInto(dtype: TokenDType, bytes: Uint8Array, out: Int32Array, at: number, n: number, file: string): void {
  const b = bytes.buffer;
  switch (dtype) {
    case 'u16': out.set(new Uint16Array(b, 0, n), at); return;
    case 'i32': out.set(new Int32Array(b, 0, n), at); return;
    case 'u8': out.set(bytes.subarray(0, n), at); return;
    case 'i8': out.set(new Int8Array(b, 0, n), at); return;
    case 'i16': out.set(new Int16Array(b, 0, n), at); return;
    case 'i64': {
      const w = new Int32Array(b, 0, 2 * n); // (n, 2) lo, hi
      for (let i = 0; i < n; i++) {
        const lo = w[2 * i]!;
        const hi = w[2 * i + 1]!;
        if (hi !== (lo >> 31)) throw new RangeError(`${file}: i64 token does not fit int32`);
        out[at + i] = lo;
      }
      return;
    }
    case 'f32': case 'f64':
      throw new Error(`${file}: dtype ${dtype} holds floats, not token ids; get() returns Int32Array`);
  }
}

function readFully(fd: number, into: Uint8Array, position: number): number {
  let done = 0;
  while (done < into.length) {
    const want = Math.min(READ_CHUNK, into.length - done);
    const n = fs.readSync(fd, into, done, want, position + done);
    if (n === 0) break;
    done += n;
  }
  return done;
}

function writeAll(fd: number, data: Uint8Array): void {
  let done = 0;
  while (done < data.length) {
    done += fs.writeSync(fd, data, done, Math.min(READ_CHUNK, data.length - done));
  }
}
