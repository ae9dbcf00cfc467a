// SentencePiece's precompiled normalization rules ("precompiled_charsmap"): a darts-clone
// double-array trie over UTF-8 byte strings whose values point into a pool of NUL-terminated
// replacement strings. Read by SentencePiece models (.model NormalizerSpec) and by HF tokenizer.json
// "Precompiled" normalizers, which embed the same blob in base64.
//
// defines: PrecompiledCharsMap, PrefixMatch
//
// Blob layout (sentencepiece normalizer.cc, EncodePrecompiledCharsMap): u32 little-endian trie
// size in bytes, the trie (u32 units), then the replacement pool. A unit packs: bit 8 has_leaf,
// bits 0-7 label (bit 31 kept so a leaf never matches), bits 10-31 offset, shifted by 8 when bit 9.

export interface PrefixMatch {
  /** Length of the matched prefix in bytes. */
  length: number;
  /** Offset of the replacement in the pool. */
  value: number;
}

export class PrecompiledCharsMap {
  private readonly units: Uint32Array;
  private readonly pool: Uint8Array;

  /** `where` names the file (and field) for error messages. */
  constructor(blob: Uint8Array, where: string) {
    if (blob.length < 4) throw new Error(`${where}: precompiled_charsmap is truncated (${blob.length} bytes)`);
    const view = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
    const trieBytes = view.getUint32(0, true);
    if (trieBytes % 4 !== 0 || trieBytes === 0 || 4 + trieBytes > blob.length) {
      throw new Error(`${where}: precompiled_charsmap is corrupt (trie of ${trieBytes} bytes in a ${blob.length}-byte blob)`);
    }
    this.units = new Uint32Array(trieBytes / 4);
    for (let i = 0; i < this.units.length; i++) this.units[i] = view.getUint32(4 + 4 * i, true);
    this.pool = blob.subarray(4 + trieBytes);
  }

  /**
   * Every rule whose source is a prefix of bytes[start, end), shortest first. `stopAtNul` ends the
   * walk at a 0 byte, as HF's spm_precompiled does (SentencePiece itself walks through it).
   */
  prefixes(bytes: Uint8Array, start: number, end: number, stopAtNul: boolean): PrefixMatch[] {
    const units = this.units;
    const out: PrefixMatch[] = [];
    let pos = offsetOf(units[0]!);
    for (let i = start; i < end; i++) {
      const c = bytes[i]!;
      if (stopAtNul && c === 0) break;
      pos ^= c;
      if (pos >= units.length) break;
      const unit = units[pos]!;
      if ((unit & 0x800000ff) >>> 0 !== c) break;
      pos ^= offsetOf(unit);
      if ((unit >>> 8) & 1) {
        if (pos >= units.length) break;
        out.push({ length: i - start + 1, value: units[pos]! & 0x7fffffff });
      }
    }
    return out;
  }

  /** The NUL-terminated replacement at `value`. */
  replacement(value: number): Uint8Array {
    let end = value;
    while (end < this.pool.length && this.pool[end] !== 0) end++;
    return this.pool.subarray(Math.min(value, this.pool.length), end);
  }
}

function offsetOf(unit: number): number {
  return (unit >>> 10) << ((unit & 0x200) >>> 6);
}
