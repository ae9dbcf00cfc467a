// `neox generate CKPT [FILES...] [options]` (or `neox generate FILES...` with `load` in them):
// GPT-NeoX's text_gen_type modes over a checkpoint, records streamed as JSONL.
import { closeSync, existsSync, openSync, statSync, writeSync } from 'node:fs';
import { parseArgs } from 'node:util';
import {
  generateSamples, loadModel, readGenerationKeys, readPrompts, runInteractive,
  type GenerationKeys, type TextGenSettings,
} from '../../infer/index.js';

const USAGE = `usage: neox generate CKPT [FILES...] [options]
       neox generate FILES...            (the YAML files set \`load\`)

Generates with GPT-NeoX's generation keys. Settings come from the checkpoint's config, then the
YAML FILES (only their generation keys are read; the model is the checkpoint's), then options:

  --text-gen-type unconditional|input-file|interactive
  --sample-input-file FILE    prompts, separated by --prompt-end (default a newline)
  --sample-output-file FILE   JSONL records {context, text, length, finished, message, duration_seconds},
                              written as each prompt finishes ('' or - for stdout only)
  --num-samples N             unconditional samples
  --maximum-tokens N          new tokens per prompt
  --temperature T --top-k K --top-p P   all 0: greedy (GPT-NeoX's rule)
  --stop TEXT                 a stop sequence (repeatable)
  --recompute                 recompute the whole prefix each token instead of using the KV cache
  --batch-size N              prompts decoded together (default 1)
  --seed N                    prompt i samples with seed N + i
  --context-length N          most tokens the model reads (default the checkpoint's seq_length)
  --device auto|cpu|cuda   --step N (checkpoint step instead of latest)`;

export async function run(argv: string[]): Promise<number> {
  const { values: v, positionals } = parseArgs({
    args: argv, allowPositionals: true,
    options: {
      'text-gen-type': { type: 'string' }, 'sample-input-file': { type: 'string' }, 'sample-output-file': { type: 'string' },
      'num-samples': { type: 'string' }, 'maximum-tokens': { type: 'string' }, temperature: { type: 'string' },
      'top-k': { type: 'string' }, 'top-p': { type: 'string' }, 'prompt-end': { type: 'string' }, stop: { type: 'string', multiple: true },
      recompute: { type: 'boolean' }, 'batch-size': { type: 'string' }, seed: { type: 'string' }, 'context-length': { type: 'string' },
      device: { type: 'string' }, step: { type: 'string' }, help: { type: 'boolean', short: 'h' },
    },
  });
  if (v.help || positionals.length === 0) {
    console.log(USAGE);
    return v.help ? 0 : 2;
  }
  const isDir = (p: string) => existsSync(p) && statSync(p).isDirectory();
  const ckptArg = isDir(positionals[0]!) ? positionals[0]! : null;
  const files = ckptArg ? positionals.slice(1) : positionals;
  const fromFiles = readGenerationKeys(files);
  const ckpt = ckptArg ?? fromFiles.load;
  if (!ckpt) throw new Error('no checkpoint: give its folder first, or set `load` in the YAML files');

  const loaded = await loadModel(ckpt, { device: v.device ?? fromFiles.device ?? undefined, step: v.step !== undefined ? int(v.step, 'step') : undefined });
  const c = loaded.config;
  const base: GenerationKeys = {
    // text_gen_type is left out: the saved value was derived from the training run's sample_input_file.
    temperature: c.temperature, top_k: c.top_k, top_p: c.top_p,
    maximum_tokens: c.maximum_tokens, num_samples: c.num_samples, seed: c.seed, prompt_end: c.prompt_end,
    sample_input_file: c.sample_input_file, sample_output_file: c.sample_output_file, recompute: c.recompute,
  };
  const k = { ...base, ...fromFiles };
  const inputFile = v['sample-input-file'] ?? k.sample_input_file ?? null;
  const s: TextGenSettings = {
    text_gen_type: (v['text-gen-type'] ?? k.text_gen_type ?? (inputFile ? 'input-file' : 'unconditional')) as TextGenSettings['text_gen_type'],
    temperature: num(v.temperature, 'temperature') ?? k.temperature ?? 0,
    top_k: num(v['top-k'], 'top-k') ?? k.top_k ?? 0,
    top_p: num(v['top-p'], 'top-p') ?? k.top_p ?? 0,
    maximum_tokens: num(v['maximum-tokens'], 'maximum-tokens') ?? k.maximum_tokens ?? 64,
    prompt_end: v['prompt-end'] ?? k.prompt_end ?? '\n',
    sample_input_file: inputFile,
    sample_output_file: v['sample-output-file'] ?? k.sample_output_file ?? null,
    num_samples: num(v['num-samples'], 'num-samples') ?? k.num_samples ?? 1,
    recompute: v.recompute ?? k.recompute ?? false,
    stop_tokens: v.stop ?? k.stop_tokens ?? [],
    seed: num(v.seed, 'seed') ?? k.seed ?? 1234,
    batch_size: num(v['batch-size'], 'batch-size') ?? 1,
    context_length: num(v['context-length'], 'context-length') ?? k.seq_length ?? loaded.contextLength,
  };
  if (!['unconditional', 'input-file', 'interactive'].includes(s.text_gen_type)) {
    throw new Error(`text_gen_type must be unconditional, input-file or interactive, got '${s.text_gen_type}'`);
  }
  console.error(`loaded ${loaded.dir} (step ${loaded.step}, ${loaded.model.backend.name}); ${s.text_gen_type}, ${s.recompute ? 'recompute' : 'KV cache'}`);

  if (s.text_gen_type === 'interactive') {
    await runInteractive(loaded.model, loaded.tokenizer, s, process.stdin, process.stdout);
    return 0;
  }
  let prompts: string[];
  if (s.text_gen_type === 'input-file') {
    if (!s.sample_input_file) throw new Error('text_gen_type input-file needs sample_input_file (--sample-input-file)');
    prompts = readPrompts(s.sample_input_file, s.prompt_end);
  } else {
    prompts = Array.from({ length: s.num_samples }, () => '');
  }
  const outFile = s.sample_output_file && s.sample_output_file !== '-' ? s.sample_output_file : null;
  const fd = outFile ? openSync(outFile, 'w') : null;
  try {
    let i = 0;
    for (const record of generateSamples(loaded.model, loaded.tokenizer, prompts, s)) {
      const line = `${JSON.stringify(record)}\n`;
      if (fd !== null) writeSync(fd, line);
      process.stdout.write(line);
      i++;
    }
    console.error(`${i} record(s)${outFile ? ` written to ${outFile}` : ''}`);
  } finally {
    if (fd !== null) closeSync(fd);
  }
  return 0;
}

function num(text: string | undefined, name: string): number | undefined {
  if (text === undefined) return undefined;
  const x = Number(text);
  if (text.trim() === '' || !Number.isFinite(x) || x < 0) throw new Error(`--${name} must be a non-negative number, got '${text}'`);
  return x;
}

function int(text: string, name: string): number {
  const x = num(text, name)!;
  if (!Number.isInteger(x)) throw new Error(`--${name} must be an integer, got '${text}'`);
  return x;
}
