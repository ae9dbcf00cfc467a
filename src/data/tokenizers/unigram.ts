// Unigram language-model segmentation: the Viterbi best path over all vocabulary pieces that match
// the text, as SentencePiece's optimized encoder (unigram_model.cc EncodeOptimized) and HF's port of
// it (models/unigram) compute it, over UTF-8 bytes. Shared by HF "Unigram" models and SentencePiece.
//
// defines: ByteTrie, bestPath, PathNode, UnigramModel
//
// Ties keep the first candidate found (scan by start position, then by length), as both references
// do. SentencePiece sums scores in float32 (`f32`), HF in float64.

import type { Model } from './bpe.js';
import { utf8Decode, utf8Encode } from './unicode.js';

interface TrieNode {
  next: Map<number, TrieNode>;
  id: number;
}

/** A trie over UTF-8 byte strings with an id at each key's end. */
export class ByteTrie {
  private readonly root: TrieNode = { next: new Map(), id: -1 };

  /** Insert `key`; a later insert of the same key replaces the id. */
  insert(key: string, id: number): void {
    let node = this.root;
    for (const b of utf8Encode(key)) {
      let child = node.next.get(b);
      if (!child) node.next.set(b, (child = { next: new Map(), id: -1 }));
      node = child;
    }
    node.id = id;
  }

  /** Calls visit(id, endExclusive) for every key that is a prefix of bytes[start..], shortest first. */
  prefixes(bytes: Uint8Array, start: number, visit: (id: number, end: number) => void): void {
    let node: TrieNode | undefined = this.root;
    for (let i = start; i < bytes.length; i++) {
      node = node.next.get(bytes[i]!);
      if (!node) return;
      if (node.id >= 0) visit(node.id, i + 1);
    }
  }
}

export interface PathNode {
  start: number;
  end: number;
  /** The piece id, or unkId for an unknown character. */
  id: number;
}

/** UTF-8 sequence length from its lead byte (SentencePiece's OneCharLen). */
function charLen(lead: number): number {
  return lead < 0x80 ? 1 : lead < 0xc0 ? 1 : lead < 0xe0 ? 2 : lead < 0xf0 ? 3 : 4;
}

/**
 * The best segmentation of `bytes`. `candidate(id, lengthInBytes, scoreSoFar)` is the path score
 * through a piece, or null to skip the piece (SentencePiece's unused pieces); it does its own float
 * rounding, since SentencePiece mixes float and double there. A character that no piece of its own
 * length covers gets an unknown node scored `unkScore`. With `f32`, stored scores are float32.
 */
export function bestPath(
  bytes: Uint8Array, trie: ByteTrie, candidate: (id: number, length: number, till: number) => number | null,
  unkId: number, unkScore: number, f32: boolean,
): PathNode[] {
  const size = bytes.length;
  if (size === 0) return [];
  const round = f32 ? Math.fround : (x: number): number => x;
  const best = new Float64Array(size + 1);
  const from = new Int32Array(size + 1).fill(-1);
  const ids = new Int32Array(size + 1).fill(-1);
  let start = 0;
  while (start < size) {
    const till = best[start]!;
    const mblen = Math.min(charLen(bytes[start]!), size - start);
    let hasSingle = false;
    trie.prefixes(bytes, start, (id, end) => {
      const cand = candidate(id, end - start, till);
      if (cand === null) return;
      if (from[end] === -1 || cand > best[end]!) {
        best[end] = round(cand);
        from[end] = start;
        ids[end] = id;
      }
      if (end - start === mblen) hasSingle = true;
    });
    if (!hasSingle) {
      const end = start + mblen;
      const cand = round(unkScore + till);
      if (from[end] === -1 || cand > best[end]!) {
        best[end] = cand;
        from[end] = start;
        ids[end] = unkId;
      }
    }
    start += mblen;
  }
  const out: PathNode[] = [];
  for (let end = size; end > 0; end = from[end]!) out.push({ start: from[end]!, end, id: ids[end]! });
  return out.reverse();
}

/** HF tokenizer.json "Unigram" model. */
export class UnigramModel implements Model {
  private readonly ids = new Map<string, number>();
  private readonly trie = new ByteTrie();
  private readonly minScore: number;
  private readonly cache = new Map<string, number[]>();

  constructor(
    private readonly pieces: Array<[string, number]>,
    private readonly unkId: number | null,
    private readonly byteFallback: boolean,
    where: string,
  ) {
    if (unkId !== null && (unkId < 0 || unkId >= pieces.length)) {
      throw new Error(`${where}: Unigram unk_id ${unkId} is not in the vocabulary of ${pieces.length} pieces`);
    }
    let min = Infinity;
    pieces.forEach(([tok, s], id) => {
      this.ids.set(tok, id);
      if (s < min) min = s;
    });
    for (const tok of this.ids.keys()) this.trie.insert(tok, this.ids.get(tok)!);
    this.minScore = min;
  }

  get size(): number { return this.pieces.length; }
  vocabTokens(): Iterable<string> { return this.ids.keys(); }
  tokenToId(token: string): number | undefined { return this.ids.get(token); }
  idToToken(id: number): string | undefined { return this.pieces[id]?.[0]; }

  private unk(): number {
    if (this.unkId === null) throw new Error('Unigram model has no unk_id but the text has characters outside its vocabulary');
    return this.unkId;
  }

  tokenize(word: string): number[] {
    if (word.length === 0) return [];
    const hit = this.cache.get(word);
    if (hit) return hit;
    const bytes = utf8Encode(word);
    const unkId = this.unkId ?? -1;
    const path = bestPath(bytes, this.trie, (id, _len, till) => this.pieces[id]![1] + till, unkId, this.minScore - 10, false);
    // consecutive unknown characters fuse into one piece (HF's fuse_unk, always on)
    const strings: string[] = [];
    let unkRun = '';
    for (const node of path) {
      const piece = utf8Decode(bytes.subarray(node.start, node.end));
      if (node.id === unkId && this.unkId !== null) { unkRun += piece; continue; }
      if (node.id === -1) this.unk();
      if (unkRun) { strings.push(unkRun); unkRun = ''; }
      strings.push(piece);
    }
    if (unkRun) strings.push(unkRun);
    const out: number[] = [];
    for (const s of strings) {
      const id = this.ids.get(s);
      if (id !== undefined) { out.push(id); continue; }
      if (this.byteFallback) {
        const byteIds = Array.from(utf8Encode(s), (b) => this.ids.get(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`));
        if (byteIds.every((x) => x !== undefined)) { out.push(...(byteIds as number[])); continue; }
      }
      out.push(this.unk());
    }
    if (this.cache.size >= 10_000) this.cache.clear();
    this.cache.set(word, out);
    return out;
  }
}
