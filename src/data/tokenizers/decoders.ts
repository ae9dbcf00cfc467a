// HF tokenizer.json decoders: token strings → text, as huggingface/tokenizers' decoders/ define them.
// Each decoder maps a list of token strings to a list (decode_chain); the tokenizer joins the last.
//
// defines: Decoder, buildDecoder, wordpieceCleanup
//
// Types: ByteLevel, Metaspace, WordPiece, BPEDecoder, ByteFallback, Fuse, Strip, Replace, CTC,
// Sequence.

import { replacer } from './normalizers.js';
import { prependScheme } from './pre_tokenizers.js';
import { CHAR_TO_BYTE, utf8Decode } from './unicode.js';

export type Decoder = (tokens: string[]) => string[];

type Json = Record<string, unknown>;

/** transformers' clean_up_tokenization, as the WordPiece and CTC decoders apply it. */
export function wordpieceCleanup(s: string): string {
  return s.split(' .').join('.').split(' ?').join('?').split(' !').join('!').split(' ,').join(',')
    .split(" ' ").join("'").split(" n't").join("n't").split(" 'm").join("'m").split(' do not').join(" don't")
    .split(" 's").join("'s").split(" 've").join("'ve").split(" 're").join("'re");
}

/** Bytes of a byte-level token, or its UTF-8 when any character is outside the byte alphabet. */
function byteLevelBytes(token: string, out: number[]): void {
  const start = out.length;
  for (const ch of token) {
    const b = CHAR_TO_BYTE.get(ch);
    if (b === undefined) {
      out.length = start;
      for (const x of Buffer.from(token, 'utf8')) out.push(x);
      return;
    }
    out.push(b);
  }
}

/** Build a decoder from its tokenizer.json object; `where` names the file for errors. */
export function buildDecoder(cfg: Json, where: string): Decoder {
  const type = cfg.type as string;
  switch (type) {
    case 'ByteLevel':
      return (tokens) => {
        const bytes: number[] = [];
        for (const t of tokens) byteLevelBytes(t, bytes);
        return [utf8Decode(bytes)];
      };
    case 'Metaspace': {
      const replacement = String(cfg.replacement ?? '\u2581');
      const dropFirst = prependScheme(cfg, where) !== 'never';
      return (tokens) => tokens.map((t, i) => t.split(replacement).join(i === 0 && dropFirst ? '' : ' '));
    }
    case 'WordPiece': {
      const prefix = String(cfg.prefix ?? '##');
      const cleanup = cfg.cleanup !== false;
      return (tokens) => tokens.map((t, i) => {
        if (i !== 0) t = t.startsWith(prefix) ? t.slice(prefix.length) : ' ' + t;
        return cleanup ? wordpieceCleanup(t) : t;
      });
    }
    case 'BPEDecoder': {
      const suffix = String(cfg.suffix ?? '</w>');
      return (tokens) => tokens.map((t, i) => t.split(suffix).join(i === tokens.length - 1 ? '' : ' '));
    }
    case 'ByteFallback':
      return byteFallback;
    case 'Fuse':
      return (tokens) => [tokens.join('')];
    case 'Strip': {
      const content = String(cfg.content ?? ' ');
      const start = Number(cfg.start ?? 0);
      const stop = Number(cfg.stop ?? 0);
      return (tokens) => tokens.map((t) => {
        const chars = Array.from(t);
        let a = 0;
        while (a < start && a < chars.length && chars[a] === content) a++;
        let b = chars.length;
        for (let k = 0; k < stop && b > a && chars[b - 1] === content; k++) b--;
        return chars.slice(a, b).join('');
      });
    }
    case 'Replace': {
      const f = replacer(cfg, where);
      return (tokens) => tokens.map(f);
    }
    case 'CTC': {
      const pad = String(cfg.pad_token ?? '<pad>');
      const delim = String(cfg.word_delimiter_token ?? '|');
      const cleanup = cfg.cleanup !== false;
      return (tokens) => {
        const out: string[] = [];
        tokens.forEach((t, i) => {
          if (i > 0 && tokens[i - 1] === t) return;
          let r = t.split(pad).join('');
          if (cleanup) r = wordpieceCleanup(r).split(delim).join(' ');
          if (r) out.push(r);
        });
        return out;
      };
    }
    case 'Sequence': {
      const parts = ((cfg.decoders as Json[] | undefined) ?? []).map((d) => buildDecoder(d, where));
      return (tokens) => parts.reduce((acc, d) => d(acc), tokens);
    }
    default:
      throw new Error(`${where}: unsupported decoder type ${JSON.stringify(type)}`);
  }
}

const BYTE_TOKEN = /^<0x([0-9A-Fa-f]{2})>$/;
const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Runs of <0xXX> tokens become their UTF-8 text, or one U+FFFD per byte when invalid. */
function byteFallback(tokens: string[]): string[] {
  const out: string[] = [];
  let pending: number[] = [];
  const flush = (): void => {
    if (!pending.length) return;
    try {
      out.push(strictUtf8.decode(Uint8Array.from(pending)));
    } catch {
      for (let k = 0; k < pending.length; k++) out.push('\uFFFD');
    }
    pending = [];
  };
  for (const t of tokens) {
    const m = t.length === 6 ? BYTE_TOKEN.exec(t) : null;
    if (m) { pending.push(parseInt(m[1]!, 16)); continue; }
    flush();
    out.push(t);
  }
  flush();
  return out;
}
