// GPT-NeoX's text generation modes (text_gen_type): unconditional, input-file and interactive,
// with its keys and its JSONL records, streamed as they are produced.
//
// defines: generateSamples (prompts → SampleRecord per prompt, as each batch finishes),
//          readPrompts (sample_input_file split on prompt_end), runInteractive (prompts from a
//          stream, continuations streamed back), readGenerationKeys (the generation keys of
//          YAML files), TextGenSettings, SampleRecord
//
// A record is GPT-NeoX's generate_samples_from_prompt dict: {context, text, length, finished,
// message, duration_seconds}; text is null (with a message) when nothing was generated, and the
// eos token or stop sequence that ended a sample is not part of its text. Unlike GPT-NeoX,
// maximum_tokens counts new tokens per prompt even in a batch, and a prompt longer than the
// context is cut to its last tokens (with a message) instead of stopping the run.

import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import { parseDocument } from 'yaml';
import type { Tokenizer } from '../data/tokenizer.js';
import type { GPTNeoX } from '../models/gpt_neox/model.js';
import { decodeSteps, type DecodeOptions } from './generate.js';

export type TextGenType = 'unconditional' | 'input-file' | 'interactive';

/** GPT-NeoX's generation keys, plus the batch size, seed and stop strings. */
export interface TextGenSettings {
  text_gen_type: TextGenType;
  temperature: number;
  top_k: number;
  top_p: number;
  maximum_tokens: number;
  prompt_end: string;
  sample_input_file: string | null;
  sample_output_file: string | null;
  num_samples: number;
  recompute: boolean;
  /** Strings whose tokens end a sample (GPT-NeoX's stop_tokens, given as text). */
  stop_tokens: string[];
  seed: number;
  /** Prompts decoded together. */
  batch_size: number;
  /** Most tokens the model reads at once. */
  context_length: number;
}

export interface SampleRecord {
  context: string;
  text: string | null;
  length: number;
  finished: boolean;
  message: string | null;
  duration_seconds: number;
}

export interface SampleHooks {
  /** The text generated so far for prompt `index` (complete characters only), after every token. */
  onText?: (index: number, text: string) => void;
}

/**
 * Generates one record per prompt, yielded in order as each batch of `batch_size` finishes.
 * Prompt i samples with seed `seed + i`, so records do not depend on the batch size.
 */
export function* generateSamples(model: GPTNeoX, tokenizer: Tokenizer, prompts: readonly string[], s: TextGenSettings, hooks: SampleHooks = {}): Generator<SampleRecord, void, void> {
  const stopSequences = s.stop_tokens.map((t) => tokenizer.encode(t)).filter((t) => t.length > 0);
  const batch = Math.max(1, Math.floor(s.batch_size));
  for (let start = 0; start < prompts.length; start += batch) {
    const t0 = performance.now();
    const texts = prompts.slice(start, start + batch);
    const messages: (string | null)[] = texts.map(() => null);
    const encoded = texts.map((text, i) => {
      const ids = text === '' ? [tokenizer.eodId] : tokenizer.encode(text);
      if (ids.length > s.context_length) {
        messages[i] = `WARNING: the prompt has ${ids.length} tokens; only its last ${s.context_length} were used`;
        return ids.slice(-s.context_length);
      }
      return ids;
    });
    const opts: DecodeOptions = {
      maxNewTokens: s.maximum_tokens, temperature: s.temperature, topK: s.top_k, topP: s.top_p,
      seeds: texts.map((_, i) => s.seed + start + i), eosId: tokenizer.eodId, stopSequences,
      recompute: s.recompute, contextLength: s.context_length,
    };
    const generated = texts.map(() => [] as number[]);
    const it = decodeSteps(model, encoded, opts);
    let result = it.next();
    while (!result.done) {
      for (const { row, token } of result.value.produced) {
        generated[row]!.push(token);
        if (hooks.onText) hooks.onText(start + row, completeText(tokenizer, generated[row]!));
      }
      result = it.next();
    }
    const seconds = (performance.now() - t0) / 1000;
    for (let i = 0; i < texts.length; i++) {
      const { tokens, reason } = result.value[i]!;
      yield {
        context: texts[i]!,
        text: tokens.length > 0 ? tokenizer.decode(tokens) : null,
        length: tokens.length,
        finished: reason === 'eos' || reason === 'stop',
        message: messages[i] ?? (tokens.length === 0 ? 'WARNING: text generation did not start; try different batching or adjust parameters' : null),
        duration_seconds: seconds,
      };
    }
  }
}

/** Decoded text without a trailing incomplete character (a multi-byte token sequence still arriving). */
function completeText(tokenizer: Tokenizer, tokens: readonly number[]): string {
  const text = tokenizer.decode(tokens);
  return text.endsWith('\uFFFD') ? text.slice(0, -1) : text;
}

/** sample_input_file's prompts, as GPT-NeoX reads them: split on prompt_end, stripped, empty ones dropped. */
export function readPrompts(file: string, promptEnd: string): string[] {
  const text = readFileSync(file, 'utf8');
  return text.split(promptEnd === '' ? '\n' : promptEnd).map((p) => p.trim()).filter((p) => p.length > 0);
}

/**
 * Interactive mode: reads a prompt from `input` ("Context prompt >>> "; with a prompt_end other
 * than a newline, lines are joined until one contains it), streams the continuation to `output`,
 * and repeats until the input ends. Returns the records of the prompts it answered.
 */
export async function runInteractive(model: GPTNeoX, tokenizer: Tokenizer, s: TextGenSettings, input: Readable, output: Writable): Promise<SampleRecord[]> {
  const rl = createInterface({ input, terminal: false });
  const records: SampleRecord[] = [];
  let pending = '';
  let index = 0;
  output.write('Context prompt >>> ');
  for await (const line of rl) {
    let prompt: string | null = null;
    if (s.prompt_end === '\n' || s.prompt_end === '') prompt = line;
    else if (line.includes(s.prompt_end)) prompt = pending + line.split(s.prompt_end)[0];
    else pending += `${line}\n`;
    if (prompt === null) continue;
    pending = '';
    let shown = '';
    output.write('Generated Text: ');
    const settings = { ...s, batch_size: 1, seed: s.seed + index++ };
    for (const record of generateSamples(model, tokenizer, [prompt], settings, {
      onText: (_, text) => {
        output.write(text.slice(shown.length));
        shown = text;
      },
    })) {
      const text = record.text ?? '';
      if (text.length > shown.length) output.write(text.slice(shown.length));
      output.write(`\n${record.message ? `${record.message}\n` : ''}`);
      records.push(record);
    }
    output.write('Context prompt >>> ');
  }
  output.write('\n');
  return records;
}

// ---------------------------------------------------------------------------------------------
// Generation keys from YAML files (model keys in the same files are left to the checkpoint)

const NUMBER_KEYS = ['temperature', 'top_k', 'top_p', 'maximum_tokens', 'num_samples', 'seed', 'seq_length'] as const;
const STRING_KEYS = ['text_gen_type', 'prompt_end', 'sample_input_file', 'sample_output_file', 'load', 'device'] as const;

export interface GenerationKeys {
  text_gen_type?: TextGenType;
  temperature?: number;
  top_k?: number;
  top_p?: number;
  maximum_tokens?: number;
  num_samples?: number;
  seed?: number;
  seq_length?: number;
  prompt_end?: string;
  sample_input_file?: string | null;
  sample_output_file?: string | null;
  load?: string | null;
  device?: string | null;
  recompute?: boolean;
  stop_tokens?: string[];
}

/**
 * The generation keys set in GPT-NeoX-style YAML files (later files win; `-` in key names reads
 * as `_`, YAML 1.1 as PyYAML). Other keys are ignored: the model comes from the checkpoint.
 */
export function readGenerationKeys(files: readonly string[]): GenerationKeys {
  const out: Record<string, unknown> = {};
  for (const file of files) {
    const doc = parseDocument(readFileSync(file, 'utf8'), { version: '1.1' });
    if (doc.errors.length) throw new Error(`${file}: invalid YAML: ${doc.errors[0]!.message.split('\n')[0]}`);
    const data = doc.toJS() as unknown;
    if (data === null || data === undefined) continue;
    if (typeof data !== 'object' || Array.isArray(data)) throw new Error(`${file}: expected a mapping of keys to values`);
    for (const [raw, value] of Object.entries(data as Record<string, unknown>)) {
      const key = raw.trim().replace(/-/g, '_');
      const bad = (want: string) => new Error(`${file}: \`${key}\` must be ${want}, got ${JSON.stringify(value)}`);
      if ((NUMBER_KEYS as readonly string[]).includes(key)) {
        if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) throw bad('a non-negative number');
        out[key] = value;
      } else if ((STRING_KEYS as readonly string[]).includes(key)) {
        if (value !== null && typeof value !== 'string') throw bad('a string');
        out[key] = value;
      } else if (key === 'recompute') {
        if (typeof value !== 'boolean') throw bad('true or false');
        out[key] = value;
      } else if (key === 'stop_tokens') {
        if (!Array.isArray(value) || !value.every((v) => typeof v === 'string')) throw bad('a list of strings');
        out[key] = value;
      }
    }
  }
  if (out.text_gen_type !== undefined && !['unconditional', 'input-file', 'interactive'].includes(out.text_gen_type as string)) {
    throw new Error(`text_gen_type must be unconditional, input-file or interactive, got ${JSON.stringify(out.text_gen_type)}`);
  }
  return out as GenerationKeys;
}
