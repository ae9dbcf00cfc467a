// Evaluation tasks read from local JSONL files in lm-evaluation-harness's dataset formats, turned
// into log-likelihood requests exactly as the harness's task configs do (zero-shot).
//
// defines: TASKS (the table), resolveTaskSpec ("name" or "name=path"), loadTask (file → docs),
//          TaskDef, TaskDoc, LoglikelihoodRequest
//
// Formats (one JSON object per line, fields as in the Hugging Face datasets the harness loads):
//   lambada_openai  {text}                               context: all but the last word; target: " " + last word
//   piqa            {goal, sol1, sol2, label}             "Question: {goal}\nAnswer:" → " " + sol
//   hellaswag       {activity_label, ctx_a, ctx_b, endings, label}   (or preprocessed {query, choices, gold})
//   arc_easy        {question, choices: {text, label}, answerKey}   "Question: {q}\nAnswer:" → " " + text
//   arc_challenge   as arc_easy
//   sciq            {support, question, distractor1-3, correct_answer}  gold is correct_answer (index 3)
//   winogrande      {sentence, option1, option2, answer: "1"|"2"}  the choices are contexts
//                   (sentence up to "_" + option), the target " " + the rest of the sentence
// Multiple choice reports acc and (except winogrande) acc_norm, normalizing by the choice's length
// in characters; lambada reports perplexity = exp(−mean log-likelihood) and acc = greedy match.

import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export interface LoglikelihoodRequest {
  context: string;
  continuation: string;
}

export interface TaskDoc {
  /** One request per choice (multiple choice), or one (loglikelihood). */
  requests: LoglikelihoodRequest[];
  /** Index of the right choice (multiple choice). */
  gold: number;
  /** The choice strings whose lengths normalize acc_norm (multiple choice). */
  choices: string[];
}

export type TaskKind = 'multiple_choice' | 'loglikelihood';

export interface TaskDef {
  name: string;
  kind: TaskKind;
  /** Metrics reported, as the harness's task config lists them. */
  metrics: readonly string[];
  /** A dataset row → requests; throws a message naming the missing or wrong field. */
  doc(row: Record<string, unknown>): TaskDoc;
}

const str = (row: Record<string, unknown>, key: string): string => {
  const v = row[key];
  if (typeof v !== 'string') throw new Error(`field "${key}" must be a string, got ${JSON.stringify(v)}`);
  return v;
};
const strList = (v: unknown, key: string): string[] => {
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw new Error(`field "${key}" must be a list of strings`);
  return v as string[];
};
const intOf = (v: unknown, key: string): number => {
  const n = typeof v === 'string' && /^\s*-?\d+\s*$/.test(v) ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isInteger(n)) throw new Error(`field "${key}" must be an integer, got ${JSON.stringify(v)}`);
  return n;
};

/** Multiple choice with one context and " " + each choice as continuation (the harness's default target_delimiter). */
function choiceDoc(context: string, choices: string[], gold: number): TaskDoc {
  if (!(gold >= 0 && gold < choices.length)) throw new Error(`gold index ${gold} is not one of the ${choices.length} choices`);
  return { requests: choices.map((c) => ({ context, continuation: ` ${c}` })), gold, choices };
}

/** HellaSwag's preprocess: strip, " [title]" → ". ", drop [bracketed] artifacts, collapse double spaces. */
function hellaswagClean(text: string): string {
  return text.trim().replaceAll(' [title]', '. ').replace(/\[.*?\]/g, '').replaceAll('  ', ' ');
}

/** Python's str.capitalize: first character upper case, the rest lower case. */
function capitalize(s: string): string {
  return s.length === 0 ? s : s[0]!.toUpperCase() + s.slice(1).toLowerCase();
}

function arc(name: string): TaskDef {
  return {
    name, kind: 'multiple_choice', metrics: ['acc', 'acc_norm'],
    doc(row) {
      const choices = row.choices as { text?: unknown; label?: unknown } | undefined;
      if (!choices || typeof choices !== 'object') throw new Error('field "choices" must be {text: [...], label: [...]}');
      const text = strList(choices.text, 'choices.text');
      const labels = strList(choices.label, 'choices.label');
      const key = str(row, 'answerKey');
      const gold = labels.indexOf(key);
      if (gold < 0) throw new Error(`answerKey "${key}" is not among choices.label ${JSON.stringify(labels)}`);
      return choiceDoc(`Question: ${str(row, 'question')}\nAnswer:`, text, gold);
    },
  };
}

export const TASKS: Record<string, TaskDef> = {
  lambada_openai: {
    name: 'lambada_openai', kind: 'loglikelihood', metrics: ['perplexity', 'acc'],
    doc(row) {
      const words = str(row, 'text').split(' ');
      if (words.length < 2) throw new Error('field "text" needs at least two words');
      const target = words.pop()!;
      return { requests: [{ context: words.join(' '), continuation: ` ${target}` }], gold: 0, choices: [] };
    },
  },
  piqa: {
    name: 'piqa', kind: 'multiple_choice', metrics: ['acc', 'acc_norm'],
    doc: (row) => choiceDoc(`Question: ${str(row, 'goal')}\nAnswer:`, [str(row, 'sol1'), str(row, 'sol2')], intOf(row.label, 'label')),
  },
  hellaswag: {
    name: 'hellaswag', kind: 'multiple_choice', metrics: ['acc', 'acc_norm'],
    doc(row) {
      if (typeof row.query === 'string' && Array.isArray(row.choices)) {
        return choiceDoc(row.query, strList(row.choices, 'choices'), intOf(row.gold ?? row.label, 'gold'));
      }
      const ctx = `${str(row, 'ctx_a')} ${capitalize(str(row, 'ctx_b'))}`;
      const query = hellaswagClean(`${str(row, 'activity_label')}: ${ctx}`);
      return choiceDoc(query, strList(row.endings, 'endings').map(hellaswagClean), intOf(row.label, 'label'));
    },
  },
  arc_easy: arc('arc_easy'),
  arc_challenge: arc('arc_challenge'),
  sciq: {
    name: 'sciq', kind: 'multiple_choice', metrics: ['acc', 'acc_norm'],
    doc(row) {
      const context = `${str(row, 'support').trimStart()}\nQuestion: ${str(row, 'question')}\nAnswer:`;
      return choiceDoc(context, [str(row, 'distractor1'), str(row, 'distractor2'), str(row, 'distractor3'), str(row, 'correct_answer')], 3);
    },
  },
  winogrande: {
    name: 'winogrande', kind: 'multiple_choice', metrics: ['acc'],
    doc(row) {
      const sentence = str(row, 'sentence');
      const blank = sentence.indexOf('_');
      if (blank < 0) throw new Error('field "sentence" has no "_" blank');
      const answer = String(row.answer ?? '');
      if (answer !== '1' && answer !== '2') throw new Error(`field "answer" must be "1" or "2", got ${JSON.stringify(row.answer)}`);
      const choices = [str(row, 'option1'), str(row, 'option2')].map((o) => sentence.slice(0, blank) + o);
      const target = sentence.slice(blank + 1).trim();
      return { requests: choices.map((c) => ({ context: c, continuation: ` ${target}` })), gold: Number(answer) - 1, choices };
    },
  },
};

export interface TaskSpec {
  name: string;
  def: TaskDef;
  file: string;
}

/**
 * "name" (read from {taskDir}/{name}.jsonl) or "name=path/to/file.jsonl". Fails listing the known
 * task names, or naming the file that is missing.
 */
export function resolveTaskSpec(spec: string, taskDir = 'data/eval'): TaskSpec {
  const eq = spec.indexOf('=');
  const name = (eq < 0 ? spec : spec.slice(0, eq)).trim();
  const def = TASKS[name];
  if (!def) throw new Error(`unknown task '${name}'; known tasks: ${Object.keys(TASKS).join(', ')}`);
  const file = eq < 0 ? join(taskDir, `${name}.jsonl`) : spec.slice(eq + 1).trim();
  if (!existsSync(file)) throw new Error(`task ${name}: no data file ${file} (give name=path/to/${name}.jsonl, or put ${name}.jsonl in the task folder)`);
  return { name, def, file };
}

/** The docs of a task file (the first `limit` when given); errors name the file and line. */
export function loadTask(spec: TaskSpec, limit?: number): TaskDoc[] {
  const docs: TaskDoc[] = [];
  const lines = readFileSync(spec.file, 'utf8').split('\n');
  for (let i = 0; i < lines.length; i++) {
    if (limit !== undefined && docs.length >= limit) break;
    const line = lines[i]!.trim();
    if (line === '') continue;
    try {
      const row = JSON.parse(line) as unknown;
      if (!row || typeof row !== 'object' || Array.isArray(row)) throw new Error('expected a JSON object');
      docs.push(spec.def.doc(row as Record<string, unknown>));
    } catch (e) {
      throw new Error(`${spec.file} line ${i + 1} (${spec.name}): ${(e as Error).message}`);
    }
  }
  if (docs.length === 0) throw new Error(`${spec.file}: no documents for task ${spec.name}`);
  return docs;
}
