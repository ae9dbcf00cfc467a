// Unicode helpers shared by the tokenizers: UTF-8, GPT-2's byte↔character map, character classes
// as the Rust/C++ reference libraries define them, and translation of their regex syntax to JS.
//
// defines: utf8Encode, utf8Decode, BYTE_TO_CHAR, CHAR_TO_BYTE, toByteLevel,
//          isWhiteSpace, isBertPunctuation, isChineseChar, isNumeric, lowercaseChars,
//          graphemes, stripWhiteSpace, translateRegex, RegexFlavor
//
// Character classes. `\s` is Unicode White_Space in all three engines the references use
// (Oniguruma in HF tokenizers, Rust regex in tiktoken, Python's `regex` in transformers); this was
// checked on the reference host (tests/fixtures/tokenizers/probes.json). JS's own `\s` differs
// (it adds U+FEFF and lacks U+0085), so patterns are rewritten to \p{White_Space}. `\d` is \p{Nd}
// and `\w` is Unicode (Oniguruma: L, M, N, Pc; Rust: Alphabetic, M, Nd, Pc, Join_Control).

export const utf8Encoder = new TextEncoder();
const lossyDecoder = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });

export function utf8Encode(s: string): Uint8Array {
  return utf8Encoder.encode(s);
}

/** Bytes → string; invalid sequences become U+FFFD (as Rust's from_utf8_lossy). */
export function utf8Decode(bytes: Uint8Array | number[]): string {
  return lossyDecoder.decode(bytes instanceof Uint8Array ? bytes : Uint8Array.from(bytes));
}

// ---------------------------------------------------------------------------------------------
// GPT-2's byte-level alphabet: every byte gets a printable character (openai/gpt-2 encoder.py
// bytes_to_unicode): printable Latin-1 bytes map to themselves, the other 68 to U+0100 onwards.

export const BYTE_TO_CHAR: readonly string[] = (() => {
  const out = new Array<string>(256);
  let n = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    out[b] = String.fromCharCode(printable ? b : 256 + n++);
  }
  return out;
})();

export const CHAR_TO_BYTE: ReadonlyMap<string, number> = new Map(BYTE_TO_CHAR.map((c, b) => [c, b]));

/** The byte-level form of a string: each UTF-8 byte as its GPT-2 character. */
export function toByteLevel(s: string): string {
  let ascii = true;
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) >= 0x80) { ascii = false; break; }
  let out = '';
  if (ascii) {
    for (let i = 0; i < s.length; i++) out += BYTE_TO_CHAR[s.charCodeAt(i)];
    return out;
  }
  for (const b of utf8Encode(s)) out += BYTE_TO_CHAR[b];
  return out;
}

// ---------------------------------------------------------------------------------------------
// Character classes

const WHITE_SPACE = /\p{White_Space}/u;
const PUNCTUATION = /\p{P}/u;
const NUMERIC = /\p{N}/u;

/** Unicode White_Space (Rust's char::is_whitespace, Oniguruma's and Rust regex's `\s`). */
export function isWhiteSpace(ch: string): boolean {
  return WHITE_SPACE.test(ch);
}

/** BERT punctuation: ASCII punctuation (which includes symbols like $ + < = > ^ ` | ~) or \p{P}. */
export function isBertPunctuation(ch: string): boolean {
  const c = ch.codePointAt(0)!;
  if ((c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126)) return true;
  return PUNCTUATION.test(ch);
}

/** Rust's char::is_numeric: general categories Nd, Nl, No. */
export function isNumeric(ch: string): boolean {
  return NUMERIC.test(ch);
}

/** The CJK ideograph blocks BERT pads with spaces. */
export function isChineseChar(c: number): boolean {
  return (c >= 0x4e00 && c <= 0x9fff) || (c >= 0x3400 && c <= 0x4dbf) || (c >= 0x20000 && c <= 0x2a6df) ||
    (c >= 0x2a700 && c <= 0x2b73f) || (c >= 0x2b740 && c <= 0x2b81f) || (c >= 0x2b920 && c <= 0x2ceaf) ||
    (c >= 0xf900 && c <= 0xfaff) || (c >= 0x2f800 && c <= 0x2fa1f);
}

/**
 * Lowercase character by character, as Rust's char::to_lowercase does: no context rules, so a
 * final capital sigma becomes σ (JS's String#toLowerCase would give ς).
 */
export function lowercaseChars(s: string): string {
  let simple = true;
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) >= 0x80) { simple = false; break; }
  if (simple) return s.toLowerCase();
  let out = '';
  for (const ch of s) out += ch.toLowerCase();
  return out;
}

/** Strip Unicode White_Space from the left and/or right. */
export function stripWhiteSpace(s: string, left: boolean, right: boolean): string {
  const chars = Array.from(s);
  let a = 0;
  let b = chars.length;
  if (left) while (a < b && isWhiteSpace(chars[a]!)) a++;
  if (right) while (b > a && isWhiteSpace(chars[b - 1]!)) b--;
  return a === 0 && b === chars.length ? s : chars.slice(a, b).join('');
}

let segmenter: Intl.Segmenter | undefined;
/** Extended grapheme clusters (ICU's segmentation; Rust's unicode-segmentation in HF). */
export function graphemes(s: string): string[] {
  segmenter ??= new Intl.Segmenter(undefined, { granularity: 'grapheme' });
  return Array.from(segmenter.segment(s), (x) => x.segment);
}

// ---------------------------------------------------------------------------------------------
// Regex translation

/**
 * 'onig': Oniguruma, Ruby syntax (HF tokenizers' Split/Replace/ByteLevel): ^ and $ match at line
 * breaks, \w is L|M|N|Pc. 'rust': Rust regex / fancy-regex (tiktoken): ^ $ match at the ends of the
 * text, \w is Alphabetic|M|Nd|Pc|Join_Control.
 */
export type RegexFlavor = 'onig' | 'rust';

const SYNTAX_CHARS = new Set('^$\\.*+?()[]{}|/');
const WORD = { onig: '\\p{L}\\p{M}\\p{N}\\p{Pc}', rust: '\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\p{Join_Control}' };
const PROPERTY_CHECK = new Map<string, boolean>();

function validProperty(body: string): boolean {
  let ok = PROPERTY_CHECK.get(body);
  if (ok === undefined) {
    try { new RegExp(`\\p{${body}}`, 'u'); ok = true; } catch { ok = false; }
    PROPERTY_CHECK.set(body, ok);
  }
  return ok;
}

/** Case variants of one character for a case-insensitive group (simple case folding, plus ſ and K). */
function caseVariants(ch: string): string[] {
  const set = new Set([ch, ch.toLowerCase(), ch.toUpperCase()].filter((c) => Array.from(c).length === 1));
  const lower = ch.toLowerCase();
  if (lower === 's') set.add('\u017f');
  if (lower === 'k') set.add('\u212a');
  return [...set];
}

function escapeClassChar(ch: string): string {
  return ch === '\\' || ch === ']' || ch === '[' || ch === '^' || ch === '-' ? '\\' + ch : ch;
}

/**
 * Translate a pattern from the reference engines' syntax to a JS RegExp with the `u` and `g`
 * flags. Handles \s \S \d \D \w \W \h \H, \p{..} (including \p{^X} and script names), \x{..},
 * \A \z \Z, inline case-insensitive groups (?i:...) (JS on Node 20 has no modifiers, so letters
 * are expanded to classes), comments (?#...), `.` (any character but \n). Possessive quantifiers,
 * atomic groups and \G have no JS equivalent: they throw, naming `where`. Known gap: \b stays JS's
 * ASCII word boundary (no tokenizer file we know of uses it).
 */
export function translateRegex(pattern: string, flavor: RegexFlavor, where: string): RegExp {
  const unsupported = (what: string): never => {
    throw new Error(`${where}: regex ${JSON.stringify(pattern)} uses ${what}, which has no JavaScript equivalent`);
  };
  const chars = Array.from(pattern);
  let out = '';
  let inClass = false;
  let classStart = false;
  let multiline = false;
  // case-insensitivity per open group; the top is the current scope
  const ci: boolean[] = [false];
  const isCi = (): boolean => ci[ci.length - 1]!;

  for (let i = 0; i < chars.length; i++) {
    const ch = chars[i]!;
    if (ch === '\\') {
      const nx = chars[++i];
      if (nx === undefined) unsupported('a trailing backslash');
      const n = nx!;
      let emitted: string;
      switch (n) {
        case 's': emitted = '\\p{White_Space}'; break;
        case 'S': emitted = '\\P{White_Space}'; break;
        case 'd': emitted = '\\p{Nd}'; break;
        case 'D': emitted = '\\P{Nd}'; break;
        case 'w': emitted = inClass ? WORD[flavor] : `[${WORD[flavor]}]`; break;
        case 'W':
          if (inClass) unsupported('\\W inside a character class');
          emitted = `[^${WORD[flavor]}]`;
          break;
        case 'h': emitted = inClass ? '0-9a-fA-F' : '[0-9a-fA-F]'; break;
        case 'H':
          if (inClass) unsupported('\\H inside a character class');
          emitted = '[^0-9a-fA-F]';
          break;
        case 'p': case 'P': {
          if (chars[i + 1] !== '{') unsupported(`\\${n} without braces`);
          const close = chars.indexOf('}', i + 2);
          if (close < 0) unsupported(`an unterminated \\${n}{`);
          let body = chars.slice(i + 2, close).join('');
          let negated = n === 'P';
          if (body.startsWith('^')) { negated = !negated; body = body.slice(1); }
          i = close;
          if (!validProperty(body)) {
            if (validProperty(`Script=${body}`)) body = `Script=${body}`;
            else unsupported(`an unknown property \\p{${body}}`);
          }
          emitted = `\\${negated ? 'P' : 'p'}{${body}}`;
          break;
        }
        case 'x': {
          if (chars[i + 1] === '{') {
            const close = chars.indexOf('}', i + 2);
            if (close < 0) unsupported('an unterminated \\x{');
            emitted = `\\u{${chars.slice(i + 2, close).join('')}}`;
            i = close;
          } else {
            emitted = `\\x${chars[i + 1] ?? ''}${chars[i + 2] ?? ''}`;
            i += 2;
          }
          break;
        }
        case 'A':
          if (inClass) unsupported('\\A inside a class');
          emitted = '(?<![\\s\\S])';
          break;
        case 'z':
          if (inClass) unsupported('\\z inside a class');
          emitted = '(?![\\s\\S])';
          break;
        case 'Z':
          if (inClass) unsupported('\\Z inside a class');
          emitted = '(?=\\n?(?![\\s\\S]))';
          break;
        case 'G': unsupported('\\G'); emitted = ''; break;
        case 'a': emitted = '\\x07'; break;
        case 'e': emitted = '\\x1b'; break;
        case 't': case 'n': case 'r': case 'f': case 'v': case 'b': case 'B': case '0':
        case 'u': case 'k': case 'c':
          emitted = '\\' + n;
          break;
        default:
          if (/[1-9]/.test(n)) emitted = '\\' + n;
          else if (/[A-Za-z]/.test(n)) { unsupported(`the escape \\${n}`); emitted = ''; }
          else if (inClass) emitted = escapeClassChar(n);
          else emitted = SYNTAX_CHARS.has(n) || n === '-' ? '\\' + n : n;
      }
      out += emitted;
      classStart = false;
      continue;
    }

    if (inClass) {
      if (ch === ']' && !classStart) {
        inClass = false;
        out += ']';
        continue;
      }
      if (classStart && ch === '^') { out += '^'; continue; }
      classStart = false;
      if (ch === '[') { out += '\\['; continue; }
      if (ch === '-') {
        if (isCi()) unsupported('a range inside a case-insensitive class');
        out += '-';
        continue;
      }
      out += isCi() ? caseVariants(ch).map(escapeClassChar).join('') : escapeClassChar(ch);
      continue;
    }

    switch (ch) {
      case '[':
        inClass = true;
        classStart = true;
        out += '[';
        // `[]...]` and `[^]...]`: a leading ] is a literal in Oniguruma
        if (chars[i + 1] === '^') { out += '^'; i++; }
        if (chars[i + 1] === ']') { out += '\\]'; i++; classStart = false; }
        continue;
      case '(': {
        if (chars[i + 1] === '?') {
          const rest = chars.slice(i + 2, i + 8).join('');
          if (rest.startsWith('#')) {
            const close = chars.indexOf(')', i);
            if (close < 0) unsupported('an unterminated comment');
            i = close;
            continue;
          }
          if (rest.startsWith('>')) unsupported('an atomic group (?>...)');
          const flags = /^([imx]*)(?:-([imx]*))?([:)])/.exec(rest);
          if (flags && (flags[1] || flags[2] !== undefined)) {
            const on = flags[1] ?? '';
            const off = flags[2] ?? '';
            if (/[mx]/.test(on + off)) unsupported(`the inline flags (?${on}${off ? '-' + off : ''})`);
            const value = on.includes('i') ? true : off.includes('i') ? false : isCi();
            i += 1 + flags[0].length;
            if (flags[3] === ')') { ci[ci.length - 1] = value; continue; }  // (?i) applies to the rest of the group
            ci.push(value);
            out += '(?:';
            continue;
          }
        }
        ci.push(isCi());
        out += '(';
        continue;
      }
      case ')':
        if (ci.length > 1) ci.pop();
        out += ')';
        continue;
      case '^': case '$':
        if (flavor === 'onig') multiline = true;
        out += ch;
        continue;
      case '*': case '+': case '?':
        out += ch;
        if (chars[i + 1] === '+') unsupported('a possessive quantifier');
        continue;
      case '.':
        out += '[^\\n]';  // any character but \n, as in Oniguruma and Rust (JS's . also stops at \r)
        continue;
      default:
        if (isCi() && ch.toLowerCase() !== ch.toUpperCase()) {
          const v = caseVariants(ch);
          out += v.length > 1 ? `[${v.map(escapeClassChar).join('')}]` : ch;
        } else {
          out += ch === '/' ? '\\/' : ch;
        }
    }
  }
  if (inClass) unsupported('an unterminated character class');
  try {
    return new RegExp(out, multiline ? 'gmu' : 'gu');
  } catch (e) {
    throw new Error(`${where}: regex ${JSON.stringify(pattern)} could not be translated (${(e as Error).message})`);
  }
}
