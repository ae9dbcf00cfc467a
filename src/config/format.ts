// Rendering a loaded config back to YAML (for `neox config show FILES...`).
//
// defines: formatConfig
//
// The output is one YAML mapping, grouped as in the docs, that loadConfig reads back to the same
// config (derived values are written out; `lr`, which is never read from a file, is a comment).
// The ignored keys follow as a comment, with where each was set and why it has no effect.

import { Document, isScalar, isSeq, visit } from 'yaml';

import { where } from './errors.js';
import type { LoadedConfig } from './load.js';
import { SCHEMA } from './schema.js';
import type { AttentionType } from './schema.js';

export function formatConfig(loaded: LoadedConfig): string {
  const config = loaded.config as unknown as Record<string, unknown>;
  const { train_batch_size: tb, train_micro_batch_size_per_gpu: mb, gradient_accumulation_steps: ga } = loaded.config;
  const lines: string[] = [
    `# NeoX.ts config merged from: ${loaded.sources.join(', ') || '(no files)'}`,
    `# data-parallel size ${tb / (mb * ga)}: train_batch_size = micro batch × accumulation steps × data-parallel size`,
  ];

  const groups = [...new Set(SCHEMA.map((s) => s.group))];
  for (const g of groups) {
    lines.push('', `# --- ${g} ---`);
    const section: Record<string, unknown> = {};
    for (const spec of SCHEMA.filter((s) => s.group === g)) {
      const value = spec.key === 'attention_config'
        ? compressAttention(config[spec.key] as AttentionType[]) : config[spec.key];
      if (spec.derivedOnly) lines.push(...yamlOf({ [spec.key]: value }).map((l) => `# ${l}  (derived)`));
      else section[spec.key] = value;
    }
    lines.push(...yamlOf(section));
  }

  if (loaded.ignored.length > 0) {
    lines.push('', '# Ignored keys: accepted for GPT-NeoX compatibility, not used by NeoX.ts');
    for (const item of loaded.ignored) {
      const value = JSON.stringify(item.value) ?? String(item.value);
      lines.push(`#   ${item.key}: ${value}  (${where(item)}) - ${item.reason}`);
    }
  }
  return `${lines.join('\n')}\n`;
}

/** YAML lines for a mapping; lists of scalars in flow style ([0.9, 0.95]). */
function yamlOf(obj: Record<string, unknown>): string[] {
  if (Object.keys(obj).length === 0) return [];
  const doc = new Document(obj);
  visit(doc, {
    Seq(_, node) {
      if (onlyScalars(node)) node.flow = true;
    },
  });
  return doc.toString({ lineWidth: 0, flowCollectionPadding: false, blockQuote: false }).trimEnd().split('\n');
}

function onlyScalars(node: unknown): boolean {
  return isScalar(node) || (isSeq(node) && node.items.every(onlyScalars));
}

/** ["flash" × 12] → [[["flash"], 12]]; a repeated pattern → [[pattern, repeats]]; else runs. */
function compressAttention(layers: AttentionType[]): unknown {
  const n = layers.length;
  for (let period = 1; period <= n / 2; period++) {
    if (n % period !== 0) continue;
    if (layers.every((t, i) => t === layers[i % period])) return [[layers.slice(0, period), n / period]];
  }
  const runs: [AttentionType[], number][] = [];
  for (const t of layers) {
    const last = runs[runs.length - 1];
    if (last && last[0][0] === t) last[1]++;
    else runs.push([[t], 1]);
  }
  return runs;
}
