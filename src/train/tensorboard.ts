// TensorBoard event files without TensorFlow: a writer for scalar summaries and a validating reader.
//   crc32c / maskedCrc32c  CRC-32C (Castagnoli, reflected poly 0x82F63B78), table-driven; TFRecord mask
//   encodeEvent / decodeEvent  the few Event / Summary protobuf fields TensorBoard needs for scalars
//   EventFileWriter        events.out.tfevents.{unix secs}.{host} in a directory; each record written
//                          synchronously (one writeSync per record), so a crash loses at most the last one
//   readEvents             parses a file, checks both CRCs of every record, throws TfRecordError naming
//                          the bad record
// Format (tensorflow python_io / tensorboard event.proto, summary.proto):
//   record = u64 LE length, u32 LE masked CRC-32C(length bytes), data, u32 LE masked CRC-32C(data)
//   masked = ((crc >>> 15) | (crc << 17)) + 0xa282ead8  (uint32)
//   Event   { wall_time 1: double, step 2: int64 varint, file_version 3: string, summary 5: Summary }
//   Summary { value 1: Value { tag 1: string, simple_value 2: float } }

import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
import { hostname as osHostname } from 'node:os';
import { join } from 'node:path';

// ---------------------------------------------------------------- CRC-32C

const CRC32C_TABLE: Uint32Array = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32C of `data`; pass a previous result as `crc` to continue over more bytes. */
export function crc32c(data: Uint8Array, crc = 0): number {
  let c = ~crc >>> 0;
  for (let i = 0; i < data.length; i++) c = CRC32C_TABLE[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

/** The TFRecord masked CRC: rotate right by 15, add 0xa282ead8 (uint32). */
export function maskCrc(crc: number): number {
  return ((((crc >>> 15) | (crc << 17)) >>> 0) + 0xa282ead8) >>> 0;
}

export function maskedCrc32c(data: Uint8Array): number {
  return maskCrc(crc32c(data));
}

// ---------------------------------------------------------------- protobuf (the fields we use)

export interface SummaryValue {
  tag: string;
  /** Present for scalar values (float32 on disk). */
  simpleValue?: number;
}

export interface TfEvent {
  wallTime: number;
  step: number;
  fileVersion?: string;
  summary?: SummaryValue[];
}

class ProtoWriter {
  private readonly parts: Buffer[] = [];
  private key(field: number, wire: number): void {
    this.varint(BigInt((field << 3) | wire));
  }
  varint(v: bigint): void {
    let x = BigInt.asUintN(64, v); // negative int64 → two's complement, 10 bytes
    const bytes: number[] = [];
    while (x >= 0x80n) {
      bytes.push(Number(x & 0x7fn) | 0x80);
      x >>= 7n;
    }
    bytes.push(Number(x));
    this.parts.push(Buffer.from(bytes));
  }
  double(field: number, v: number): void {
    this.key(field, 1);
    const b = Buffer.alloc(8);
    b.writeDoubleLE(v);
    this.parts.push(b);
  }
  float(field: number, v: number): void {
    this.key(field, 5);
    const b = Buffer.alloc(4);
    b.writeFloatLE(v);
    this.parts.push(b);
  }
  int64(field: number, v: number): void {
    this.key(field, 0);
    this.varint(BigInt(Math.trunc(v)));
  }
  bytes(field: number, v: Uint8Array): void {
    this.key(field, 2);
    this.varint(BigInt(v.length));
    this.parts.push(Buffer.from(v.buffer, v.byteOffset, v.byteLength));
  }
  string(field: number, v: string): void {
    this.bytes(field, Buffer.from(v, 'utf8'));
  }
  finish(): Buffer {
    return Buffer.concat(this.parts);
  }
}

/** Serializes an Event (wall_time, step, file_version, summary values with simple_value). */
export function encodeEvent(ev: TfEvent): Buffer {
  const w = new ProtoWriter();
  w.double(1, ev.wallTime);
  if (ev.step !== 0) w.int64(2, ev.step);
  if (ev.fileVersion !== undefined) w.string(3, ev.fileVersion);
  if (ev.summary) {
    const s = new ProtoWriter();
    for (const v of ev.summary) {
      const vw = new ProtoWriter();
      vw.string(1, v.tag);
      if (v.simpleValue !== undefined) vw.float(2, v.simpleValue);
      s.bytes(1, vw.finish());
    }
    w.bytes(5, s.finish());
  }
  return w.finish();
}

class ProtoReader {
  pos = 0;
  constructor(private readonly buf: Buffer) {}
  get done(): boolean {
    return this.pos >= this.buf.length;
  }
  varint(): bigint {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      if (this.pos >= this.buf.length) throw new Error('truncated varint');
      const b = this.buf[this.pos++];
      result |= BigInt(b & 0x7f) << shift;
      if (!(b & 0x80)) return result;
      shift += 7n;
      if (shift > 63n) throw new Error('varint too long');
    }
  }
  take(n: number): Buffer {
    if (this.pos + n > this.buf.length) throw new Error('truncated field');
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
  /** Reads one field: [field number, wire type, value]. */
  field(): [number, number, bigint | Buffer] {
    const key = Number(this.varint());
    const field = key >>> 3;
    const wire = key & 7;
    switch (wire) {
      case 0: return [field, wire, this.varint()];
      case 1: return [field, wire, this.take(8)];
      case 2: return [field, wire, this.take(Number(this.varint()))];
      case 5: return [field, wire, this.take(4)];
      default: throw new Error(`unsupported wire type ${wire} (field ${field})`);
    }
  }
}

/** Parses an Event; unknown fields are skipped, values other than simple_value keep only their tag. */
export function decodeEvent(data: Buffer): TfEvent {
  const r = new ProtoReader(data);
  const ev: TfEvent = { wallTime: 0, step: 0 };
  while (!r.done) {
    const [f, wire, v] = r.field();
    if (f === 1 && wire === 1) ev.wallTime = (v as Buffer).readDoubleLE(0);
    else if (f === 2 && wire === 0) ev.step = Number(BigInt.asIntN(64, v as bigint));
    else if (f === 3 && wire === 2) ev.fileVersion = (v as Buffer).toString('utf8');
    else if (f === 5 && wire === 2) ev.summary = [...(ev.summary ?? []), ...decodeSummary(v as Buffer)];
  }
  return ev;
}

function decodeSummary(data: Buffer): SummaryValue[] {
  const r = new ProtoReader(data);
  const out: SummaryValue[] = [];
  while (!r.done) {
    const [f, wire, v] = r.field();
    if (f !== 1 || wire !== 2) continue;
    const vr = new ProtoReader(v as Buffer);
    const sv: SummaryValue = { tag: '' };
    while (!vr.done) {
      const [vf, vwire, vv] = vr.field();
      if (vf === 1 && vwire === 2) sv.tag = (vv as Buffer).toString('utf8');
      else if (vf === 2 && vwire === 5) sv.simpleValue = (vv as Buffer).readFloatLE(0);
    }
    out.push(sv);
  }
  return out;
}

// ---------------------------------------------------------------- record framing

/** Frames one record: length, masked CRC of the length, data, masked CRC of the data. */
export function frameRecord(data: Uint8Array): Buffer {
  const out = Buffer.alloc(12 + data.length + 4);
  out.writeBigUInt64LE(BigInt(data.length), 0);
  out.writeUInt32LE(maskedCrc32c(out.subarray(0, 8)), 8);
  out.set(data, 12);
  out.writeUInt32LE(maskedCrc32c(data), 12 + data.length);
  return out;
}

/** A damaged or truncated record: `record` is its 0-based index in the file, `offset` its first byte. */
export class TfRecordError extends Error {
  constructor(readonly path: string, readonly record: number, readonly offset: number, readonly reason: string) {
    super(`${path}: record ${record} at byte ${offset}: ${reason}`);
    this.name = 'TfRecordError';
  }
}

/** Reads every record of an event file, validating both CRCs, and decodes the Events. */
export function readEvents(path: string): TfEvent[] {
  const buf = readFileSync(path);
  const events: TfEvent[] = [];
  let pos = 0;
  for (let index = 0; pos < buf.length; index++) {
    const start = pos;
    const fail = (reason: string): never => {
      throw new TfRecordError(path, index, start, reason);
    };
    if (buf.length - pos < 12) fail(`truncated header (${buf.length - pos} bytes left)`);
    const lenBytes = buf.subarray(pos, pos + 8);
    if (buf.readUInt32LE(pos + 8) !== maskedCrc32c(lenBytes)) fail('length CRC mismatch');
    const len = buf.readBigUInt64LE(pos);
    if (len > BigInt(buf.length - pos - 16)) fail(`truncated data (length ${len}, ${buf.length - pos - 12} bytes left)`);
    const n = Number(len);
    const data = buf.subarray(pos + 12, pos + 12 + n);
    if (buf.readUInt32LE(pos + 12 + n) !== maskedCrc32c(data)) fail('data CRC mismatch');
    try {
      events.push(decodeEvent(data));
    } catch (e) {
      fail(`bad Event protobuf: ${(e as Error).message}`);
    }
    pos += 16 + n;
  }
  return events;
}

// ---------------------------------------------------------------- writer

export interface EventFileWriterOptions {
  /** Host name in the file name; defaults to os.hostname(). */
  hostname?: string;
  /** Clock in seconds (fractional); defaults to Date.now() / 1000. */
  now?: () => number;
}

/** Appends Events to `{dir}/events.out.tfevents.{unix secs}.{host}`; every record hits the OS at once. */
export class EventFileWriter {
  readonly path: string;
  private fd: number | null;
  private readonly now: () => number;

  constructor(dir: string, opts: EventFileWriterOptions = {}) {
    this.now = opts.now ?? (() => Date.now() / 1000);
    mkdirSync(dir, { recursive: true });
    const host = (opts.hostname ?? osHostname()).replace(/[/\\]/g, '_');
    const base = join(dir, `events.out.tfevents.${Math.floor(this.now())}.${host}`);
    // Two writers started in the same second in one directory get distinct files (base, base.1, ...).
    let path = base;
    let fd: number | null = null;
    for (let n = 1; fd === null; n++) {
      try {
        fd = openSync(path, 'wx');
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || n > 1000) throw e;
        path = `${base}.${n}`;
      }
    }
    this.fd = fd;
    this.path = path;
    this.write({ wallTime: this.now(), step: 0, fileVersion: 'brain.Event:2' });
  }

  /** Writes one Event as one record. */
  write(ev: TfEvent): void {
    if (this.fd === null) throw new Error(`EventFileWriter: ${this.path} is closed`);
    const rec = frameRecord(encodeEvent(ev));
    let off = 0;
    while (off < rec.length) off += writeSync(this.fd, rec, off, rec.length - off);
  }

  /** One scalar (stored as float32) at `step`. */
  addScalar(tag: string, value: number, step: number, wallTime = this.now()): void {
    this.write({ wallTime, step, summary: [{ tag, simpleValue: value }] });
  }

  /** Several scalars at one step, in one Event. */
  addScalars(values: Record<string, number>, step: number, wallTime = this.now()): void {
    const summary = Object.entries(values).map(([tag, simpleValue]) => ({ tag, simpleValue }));
    if (summary.length) this.write({ wallTime, step, summary });
  }

  /** Records are already written through; this forces them to disk. */
  flush(): void {
    if (this.fd !== null) fsyncSync(this.fd);
  }

  close(): void {
    if (this.fd === null) return;
    try {
      fsyncSync(this.fd);
    } finally {
      closeSync(this.fd);
      this.fd = null;
    }
  }
}
