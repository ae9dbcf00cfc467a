// Tokenizers: the common interface, GPT-NeoX's `tokenizer_type` names, and buildTokenizer().
//
// defines: Tokenizer, TokenizerConfig, TOKENIZER_TYPES, CharLevelTokenizer, buildTokenizer
//
// Implemented: CharLevelTokenizer. HFTokenizer (tokenizer.json), HFGPT2Tokenizer, GPT2BPETokenizer
// (vocab + merges), SPMTokenizer and TiktokenTokenizer are recognized and refused with a clear
// message until they land; each will be one class here implementing `Tokenizer`, added to the
// switch in buildTokenizer(). Names match case-insensitively, as in GPT-NeoX's build_tokenizer.

export interface Tokenizer {
  readonly name: string;
  /** Vocabulary size before padding (GPT-NeoX pads it to make_vocab_size_divisible_by × TP). */
  readonly vocabSize: number;
  /** End-of-document id, appended by `preprocess --append-eod`. */
  readonly eodId: number;
  readonly padId: number;
  encode(text: string): number[];
  decode(ids: ArrayLike<number>): string;
}

export interface TokenizerConfig {
  tokenizer_type: string;
  vocab_file?: string | null;
  merge_file?: string | null;
}

/** GPT-NeoX's tokenizer_type values, in its spelling. */
export const TOKENIZER_TYPES = [
  'GPT2BPETokenizer', 'SPMTokenizer', 'HFTokenizer', 'HFGPT2Tokenizer', 'CharLevelTokenizer', 'TiktokenTokenizer',
] as const;
export type TokenizerType = (typeof TOKENIZER_TYPES)[number];

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

/** Build the tokenizer named by `cfg.tokenizer_type` (GPT-NeoX names, case-insensitive). */
export function buildTokenizer(cfg: TokenizerConfig): Tokenizer {
  const requested = cfg.tokenizer_type;
  if (typeof requested !== 'string' || requested.trim() === '') {
    throw new Error(`tokenizer_type must be set; valid values: ${TOKENIZER_TYPES.join(', ')}`);
  }
  const type = TOKENIZER_TYPES.find((t) => t.toLowerCase() === requested.trim().toLowerCase());
  switch (type) {
    case 'CharLevelTokenizer':
      return new CharLevelTokenizer();
    case 'HFTokenizer': case 'HFGPT2Tokenizer': case 'GPT2BPETokenizer': case 'SPMTokenizer': case 'TiktokenTokenizer':
      throw new Error(`tokenizer_type ${type} is not implemented yet (implemented: CharLevelTokenizer)`);
    case undefined: {
      const guess = closest(requested, TOKENIZER_TYPES);
      throw new Error(
        `unknown tokenizer_type '${requested}'${guess ? `; did you mean '${guess}'?` : ''} (valid: ${TOKENIZER_TYPES.join(', ')})`,
      );
    }
  }
}

/** The candidate closest to `s` by edit distance (case-insensitive), if reasonably close. */
function closest(s: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const d = editDistance(s.toLowerCase(), c.toLowerCase());
    if (d < bestD) { bestD = d; best = c; }
  }
  return best !== undefined && bestD <= Math.max(3, Math.floor(best.length / 3)) ? best : undefined;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length]!;
}
