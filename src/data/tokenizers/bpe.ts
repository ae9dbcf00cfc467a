// BPE model as HF tokenizers runs it (models/bpe): a word's characters become vocabulary ids, then
// merges are applied lowest rank first (leftmost on ties) until none applies. Used for tokenizer.json
// "BPE" models and for GPT-2's vocab.json + merges.txt.
//
// defines: BPEModel, BPEOptions, parseMergesTxt, Model
//
// Options as in tokenizer.json: unk_token, fuse_unk, byte_fallback (<0xXX> tokens for characters
// outside the vocabulary), continuing_subword_prefix, end_of_word_suffix, ignore_merges (a word
// that is itself a token is not merged). BPE-dropout is not applied (encoding is deterministic).

export interface Model {
  /** Ids of one pre-tokenized word. */
  tokenize(word: string): number[];
  tokenToId(token: string): number | undefined;
  idToToken(id: number): string | undefined;
  /** Tokens of the model's vocabulary (HF Model::get_vocab). */
  vocabTokens(): Iterable<string>;
  /** HF Model::get_vocab_size. */
  readonly size: number;
}

export interface BPEOptions {
  unkToken?: string | null;
  fuseUnk?: boolean;
  byteFallback?: boolean;
  continuingSubwordPrefix?: string | null;
  endOfWordSuffix?: string | null;
  ignoreMerges?: boolean;
}

const CACHE_CAPACITY = 10_000;
const BYTE_TOKENS = Array.from({ length: 256 }, (_, b) => `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);

/** Min-heap of pending merges ordered by (rank, position), as HF's Word::merge_all. */
class MergeQueue {
  private ranks: number[] = [];
  private pos: number[] = [];
  private ids: number[] = [];

  get size(): number { return this.ranks.length; }

  private less(i: number, j: number): boolean {
    return this.ranks[i]! < this.ranks[j]! || (this.ranks[i] === this.ranks[j] && this.pos[i]! < this.pos[j]!);
  }

  private swap(i: number, j: number): void {
    for (const a of [this.ranks, this.pos, this.ids]) { const t = a[i]!; a[i] = a[j]!; a[j] = t; }
  }

  push(rank: number, pos: number, id: number): void {
    this.ranks.push(rank); this.pos.push(pos); this.ids.push(id);
    let i = this.ranks.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.less(i, p)) break;
      this.swap(i, p);
      i = p;
    }
  }

  /** Pops the minimum into out = [rank, pos, id]. */
  pop(out: number[]): void {
    out[0] = this.ranks[0]!; out[1] = this.pos[0]!; out[2] = this.ids[0]!;
    const last = this.ranks.length - 1;
    this.swap(0, last);
    this.ranks.pop(); this.pos.pop(); this.ids.pop();
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < last && this.less(l, m)) m = l;
      if (r < last && this.less(r, m)) m = r;
      if (m === i) break;
      this.swap(i, m);
      i = m;
    }
  }
}

export class BPEModel implements Model {
  readonly vocab: Map<string, number>;
  private readonly vocabR = new Map<number, string>();
  /** merges.get(left)?.get(right) = [rank, merged id] */
  private readonly merges = new Map<number, Map<number, [number, number]>>();
  private readonly cache = new Map<string, number[]>();
  private readonly unkId: number | undefined;

  /**
   * `merges` are token pairs in rank order; `where` names the file for errors. A merge whose tokens
   * (or whose result) are not in the vocabulary is an error, as in HF.
   */
  constructor(vocab: Map<string, number>, merges: Array<[string, string]>, readonly opts: BPEOptions, where: string) {
    this.vocab = vocab;
    for (const [tok, id] of vocab) this.vocabR.set(id, tok);
    const prefixLen = opts.continuingSubwordPrefix ? opts.continuingSubwordPrefix.length : 0;
    merges.forEach(([a, b], rank) => {
      const aId = vocab.get(a);
      const bId = vocab.get(b);
      const merged = a + b.slice(prefixLen);
      const newId = vocab.get(merged);
      const missing = aId === undefined ? a : bId === undefined ? b : newId === undefined ? merged : undefined;
      if (missing !== undefined) {
        throw new Error(`${where}: merge ${rank + 1} (${JSON.stringify(a)} ${JSON.stringify(b)}) uses ${JSON.stringify(missing)}, which is not in the vocabulary`);
      }
      let inner = this.merges.get(aId!);
      if (!inner) this.merges.set(aId!, (inner = new Map()));
      inner.set(bId!, [rank, newId!]);
    });
    if (opts.unkToken != null) this.unkId = vocab.get(opts.unkToken);
  }

  get size(): number { return this.vocab.size; }
  vocabTokens(): Iterable<string> { return this.vocab.keys(); }
  tokenToId(token: string): number | undefined { return this.vocab.get(token); }
  idToToken(id: number): string | undefined { return this.vocabR.get(id); }

  tokenize(word: string): number[] {
    if (word.length === 0) return [];
    if (this.opts.ignoreMerges) {
      const id = this.vocab.get(word);
      if (id !== undefined) return [id];
    }
    const hit = this.cache.get(word);
    if (hit) return hit;
    const ids = this.mergeWord(word);
    if (this.cache.size >= CACHE_CAPACITY) this.cache.clear();
    this.cache.set(word, ids);
    return ids;
  }

  private unk(): number {
    if (this.unkId === undefined) {
      throw new Error(`BPE unk_token ${JSON.stringify(this.opts.unkToken)} is not in the vocabulary`);
    }
    return this.unkId;
  }

  /** HF BPE::merge_word then Word::merge_all. */
  private mergeWord(word: string): number[] {
    const { continuingSubwordPrefix: prefix, endOfWordSuffix: suffix, byteFallback, fuseUnk } = this.opts;
    const chars = Array.from(word);
    const sym: number[] = [];
    let pendingUnk = -1;
    for (let i = 0; i < chars.length; i++) {
      let s = chars[i]!;
      if (i > 0 && prefix) s = prefix + s;
      if (i === chars.length - 1 && suffix) s = s + suffix;
      const id = this.vocab.get(s);
      if (id !== undefined) {
        if (pendingUnk >= 0) { sym.push(pendingUnk); pendingUnk = -1; }
        sym.push(id);
        continue;
      }
      if (byteFallback) {
        const bytes = Buffer.from(s, 'utf8');
        const byteIds: number[] = [];
        for (const b of bytes) {
          const bid = this.vocab.get(BYTE_TOKENS[b]!);
          if (bid === undefined) break;
          byteIds.push(bid);
        }
        if (byteIds.length === bytes.length) { sym.push(...byteIds); continue; }
      }
      if (this.opts.unkToken != null) {
        if (pendingUnk >= 0 && !fuseUnk) sym.push(pendingUnk);
        if (pendingUnk < 0 || !fuseUnk) pendingUnk = this.unk();
      }
    }
    if (pendingUnk >= 0) sym.push(pendingUnk);
    return this.mergeAll(sym);
  }

  private mergeAll(c: number[]): number[] {
    const n = c.length;
    if (n < 2) return c;
    const prev = new Int32Array(n);
    const next = new Int32Array(n);
    const alive = new Uint8Array(n).fill(1);
    for (let i = 0; i < n; i++) { prev[i] = i - 1; next[i] = i + 1 < n ? i + 1 : -1; }
    const queue = new MergeQueue();
    for (let i = 0; i + 1 < n; i++) {
      const m = this.merges.get(c[i]!)?.get(c[i + 1]!);
      if (m) queue.push(m[0], i, m[1]);
    }
    const top = [0, 0, 0];
    while (queue.size > 0) {
      queue.pop(top);
      const pos = top[1]!;
      const newId = top[2]!;
      if (!alive[pos] || next[pos] === -1) continue;
      const right = next[pos]!;
      const cur = this.merges.get(c[pos]!)?.get(c[right]!);
      if (!cur || cur[1] !== newId) continue;  // an expired entry
      c[pos] = newId;
      alive[right] = 0;
      next[pos] = next[right]!;
      if (next[right]! >= 0) prev[next[right]!] = pos;
      if (prev[pos]! >= 0) {
        const p = prev[pos]!;
        const m = this.merges.get(c[p]!)?.get(c[pos]!);
        if (m) queue.push(m[0], p, m[1]);
      }
      if (next[pos]! >= 0) {
        const m = this.merges.get(c[pos]!)?.get(c[next[pos]!]!);
        if (m) queue.push(m[0], pos, m[1]);
      }
    }
    const out: number[] = [];
    for (let i = 0; i < n; i++) if (alive[i]) out.push(c[i]!);
    return out;
  }
}

/**
 * merges.txt as GPT-2 and HF write it: an optional "#version" first line, then one merge per line,
 * two tokens separated by whitespace. Blank lines are skipped; any other line is an error naming
 * `file` and the line.
 */
export function parseMergesTxt(text: string, file: string): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  const lines = text.split(/\r?\n/);
  lines.forEach((line, i) => {
    if (line.startsWith('#version') || line.trim() === '') return;
    const parts = line.split(/[ \t]+/).filter((p) => p !== '');
    if (parts.length !== 2) {
      throw new Error(`${file}:${i + 1}: not a merge (expected two tokens separated by a space): ${JSON.stringify(line.slice(0, 80))}`);
    }
    out.push([parts[0]!, parts[1]!]);
  });
  return out;
}
