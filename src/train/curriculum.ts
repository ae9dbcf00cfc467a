// The sequence-length curriculum (GPT-NeoX's `curriculum_learning`, DeepSpeed's
// CurriculumScheduler): early iterations train on a prefix of each sample, growing to the full
// length. The length is a pure function of the iteration, so resume stays exact.
//
//   fixed_linear    min + (max − min) · step / total, rounded down to difficulty_step
//   fixed_root      the same with (step / total)^(1 / root_degree)
//   fixed_discrete  difficulty[i] while step ≤ max_step[i]; the last difficulty afterwards

import type { CurriculumConfig } from '../config/index.js';

export class CurriculumError extends Error {
  override name = 'NeoxError';
}

/** Checks the block once (when enabled); errors name the key. */
export function validateCurriculum(c: CurriculumConfig, seqLength: number): void {
  if (!c.enabled) return;
  const { min_difficulty: min, max_difficulty: max, schedule_config: s } = c;
  if (!min || !max) throw new CurriculumError('curriculum_learning needs min_difficulty and max_difficulty');
  if (min > max) throw new CurriculumError(`curriculum_learning: min_difficulty ${min} is above max_difficulty ${max}`);
  if (max > seqLength) throw new CurriculumError(`curriculum_learning: max_difficulty ${max} is above seq_length ${seqLength}`);
  if (c.schedule_type === 'fixed_discrete') {
    if (!s?.difficulty?.length || !s.max_step?.length || s.difficulty.length !== s.max_step.length + 1) {
      throw new CurriculumError('curriculum_learning.schedule_config: fixed_discrete needs `difficulty` with one more entry than `max_step`');
    }
  } else if (!s?.total_curriculum_step) {
    throw new CurriculumError(`curriculum_learning.schedule_config.total_curriculum_step is required for ${c.schedule_type}`);
  }
}

/** The sequence length for the 1-based global step `step` (DeepSpeed updates with global_steps + 1). */
export function curriculumSeqLength(c: CurriculumConfig, step: number): number {
  const s = c.schedule_config;
  const min = c.min_difficulty!;
  const max = c.max_difficulty!;
  if (c.schedule_type === 'fixed_discrete') {
    const steps = s.max_step!;
    if (step > steps[steps.length - 1]!) return s.difficulty!.at(-1)!;
    return s.difficulty![steps.findIndex((m) => step <= m)]!;
  }
  const degree = c.schedule_type === 'fixed_linear' ? 1 : s.root_degree;
  const fraction = (step / s.total_curriculum_step!) ** (1 / degree);
  let d = Math.floor(fraction * (max - min) + min);
  d -= d % s.difficulty_step;
  return Math.min(d, max);
}
