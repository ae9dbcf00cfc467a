// HF tokenizer.json normalizers: string → string, as huggingface/tokenizers' normalizers/ define them.
//
// defines: Normalizer, buildNormalizer
//
// Types: NFC NFD NFKC NFKD, Lowercase, Strip, StripAccents, Replace (String or Regex pattern),
// Prepend, BertNormalizer, Precompiled (SentencePiece charsmap), Nmt, ByteLevel, Sequence.
// Offsets/alignments are not tracked: only ids are produced. Unicode normalization uses JS's
// String#normalize (ICU), which can differ from Rust's tables for characters assigned in very
// recent Unicode versions.

import { PrecompiledCharsMap } from './precompiled.js';
import {
  graphemes, isChineseChar, isWhiteSpace, lowercaseChars, stripWhiteSpace, toByteLevel, translateRegex,
  utf8Decode, utf8Encode,
} from './unicode.js';

export type Normalizer = (s: string) => string;

type Json = Record<string, unknown>;

const CONTROL = /\p{C}/u;
const NONSPACING_MARK = /\p{Mn}/gu;
const MARK = /\p{M}/gu;

/** Build a normalizer from its tokenizer.json object; `where` names the file for errors. */
export function buildNormalizer(cfg: Json, where: string): Normalizer {
  const type = cfg.type as string;
  switch (type) {
    case 'NFC': case 'NFD': case 'NFKC': case 'NFKD':
      return (s) => s.normalize(type);
    case 'Lowercase':
      return lowercaseChars;
    case 'Strip': {
      const left = cfg.strip_left !== false;
      const right = cfg.strip_right !== false;
      return (s) => stripWhiteSpace(s, left, right);
    }
    case 'StripAccents':
      return (s) => s.replace(MARK, '');
    case 'Replace':
      return replacer(cfg, where);
    case 'Prepend': {
      const prefix = String(cfg.prepend ?? '');
      return (s) => (s.length ? prefix + s : s);
    }
    case 'BertNormalizer':
      return bertNormalizer(cfg);
    case 'Precompiled':
      return precompiled(cfg, where);
    case 'Nmt':
      return nmt;
    case 'ByteLevel':
      return toByteLevel;
    case 'Sequence': {
      const parts = ((cfg.normalizers as Json[] | undefined) ?? []).map((n) => buildNormalizer(n, where));
      return (s) => parts.reduce((acc, n) => n(acc), s);
    }
    default:
      throw new Error(`${where}: unsupported normalizer type ${JSON.stringify(type)}`);
  }
}

/** A Replace normalizer (or decoder): every non-overlapping match of the pattern → content. */
export function replacer(cfg: Json, where: string): (s: string) => string {
  const pattern = cfg.pattern as { String?: string; Regex?: string } | undefined;
  const content = String(cfg.content ?? '');
  if (pattern && typeof pattern.String === 'string') {
    const lit = pattern.String;
    return lit === '' ? (s) => s : (s) => s.split(lit).join(content);
  }
  if (pattern && typeof pattern.Regex === 'string') {
    const re = translateRegex(pattern.Regex, 'onig', `${where} (Replace)`);
    return (s) => s.replace(re, () => content);
  }
  throw new Error(`${where}: Replace needs a pattern {"String": ...} or {"Regex": ...}`);
}

function bertNormalizer(cfg: Json): Normalizer {
  const cleanText = cfg.clean_text !== false;
  const chinese = cfg.handle_chinese_chars !== false;
  const lowercase = cfg.lowercase !== false;
  const stripAccents = typeof cfg.strip_accents === 'boolean' ? cfg.strip_accents : lowercase;
  return (s) => {
    if (cleanText) {
      let out = '';
      for (const ch of s) {
        const c = ch.codePointAt(0)!;
        if (c === 0 || c === 0xfffd) continue;
        if (ch === '\t' || ch === '\n' || ch === '\r') { out += ' '; continue; }
        if (CONTROL.test(ch)) continue;
        out += isWhiteSpace(ch) ? ' ' : ch;
      }
      s = out;
    }
    if (chinese) {
      let out = '';
      for (const ch of s) out += isChineseChar(ch.codePointAt(0)!) ? ` ${ch} ` : ch;
      s = out;
    }
    if (stripAccents) s = s.normalize('NFD').replace(NONSPACING_MARK, '');
    if (lowercase) s = lowercaseChars(s);
    return s;
  };
}

/**
 * HF's Precompiled normalizer (spm_precompiled): per grapheme cluster, the whole cluster's first
 * (shortest) trie match when the cluster is under 6 bytes, else per character; unmatched characters
 * pass through. (SentencePiece itself takes the longest match over bytes: see sentencepiece.ts.)
 */
function precompiled(cfg: Json, where: string): Normalizer {
  const b64 = cfg.precompiled_charsmap;
  if (b64 === null || b64 === undefined || b64 === '') return (s) => s;
  if (typeof b64 !== 'string') throw new Error(`${where}: Precompiled.precompiled_charsmap must be a base64 string`);
  const map = new PrecompiledCharsMap(Buffer.from(b64, 'base64'), `${where} (Precompiled)`);
  const transform = (part: string): string | undefined => {
    const bytes = utf8Encode(part);
    const m = map.prefixes(bytes, 0, bytes.length, true);
    return m.length ? utf8Decode(map.replacement(m[0]!.value)) : undefined;
  };
  return (s) => {
    let out = '';
    for (const g of graphemes(s)) {
      if (Buffer.byteLength(g) < 6) {
        const r = transform(g);
        if (r !== undefined) { out += r; continue; }
      }
      for (const ch of g) out += transform(ch) ?? ch;
    }
    return out;
  };
}

function nmt(s: string): string {
  let out = '';
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if ((c >= 0x1 && c <= 0x8) || c === 0xb || (c >= 0xe && c <= 0x1f) || c === 0x7f || c === 0x8f || c === 0x9f) continue;
    if (c === 0x9 || c === 0xa || c === 0xc || c === 0xd || c === 0x1680 || (c >= 0x200b && c <= 0x200f) ||
      c === 0x2028 || c === 0x2029 || c === 0x2581 || c === 0xfeff || c === 0xfffd) {
      out += ' ';
      continue;
    }
    out += ch;
  }
  return out;
}
