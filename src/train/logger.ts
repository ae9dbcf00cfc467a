// Training logs: a console line every log_interval (with a live progress line on a terminal),
// and every metric appended as one JSON object per line to {run dir}/metrics.jsonl.
// Optionally (opts.tensorboardDir) every numeric metric also becomes a TensorBoard scalar tagged
// `{kind}/{key}` (train/loss, valid/loss, speed/tokens_per_sec, ...) at step = metrics.iteration
// (the last iteration seen when a record has none); close() flushes and closes the event file.
// startWandb(opts) adds Weights & Biases (train/wandb.ts): the same `{kind}/{key}` metrics at the same
// steps, sent in the background; close() then also finishes the W&B run (await it).

import { appendFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';

import { EventFileWriter } from './tensorboard.js';
import { WandbRun, type WandbStartOptions } from './wandb.js';

export interface Metrics {
  [key: string]: number | string;
}

export interface TrainLoggerOptions {
  /** Write TensorBoard event files here (null/undefined: off). */
  tensorboardDir?: string | null;
}

export class TrainLogger {
  private readonly jsonl: string | null;
  private readonly tty: boolean;
  private progressShown = false;
  private tb: EventFileWriter | null = null;
  private wandb: WandbRun | null = null;
  private lastStep = 0;

  private readonly print: (line: string) => void;

  /** Lines go to `print` when given, else to the console (with a live progress line on a terminal). */
  constructor(runDir: string | null, print?: (line: string) => void, opts: TrainLoggerOptions = {}) {
    this.print = print ?? ((l) => console.log(l));
    if (runDir) {
      mkdirSync(runDir, { recursive: true });
      this.jsonl = join(runDir, 'metrics.jsonl');
    } else {
      this.jsonl = null;
    }
    this.tty = process.stdout.isTTY === true && print === undefined;
    if (opts.tensorboardDir) this.tb = new EventFileWriter(opts.tensorboardDir);
  }

  /** The TensorBoard event file being written, or null. */
  get tensorboardPath(): string | null {
    return this.tb?.path ?? null;
  }

  /** The W&B run being logged to, or null. */
  get wandbRun(): WandbRun | null {
    return this.wandb;
  }

  /**
   * Starts logging to Weights & Biases (creates the run; a warning and no W&B when there is no API
   * key, WANDB_MODE is disabled/offline or the server fails). Warnings and the run URL go through info().
   */
  async startWandb(opts: WandbStartOptions): Promise<WandbRun | null> {
    const say = (m: string) => this.info(m);
    this.wandb = await WandbRun.start({ warn: say, info: say, ...opts });
    return this.wandb;
  }

  /** Records metrics (JSONL) without printing. */
  record(kind: string, metrics: Metrics): void {
    if (this.jsonl) appendFileSync(this.jsonl, JSON.stringify({ kind, time: new Date().toISOString(), ...metrics }) + '\n');
    if (this.tb || this.wandb) {
      const it = metrics.iteration;
      if (typeof it === 'number' && Number.isFinite(it)) this.lastStep = it;
      const now = Date.now();
      const scalars: Record<string, number> = {};
      let any = false;
      for (const [key, value] of Object.entries(metrics)) {
        if (key === 'iteration' || typeof value !== 'number') continue;
        this.tb?.addScalar(`${kind}/${key}`, value, this.lastStep, now / 1000);
        scalars[`${kind}/${key}`] = value;
        any = true;
      }
      if (any) this.wandb?.log(this.lastStep, scalars, now);
    }
  }

  /**
   * Flushes and closes the TensorBoard event file (at once) and finishes the W&B run (sends what is
   * left, marks it finished with `exitCode`: 0 done, non-zero failed; the returned promise settles
   * when done, never rejects). Safe to call more than once.
   */
  close(exitCode = 0): Promise<void> {
    this.clearProgress();
    this.tb?.close();
    this.tb = null;
    const run = this.wandb;
    this.wandb = null;
    return run ? run.finish(exitCode).catch((e) => this.info(`W&B: finishing the run failed (${e instanceof Error ? e.message : String(e)})`)) : Promise.resolve();
  }

  info(line: string): void {
    this.clearProgress();
    this.print(line);
  }

  /** A transient progress line on terminals: `[#####.....] 120/200 ...`. */
  progress(done: number, total: number, suffix: string): void {
    if (!this.tty) return;
    const width = 24;
    const filled = Math.round((done / Math.max(1, total)) * width);
    process.stdout.write(`\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total} ${suffix}\x1b[K`);
    this.progressShown = true;
  }

  clearProgress(): void {
    if (this.progressShown) {
      process.stdout.write('\r\x1b[K');
      this.progressShown = false;
    }
  }
}

/** 12345 → "12.3k", 1.2e6 → "1.20M". */
export function humanCount(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)}G`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}k`;
  return n.toFixed(0);
}
