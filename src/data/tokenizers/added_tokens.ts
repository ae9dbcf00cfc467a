// Added tokens (tokenizer.json "added_tokens"): strings matched in the text before the model runs
// and given their own ids, as HF tokenizers' AddedVocabulary does it.
//
// defines: AddedToken, AddedVocabulary, Piece
//
// Matching is leftmost-longest. Tokens with normalized=false are matched in the raw text first; the
// text between them is normalized, then tokens with normalized=true are matched in that (by their
// normalized form). single_word needs non-word characters (or the text's ends) on both sides;
// lstrip/rstrip take the whitespace on that side into the token. Ids follow HF: a token already in
// the model's vocabulary keeps that id, others are numbered from the model's size in file order.

import type { Model } from './bpe.js';
import type { Normalizer } from './normalizers.js';
import type { Word } from './pre_tokenizers.js';
import { isWhiteSpace } from './unicode.js';

export interface AddedToken {
  content: string;
  single_word: boolean;
  lstrip: boolean;
  rstrip: boolean;
  normalized: boolean;
  special: boolean;
}

/** A piece of the input: an added token's id, or text (a Word) for the pre-tokenizer and model. */
export type Piece = { id: number } | Word;

interface Node {
  next: Map<number, Node>;
  id: number;
}

/** Leftmost-longest matching of a set of strings (UTF-16 code unit trie). */
class Matcher {
  private readonly root: Node = { next: new Map(), id: -1 };

  constructor(patterns: Array<[string, number]>) {
    for (const [p, id] of patterns) {
      let node = this.root;
      for (let i = 0; i < p.length; i++) {
        const c = p.charCodeAt(i);
        let child = node.next.get(c);
        if (!child) node.next.set(c, (child = { next: new Map(), id: -1 }));
        node = child;
      }
      node.id = id;
    }
  }

  /** The leftmost match at or after `from` (the longest there): [start, end, id], or null. */
  find(s: string, from: number): [number, number, number] | null {
    for (let start = from; start < s.length; start++) {
      let node = this.root.next.get(s.charCodeAt(start));
      if (!node) continue;
      let best = -1;
      let bestEnd = -1;
      for (let i = start; ;) {
        if (node.id >= 0) { best = node.id; bestEnd = i + 1; }
        if (++i >= s.length) break;
        const child: Node | undefined = node.next.get(s.charCodeAt(i));
        if (!child) break;
        node = child;
      }
      if (best >= 0) return [start, bestEnd, best];
    }
    return null;
  }
}

const WORD_CHAR = /[\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}]/u;

function wordCharBefore(s: string, end: number): boolean {
  if (end <= 0) return false;
  const lo = s.charCodeAt(end - 1);
  const ch = (lo & 0xfc00) === 0xdc00 && end >= 2 ? s.slice(end - 2, end) : s[end - 1]!;
  return WORD_CHAR.test(ch);
}

function wordCharAt(s: string, start: number): boolean {
  if (start >= s.length) return false;
  return WORD_CHAR.test(String.fromCodePoint(s.codePointAt(start)!));
}

export class AddedVocabulary {
  private readonly byContent = new Map<string, number>();
  private readonly byId = new Map<number, AddedToken>();
  private readonly normalizedForm = new Map<number, string>();
  private readonly specials = new Set<string>();
  private readonly raw: Matcher | null;
  private readonly norm: Matcher | null;

  constructor(tokens: AddedToken[], model: Model, normalizer: Normalizer | null) {
    let nextId = model.size;
    for (const t of tokens) {
      if (!t.content) continue;
      const known = this.byContent.get(t.content);
      if (known !== undefined && sameToken(this.byId.get(known), t)) continue;
      let id = known ?? model.tokenToId(t.content);
      if (id === undefined) id = nextId++;
      if (t.normalized && normalizer) {
        const n = normalizer(t.content);
        if (n !== t.content) this.normalizedForm.set(id, n);
      }
      this.byContent.set(t.content, id);
      if (t.special) this.specials.add(t.content);
      this.byId.set(id, t);
    }
    const raw: Array<[string, number]> = [];
    const norm: Array<[string, number]> = [];
    for (const [id, t] of this.byId) {
      if (t.normalized) norm.push([this.normalizedForm.get(id) ?? t.content, id]);
      else raw.push([t.content, id]);
    }
    this.raw = raw.length ? new Matcher(raw) : null;
    this.norm = norm.length ? new Matcher(norm) : null;
  }

  /** Distinct added token strings. */
  get contents(): Iterable<string> { return this.byContent.keys(); }
  tokenToId(content: string): number | undefined { return this.byContent.get(content); }
  /** The token's text for decoding (its normalized form where normalization changed it). */
  idToToken(id: number): string | undefined {
    const t = this.byId.get(id);
    return t === undefined ? undefined : this.normalizedForm.get(id) ?? t.content;
  }
  isSpecial(token: string): boolean { return this.specials.has(token); }

  /** Split text at added tokens, normalizing the rest (HF extract_and_normalize). */
  extract(text: string, normalizer: Normalizer | null): Piece[] {
    const out: Piece[] = [];
    for (const seg of this.split(text, this.raw)) {
      if (seg.id >= 0) { out.push({ id: seg.id }); continue; }
      const normalized = normalizer ? normalizer(seg.text) : seg.text;
      for (const sub of this.split(normalized, this.norm)) {
        if (sub.id >= 0) out.push({ id: sub.id });
        else if (sub.text) out.push({ text: sub.text, atStart: seg.start === 0 && sub.start === 0 });
      }
    }
    return out;
  }

  /** HF AddedVocabulary::find_matches: pieces of `s` with id -1 for plain text. */
  private split(s: string, matcher: Matcher | null): Array<{ text: string; start: number; id: number }> {
    if (!matcher || s.length === 0) return s ? [{ text: s, start: 0, id: -1 }] : [];
    const out: Array<{ text: string; start: number; id: number }> = [];
    let startOffset = 0;
    let from = 0;
    for (let m = matcher.find(s, from); m; m = matcher.find(s, from)) {
      let [start, stop] = m;
      const id = m[2];
      from = stop;
      const tok = this.byId.get(id)!;
      if (tok.single_word && (wordCharBefore(s, start) || wordCharAt(s, stop))) continue;
      if (tok.lstrip) {
        let a = start;
        while (a > 0 && isWhiteSpace(s[a - 1]!)) a--;
        start = Math.max(a, startOffset);
      }
      if (tok.rstrip) while (stop < s.length && isWhiteSpace(s[stop]!)) stop++;
      if (startOffset < start) out.push({ text: s.slice(startOffset, start), start: startOffset, id: -1 });
      out.push({ text: s.slice(start, stop), start, id });
      startOffset = stop;
    }
    if (startOffset < s.length) out.push({ text: s.slice(startOffset), start: startOffset, id: -1 });
    return out;
  }
}

function sameToken(a: AddedToken | undefined, b: AddedToken): boolean {
  return !!a && a.content === b.content && a.single_word === b.single_word && a.lstrip === b.lstrip &&
    a.rstrip === b.rstrip && a.normalized === b.normalized && a.special === b.special;
}
