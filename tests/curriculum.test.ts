// The sequence-length curriculum: DeepSpeed's schedules, validation, and the trainer cutting batches.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { type CurriculumConfig, loadConfig } from '../src/config/index.js';
import { curriculumSeqLength, validateCurriculum } from '../src/train/curriculum.js';
import { train } from '../src/train/index.js';

const base = (over: Partial<CurriculumConfig> & { sc?: Partial<CurriculumConfig['schedule_config']> }): CurriculumConfig => ({
  enabled: true, curriculum_type: 'seqlen', min_difficulty: 8, max_difficulty: 32, schedule_type: 'fixed_linear',
  ...over,
  schedule_config: { total_curriculum_step: 4, difficulty_step: 8, root_degree: 2, difficulty: null, max_step: null, ...over.sc },
});

test('fixed_linear, fixed_root and fixed_discrete follow DeepSpeed\'s formulas', () => {
  // floor((s/4)·24 + 8) rounded down to a multiple of 8, capped at 32
  assert.deepEqual([1, 2, 3, 4, 5, 100].map((s) => curriculumSeqLength(base({}), s)), [8, 16, 24, 32, 32, 32]);
  // (s/4)^(1/2): s=1 → 0.5·24+8 = 20 → 16; s=2 → 0.707·24+8 = 24.97 → 24; s=3 → 0.866·24+8 = 28.78 → 24
  assert.deepEqual([1, 2, 3, 4].map((s) => curriculumSeqLength(base({ schedule_type: 'fixed_root' }), s)), [16, 24, 24, 32]);
  const discrete = base({ schedule_type: 'fixed_discrete', sc: { difficulty: [8, 16, 32], max_step: [2, 5] } });
  assert.deepEqual([1, 2, 3, 5, 6, 50].map((s) => curriculumSeqLength(discrete, s)), [8, 8, 16, 16, 32, 32]);
});

test('curriculum settings are validated with the key named', () => {
  assert.throws(() => validateCurriculum(base({ min_difficulty: null }), 32), /needs min_difficulty and max_difficulty/);
  assert.throws(() => validateCurriculum(base({ max_difficulty: 64 }), 32), /max_difficulty 64 is above seq_length 32/);
  assert.throws(() => validateCurriculum(base({ sc: { total_curriculum_step: null } }), 32), /total_curriculum_step is required/);
  assert.throws(() => validateCurriculum(base({ schedule_type: 'fixed_discrete', sc: { difficulty: [8], max_step: [2] } }), 32), /one more entry/);
});

test('the trainer cuts batches to the scheduled length and logs it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'neox-curriculum-'));
  writeFileSync(join(dir, 'a.txt'), 'the quick brown fox jumps over the lazy dog. '.repeat(200));
  writeFileSync(join(dir, 'config.yml'), JSON.stringify({
    num_layers: 1, hidden_size: 16, num_attention_heads: 2, seq_length: 32, pos_emb: 'rotary', train_micro_batch_size_per_gpu: 2,
    gradient_accumulation_steps: 1, train_iters: 5, eval_interval: 5, eval_iters: 1, log_interval: 100, tokenizer_type: 'CharLevelTokenizer',
    data_path: join(dir, 'data', 'c_text_document'), preprocess_inputs: [join(dir, 'a.txt')], split: '90,10,0', device: 'cpu',
    log_dir: join(dir, 'logs'),
    curriculum_learning: { enabled: true, min_difficulty: 8, max_difficulty: 32, schedule_type: 'fixed_linear', schedule_config: { total_curriculum_step: 4, difficulty_step: 8 } },
  }));
  await train(loadConfig([join(dir, 'config.yml')]), { print: () => {} });
  const lengths = readFileSync(join(dir, 'logs', 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l))
    .filter((r) => r.kind === 'train').map((r) => r.seq_length);
  assert.deepEqual(lengths, [8, 16, 24, 32, 32]);
});
