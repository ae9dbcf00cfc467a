// WordPiece (BERT) and WordLevel models as HF tokenizers runs them (models/wordpiece, wordlevel).
//
// defines: WordPieceModel, WordLevelModel
//
// WordPiece: greedy longest-match-first from the left; pieces after the first carry the
// continuing_subword_prefix ("##"); a word with any unmatched remainder, or longer than
// max_input_chars_per_word characters, becomes the single unk token. WordLevel: the word's id, or
// unk.

import type { Model } from './bpe.js';

function reverse(vocab: Map<string, number>): Map<number, string> {
  const r = new Map<number, string>();
  for (const [t, id] of vocab) r.set(id, t);
  return r;
}

export class WordPieceModel implements Model {
  private readonly vocabR: Map<number, string>;
  private readonly cache = new Map<string, number[]>();

  constructor(
    readonly vocab: Map<string, number>,
    readonly unkToken: string,
    readonly prefix: string,
    readonly maxInputCharsPerWord: number,
  ) {
    this.vocabR = reverse(vocab);
  }

  get size(): number { return this.vocab.size; }
  vocabTokens(): Iterable<string> { return this.vocab.keys(); }
  tokenToId(token: string): number | undefined { return this.vocab.get(token); }
  idToToken(id: number): string | undefined { return this.vocabR.get(id); }

  private unk(): number[] {
    const id = this.vocab.get(this.unkToken);
    if (id === undefined) throw new Error(`WordPiece unk_token ${JSON.stringify(this.unkToken)} is not in the vocabulary`);
    return [id];
  }

  tokenize(word: string): number[] {
    const hit = this.cache.get(word);
    if (hit) return hit;
    const ids = this.greedy(word);
    if (this.cache.size >= 10_000) this.cache.clear();
    this.cache.set(word, ids);
    return ids;
  }

  private greedy(word: string): number[] {
    // code point boundaries, so that pieces never split a surrogate pair
    const bounds = [0];
    for (const ch of word) bounds.push(bounds[bounds.length - 1]! + ch.length);
    const n = bounds.length - 1;
    if (n > this.maxInputCharsPerWord) return this.unk();
    const out: number[] = [];
    let start = 0;
    while (start < n) {
      let end = n;
      let found: number | undefined;
      while (start < end) {
        const sub = word.slice(bounds[start], bounds[end]);
        found = this.vocab.get(start > 0 ? this.prefix + sub : sub);
        if (found !== undefined) break;
        end--;
      }
      if (found === undefined) return this.unk();
      out.push(found);
      start = end;
    }
    return out;
  }
}

export class WordLevelModel implements Model {
  private readonly vocabR: Map<number, string>;

  constructor(readonly vocab: Map<string, number>, readonly unkToken: string) {
    this.vocabR = reverse(vocab);
  }

  get size(): number { return this.vocab.size; }
  vocabTokens(): Iterable<string> { return this.vocab.keys(); }
  tokenToId(token: string): number | undefined { return this.vocab.get(token); }
  idToToken(id: number): string | undefined { return this.vocabR.get(id); }

  tokenize(word: string): number[] {
    const id = this.vocab.get(word) ?? this.vocab.get(this.unkToken);
    if (id === undefined) throw new Error(`WordLevel unk_token ${JSON.stringify(this.unkToken)} is not in the vocabulary`);
    return [id];
  }
}
