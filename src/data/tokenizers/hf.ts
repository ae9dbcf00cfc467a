// HF tokenizer.json: the pipeline (added tokens → normalizer → pre-tokenizer → model →
// post-processor, and decoders back), and GPT-NeoX's HFTokenizer over it.
//
// defines: HFPipeline, HFTokenizer, buildModel
//
// HFPipeline follows huggingface/tokenizers' TokenizerImpl: encode(text) = Tokenizer.encode(text).ids
// with add_special_tokens (so templates like Llama's <s> or BERT's [CLS] … [SEP] apply), including
// the file's truncation and fixed padding if it sets them; decode skips special tokens by default,
// as tokenizers' Tokenizer.decode does.
//
// HFTokenizer is GPT-NeoX's class of that name: vocab_file is a tokenizer.json; vocabSize counts
// added tokens (get_vocab_size()); eod = the id of "<|endoftext|>", pad = the id of "<|padding|>".
// Deliberate difference: where the file has no "<|endoftext|>" (Llama, Mistral, BERT files),
// GPT-NeoX's eod is None and appending it fails; here eod falls back to the file's end token
// ("</s>", "<|end_of_text|>", "<eos>", "[SEP]"), and reading eodId throws if there is none. Pad falls
// back to "<pad>", "[PAD]", "<|pad|>", then to eod.

import type { Tokenizer } from '../tokenizer.js';
import { AddedVocabulary, type AddedToken } from './added_tokens.js';
import { BPEModel, type Model } from './bpe.js';
import { buildDecoder, type Decoder } from './decoders.js';
import { readJsonFile, requirePath } from './files.js';
import { buildNormalizer, type Normalizer } from './normalizers.js';
import { buildPostProcessor, type PostProcessor } from './post_processors.js';
import { buildPreTokenizer, type PreTokenizer, type Word } from './pre_tokenizers.js';
import { UnigramModel } from './unigram.js';
import { WordLevelModel, WordPieceModel } from './wordpiece.js';

type Json = Record<string, unknown>;

const EOD_TOKENS = ['<|endoftext|>', '</s>', '<|end_of_text|>', '<eos>', '[SEP]'];
const PAD_TOKENS = ['<|padding|>', '<pad>', '[PAD]', '<|pad|>'];

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function vocabMap(v: unknown, where: string): Map<string, number> {
  if (!isObject(v)) throw new Error(`${where}: model.vocab must be an object of token → id`);
  const m = new Map<string, number>();
  for (const [tok, id] of Object.entries(v)) {
    if (!Number.isInteger(id) || (id as number) < 0) throw new Error(`${where}: vocab id of ${JSON.stringify(tok)} is not a non-negative integer`);
    m.set(tok, id as number);
  }
  return m;
}

/** The model of a tokenizer.json (type from "type", or inferred for old files as HF does). */
export function buildModel(cfg: Json, where: string): Model {
  let type = cfg.type as string | undefined;
  if (type === undefined) {
    type = 'merges' in cfg ? 'BPE' : Array.isArray(cfg.vocab) ? 'Unigram'
      : 'max_input_chars_per_word' in cfg || 'continuing_subword_prefix' in cfg ? 'WordPiece' : 'WordLevel';
  }
  switch (type) {
    case 'BPE': {
      const vocab = vocabMap(cfg.vocab, where);
      const raw = cfg.merges;
      if (!Array.isArray(raw)) throw new Error(`${where}: BPE model.merges must be a list`);
      const merges = raw.map((m, i): [string, string] => {
        if (typeof m === 'string') {
          const parts = m.split(' ');
          if (parts.length !== 2) throw new Error(`${where}: BPE merge ${i + 1} ${JSON.stringify(m)} is not "a b"`);
          return [parts[0]!, parts[1]!];
        }
        if (Array.isArray(m) && m.length === 2 && typeof m[0] === 'string' && typeof m[1] === 'string') return [m[0], m[1]];
        throw new Error(`${where}: BPE merge ${i + 1} is neither "a b" nor ["a", "b"]`);
      });
      // cfg.dropout (BPE-dropout) is a training-time regularizer: encoding here is deterministic.
      return new BPEModel(vocab, merges, {
        unkToken: (cfg.unk_token as string | null | undefined) ?? null,
        fuseUnk: cfg.fuse_unk === true,
        byteFallback: cfg.byte_fallback === true,
        continuingSubwordPrefix: (cfg.continuing_subword_prefix as string | null | undefined) ?? null,
        endOfWordSuffix: (cfg.end_of_word_suffix as string | null | undefined) ?? null,
        ignoreMerges: cfg.ignore_merges === true,
      }, where);
    }
    case 'WordPiece':
      return new WordPieceModel(
        vocabMap(cfg.vocab, where), String(cfg.unk_token ?? '[UNK]'), String(cfg.continuing_subword_prefix ?? '##'),
        Number(cfg.max_input_chars_per_word ?? 100),
      );
    case 'WordLevel':
      return new WordLevelModel(vocabMap(cfg.vocab, where), String(cfg.unk_token ?? '<unk>'));
    case 'Unigram': {
      if (!Array.isArray(cfg.vocab)) throw new Error(`${where}: Unigram model.vocab must be a list of [piece, score]`);
      const pieces = cfg.vocab.map((p, i): [string, number] => {
        if (!Array.isArray(p) || typeof p[0] !== 'string' || typeof p[1] !== 'number') {
          throw new Error(`${where}: Unigram vocab entry ${i} is not [piece, score]`);
        }
        return [p[0], p[1]];
      });
      const unk = cfg.unk_id;
      return new UnigramModel(pieces, typeof unk === 'number' ? unk : null, cfg.byte_fallback === true, where);
    }
    default:
      throw new Error(`${where}: unsupported model type ${JSON.stringify(type)} (supported: BPE, WordPiece, WordLevel, Unigram)`);
  }
}

function addedTokens(v: unknown, where: string): AddedToken[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw new Error(`${where}: added_tokens must be a list`);
  return v.map((t, i) => {
    if (!isObject(t) || typeof t.content !== 'string') throw new Error(`${where}: added_tokens[${i}] has no content`);
    const special = t.special === true;
    return {
      content: t.content, special, single_word: t.single_word === true, lstrip: t.lstrip === true,
      rstrip: t.rstrip === true, normalized: typeof t.normalized === 'boolean' ? t.normalized : !special,
    };
  });
}

interface Truncation { maxLength: number; left: boolean }
interface Padding { length: number | null; multiple: number | null; padId: number; left: boolean }

/** A tokenizer.json loaded and ready to encode and decode. */
export class HFPipeline {
  readonly model: Model;
  private readonly added: AddedVocabulary;
  private readonly normalizer: Normalizer | null;
  private readonly preTokenizer: PreTokenizer | null;
  private readonly postProcessor: PostProcessor | null;
  private readonly decoder: Decoder | null;
  private readonly truncation: Truncation | null;
  private readonly padding: Padding | null;
  /** get_vocab_size(with_added_tokens=True) */
  readonly vocabSize: number;

  /**
   * `json` is a parsed tokenizer.json; `where` names it in errors. `extraSpecial` are added as
   * special tokens after the file's own (transformers' add_special_tokens).
   */
  constructor(json: unknown, readonly where: string, extraSpecial: string[] = []) {
    if (!isObject(json)) throw new Error(`${where}: not a tokenizer.json (the top level is not an object)`);
    if (!isObject(json.model)) throw new Error(`${where}: not a tokenizer.json (no "model" object)`);
    this.model = buildModel(json.model, where);
    this.normalizer = isObject(json.normalizer) ? buildNormalizer(json.normalizer, where) : null;
    this.preTokenizer = isObject(json.pre_tokenizer) ? buildPreTokenizer(json.pre_tokenizer, where) : null;
    this.postProcessor = isObject(json.post_processor) ? buildPostProcessor(json.post_processor, where) : null;
    this.decoder = isObject(json.decoder) ? buildDecoder(json.decoder, where) : null;
    const tokens = addedTokens(json.added_tokens, where);
    for (const content of extraSpecial) {
      tokens.push({ content, special: true, normalized: false, single_word: false, lstrip: false, rstrip: false });
    }
    this.added = new AddedVocabulary(tokens, this.model, this.normalizer);
    let extra = 0;
    for (const c of this.added.contents) if (this.model.tokenToId(c) === undefined) extra++;
    this.vocabSize = this.model.size + extra;
    this.truncation = isObject(json.truncation) ? {
      maxLength: Number(json.truncation.max_length),
      left: String(json.truncation.direction ?? 'Right').toLowerCase() === 'left',
    } : null;
    if (isObject(json.padding)) {
      const strategy = json.padding.strategy;
      this.padding = {
        length: isObject(strategy) && typeof strategy.Fixed === 'number' ? strategy.Fixed : null,
        multiple: typeof json.padding.pad_to_multiple_of === 'number' ? json.padding.pad_to_multiple_of : null,
        padId: Number(json.padding.pad_id ?? 0),
        left: String(json.padding.direction ?? 'Right').toLowerCase() === 'left',
      };
    } else {
      this.padding = null;
    }
  }

  /** Added tokens first, then the model's vocabulary (HF token_to_id). */
  tokenToId(token: string): number | undefined {
    return this.added.tokenToId(token) ?? this.model.tokenToId(token);
  }

  idToToken(id: number): string | undefined {
    return this.added.idToToken(id) ?? this.model.idToToken(id);
  }

  encode(text: string): number[] {
    let ids: number[] = [];
    for (const piece of this.added.extract(text, this.normalizer)) {
      if ('id' in piece) { ids.push(piece.id); continue; }
      const words: Word[] = this.preTokenizer ? this.preTokenizer(piece) : [piece];
      for (const w of words) {
        const t = this.model.tokenize(w.text);
        for (let i = 0; i < t.length; i++) ids.push(t[i]!);
      }
    }
    if (this.truncation) {
      const added = this.postProcessor?.added ?? 0;
      const max = Math.max(0, this.truncation.maxLength - added);
      if (ids.length > max) ids = this.truncation.left ? ids.slice(ids.length - max) : ids.slice(0, max);
    }
    if (this.postProcessor) ids = this.postProcessor.process(ids);
    if (this.padding) {
      let target = this.padding.length ?? ids.length;
      const m = this.padding.multiple;
      if (m && target % m !== 0) target += m - (target % m);
      if (ids.length < target) {
        const pad = new Array<number>(target - ids.length).fill(this.padding.padId);
        ids = this.padding.left ? pad.concat(ids) : ids.concat(pad);
      }
    }
    return ids;
  }

  /** Ids → text; unknown ids are skipped, as in HF. */
  decode(ids: ArrayLike<number>, skipSpecialTokens = true): string {
    const tokens: string[] = [];
    for (let i = 0; i < ids.length; i++) {
      const t = this.idToToken(ids[i]!);
      if (t === undefined) continue;
      if (skipSpecialTokens && this.added.isSpecial(t)) continue;
      tokens.push(t);
    }
    return this.decoder ? this.decoder(tokens).join('') : tokens.join(' ');
  }

  /** The id of the first of `names` that is a token, or undefined. */
  firstId(names: readonly string[]): number | undefined {
    for (const n of names) {
      const id = this.tokenToId(n);
      if (id !== undefined) return id;
    }
    return undefined;
  }
}

/** GPT-NeoX's HFTokenizer: vocab_file is a Hugging Face tokenizer.json. */
export class HFTokenizer implements Tokenizer {
  readonly name = 'HFTokenizer';
  readonly pipeline: HFPipeline;
  readonly vocabSize: number;
  private readonly eod: number | undefined;
  private readonly pad: number | undefined;

  constructor(vocabFile: string | null | undefined) {
    const file = requirePath(vocabFile, 'HFTokenizer vocab_file', 'a Hugging Face tokenizer.json');
    const json = readJsonFile(file, 'HFTokenizer vocab_file', 'a Hugging Face tokenizer.json');
    this.pipeline = new HFPipeline(json, file);
    this.vocabSize = this.pipeline.vocabSize;
    this.eod = this.pipeline.firstId(EOD_TOKENS);
    this.pad = this.pipeline.firstId(PAD_TOKENS);
  }

  get eodId(): number {
    if (this.eod === undefined) {
      throw new Error(`HFTokenizer: ${this.pipeline.where} has no end-of-document token (looked for ${EOD_TOKENS.join(', ')})`);
    }
    return this.eod;
  }

  get padId(): number {
    return this.pad ?? this.eodId;
  }

  encode(text: string): number[] {
    return this.pipeline.encode(text);
  }

  decode(ids: ArrayLike<number>): string {
    return this.pipeline.decode(ids, true);
  }
}
