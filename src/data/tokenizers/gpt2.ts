// GPT-2 byte-level BPE from vocab.json + merges.txt: GPT-NeoX's GPT2BPETokenizer and
// HFGPT2Tokenizer.
//
// defines: GPT2BPETokenizer, HFGPT2Tokenizer, gpt2Json
//
// Both run the tokenizer.json that transformers' GPT-2 conversion builds (ByteLevel pre-tokenizer
// without a prefix space, BPE, ByteLevel decoder, "<|endoftext|>" as a special token), on our
// HFPipeline. Token ids agree with transformers' GPT2Tokenizer / GPT2TokenizerFast.
//
// GPT2BPETokenizer(vocab_file, merge_file): vocabSize = entries in vocab.json, eod = the id of
// "<|endoftext|>" (an error if vocab.json lacks it). GPT-NeoX defines no pad for it; padId is eod.
//
// HFGPT2Tokenizer(vocab_file): GPT-NeoX calls GPT2TokenizerFast.from_pretrained(vocab_file), so
// vocab_file is a directory holding tokenizer.json or vocab.json + merges.txt (a vocab.json path
// with merge_file, or with merges.txt beside it, works too); then it adds "<|padding|>" as the pad
// token (a new id when the vocabulary lacks it). eod = the eos token (tokenizer_config.json /
// special_tokens_map.json, default "<|endoftext|>"); vocabSize = len(tokenizer), added tokens
// included. With no vocab_file GPT-NeoX downloads "gpt2" from the hub; NeoX.ts never downloads and
// says so. Decoding keeps special tokens (transformers' decode default) for both.

import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Tokenizer } from '../tokenizer.js';
import { parseMergesTxt } from './bpe.js';
import { readJsonFile, readTokenizerFile, requirePath } from './files.js';
import { HFPipeline } from './hf.js';

const EOT = '<|endoftext|>';
const PAD = '<|padding|>';

/** The tokenizer.json transformers builds for GPT-2 from vocab.json + merges.txt. */
export function gpt2Json(vocab: Record<string, number>, merges: Array<[string, string]>): Record<string, unknown> {
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
  return {
    version: '1.0',
    added_tokens: [{ content: EOT, special: true, normalized: false }],  // transformers' bos/eos/unk
    normalizer: null,
    pre_tokenizer: byteLevel,
    model: { type: 'BPE', vocab, merges, unk_token: null, fuse_unk: false, byte_fallback: false },
    post_processor: { ...byteLevel, trim_offsets: false },
    decoder: byteLevel,
  };
}

function readVocab(file: string, role: string): Record<string, number> {
  const v = readJsonFile(file, role, 'a GPT-2 vocab.json (token → id)');
  if (typeof v !== 'object' || v === null || Array.isArray(v)) {
    throw new Error(`${role} ${file} is not a GPT-2 vocab.json: expected an object of token → id`);
  }
  for (const [tok, id] of Object.entries(v)) {
    if (!Number.isInteger(id)) throw new Error(`${role} ${file}: the id of ${JSON.stringify(tok)} is not an integer`);
  }
  return v as Record<string, number>;
}

function readMerges(file: string, role: string): Array<[string, string]> {
  return parseMergesTxt(readTokenizerFile(file, role, 'a GPT-2 merges.txt').toString('utf8'), file);
}

/** GPT-NeoX's GPT2BPETokenizer: vocab.json + merges.txt. */
export class GPT2BPETokenizer implements Tokenizer {
  readonly name = 'GPT2 BPE';
  readonly pipeline: HFPipeline;
  readonly vocabSize: number;
  readonly eodId: number;
  readonly padId: number;

  constructor(vocabFile: string | null | undefined, mergeFile: string | null | undefined) {
    const vf = requirePath(vocabFile, 'GPT2BPETokenizer vocab_file', 'a GPT-2 vocab.json');
    const mf = requirePath(mergeFile, 'GPT2BPETokenizer merge_file', 'a GPT-2 merges.txt');
    const vocab = readVocab(vf, 'GPT2BPETokenizer vocab_file');
    if (!(EOT in vocab)) throw new Error(`GPT2BPETokenizer: ${vf} has no ${EOT} token, which GPT-NeoX uses as end of document`);
    this.pipeline = new HFPipeline(gpt2Json(vocab, readMerges(mf, 'GPT2BPETokenizer merge_file')), `${vf} + ${mf}`);
    this.vocabSize = Object.keys(vocab).length;
    this.eodId = vocab[EOT]!;
    this.padId = this.eodId;
  }

  encode(text: string): number[] {
    return this.pipeline.encode(text);
  }

  decode(ids: ArrayLike<number>): string {
    return this.pipeline.decode(ids, false);
  }
}

function tokenContent(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (typeof v === 'object' && v !== null && typeof (v as { content?: unknown }).content === 'string') {
    return (v as { content: string }).content;
  }
  return undefined;
}

/** eos_token from tokenizer_config.json or special_tokens_map.json in `dir`, if either sets it. */
function configuredEos(dir: string): string | undefined {
  for (const name of ['tokenizer_config.json', 'special_tokens_map.json']) {
    const file = path.join(dir, name);
    if (!fs.existsSync(file)) continue;
    const cfg = readJsonFile(file, 'HFGPT2Tokenizer', `a transformers ${name}`) as Record<string, unknown>;
    const eos = tokenContent(cfg?.eos_token);
    if (eos !== undefined) return eos;
  }
  return undefined;
}

/** GPT-NeoX's HFGPT2Tokenizer: transformers' GPT2TokenizerFast from a local directory, plus a pad token. */
export class HFGPT2Tokenizer implements Tokenizer {
  readonly name = 'HFGPT2TokenizerFast';
  readonly pipeline: HFPipeline;
  readonly vocabSize: number;
  readonly eodId: number;
  readonly padId: number;

  constructor(vocabFile: string | null | undefined, mergeFile?: string | null) {
    if (typeof vocabFile !== 'string' || vocabFile.trim() === '') {
      throw new Error('HFGPT2Tokenizer vocab_file is not set: GPT-NeoX would download "gpt2" from the Hugging Face hub, ' +
        'which NeoX.ts does not do; set vocab_file to a directory with vocab.json and merges.txt (or tokenizer.json)');
    }
    const role = 'HFGPT2Tokenizer vocab_file';
    let json: unknown;
    let where: string;
    let dir: string;
    if (fs.existsSync(vocabFile) && fs.statSync(vocabFile).isDirectory()) {
      dir = vocabFile;
      const tj = path.join(dir, 'tokenizer.json');
      if (fs.existsSync(tj)) {
        json = readJsonFile(tj, role, 'a Hugging Face tokenizer.json');
        where = tj;
      } else {
        const vf = path.join(dir, 'vocab.json');
        const mf = path.join(dir, 'merges.txt');
        if (!fs.existsSync(vf) || !fs.existsSync(mf)) {
          throw new Error(`${role} ${dir} has neither tokenizer.json nor vocab.json + merges.txt`);
        }
        json = gpt2Json(readVocab(vf, role), readMerges(mf, role));
        where = `${vf} + ${mf}`;
      }
    } else {
      dir = path.dirname(vocabFile);
      const parsed = readJsonFile(vocabFile, role, 'a directory, a tokenizer.json or a GPT-2 vocab.json');
      if (typeof parsed === 'object' && parsed !== null && 'model' in parsed) {
        json = parsed;
        where = vocabFile;
      } else {
        const mf = mergeFile ?? path.join(dir, 'merges.txt');
        json = gpt2Json(readVocab(vocabFile, role), readMerges(mf, 'HFGPT2Tokenizer merge_file'));
        where = `${vocabFile} + ${mf}`;
      }
    }
    this.pipeline = new HFPipeline(json, where, [PAD]);
    const eos = configuredEos(dir) ?? EOT;
    const eod = this.pipeline.tokenToId(eos);
    if (eod === undefined) throw new Error(`HFGPT2Tokenizer: ${where} has no eos token ${JSON.stringify(eos)}`);
    this.eodId = eod;
    this.padId = this.pipeline.tokenToId(PAD)!;
    this.vocabSize = this.pipeline.vocabSize;
  }

  encode(text: string): number[] {
    return this.pipeline.encode(text);
  }

  decode(ids: ArrayLike<number>): string {
    return this.pipeline.decode(ids, false);
  }
}
