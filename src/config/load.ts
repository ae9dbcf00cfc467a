// Loading configs: YAML files → merged, type-checked, derived NeoXConfig.
//
// defines: loadConfig, LoadedConfig, IgnoredKey, LoadOptions, suggestKey
// (assertTrainable in derive.ts refuses what loads but cannot be trained: tensor/pipeline parallelism)
//
// Steps, each a function below:
//   readFile      YAML text → located tree (every value keeps its file and line), keys with `-`
//                 spelled `_`, aliases resolved
//   mergeFiles    files in order; a key set in two files is an error naming both places
//   applyOverrides  opts.overrides on top (dotted keys reach into blocks: "optimizer.params.lr")
//   Checker       each value against SCHEMA; unknown keys fail with a did-you-mean; GPT-NeoX and
//                 DeepSpeed keys NeoX.ts does not act on are collected as ignored
//   deriveConfig  (derive.ts) batch sizes, precision, lr, defaults that depend on other keys
//
// GPT-NeoX reads configs with PyYAML, i.e. YAML 1.1 (`True`, `1e-8`, `yes` all parse as PyYAML does).

import { readFileSync } from 'node:fs';
import { isAlias, isMap, isScalar, isSeq, LineCounter, parseDocument } from 'yaml';
import type { Document } from 'yaml';

import { deriveConfig } from './derive.js';
import { ConfigError, where } from './errors.js';
import type { Loc } from './errors.js';
import {
  ALIASES, ATTENTION_TYPES, IGNORED_KEYS, REQUIRED, SCHEMA, SCHEMA_BY_KEY, defaultOf, describeType,
  ignoreReasonText,
} from './schema.js';
import type { FieldType, NeoXConfig } from './schema.js';

export interface IgnoredKey {
  /** Canonical name; nested keys are dotted (`zero_optimization.cpu_offload`). */
  key: string;
  file: string;
  /** 1-based; null for overrides. */
  line: number | null;
  /** Why NeoX.ts does not act on it. */
  reason: string;
  value: unknown;
}

export interface LoadedConfig {
  config: NeoXConfig;
  ignored: IgnoredKey[];
  /** The config files, in merge order. */
  sources: string[];
  /** Where each key was set (dotted for nested keys); keys left at their default are absent. */
  locs?: ReadonlyMap<string, Loc>;
}

export interface LoadOptions {
  /** Applied after the files, replacing their values; keys may be dotted ("optimizer.params.lr"). */
  overrides?: Record<string, unknown>;
  /** Total number of processes (GPUs); data-parallel size = worldSize / (pipe × model parallel). */
  worldSize?: number;
}

/** Reads, merges, checks and derives a config from GPT-NeoX-style YAML files. Throws ConfigError. */
export function loadConfig(files: string[], opts: LoadOptions = {}): LoadedConfig {
  const merged = mergeFiles(files.map(readFile));
  if (opts.overrides) applyOverrides(merged, opts.overrides);

  const checker = new Checker();
  const values: Record<string, unknown> = {};
  for (const [key, entry] of merged) {
    const spec = SCHEMA_BY_KEY.get(key);
    if (spec && !spec.derivedOnly) {
      checker.locs.set(key, entry.keyLoc);
      values[key] = checker.check(entry.node, spec.type, key, spec.default === null);
    } else if (spec || IGNORED_KEYS.has(key)) {
      checker.ignore(key, entry, ignoreReasonText(key));
    } else {
      throw ConfigError.at(entry.keyLoc, key, unknownKeyMessage(entry.rawKey, topLevelNames()));
    }
  }
  for (const spec of SCHEMA) {
    if (spec.key in values) continue;
    if (spec.default === REQUIRED) {
      const inFiles = files.length ? ` (not set in ${files.join(', ')})` : '';
      throw new ConfigError(`missing required key \`${spec.key}\`${inFiles}`, { key: spec.key });
    }
    values[spec.key] = defaultOf(spec);
  }

  const config = deriveConfig(values, checker.locs, opts.worldSize ?? 1);
  return { config, ignored: checker.ignored, sources: [...files], locs: checker.locs };
}

// ---------------------------------------------------------------------------------------------
// Located tree: parsed YAML with a location on every node

type LNode =
  | { kind: 'scalar'; value: unknown; loc: Loc }
  | { kind: 'seq'; items: LNode[]; loc: Loc }
  | { kind: 'map'; entries: Map<string, LEntry>; loc: Loc };

interface LEntry {
  /** As written in the file. */
  rawKey: string;
  keyLoc: Loc;
  node: LNode;
}

/** GPT-NeoX accepts `-` for `_` in key names. */
function normalizeKey(raw: string): string {
  return raw.trim().replace(/-/g, '_');
}

function readFile(file: string): Map<string, LEntry> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`${file}: cannot read config file (${(err as Error).message})`,
      { loc: { file, line: null } });
  }
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, version: '1.1', uniqueKeys: false, prettyErrors: false });
  const lineOf = (offset: number | undefined): number | null =>
    offset === undefined ? null : lineCounter.linePos(offset).line;
  if (doc.errors.length > 0) {
    const err = doc.errors[0]!;
    const loc = { file, line: lineOf(err.pos[0]) };
    throw new ConfigError(`${where(loc)}: invalid YAML: ${err.message.split('\n')[0]}`, { loc });
  }
  if (doc.contents === null) return new Map();
  const root = toLNode(doc.contents, doc, file, lineOf, { file, line: 1 });
  if (root.kind !== 'map') {
    throw new ConfigError(`${where(root.loc)}: a config file must be a mapping of keys to values`,
      { loc: root.loc });
  }
  const entries = new Map<string, LEntry>();
  for (const [key, entry] of root.entries) {
    const canonical = ALIASES.get(key) ?? key;
    const earlier = entries.get(canonical);
    if (earlier) throw duplicateKey(canonical, earlier, entry);
    entries.set(canonical, entry);
  }
  return entries;
}

function toLNode(
  node: unknown, doc: Document, file: string, lineOf: (offset?: number) => number | null, parent: Loc,
): LNode {
  const locOf = (n: unknown): Loc => {
    const range = (n as { range?: [number, number, number] } | null)?.range;
    return range ? { file, line: lineOf(range[0]) } : parent;
  };
  if (isAlias(node)) return toLNode(node.resolve(doc), doc, file, lineOf, locOf(node));
  const loc = locOf(node);
  if (isMap(node)) {
    const entries = new Map<string, LEntry>();
    for (const pair of node.items) {
      const keyLoc = pair.key ? locOf(pair.key) : loc;
      if (!isScalar(pair.key) || (typeof pair.key.value !== 'string' && typeof pair.key.value !== 'number')) {
        throw new ConfigError(`${where(keyLoc)}: keys must be plain names`, { loc: keyLoc });
      }
      const rawKey = String(pair.key.value);
      const key = normalizeKey(rawKey);
      const entry = { rawKey, keyLoc, node: toLNode(pair.value, doc, file, lineOf, keyLoc) };
      const earlier = entries.get(key);
      if (earlier) throw duplicateKey(key, earlier, entry);
      entries.set(key, entry);
    }
    return { kind: 'map', entries, loc };
  }
  if (isSeq(node)) {
    return { kind: 'seq', items: node.items.map((item) => toLNode(item, doc, file, lineOf, loc)), loc };
  }
  if (isScalar(node)) return { kind: 'scalar', value: node.value, loc };
  return { kind: 'scalar', value: null, loc }; // `key:` with nothing after it
}

/** Plain JS (from overrides) → located tree. */
function fromJS(value: unknown, loc: Loc): LNode {
  if (Array.isArray(value)) return { kind: 'seq', items: value.map((v) => fromJS(v, loc)), loc };
  if (value !== null && typeof value === 'object') {
    const entries = new Map<string, LEntry>();
    for (const [rawKey, v] of Object.entries(value)) {
      entries.set(normalizeKey(rawKey), { rawKey, keyLoc: loc, node: fromJS(v, loc) });
    }
    return { kind: 'map', entries, loc };
  }
  return { kind: 'scalar', value: value === undefined ? null : value, loc };
}

function toJS(node: LNode): unknown {
  switch (node.kind) {
    case 'scalar': return node.value;
    case 'seq': return node.items.map(toJS);
    case 'map': return Object.fromEntries([...node.entries].map(([k, e]) => [k, toJS(e.node)]));
  }
}

// ---------------------------------------------------------------------------------------------
// Merging

function duplicateKey(key: string, first: LEntry, second: LEntry): ConfigError {
  const sameFile = first.keyLoc.file === second.keyLoc.file;
  const firstAt = sameFile && first.keyLoc.line !== null ? `line ${first.keyLoc.line}` : where(first.keyLoc);
  const spelled = first.rawKey !== second.rawKey ? ` (as \`${first.rawKey}\`)` : '';
  return ConfigError.at(second.keyLoc, key,
    `\`${key}\` is already set in ${firstAt}${spelled}; a key may be set only once across all config files`);
}

function mergeFiles(files: Map<string, LEntry>[]): Map<string, LEntry> {
  const merged = new Map<string, LEntry>();
  for (const entries of files) {
    for (const [key, entry] of entries) {
      const earlier = merged.get(key);
      if (earlier) throw duplicateKey(key, earlier, entry);
      merged.set(key, entry);
    }
  }
  return merged;
}

function applyOverrides(merged: Map<string, LEntry>, overrides: Record<string, unknown>): void {
  const loc: Loc = { file: 'overrides', line: null };
  for (const [rawKey, value] of Object.entries(overrides)) {
    const path = rawKey.split('.').map(normalizeKey);
    path[0] = ALIASES.get(path[0]!) ?? path[0]!;
    const entry: LEntry = { rawKey, keyLoc: loc, node: fromJS(value, loc) };
    let entries = merged;
    for (const part of path.slice(0, -1)) {
      let parent = entries.get(part);
      if (!parent || parent.node.kind !== 'map') {
        parent = { rawKey: part, keyLoc: loc, node: { kind: 'map', entries: new Map(), loc } };
        entries.set(part, parent);
      }
      entries = (parent.node as { entries: Map<string, LEntry> }).entries;
    }
    entries.set(path[path.length - 1]!, entry);
  }
}

// ---------------------------------------------------------------------------------------------
// Type checking against the schema

class Checker {
  readonly ignored: IgnoredKey[] = [];
  /** Where each key (dotted for nested ones) was set. */
  readonly locs = new Map<string, Loc>();

  ignore(path: string, entry: LEntry, reason: string): void {
    const { file, line } = entry.keyLoc;
    this.ignored.push({ key: path, file, line, reason, value: toJS(entry.node) });
  }

  check(node: LNode, t: FieldType, path: string, nullable: boolean): unknown {
    if (node.kind === 'scalar' && node.value === null) {
      if (t.kind === 'object') return this.checkBlock(emptyMap(node.loc), t, path);
      if (nullable) return null;
      throw this.expected(node, t, path);
    }
    switch (t.kind) {
      case 'int':
      case 'float': {
        const v = node.kind === 'scalar' ? node.value : undefined;
        if (typeof v !== 'number' || !Number.isFinite(v)) throw this.expected(node, t, path);
        if (t.kind === 'int' && !Number.isInteger(v)) throw this.expected(node, t, path);
        const low = t.min !== undefined && (v < t.min || (t.kind === 'float' && t.minExclusive && v === t.min));
        if (low || (t.max !== undefined && v > t.max)) throw this.expected(node, t, path);
        return v;
      }
      case 'bool':
        if (node.kind !== 'scalar' || typeof node.value !== 'boolean') throw this.expected(node, t, path);
        return node.value;
      case 'string':
        if (node.kind !== 'scalar' || typeof node.value !== 'string') throw this.expected(node, t, path);
        return node.value;
      case 'enum': {
        const v = node.kind === 'scalar' ? node.value : undefined;
        const match = typeof v === 'string'
          ? t.values.find((allowed) => allowed.toLowerCase() === v.toLowerCase()) : undefined;
        if (match === undefined) {
          const guess = typeof v === 'string' ? suggestKey(v, t.values) : null;
          const hint = guess ? ` (did you mean \`${guess}\`?)` : '';
          throw ConfigError.at(node.loc, path,
            `\`${path}\` must be one of: ${t.values.join(', ')}; got ${shown(node)}${hint}`);
        }
        return match;
      }
      case 'list': {
        if (node.kind !== 'seq' || (t.length !== undefined && node.items.length !== t.length)) {
          throw this.expected(node, t, path);
        }
        return node.items.map((item, i) => this.check(item, t.of, `${path}[${i}]`, false));
      }
      case 'object':
        if (node.kind !== 'map') throw this.expected(node, t, path);
        return this.checkBlock(node, t, path);
      case 'attention_config':
        return this.checkAttentionConfig(node, path);
    }
  }

  private checkBlock(node: Extract<LNode, { kind: 'map' }>, t: Extract<FieldType, { kind: 'object' }>,
    path: string): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const [key, entry] of node.entries) {
      const sub = `${path}.${key}`;
      const spec = t.fields.find((s) => s.key === key);
      if (spec) {
        this.locs.set(sub, entry.keyLoc);
        out[key] = this.check(entry.node, spec.type, sub, spec.default === null);
      } else if (t.ignored?.[key] !== undefined) {
        this.ignore(sub, entry, t.ignored[key]!);
      } else {
        const names = [...t.fields.map((s) => s.key), ...Object.keys(t.ignored ?? {})];
        const message = unknownKeyMessage(entry.rawKey, names, `\`${path}\``);
        const known = message.endsWith('?') ? '' : `; expected one of: ${t.fields.map((s) => s.key).join(', ')}`;
        throw ConfigError.at(entry.keyLoc, sub, message + known);
      }
    }
    // In the schema's order, defaults for what was not given.
    return Object.fromEntries(t.fields.map((s) => [s.key, s.key in out ? out[s.key] : defaultOf(s)]));
  }

  /** GPT-NeoX form [[["global", "local"], 6], [["flash"], "all"]], or already expanded ["global", ...]. */
  private checkAttentionConfig(node: LNode, path: string): unknown {
    const bad = (n: LNode, what: string): ConfigError => ConfigError.at(n.loc, path,
      `\`${path}\` ${what}, got ${shown(n)}; write it as GPT-NeoX does, e.g. [[["global"], 12]]`);
    const attentionType = (n: LNode, at: string): string => {
      const v = n.kind === 'scalar' ? n.value : undefined;
      const match = typeof v === 'string' ? ATTENTION_TYPES.find((a) => a === v.toLowerCase()) : undefined;
      if (match === undefined) {
        throw ConfigError.at(n.loc, path,
          `\`${at}\` must be one of: ${ATTENTION_TYPES.join(', ')}; got ${shown(n)}`);
      }
      return match;
    };
    if (node.kind !== 'seq') throw bad(node, 'must be a list');
    if (node.items.every((item) => item.kind === 'scalar')) {
      return node.items.map((item, i) => attentionType(item, `${path}[${i}]`));
    }
    return node.items.map((item, i) => {
      if (item.kind !== 'seq' || item.items.length !== 2) throw bad(item, 'entries must be [types, count] pairs');
      const [types, count] = item.items as [LNode, LNode];
      if (types.kind !== 'seq' || types.items.length === 0) throw bad(types, 'needs a non-empty list of types');
      const names = types.items.map((t, j) => attentionType(t, `${path}[${i}][0][${j}]`));
      const n = count.kind === 'scalar' ? count.value : undefined;
      const okCount = n === 'all' || (typeof n === 'number' && Number.isInteger(n) && n >= 1);
      if (!okCount) throw bad(count, 'repeat counts must be a positive integer or "all"');
      return [names, n];
    });
  }

  private expected(node: LNode, t: FieldType, path: string): ConfigError {
    return ConfigError.at(node.loc, path, `\`${path}\` must be ${describeType(t)}, got ${shown(node)}`);
  }
}

function emptyMap(loc: Loc): Extract<LNode, { kind: 'map' }> {
  return { kind: 'map', entries: new Map(), loc };
}

/** A value as written in an error message. */
function shown(node: LNode): string {
  if (node.kind === 'seq') return 'a list';
  if (node.kind === 'map') return 'a block of keys';
  const text = JSON.stringify(node.value) ?? String(node.value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

// ---------------------------------------------------------------------------------------------
// Did you mean

let topLevel: string[] | null = null;
function topLevelNames(): string[] {
  topLevel ??= [...SCHEMA.map((s) => s.key), ...ALIASES.keys(), ...IGNORED_KEYS.keys()];
  return topLevel;
}

function unknownKeyMessage(rawKey: string, names: readonly string[], inBlock = ''): string {
  const guess = suggestKey(normalizeKey(rawKey), names);
  const base = `unknown key \`${rawKey}\`${inBlock ? ` in ${inBlock}` : ''}`;
  return guess ? `${base}; did you mean \`${guess}\`?` : base;
}

/** The closest name within a small edit distance (transpositions count once), or null. */
export function suggestKey(word: string, names: readonly string[]): string | null {
  const w = word.toLowerCase();
  let best: string | null = null;
  // Allow ~1 edit per 3 characters (at least 2), but only 1 for very short words.
  let bestDistance = (w.length <= 4 ? 1 : Math.max(2, Math.floor(w.length / 3))) + 1;
  for (const name of names) {
    const d = editDistance(w, name.toLowerCase());
    if (d < bestDistance) [best, bestDistance] = [name, d];
  }
  return best;
}

/** Optimal string alignment distance (Levenshtein plus adjacent transpositions). */
function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}
