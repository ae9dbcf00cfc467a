// A minimal protobuf wire-format reader: enough to read SentencePiece's ModelProto (.model files)
// without a protobuf library.
//
// defines: ProtoReader, WireType

export const WireType = { Varint: 0, Fixed64: 1, Bytes: 2, Fixed32: 5 } as const;

export class ProtoReader {
  pos: number;
  private readonly view: DataView;

  /** Reads buf[start, end); `where` names the file for errors. */
  constructor(readonly buf: Uint8Array, readonly where: string, start = 0, readonly end = buf.length) {
    this.pos = start;
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  private fail(what: string): never {
    throw new Error(`${this.where}: not a valid SentencePiece model (${what} at byte ${this.pos})`);
  }

  get done(): boolean { return this.pos >= this.end; }

  /** A varint as a bigint (up to 64 bits). */
  varint(): bigint {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      if (this.pos >= this.end) this.fail('a truncated varint');
      const b = this.buf[this.pos++]!;
      result |= BigInt(b & 0x7f) << shift;
      if (!(b & 0x80)) return result;
      shift += 7n;
      if (shift > 63n) this.fail('a varint longer than 10 bytes');
    }
  }

  /** A varint read as int32 (negative values are sign-extended to 10 bytes on the wire). */
  int32(): number {
    const b = this.buf[this.pos];
    if (b !== undefined && b < 0x80 && this.pos < this.end) { this.pos++; return b; }
    return Number(BigInt.asIntN(32, this.varint()));
  }

  bool(): boolean {
    return this.varint() !== 0n;
  }

  float(): number {
    if (this.pos + 4 > this.end) this.fail('a truncated float');
    const v = this.view.getFloat32(this.pos, true);
    this.pos += 4;
    return v;
  }

  /** A length-delimited field's bounds [start, end), advancing past it. */
  bytesRange(): [number, number] {
    const n = Number(this.varint());
    const start = this.pos;
    if (n < 0 || start + n > this.end) this.fail(`a field of ${n} bytes running past the end`);
    this.pos += n;
    return [start, start + n];
  }

  bytes(): Uint8Array {
    const [a, b] = this.bytesRange();
    return this.buf.subarray(a, b);
  }

  /** The next field's [number, wire type], or null at the end. */
  tag(): [number, number] | null {
    if (this.done) return null;
    const key = Number(this.varint());
    const field = Math.floor(key / 8);
    const wire = key & 7;
    if (field === 0) this.fail('a field number 0');
    return [field, wire];
  }

  skip(wire: number): void {
    switch (wire) {
      case WireType.Varint: this.varint(); break;
      case WireType.Fixed64: this.pos += 8; break;
      case WireType.Bytes: this.bytesRange(); break;
      case WireType.Fixed32: this.pos += 4; break;
      default: this.fail(`an unsupported wire type ${wire}`);
    }
    if (this.pos > this.end) this.fail('a field running past the end');
  }

  /** Check that a field has the wire type its schema says. */
  expect(wire: number, want: number, field: string): void {
    if (wire !== want) this.fail(`field ${field} with wire type ${wire} instead of ${want}`);
  }
}
