// Training logs: a console line every log_interval (with a live progress line on a terminal),
// and every metric appended as one JSON object per line to {run dir}/metrics.jsonl.

import { appendFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';

export interface Metrics {
  [key: string]: number | string;
}

export class TrainLogger {
  private readonly jsonl: string | null;
  private readonly tty: boolean;
  private progressShown = false;

  constructor(runDir: string | null, private readonly print: (line: string) => void = (l) => console.log(l)) {
    if (runDir) {
      mkdirSync(runDir, { recursive: true });
      this.jsonl = join(runDir, 'metrics.jsonl');
    } else {
      this.jsonl = null;
    }
    this.tty = process.stdout.isTTY === true && print === console.log;
  }

  /** Records metrics (JSONL) without printing. */
  record(kind: string, metrics: Metrics): void {
    if (this.jsonl) appendFileSync(this.jsonl, JSON.stringify({ kind, time: new Date().toISOString(), ...metrics }) + '\n');
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
