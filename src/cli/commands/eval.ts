// `neox eval CKPT --tasks a,b,...` (lm-evaluation-harness tasks from local JSONL files) and
// `neox eval CKPT --perplexity PREFIX` (a preprocessed .bin/.idx dataset).
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { datasetPerplexity, evaluateTasks, formatResults, loadModel } from '../../infer/index.js';

const USAGE = `usage: neox eval CKPT --tasks TASK[,TASK...] [options]
       neox eval CKPT --perplexity PREFIX [options]

A TASK is a name (read from --task-dir/NAME.jsonl) or NAME=path/to/file.jsonl; names:
lambada_openai, piqa, hellaswag, arc_easy, arc_challenge, sciq, winogrande (the Hugging Face
datasets' fields, one JSON object per line; see docs/inference.md).

  --task-dir DIR        folder of NAME.jsonl files (default data/eval)
  --limit N             at most N documents per task
  --perplexity PREFIX   perplexity of a preprocessed dataset ({PREFIX}.bin/.idx)
  --max-tokens N        with --perplexity: stop after N predicted tokens
  --batch-size N        sequences per forward (default 8)
  --context-length N    most tokens the model reads (default the checkpoint's seq_length)
  --output FILE         also write the results as JSON
  --json                print JSON instead of the table
  --device auto|cpu|cuda   --step N`;

export async function run(argv: string[]): Promise<number> {
  const { values: v, positionals } = parseArgs({
    args: argv, allowPositionals: true,
    options: {
      tasks: { type: 'string', multiple: true }, 'task-dir': { type: 'string' }, limit: { type: 'string' },
      perplexity: { type: 'string' }, 'max-tokens': { type: 'string' }, 'batch-size': { type: 'string' },
      'context-length': { type: 'string' }, output: { type: 'string' }, json: { type: 'boolean' },
      device: { type: 'string' }, step: { type: 'string' }, help: { type: 'boolean', short: 'h' },
    },
  });
  const tasks = (v.tasks ?? []).flatMap((t) => t.split(',')).map((t) => t.trim()).filter((t) => t !== '');
  if (v.help || positionals.length !== 1 || (tasks.length === 0 && !v.perplexity)) {
    console.log(USAGE);
    return v.help ? 0 : 2;
  }
  const int = (t: string | undefined, name: string): number | undefined => {
    if (t === undefined) return undefined;
    const x = Number(t);
    if (!Number.isInteger(x) || x < 1) throw new Error(`--${name} must be a positive integer, got '${t}'`);
    return x;
  };
  const loaded = await loadModel(positionals[0]!, { device: v.device, step: v.step !== undefined ? Number(v.step) : undefined });
  const contextLength = int(v['context-length'], 'context-length') ?? loaded.contextLength;
  const batchSize = int(v['batch-size'], 'batch-size');
  const log = (m: string) => console.error(m);
  const report: Record<string, unknown> = { checkpoint: loaded.dir, step: loaded.step, context_length: contextLength };
  const lines: string[] = [];
  if (tasks.length) {
    const results = evaluateTasks(loaded.model, loaded.tokenizer, tasks, {
      taskDir: v['task-dir'], limit: int(v.limit, 'limit'), batchSize, contextLength, log,
    });
    report.results = Object.fromEntries(results.map((r) => [r.task, { ...r.metrics, samples: r.samples, file: r.file }]));
    lines.push(formatResults(results));
  }
  if (v.perplexity) {
    const p = datasetPerplexity(loaded.model, v.perplexity, { contextLength, batchSize, maxTokens: int(v['max-tokens'], 'max-tokens'), log });
    report.perplexity = { dataset: v.perplexity, ...p };
    lines.push(`${v.perplexity}: ${p.tokens} tokens in ${p.windows} windows | loss ${p.loss.toFixed(4)} | perplexity ${p.perplexity.toFixed(3)}`);
  }
  const json = JSON.stringify(report, null, 2);
  if (v.output) writeFileSync(v.output, `${json}\n`);
  console.log(v.json ? json : lines.join('\n\n'));
  return 0;
}
