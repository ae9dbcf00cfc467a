// SentencePiece .model files: GPT-NeoX's SPMTokenizer, reading the ModelProto ourselves and
// encoding as google/sentencepiece's SentencePieceProcessor does (Encode / Decode of ids).
//
// defines: SPMTokenizer, parseSentencePieceModel, SentencePieceModel, SpmPiece, SpmNormalizerSpec,
//          SpmNormalizer
//
// Pipeline: normalizer (precompiled_charsmap rules by longest match over UTF-8, user-defined symbols
// left as they are, dummy prefix, extra whitespace removal, spaces → ▁) → model (BPE: merge the
// highest-scoring adjacent pair first; UNIGRAM: Viterbi in float32; WORD; CHAR) → unknown pieces
// (byte_fallback: one <0xXX> piece per byte; otherwise consecutive unknowns become one unk id).
// Decoding follows SentencePieceProcessor::Decode: control pieces vanish, <unk> shows as " ⁇ ",
// byte pieces are reassembled into UTF-8, ▁ becomes a space and the first one is dropped.
//
// GPT-NeoX's SPMTokenizer: vocabSize = number of pieces; eod = piece_to_id("<|endoftext|>").
// Deliberate differences: when the model has no "<|endoftext|>" piece, piece_to_id returns the unk
// id and GPT-NeoX would mark documents with <unk>; here eod is the model's eos (</s>) instead (unk
// only when the model has no eos). GPT-NeoX has no pad for SPM; padId is the model's pad_id when it
// has one, else eod. decode skips ids outside the vocabulary (SentencePiece raises).

import type { Tokenizer } from '../tokenizer.js';
import { readTokenizerFile, requirePath } from './files.js';
import { PrecompiledCharsMap } from './precompiled.js';
import { ProtoReader } from './protobuf.js';
import { bestPath, ByteTrie } from './unigram.js';
import { utf8Decode, utf8Encode } from './unicode.js';

/** ModelProto.SentencePiece.Type */
export const PieceType = { Normal: 1, Unknown: 2, Control: 3, UserDefined: 4, Unused: 5, Byte: 6 } as const;
const MODEL_TYPES: Record<number, string> = { 1: 'UNIGRAM', 2: 'BPE', 3: 'WORD', 4: 'CHAR' };
const SPACE = '\u2581';
const SPACE_BYTES = [0xe2, 0x96, 0x81];
const FLT_MAX = 3.4028234663852886e38;
const FLT_MIN = 1.1754943508222875e-38;

export interface SpmPiece {
  piece: string;
  score: number;
  type: number;
}

export interface SpmNormalizerSpec {
  name: string;
  charsmap: Uint8Array | null;
  addDummyPrefix: boolean;
  removeExtraWhitespaces: boolean;
  escapeWhitespaces: boolean;
}

export interface SentencePieceModel {
  pieces: SpmPiece[];
  modelType: number;
  byteFallback: boolean;
  treatWhitespaceAsSuffix: boolean;
  unkId: number;
  bosId: number;
  eosId: number;
  padId: number;
  unkSurface: string;
  normalizer: SpmNormalizerSpec;
  denormalizer: SpmNormalizerSpec | null;
}

function normalizerSpec(r: ProtoReader, start: number, end: number, where: string): SpmNormalizerSpec {
  const spec: SpmNormalizerSpec = { name: '', charsmap: null, addDummyPrefix: true, removeExtraWhitespaces: true, escapeWhitespaces: true };
  const n = new ProtoReader(r.buf, where, start, end);
  for (let t = n.tag(); t; t = n.tag()) {
    const [f, w] = t;
    if (f === 1 && w === 2) spec.name = utf8Decode(n.bytes());
    else if (f === 2 && w === 2) spec.charsmap = n.bytes();
    else if (f === 3 && w === 0) spec.addDummyPrefix = n.bool();
    else if (f === 4 && w === 0) spec.removeExtraWhitespaces = n.bool();
    else if (f === 5 && w === 0) spec.escapeWhitespaces = n.bool();
    else n.skip(w);
  }
  return spec;
}

/** Parse a SentencePiece ModelProto; `where` names the file for errors. */
export function parseSentencePieceModel(buf: Uint8Array, where: string): SentencePieceModel {
  const r = new ProtoReader(buf, where);
  const m: SentencePieceModel = {
    pieces: [], modelType: 1, byteFallback: false, treatWhitespaceAsSuffix: false,
    unkId: 0, bosId: 1, eosId: 2, padId: -1, unkSurface: ' \u2047 ',
    normalizer: { name: '', charsmap: null, addDummyPrefix: true, removeExtraWhitespaces: true, escapeWhitespaces: true },
    denormalizer: null,
  };
  for (let t = r.tag(); t; t = r.tag()) {
    const [field, wire] = t;
    if (field === 1) {
      r.expect(wire, 2, 'pieces');
      const [a, b] = r.bytesRange();
      const p = new ProtoReader(buf, where, a, b);
      const piece: SpmPiece = { piece: '', score: 0, type: PieceType.Normal };
      for (let u = p.tag(); u; u = p.tag()) {
        const [f, w] = u;
        if (f === 1 && w === 2) piece.piece = utf8Decode(p.bytes());
        else if (f === 2 && w === 5) piece.score = p.float();
        else if (f === 3 && w === 0) piece.type = p.int32();
        else p.skip(w);
      }
      m.pieces.push(piece);
    } else if (field === 2) {
      r.expect(wire, 2, 'trainer_spec');
      const [a, b] = r.bytesRange();
      const s = new ProtoReader(buf, where, a, b);
      for (let u = s.tag(); u; u = s.tag()) {
        const [f, w] = u;
        if (w !== 0 && f !== 44) { s.skip(w); continue; }
        switch (f) {
          case 3: m.modelType = s.int32(); break;
          case 35: m.byteFallback = s.bool(); break;
          case 24: m.treatWhitespaceAsSuffix = s.bool(); break;
          case 40: m.unkId = s.int32(); break;
          case 41: m.bosId = s.int32(); break;
          case 42: m.eosId = s.int32(); break;
          case 43: m.padId = s.int32(); break;
          case 44: if (w === 2) m.unkSurface = utf8Decode(s.bytes()); else s.skip(w); break;
          default: s.skip(w);
        }
      }
    } else if (field === 3) {
      r.expect(wire, 2, 'normalizer_spec');
      const [a, b] = r.bytesRange();
      m.normalizer = normalizerSpec(r, a, b, where);
    } else if (field === 5) {
      r.expect(wire, 2, 'denormalizer_spec');
      const [a, b] = r.bytesRange();
      m.denormalizer = normalizerSpec(r, a, b, where);
    } else {
      r.skip(wire);
    }
  }
  if (m.pieces.length === 0) throw new Error(`${where}: not a valid SentencePiece model (no pieces)`);
  if (!(m.modelType in MODEL_TYPES)) throw new Error(`${where}: unsupported SentencePiece model_type ${m.modelType}`);
  return m;
}

/** Longest match among a set of strings at a position (SentencePiece's PrefixMatcher). */
class PrefixMatcher {
  private readonly trie = new ByteTrie();
  private readonly empty: boolean;

  constructor(symbols: string[]) {
    symbols.forEach((s) => this.trie.insert(s, 1));
    this.empty = symbols.length === 0;
  }

  /** Length in bytes of the longest symbol at bytes[pos..], or 0. */
  match(bytes: Uint8Array, pos: number): number {
    if (this.empty) return 0;
    let best = 0;
    this.trie.prefixes(bytes, pos, (_id, end) => { best = end - pos; });
    return best;
  }
}

function charLen(lead: number): number {
  return lead < 0xc0 ? 1 : lead < 0xe0 ? 2 : lead < 0xf0 ? 3 : 4;
}

/** SentencePiece's normalizer (normalizer.cc Normalize), over UTF-8 bytes. */
export class SpmNormalizer {
  private readonly map: PrecompiledCharsMap | null;

  constructor(private readonly spec: SpmNormalizerSpec, private readonly suffix: boolean,
    private readonly matcher: PrefixMatcher | null, where: string) {
    this.map = spec.charsmap && spec.charsmap.length ? new PrecompiledCharsMap(spec.charsmap, `${where} (precompiled_charsmap)`) : null;
  }

  /** [replacement bytes, bytes consumed] for the input at pos. */
  private prefix(input: Uint8Array, pos: number): [Uint8Array, number] {
    const user = this.matcher ? this.matcher.match(input, pos) : 0;
    if (user > 0) return [input.subarray(pos, pos + user), user];
    if (this.map) {
      let best = 0;
      let value = 0;
      for (const m of this.map.prefixes(input, pos, input.length, false)) {
        if (best === 0 || m.length > best) { best = m.length; value = m.value; }
      }
      if (best > 0) return [this.map.replacement(value), best];
    }
    const n = Math.min(charLen(input[pos]!), input.length - pos);
    return [input.subarray(pos, pos + n), n];
  }

  normalize(text: string): string {
    const input = utf8Encode(text);
    const { addDummyPrefix, removeExtraWhitespaces: removeExtra, escapeWhitespaces: escape } = this.spec;
    let pos = 0;
    if (removeExtra) {
      while (pos < input.length) {
        const [rep, n] = this.prefix(input, pos);
        if (!(rep.length === 1 && rep[0] === 0x20)) break;
        pos += n;
      }
    }
    if (pos >= input.length) return '';
    const out: number[] = [];
    const addWs = (): void => { if (escape) out.push(...SPACE_BYTES); else out.push(0x20); };
    if (!this.suffix && addDummyPrefix) addWs();
    let prevSpace = removeExtra;
    while (pos < input.length) {
      const [rep, n] = this.prefix(input, pos);
      let a = 0;
      while (prevSpace && a < rep.length && rep[a] === 0x20) a++;
      if (a < rep.length) {
        for (let k = a; k < rep.length; k++) {
          if (escape && rep[k] === 0x20) out.push(...SPACE_BYTES);
          else out.push(rep[k]!);
        }
        prevSpace = rep[rep.length - 1] === 0x20;
      }
      pos += n;
      if (!removeExtra) prevSpace = false;
    }
    if (removeExtra) {
      const sp = escape ? SPACE_BYTES : [0x20];
      while (out.length >= sp.length && sp.every((b, k) => out[out.length - sp.length + k] === b)) out.length -= sp.length;
    }
    if (this.suffix && addDummyPrefix) addWs();
    return utf8Decode(out);
  }
}

interface SpmSymbol {
  piece: string;
  bytes: number;
  prev: number;
  next: number;
  freeze: boolean;
}

/** Max-heap of candidate merges by (score desc, left asc), as bpe_model.cc's agenda. */
class Agenda {
  private items: Array<{ left: number; right: number; score: number; size: number }> = [];
  get size(): number { return this.items.length; }
  private better(a: number, b: number): boolean {
    const x = this.items[a]!;
    const y = this.items[b]!;
    return x.score > y.score || (x.score === y.score && x.left < y.left);
  }
  push(item: { left: number; right: number; score: number; size: number }): void {
    const it = this.items;
    it.push(item);
    let i = it.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.better(i, p)) break;
      [it[i], it[p]] = [it[p]!, it[i]!];
      i = p;
    }
  }
  pop(): { left: number; right: number; score: number; size: number } {
    const it = this.items;
    const top = it[0]!;
    const last = it.pop()!;
    if (it.length) {
      it[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < it.length && this.better(l, m)) m = l;
        if (r < it.length && this.better(r, m)) m = r;
        if (m === i) break;
        [it[i], it[m]] = [it[m]!, it[i]!];
        i = m;
      }
    }
    return top;
  }
}

/** GPT-NeoX's SPMTokenizer: vocab_file is a SentencePiece .model. */
export class SPMTokenizer implements Tokenizer {
  readonly name = 'SPM';
  readonly model: SentencePieceModel;
  readonly vocabSize: number;
  readonly eodId: number;
  readonly padId: number;
  private readonly normalizer: SpmNormalizer;
  private readonly denormalizer: SpmNormalizer | null;
  /** NORMAL, USER_DEFINED and UNUSED pieces (ModelInterface::pieces_) */
  private readonly pieces = new Map<string, number>();
  /** CONTROL, UNKNOWN and BYTE pieces (reserved_id_map_) */
  private readonly reserved = new Map<string, number>();
  private readonly unkId: number;
  private readonly matcher: PrefixMatcher;
  private readonly trie = new ByteTrie();
  private readonly minScore: number;
  private readonly maxScore: number;
  private readonly byteIds: number[] = [];

  constructor(vocabFile: string | null | undefined) {
    const file = requirePath(vocabFile, 'SPMTokenizer vocab_file', 'a SentencePiece .model file');
    const bytes = readTokenizerFile(file, 'SPMTokenizer vocab_file', 'a SentencePiece .model file');
    const m = (this.model = parseSentencePieceModel(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length), file));
    let unk = -1;
    const userDefined: string[] = [];
    let min = FLT_MAX;
    let max = FLT_MIN;
    m.pieces.forEach((p, id) => {
      if (p.piece === '') throw new Error(`${file}: not a valid SentencePiece model (piece ${id} is empty)`);
      const normal = p.type === PieceType.Normal || p.type === PieceType.UserDefined || p.type === PieceType.Unused;
      const map = normal ? this.pieces : this.reserved;
      if (map.has(p.piece)) throw new Error(`${file}: not a valid SentencePiece model (piece ${JSON.stringify(p.piece)} is defined twice)`);
      map.set(p.piece, id);
      if (p.type === PieceType.UserDefined) userDefined.push(p.piece);
      if (p.type === PieceType.Unknown) {
        if (unk >= 0) throw new Error(`${file}: not a valid SentencePiece model (two unknown pieces)`);
        unk = id;
      }
      if (p.type === PieceType.Byte) {
        const b = /^<0x([0-9A-F]{2})>$/.exec(p.piece);
        if (!b) throw new Error(`${file}: not a valid SentencePiece model (byte piece ${JSON.stringify(p.piece)})`);
        this.byteIds[parseInt(b[1]!, 16)] = id;
      }
      if (p.type === PieceType.Normal) { min = Math.min(min, p.score); max = Math.max(max, p.score); }
    });
    if (unk < 0) throw new Error(`${file}: not a valid SentencePiece model (no unknown piece)`);
    if (m.byteFallback && this.byteIds.filter((x) => x !== undefined).length !== 256) {
      throw new Error(`${file}: not a valid SentencePiece model (byte_fallback without 256 byte pieces)`);
    }
    this.unkId = unk;
    this.minScore = min;
    this.maxScore = max;
    this.matcher = new PrefixMatcher(userDefined);
    for (const [piece, id] of this.pieces) this.trie.insert(piece, id);
    this.normalizer = new SpmNormalizer(m.normalizer, m.treatWhitespaceAsSuffix, this.matcher, file);
    this.denormalizer = m.denormalizer?.charsmap?.length ? new SpmNormalizer(m.denormalizer, false, null, file) : null;

    this.vocabSize = m.pieces.length;
    const eot = this.pieceId('<|endoftext|>');
    const valid = (id: number): boolean => id >= 0 && id < m.pieces.length;
    this.eodId = eot !== undefined ? eot : valid(m.eosId) ? m.eosId : unk;
    this.padId = valid(m.padId) ? m.padId : this.eodId;
  }

  /** The id of a piece, if the model has it. */
  pieceId(piece: string): number | undefined {
    return this.reserved.get(piece) ?? this.pieces.get(piece);
  }

  /** ModelInterface::PieceToId: unknown pieces give the unk id. */
  private toId(piece: string): number {
    return this.reserved.get(piece) ?? this.pieces.get(piece) ?? this.unkId;
  }

  encode(text: string): number[] {
    const normalized = this.normalizer.normalize(text);
    if (!normalized) return [];
    let pieces: Array<[string, number]>;
    switch (this.model.modelType) {
      case 2: pieces = this.encodeBpe(normalized); break;
      case 3: pieces = splitIntoWords(normalized).map((w) => [w, this.toId(w)]); break;
      case 4: pieces = this.encodeChars(normalized); break;
      default: pieces = this.encodeUnigram(normalized);
    }
    const ids: number[] = [];
    let prevUnk = false;
    for (const [piece, id] of pieces) {
      const isUnk = this.model.pieces[id]!.type === PieceType.Unknown;
      if (isUnk && this.model.byteFallback) {
        for (const b of utf8Encode(piece)) ids.push(this.byteIds[b]!);
      } else if (!(isUnk && prevUnk)) {
        ids.push(id);  // a run of unknown pieces is one unk
      }
      prevUnk = isUnk;
    }
    return ids;
  }

  private encodeChars(normalized: string): Array<[string, number]> {
    const bytes = utf8Encode(normalized);
    const out: Array<[string, number]> = [];
    for (let pos = 0; pos < bytes.length;) {
      const n = this.matcher.match(bytes, pos) || Math.min(charLen(bytes[pos]!), bytes.length - pos);
      const w = utf8Decode(bytes.subarray(pos, pos + n));
      out.push([w, this.toId(w)]);
      pos += n;
    }
    return out;
  }

  private encodeUnigram(normalized: string): Array<[string, number]> {
    const bytes = utf8Encode(normalized);
    const types = this.model.pieces;
    const maxScore = this.maxScore;
    const path = bestPath(bytes, this.trie, (id, length, till) => {
      const t = types[id]!.type;
      if (t === PieceType.Unused) return null;
      // as unigram_model.cc: the score is a double (the ternary with `length * max_score_ - 0.1`
      // makes it one), added to the float path score in double; only storing rounds to float
      if (t === PieceType.UserDefined) return Math.fround(length * maxScore) - 0.1 + till;
      return types[id]!.score + till;
    }, this.unkId, Math.fround(this.minScore - 10), true);
    return path.map((n) => [utf8Decode(bytes.subarray(n.start, n.end)), n.id]);
  }

  private encodeBpe(normalized: string): Array<[string, number]> {
    const bytes = utf8Encode(normalized);
    const symbols: SpmSymbol[] = [];
    for (let pos = 0; pos < bytes.length;) {
      const user = this.matcher.match(bytes, pos);
      const n = user || Math.min(charLen(bytes[pos]!), bytes.length - pos);
      symbols.push({ piece: utf8Decode(bytes.subarray(pos, pos + n)), bytes: n, prev: symbols.length - 1, next: -1, freeze: user > 0 });
      pos += n;
    }
    for (let i = 0; i + 1 < symbols.length; i++) symbols[i]!.next = i + 1;
    const agenda = new Agenda();
    const revMerge = new Map<string, [string, string]>();
    const types = this.model.pieces;
    const maybeAdd = (left: number, right: number): void => {
      if (left < 0 || right < 0) return;
      const l = symbols[left]!;
      const r = symbols[right]!;
      if (l.freeze || r.freeze) return;
      const piece = l.piece + r.piece;
      const id = this.pieces.get(piece);
      if (id === undefined) return;
      agenda.push({ left, right, score: types[id]!.score, size: l.bytes + r.bytes });
      if (types[id]!.type === PieceType.Unused) revMerge.set(piece, [l.piece, r.piece]);
    };
    for (let i = 1; i < symbols.length; i++) maybeAdd(i - 1, i);
    while (agenda.size) {
      const top = agenda.pop();
      const l = symbols[top.left]!;
      const r = symbols[top.right]!;
      if (l.bytes === 0 || r.bytes === 0 || l.bytes + r.bytes !== top.size) continue;
      l.piece += r.piece;
      l.bytes += r.bytes;
      l.next = r.next;
      if (r.next >= 0) symbols[r.next]!.prev = top.left;
      r.piece = '';
      r.bytes = 0;
      maybeAdd(l.prev, top.left);
      maybeAdd(top.left, l.next);
    }
    const out: Array<[string, number]> = [];
    const resegment = (w: string): void => {
      const id = this.toId(w);
      const split = types[id]!.type === PieceType.Unused ? revMerge.get(w) : undefined;
      if (!split) { out.push([w, id]); return; }
      resegment(split[0]);
      resegment(split[1]);
    };
    for (let i = 0; i >= 0 && i < symbols.length; i = symbols[i]!.next) resegment(symbols[i]!.piece);
    return out;
  }

  decode(ids: ArrayLike<number>): string {
    const pieces = this.model.pieces;
    let text = '';
    let bytes: number[] = [];
    let bosWs = true;       // still expecting the leading ▁ to drop
    let bosWsSeen = false;
    const flush = (): void => {
      if (bytes.length) { text += utf8Decode(bytes); bytes = []; }
    };
    const { addDummyPrefix, removeExtraWhitespaces } = this.model.normalizer;
    for (let i = 0; i < ids.length; i++) {
      const given = ids[i]!;
      if (!Number.isInteger(given) || given < 0 || given >= pieces.length) continue;
      let piece = pieces[given]!.piece;
      const id = this.toId(piece);
      const type = pieces[id]!.type;
      if (type === PieceType.Byte) {
        bytes.push(parseInt(piece.slice(3, 5), 16));
        continue;
      }
      flush();
      if (bosWsSeen || text.length > 0) bosWs = false;
      let decoded: string;
      let hadBosWs = false;
      if (type === PieceType.Control) {
        decoded = '';
      } else if (type === PieceType.Unknown) {
        decoded = pieces[id]!.piece === piece ? this.model.unkSurface : piece;
      } else {
        if (bosWs && (addDummyPrefix || removeExtraWhitespaces) && piece.startsWith(SPACE)) {
          piece = piece.slice(SPACE.length);
          hadBosWs = !removeExtraWhitespaces;
        }
        decoded = piece.split(SPACE).join(' ');
      }
      bosWsSeen = hadBosWs;
      text += decoded;
    }
    flush();
    return this.denormalizer ? this.denormalizer.normalize(text) : text;
  }
}

/** SentencePiece's SplitIntoWords (whitespace as prefix): each ▁ starts a new word. */
function splitIntoWords(text: string): string[] {
  const out: string[] = [];
  for (const ch of text) {
    if (out.length === 0 || ch === SPACE) out.push(ch);
    else out[out.length - 1] += ch;
  }
  return out;
}

