// The quickstart config end to end, shortened: it loads, builds its dataset from the repository's
// own docs and sources, trains, evaluates, checkpoints and prints a sample.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadConfig } from '../src/config/index.js';
import { train } from '../src/train/index.js';
import { readEvents } from '../src/train/tensorboard.js';

test('configs/quickstart.yml trains end to end (3 iterations), logs to TensorBoard and prints a sample', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'neox-quickstart-'));
  const loaded = loadConfig(['configs/quickstart.yml'], {
    overrides: {
      train_iters: 3, eval_interval: 3, eval_iters: 1, checkpoint_factor: 3, log_interval: 1,
      save: join(dir, 'ckpt'), load: null, log_dir: join(dir, 'logs'), data_path: join(dir, 'data', 'docs_text_document'),
      tensorboard_dir: join(dir, 'tb'),
    },
  });
  const lines: string[] = [];
  const result = await train(loaded, { print: (l) => lines.push(l) });
  assert.equal(result.iteration, 3);
  assert.ok(result.validLoss !== null && Number.isFinite(result.validLoss));
  assert.ok(existsSync(join(dir, 'ckpt', 'global_step3', 'manifest.json')));
  assert.ok(lines.some((l) => l.startsWith('sample (greedy)')), lines.join('\n'));
  assert.ok(lines.some((l) => l.startsWith('sample (temperature 0.8)')));
  // TensorBoard scalars were written beside the JSONL metrics.
  const [events] = readdirSync(join(dir, 'tb')).filter((f) => f.includes('tfevents'));
  const tags = new Set(readEvents(join(dir, 'tb', events!)).flatMap((e) => (e.summary ?? []).map((v) => v.tag)));
  assert.ok(tags.has('train/loss') && tags.has('valid/loss'), [...tags].join(', '));
});
