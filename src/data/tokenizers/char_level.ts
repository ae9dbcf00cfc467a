// GPT-NeoX's CharLevelTokenizer: UTF-8 bytes as ids.
//
// defines: CharLevelTokenizer

import type { Tokenizer } from '../tokenizer.js';

/**
 * Byte-level tokenizer with GPT-NeoX's numbers: vocab_size 512, eod 0, pad 1, and encode = the UTF-8
 * bytes of the text (ids 0..255; ids 256..511 are never produced).
 *
 * Deliberate difference in decode: GPT-NeoX maps each id to `chr(max(32, min(id, 512)))`, which turns
 * multi-byte UTF-8 into mojibake and control bytes (newline, tab) into spaces. We decode the ids as
 * UTF-8 bytes, so decode(encode(x)) === x for any string; ids ≥ 256 decode to U+FFFD, and an invalid
 * byte sequence decodes to U+FFFD as TextDecoder does. eod (0) and pad (1) decode to "\0" and "\x01",
 * the bytes they share their ids with. Token ids, and so training data, are identical to GPT-NeoX's.
 */
export class CharLevelTokenizer implements Tokenizer {
  readonly name = 'CharLevelTokenizer';
  readonly vocabSize = 512;
  readonly eodId = 0;
  readonly padId = 1;
  private static readonly encoder = new TextEncoder();
  private static readonly decoder = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });

  encode(text: string): number[] {
    return Array.from(CharLevelTokenizer.encoder.encode(text));
  }

  decode(ids: ArrayLike<number>): string {
    let out = '';
    let bytes: number[] = [];
    const flush = (): void => {
      if (bytes.length) out += CharLevelTokenizer.decoder.decode(Uint8Array.from(bytes));
      bytes = [];
    };
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      if (Number.isInteger(id) && id >= 0 && id < 256) {
        bytes.push(id);
      } else {
        flush();
        out += '\uFFFD';
      }
    }
    flush();
    return out;
  }
}
