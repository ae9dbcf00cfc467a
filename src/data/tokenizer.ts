// Tokenizers: the common interface, GPT-NeoX's `tokenizer_type` names, and buildTokenizer().
//
// defines: Tokenizer, TokenizerConfig, TOKENIZER_TYPES, TokenizerType, buildTokenizer; re-exports
//          the tokenizer classes from tokenizers/ (one file per family; see tokenizers/index.ts)
//
// Names match case-insensitively, as in GPT-NeoX's build_tokenizer, and take GPT-NeoX's files:
//   GPT2BPETokenizer    vocab_file = vocab.json, merge_file = merges.txt
//   HFTokenizer         vocab_file = tokenizer.json (BPE, byte-level BPE, WordPiece, WordLevel, Unigram)
//   HFGPT2Tokenizer     vocab_file = a directory with vocab.json + merges.txt or tokenizer.json
//                       (or a vocab.json, with merge_file)
//   SPMTokenizer        vocab_file = a SentencePiece .model
//   TiktokenTokenizer   vocab_file = an encoding name (cl100k_base, o200k_base, ...)
//   CharLevelTokenizer  no files
// Token ids agree with the reference libraries (tests/tokenizers.test.ts, fixtures made by
// tools/make_tokenizer_fixtures.py); each class's header says where eod/pad differ from GPT-NeoX.

import { CharLevelTokenizer } from './tokenizers/char_level.js';
import { GPT2BPETokenizer, HFGPT2Tokenizer } from './tokenizers/gpt2.js';
import { HFTokenizer } from './tokenizers/hf.js';
import { SPMTokenizer } from './tokenizers/sentencepiece.js';
import { TiktokenTokenizer } from './tokenizers/tiktoken.js';

export {
  CharLevelTokenizer, GPT2BPETokenizer, HFGPT2Tokenizer, HFTokenizer, SPMTokenizer, TiktokenTokenizer,
};

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
    case 'GPT2BPETokenizer':
      return new GPT2BPETokenizer(cfg.vocab_file, cfg.merge_file);
    case 'HFTokenizer':
      return new HFTokenizer(cfg.vocab_file);
    case 'HFGPT2Tokenizer':
      return new HFGPT2Tokenizer(cfg.vocab_file, cfg.merge_file);
    case 'SPMTokenizer':
      return new SPMTokenizer(cfg.vocab_file);
    case 'TiktokenTokenizer':
      return new TiktokenTokenizer(cfg.vocab_file);
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
