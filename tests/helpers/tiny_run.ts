// A tiny CPU training run's files, shared by the trainer tests: six small text documents (a
// repetitive corpus the char-level model can learn) in a fresh folder, and the run's config
// written there as YAML-compatible JSON.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const TEXT = Array.from({ length: 60 }, (_, i) =>
  `Document ${i}: the quick brown fox jumps over the lazy dog ${i % 7} times, and then rests.\n`).join('');

/**
 * A fresh folder named `prefix…` holding doc0.txt … doc5.txt and config.yml = config(dir) plus the
 * corpus keys (preprocess_inputs, data_path under dir/data, a 90/10 split).
 */
export function tinyRun(prefix: string, config: (dir: string) => Record<string, unknown>): { dir: string; file: string } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  for (let i = 0; i < 6; i++) writeFileSync(join(dir, `doc${i}.txt`), TEXT.slice(i * 700, (i + 1) * 700 + 300));
  const cfg = {
    tokenizer_type: 'CharLevelTokenizer', data_path: join(dir, 'data', 'corpus_text_document'),
    preprocess_inputs: [join(dir, 'doc*.txt')], split: '90,10,0', ...config(dir),
  };
  const file = join(dir, 'config.yml');
  writeFileSync(file, JSON.stringify(cfg, null, 2));
  return { dir, file };
}
