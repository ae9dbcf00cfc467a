// tiktoken encodings (OpenAI's byte-level BPE): GPT-NeoX's TiktokenTokenizer.
//
// defines: TiktokenTokenizer, TIKTOKEN_ENCODINGS, loadTiktokenRanks, TiktokenRanks
//
// The BPE ranks come from the js-tiktoken package, which ships each encoding as a JS module (no
// download at run time); their content hashes to the sha256 OpenAI publishes for each .tiktoken
// file (checked in tests/tokenizers.test.ts). Encoding follows tiktoken's CoreBPE: split the text
// with the encoding's pattern, look each piece's bytes up, else merge byte pairs lowest rank first.
// The pattern is js-tiktoken's JS spelling of tiktoken's, with \s made Unicode White_Space as in
// Rust's regex.
//
// GPT-NeoX: vocab_file is the encoding name (tiktoken.get_encoding(vocab_file)); vocabSize =
// n_vocab; eod = eot_token. encode is tiktoken's encode() with its defaults, so text that contains
// a special token's string (e.g. "<|endoftext|>") is an error, as there. GPT-NeoX has no pad for
// tiktoken; padId is eod. decode turns invalid UTF-8 into U+FFFD (GPT-NeoX passes errors="strict").

import { createRequire } from 'node:module';
import type { Tokenizer } from '../tokenizer.js';
import { translateRegex, utf8Decode } from './unicode.js';

/** Encodings available offline, as js-tiktoken ships them. */
export const TIKTOKEN_ENCODINGS = ['gpt2', 'r50k_base', 'p50k_base', 'p50k_edit', 'cl100k_base', 'o200k_base'] as const;

export interface TiktokenRanks {
  patStr: string;
  specialTokens: Record<string, number>;
  /** token bytes as a latin-1 string → rank */
  ranks: Map<string, number>;
  /** rank → token bytes as a latin-1 string */
  decoder: string[];
}

const require = createRequire(import.meta.url);
const loaded = new Map<string, TiktokenRanks>();

/** Load an encoding's ranks from js-tiktoken (cached per process). */
export function loadTiktokenRanks(name: string): TiktokenRanks {
  const hit = loaded.get(name);
  if (hit) return hit;
  if (!(TIKTOKEN_ENCODINGS as readonly string[]).includes(name)) {
    throw new Error(`TiktokenTokenizer: unknown or unavailable encoding ${JSON.stringify(name)} ` +
      `(vocab_file names a tiktoken encoding; available offline: ${TIKTOKEN_ENCODINGS.join(', ')})`);
  }
  let mod: { pat_str: string; special_tokens: Record<string, number>; bpe_ranks: string };
  try {
    mod = require(`js-tiktoken/ranks/${name}`) as typeof mod;
  } catch (e) {
    throw new Error(`TiktokenTokenizer: cannot load the ${name} ranks from the js-tiktoken package (${(e as Error).message}); run npm install`);
  }
  const ranks = new Map<string, number>();
  const decoder: string[] = [];
  // js-tiktoken's compact form: lines of "<hint> <first rank> <base64 token> <base64 token> ..."
  for (const line of mod.bpe_ranks.split('\n')) {
    if (!line) continue;
    const fields = line.split(' ');
    const first = Number.parseInt(fields[1]!, 10);
    for (let i = 2; i < fields.length; i++) {
      const bytes = Buffer.from(fields[i]!, 'base64').toString('latin1');
      ranks.set(bytes, first + i - 2);
      decoder[first + i - 2] = bytes;
    }
  }
  const out = { patStr: mod.pat_str, specialTokens: mod.special_tokens, ranks, decoder };
  loaded.set(name, out);
  return out;
}

export class TiktokenTokenizer implements Tokenizer {
  readonly name = 'TiktokenTokenizer';
  readonly encoding: string;
  readonly vocabSize: number;
  readonly eodId: number;
  readonly padId: number;
  private readonly data: TiktokenRanks;
  private readonly pattern: RegExp;
  private readonly special: RegExp | null;
  private readonly specialDecoder = new Map<number, string>();
  /** ids of recently seen pieces that are not single tokens */
  private readonly cache = new Map<string, number[]>();

  constructor(vocabFile: string | null | undefined) {
    if (typeof vocabFile !== 'string' || vocabFile.trim() === '') {
      throw new Error(`TiktokenTokenizer vocab_file is not set; it names a tiktoken encoding (${TIKTOKEN_ENCODINGS.join(', ')})`);
    }
    this.encoding = vocabFile.trim();
    this.data = loadTiktokenRanks(this.encoding);
    this.pattern = translateRegex(this.data.patStr, 'rust', `tiktoken ${this.encoding} pattern`);
    const specials = Object.keys(this.data.specialTokens);
    this.special = specials.length ? new RegExp(specials.map((s) => s.replace(/[\\^$.*+?()[\]{}|/]/g, '\\$&')).join('|'), 'u') : null;
    let max = this.data.decoder.length - 1;
    for (const [tok, id] of Object.entries(this.data.specialTokens)) {
      this.specialDecoder.set(id, Buffer.from(tok, 'utf8').toString('latin1'));
      max = Math.max(max, id);
    }
    this.vocabSize = max + 1;
    const eot = this.data.specialTokens['<|endoftext|>'];
    if (eot === undefined) throw new Error(`TiktokenTokenizer: encoding ${this.encoding} has no <|endoftext|> token`);
    this.eodId = eot;
    this.padId = eot;
  }

  encode(text: string): number[] {
    const bad = this.special?.exec(text);
    if (bad) {
      throw new Error(`TiktokenTokenizer: the text contains the special token ${JSON.stringify(bad[0])}, ` +
        'which tiktoken\'s encode() refuses by default (as in GPT-NeoX)');
    }
    const ids: number[] = [];
    const ranks = this.data.ranks;
    for (const m of text.matchAll(this.pattern)) {
      const piece = Buffer.from(m[0], 'utf8').toString('latin1');
      const direct = ranks.get(piece);
      if (direct !== undefined) { ids.push(direct); continue; }
      let merged = this.cache.get(piece);
      if (!merged) {
        merged = [];
        this.bytePairEncode(piece, merged);
        if (this.cache.size >= 50_000) this.cache.clear();
        this.cache.set(piece, merged);
      }
      for (const id of merged) ids.push(id);
    }
    return ids;
  }

  /** tiktoken's byte_pair_encode: merge the lowest-ranked adjacent pair (leftmost on ties). */
  private bytePairEncode(piece: string, out: number[]): void {
    const ranks = this.data.ranks;
    const starts: number[] = [];
    for (let i = 0; i <= piece.length; i++) starts.push(i);
    // pairRank[i]: rank of the bytes from starts[i] to starts[i + 2]
    const rankOf = (i: number): number => (i + 2 < starts.length ? ranks.get(piece.slice(starts[i]!, starts[i + 2]!)) ?? Infinity : Infinity);
    const pairRank: number[] = [];
    for (let i = 0; i + 1 < starts.length; i++) pairRank.push(rankOf(i));
    for (;;) {
      let best = Infinity;
      let at = -1;
      for (let i = 0; i < pairRank.length; i++) if (pairRank[i]! < best) { best = pairRank[i]!; at = i; }
      if (at < 0) break;
      starts.splice(at + 1, 1);
      pairRank.splice(at + 1, 1);
      pairRank[at] = rankOf(at);
      if (at > 0) pairRank[at - 1] = rankOf(at - 1);
    }
    for (let i = 0; i + 1 < starts.length; i++) {
      const id = ranks.get(piece.slice(starts[i]!, starts[i + 1]!));
      if (id === undefined) throw new Error(`TiktokenTokenizer: ${this.encoding} has no token for a byte; its ranks are incomplete`);
      out.push(id);
    }
  }

  decode(ids: ArrayLike<number>): string {
    let bytes = '';
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      bytes += this.data.decoder[id] ?? this.specialDecoder.get(id) ?? '';
    }
    return utf8Decode(Buffer.from(bytes, 'latin1'));
  }
}
