// Byte plumbing shared by the store and the CPU group: a queue of received socket chunks that
// hands out whole frames, copying only when a frame spans chunks.
//
// defines: ByteQueue, bytesOf, typedFromBytes

export class ByteQueue {
  private chunks: Buffer[] = [];
  private offset = 0; // consumed bytes of chunks[0]
  length = 0;

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.length += chunk.length;
  }

  /** The first n bytes without consuming them (n ≤ length). */
  peek(n: number): Buffer {
    const first = this.chunks[0]!;
    if (first.length - this.offset >= n) return first.subarray(this.offset, this.offset + n);
    return this.copy(n, false);
  }

  /** Consumes and returns the first n bytes (n ≤ length). */
  read(n: number): Buffer {
    if (n === 0) return Buffer.alloc(0);
    const first = this.chunks[0]!;
    if (first.length - this.offset >= n) {
      const out = first.subarray(this.offset, this.offset + n);
      this.advance(n);
      return out;
    }
    return this.copy(n, true);
  }

  private copy(n: number, consume: boolean): Buffer {
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    let i = 0;
    let off = this.offset;
    while (filled < n) {
      const c = this.chunks[i]!;
      const take = Math.min(c.length - off, n - filled);
      c.copy(out, filled, off, off + take);
      filled += take;
      off = 0;
      i++;
    }
    if (consume) this.advance(n);
    return out;
  }

  private advance(n: number): void {
    this.length -= n;
    while (n > 0) {
      const c = this.chunks[0]!;
      const left = c.length - this.offset;
      if (n < left) {
        this.offset += n;
        return;
      }
      n -= left;
      this.chunks.shift();
      this.offset = 0;
    }
  }
}

type TypedArray = Float32Array | Float64Array | Int32Array | Uint16Array | Uint8Array;
type TypedCtor<T extends TypedArray> = { new(buf: ArrayBufferLike, byteOffset: number, length: number): T; new(length: number): T; BYTES_PER_ELEMENT: number };

/** A Buffer over a typed array's bytes (no copy). */
export function bytesOf(a: TypedArray): Buffer {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
}

/** A typed array over received bytes: a view when aligned, else a copy. */
export function typedFromBytes<T extends TypedArray>(b: Uint8Array, ctor: TypedCtor<T>): T {
  const size = ctor.BYTES_PER_ELEMENT;
  if (b.byteLength % size !== 0) throw new Error(`received ${b.byteLength} bytes, not a whole number of ${size}-byte elements`);
  if (b.byteOffset % size === 0) return new ctor(b.buffer, b.byteOffset, b.byteLength / size);
  const out = new ctor(b.byteLength / size);
  new Uint8Array(out.buffer).set(b);
  return out;
}
