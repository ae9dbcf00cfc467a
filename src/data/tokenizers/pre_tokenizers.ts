// HF tokenizer.json pre-tokenizers: split a normalized piece into words, as huggingface/tokenizers'
// pre_tokenizers/ define them.
//
// defines: PreTokenizer, Word, buildPreTokenizer, splitWith, SplitBehavior, GPT2_PATTERN
//
// Types: ByteLevel, Split (String/Regex, five behaviours, invert), Whitespace, WhitespaceSplit,
// BertPreTokenizer, Punctuation, Digits, Metaspace (prepend_scheme always/first/never, split),
// CharDelimiterSplit, Sequence. Empty words are dropped after every step, as PreTokenizedString does.
// `atStart` stands for "this word begins at offset 0 of the original input", which is all that
// Metaspace's prepend_scheme "first" asks of HF's offset tracking.

import { isBertPunctuation, isNumeric, isWhiteSpace, toByteLevel, translateRegex } from './unicode.js';

export interface Word {
  text: string;
  atStart: boolean;
}

export type PreTokenizer = (word: Word) => Word[];

export type SplitBehavior = 'Removed' | 'Isolated' | 'MergedWithPrevious' | 'MergedWithNext' | 'Contiguous';
const BEHAVIORS: readonly SplitBehavior[] = ['Removed', 'Isolated', 'MergedWithPrevious', 'MergedWithNext', 'Contiguous'];

/** GPT-2's pre-tokenization pattern (HF ByteLevel's `use_regex`, and GPT2Tokenizer's). */
export const GPT2_PATTERN = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
let gpt2Regex: RegExp | undefined;

type Json = Record<string, unknown>;
/** [start, end, isMatch] spans covering the whole text, in order (code unit offsets). */
type Span = [number, number, boolean];

function regexSpans(text: string, re: RegExp): Span[] {
  const spans: Span[] = [];
  let prev = 0;
  for (const m of text.matchAll(re)) {
    const start = m.index!;
    const end = start + m[0].length;
    if (prev !== start) spans.push([prev, start, false]);
    spans.push([start, end, true]);
    prev = end;
  }
  if (prev !== text.length) spans.push([prev, text.length, false]);
  return spans;
}

function literalSpans(text: string, lit: string): Span[] {
  const spans: Span[] = [];
  if (lit === '') return [[0, text.length, false]];
  let prev = 0;
  for (let at = text.indexOf(lit); at >= 0; at = text.indexOf(lit, at + lit.length)) {
    if (prev !== at) spans.push([prev, at, false]);
    spans.push([at, at + lit.length, true]);
    prev = at + lit.length;
  }
  if (prev !== text.length) spans.push([prev, text.length, false]);
  return spans;
}

function charSpans(text: string, pred: (ch: string) => boolean): Span[] {
  const spans: Span[] = [];
  let last = 0;
  let i = 0;
  for (const ch of text) {
    const end = i + ch.length;
    if (pred(ch)) {
      if (last < i) spans.push([last, i, false]);
      spans.push([i, end, true]);
      last = end;
    }
    i = end;
  }
  if (i > last) spans.push([last, i, false]);
  return spans;
}

/** Apply a delimiter behaviour to match spans (NormalizedString::split), dropping empty pieces. */
export function splitWith(word: Word, spans: Span[], behavior: SplitBehavior): Word[] {
  let pieces: Array<[number, number, boolean]>;  // [start, end, remove]
  switch (behavior) {
    case 'Isolated':
      pieces = spans.map(([a, b]) => [a, b, false]);
      break;
    case 'Removed':
      pieces = spans;
      break;
    case 'Contiguous': {
      pieces = [];
      let prevMatch = false;
      for (const [a, b, m] of spans) {
        const last = pieces[pieces.length - 1];
        if (m === prevMatch && last) last[1] = b;
        else pieces.push([a, b, false]);
        prevMatch = m;
      }
      break;
    }
    case 'MergedWithPrevious': {
      pieces = [];
      let prevMatch = false;
      for (const [a, b, m] of spans) {
        const last = pieces[pieces.length - 1];
        if (m && !prevMatch && last) last[1] = b;
        else pieces.push([a, b, false]);
        prevMatch = m;
      }
      break;
    }
    case 'MergedWithNext': {
      pieces = [];
      let prevMatch = false;
      for (let k = spans.length - 1; k >= 0; k--) {
        const [a, b, m] = spans[k]!;
        const last = pieces[pieces.length - 1];
        if (m && !prevMatch && last) last[0] = a;
        else pieces.push([a, b, false]);
        prevMatch = m;
      }
      pieces.reverse();
      break;
    }
  }
  const out: Word[] = [];
  for (const [a, b, remove] of pieces) {
    if (remove || a === b) continue;
    out.push({ text: word.text.slice(a, b), atStart: word.atStart && a === 0 });
  }
  return out;
}

function behaviorOf(v: unknown, where: string, fallback: SplitBehavior): SplitBehavior {
  if (v === undefined || v === null) return fallback;
  const found = BEHAVIORS.find((b) => b.toLowerCase() === String(v).toLowerCase().replace(/_/g, ''));
  if (!found) throw new Error(`${where}: unknown split behavior ${JSON.stringify(v)} (valid: ${BEHAVIORS.join(', ')})`);
  return found;
}

/** Build a pre-tokenizer from its tokenizer.json object; `where` names the file for errors. */
export function buildPreTokenizer(cfg: Json, where: string): PreTokenizer {
  const type = cfg.type as string;
  switch (type) {
    case 'ByteLevel': {
      const addPrefixSpace = cfg.add_prefix_space === true;
      const useRegex = cfg.use_regex !== false;
      gpt2Regex ??= translateRegex(GPT2_PATTERN, 'onig', 'ByteLevel');
      const re = gpt2Regex;
      return (w) => {
        const text = addPrefixSpace && !w.text.startsWith(' ') ? ' ' + w.text : w.text;
        const words = useRegex ? splitWith({ text, atStart: w.atStart }, regexSpans(text, re), 'Isolated') : [{ text, atStart: w.atStart }];
        for (const x of words) x.text = toByteLevel(x.text);
        return words;
      };
    }
    case 'Split': {
      const pattern = cfg.pattern as { String?: string; Regex?: string } | undefined;
      const behavior = behaviorOf(cfg.behavior, where, 'Isolated');
      const invert = cfg.invert === true;
      let spans: (t: string) => Span[];
      if (pattern && typeof pattern.String === 'string') {
        const lit = pattern.String;
        spans = (t) => literalSpans(t, lit);
      } else if (pattern && typeof pattern.Regex === 'string') {
        const re = translateRegex(pattern.Regex, 'onig', `${where} (Split)`);
        spans = (t) => regexSpans(t, re);
      } else {
        throw new Error(`${where}: Split needs a pattern {"String": ...} or {"Regex": ...}`);
      }
      return (w) => {
        let s = spans(w.text);
        if (invert) s = s.map(([a, b, m]) => [a, b, !m]);
        return splitWith(w, s, behavior);
      };
    }
    case 'Whitespace': {
      const re = translateRegex('\\w+|[^\\w\\s]+', 'rust', 'Whitespace');
      return (w) => splitWith(w, regexSpans(w.text, re).map(([a, b, m]) => [a, b, !m]), 'Removed');
    }
    case 'WhitespaceSplit':
      return (w) => splitWith(w, charSpans(w.text, isWhiteSpace), 'Removed');
    case 'BertPreTokenizer':
      return (w) => splitWith(w, charSpans(w.text, isWhiteSpace), 'Removed')
        .flatMap((x) => splitWith(x, charSpans(x.text, isBertPunctuation), 'Isolated'));
    case 'Punctuation': {
      const behavior = behaviorOf(cfg.behavior, where, 'Isolated');
      return (w) => splitWith(w, charSpans(w.text, isBertPunctuation), behavior);
    }
    case 'Digits': {
      const behavior: SplitBehavior = cfg.individual_digits === true ? 'Isolated' : 'Contiguous';
      return (w) => splitWith(w, charSpans(w.text, isNumeric), behavior);
    }
    case 'Metaspace':
      return metaspace(cfg, where);
    case 'CharDelimiterSplit': {
      const delim = String(cfg.delimiter ?? '');
      return (w) => splitWith(w, charSpans(w.text, (ch) => ch === delim), 'Removed');
    }
    case 'Sequence': {
      const parts = ((cfg.pretokenizers as Json[] | undefined) ?? []).map((p) => buildPreTokenizer(p, where));
      return (w) => parts.reduce<Word[]>((words, p) => words.flatMap(p), [w]);
    }
    default:
      throw new Error(`${where}: unsupported pre_tokenizer type ${JSON.stringify(type)}`);
  }
}

export type PrependScheme = 'always' | 'first' | 'never';

/** Metaspace's prepend scheme, with the legacy add_prefix_space field (false means never). */
export function prependScheme(cfg: Json, where: string): PrependScheme {
  let scheme = (cfg.prepend_scheme as string | undefined) ?? 'always';
  if (!['always', 'first', 'never'].includes(scheme)) {
    throw new Error(`${where}: unknown Metaspace prepend_scheme ${JSON.stringify(scheme)}`);
  }
  if (cfg.add_prefix_space === false) scheme = 'never';
  return scheme as PrependScheme;
}

function metaspace(cfg: Json, where: string): PreTokenizer {
  const replacement = String(cfg.replacement ?? '\u2581');
  const scheme = prependScheme(cfg, where);
  const split = cfg.split !== false;
  return (w) => {
    let text = w.text.split(' ').join(replacement);
    if ((scheme === 'always' || (scheme === 'first' && w.atStart)) && !text.startsWith(replacement)) {
      text = replacement + text;
    }
    const word = { text, atStart: w.atStart };
    return split ? splitWith(word, literalSpans(text, replacement), 'MergedWithNext') : text ? [word] : [];
  };
}
