// inspect: a human-readable report of a checkpoint (`neox checkpoint inspect DIR`).
//
// defines: inspectCheckpoint   step, parameter count, model summary (layers inferred from tensor
//                              names), a table of tensors, total bytes, manifest verification
//          summarizeLayers     the layer inference, for reuse
//
// DIR may be a save folder (follows `latest`), a global_step{N} folder, a single .safetensors
// file, or a Hugging Face folder (model.safetensors or an index with shards). Only headers are
// read for the table; verification reads every file once to checksum it.

import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

import {
  CheckpointError, readManifest, resolveCheckpoint, verifyCheckpoint,
  type CheckpointManifest,
} from './checkpoint.js';
import {
  SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME, SafetensorsFile, ShardedSafetensors, numel,
  type TensorInfo,
} from './safetensors.js';

export interface InspectOptions {
  /** Checksum every file against the manifest (default true). */
  verify?: boolean;
  /** Rows of the tensor table before "… N more" (default: all). */
  maxRows?: number;
}

interface Row {
  name: string;
  info: TensorInfo;
}

const LAYER = /^(.*?)(?:^|\.)(layers|layer|h|blocks|block)\.(\d+)\.(.+)$/;

export interface LayerSummary {
  /** Prefix up to and including the layer index's container, e.g. "gpt_neox.layers". */
  container: string;
  count: number;
  indices: number[];
  /** Parameters in each layer, by index order. */
  paramsPerLayer: number[];
  tensorsPerLayer: number;
  /** Parameters outside the layers (embeddings, final norm, output head). */
  otherParams: number;
  otherNames: string[];
}

/** Groups tensor names into numbered layers (`…layers.N.…`, `h.N`, `blocks.N`). */
export function summarizeLayers(rows: readonly { name: string; info: TensorInfo }[]): LayerSummary | null {
  const byContainer = new Map<string, Map<number, { params: number; tensors: number }>>();
  for (const { name, info } of rows) {
    const m = LAYER.exec(name);
    if (m === null) continue;
    const container = m[1] === '' ? m[2]! : `${m[1]}.${m[2]}`;
    let layers = byContainer.get(container);
    if (layers === undefined) byContainer.set(container, layers = new Map());
    const i = Number(m[3]);
    const l = layers.get(i) ?? { params: 0, tensors: 0 };
    l.params += numel(info.shape);
    l.tensors += 1;
    layers.set(i, l);
  }
  if (byContainer.size === 0) return null;
  // The container with the most layers is the transformer stack.
  const [container, layers] = [...byContainer].sort((a, b) => b[1].size - a[1].size)[0]!;
  const indices = [...layers.keys()].sort((a, b) => a - b);
  const inside = (name: string): boolean => {
    const m = LAYER.exec(name);
    return m !== null && (m[1] === '' ? m[2]! : `${m[1]}.${m[2]}`) === container;
  };
  const others = rows.filter((r) => !inside(r.name));
  return {
    container,
    count: indices.length,
    indices,
    paramsPerLayer: indices.map((i) => layers.get(i)!.params),
    tensorsPerLayer: Math.max(...indices.map((i) => layers.get(i)!.tensors)),
    otherParams: others.reduce((s, r) => s + numel(r.info.shape), 0),
    otherNames: others.map((r) => r.name),
  };
}

function fmtInt(n: number): string {
  return n.toLocaleString('en-US');
}

function fmtBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${n} B` : `${v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0)} ${units[u]}`;
}

/** Orders names with embedded numbers numerically, so layers.2 comes before layers.10. */
function naturalCompare(a: string, b: string): number {
  const split = (s: string): string[] => s.split(/(\d+)/);
  const x = split(a);
  const y = split(b);
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    if (x[i] === y[i]) continue;
    const digits = i % 2 === 1;
    if (digits) return Number(x[i]) - Number(y[i]) || x[i]!.length - y[i]!.length;
    return x[i]! < y[i]! ? -1 : 1;
  }
  return x.length - y.length;
}

function table(rows: Row[], maxRows: number): string[] {
  const sorted = [...rows].sort((a, b) => naturalCompare(a.name, b.name));
  const shown = sorted.slice(0, maxRows);
  const cells = shown.map((r) => [
    r.name,
    r.info.dtype,
    `[${r.info.shape.join(', ')}]`,
    fmtBytes(r.info.dataOffsets[1] - r.info.dataOffsets[0]),
  ]);
  const head = ['name', 'dtype', 'shape', 'size'];
  const width = head.map((h, c) => Math.max(h.length, ...cells.map((row) => row[c]!.length)));
  const line = (row: string[]): string =>
    `  ${row.map((s, c) => (c === 3 ? s.padStart(width[c]!) : s.padEnd(width[c]!))).join('  ')}`.trimEnd();
  const out = [line(head), line(width.map((w) => '-'.repeat(w))), ...cells.map(line)];
  if (sorted.length > shown.length) out.push(`  … ${sorted.length - shown.length} more`);
  return out;
}

function modelLines(rows: Row[]): string[] {
  const total = rows.reduce((s, r) => s + numel(r.info.shape), 0);
  const bytes = rows.reduce((s, r) => s + r.info.dataOffsets[1] - r.info.dataOffsets[0], 0);
  const dtypes = [...new Set(rows.map((r) => r.info.dtype))].join(', ');
  const out = [
    `parameters  ${fmtInt(total)} in ${rows.length} tensors (${fmtBytes(bytes)}${dtypes ? `, ${dtypes}` : ''})`,
  ];
  const layers = summarizeLayers(rows);
  if (layers === null) {
    out.push('model       no numbered layers found in the tensor names');
    return out;
  }
  const first = layers.indices[0]!;
  const last = layers.indices[layers.indices.length - 1]!;
  const contiguous = last - first + 1 === layers.count;
  const even = layers.paramsPerLayer.every((p) => p === layers.paramsPerLayer[0]);
  out.push(`model       ${layers.count} layers (${layers.container}.${first} … ${layers.container}.${last}` +
    `${contiguous ? '' : ', with gaps'}), ` +
    (even ? `${fmtInt(layers.paramsPerLayer[0]!)} parameters and ${layers.tensorsPerLayer} tensors each`
      : `${fmtInt(Math.min(...layers.paramsPerLayer))}–${fmtInt(Math.max(...layers.paramsPerLayer))} ` +
        'parameters per layer'));
  const others = layers.otherNames.length;
  const names = layers.otherNames.slice(0, 6).join(', ') + (others > 6 ? ', …' : '');
  out.push(`            outside layers: ${fmtInt(layers.otherParams)} parameters in ${others} tensors` +
    (others > 0 ? ` (${names})` : ''));
  return out;
}

function stateLines(dir: string, manifest: CheckpointManifest): string[] {
  const f = manifest.files.find((x) => x.kind === 'state');
  if (f === undefined || !existsSync(join(dir, f.name))) return [];
  let state: unknown;
  try {
    state = JSON.parse(readFileSync(join(dir, f.name), 'utf8'));
  } catch {
    return ['state       unreadable'];
  }
  if (typeof state !== 'object' || state === null) return [];
  const scalars = Object.entries(state as Record<string, unknown>)
    .filter(([, v]) => typeof v === 'number' || typeof v === 'string' || typeof v === 'boolean')
    .map(([k, v]) => `${k}=${String(v)}`);
  const nested = Object.entries(state as Record<string, unknown>)
    .filter(([, v]) => typeof v === 'object' && v !== null).map(([k]) => k);
  return [`state       ${[...scalars, ...nested.map((k) => `${k}={…}`)].join(' ') || '{}'}`];
}

function openRows(files: SafetensorsFile[]): Row[] {
  const rows: Row[] = [];
  for (const f of files) for (const name of f.names()) rows.push({ name, info: f.info(name) });
  return rows;
}

/** A report of a checkpoint folder, save folder, .safetensors file or Hugging Face folder. */
export function inspectCheckpoint(dir: string, opts: InspectOptions = {}): string {
  const maxRows = opts.maxRows ?? Infinity;
  if (!existsSync(dir)) throw new CheckpointError(`no such file or folder: ${dir}`);

  // A bare file or a Hugging Face folder: weights only, no manifest.
  if (statSync(dir).isFile() || (!existsSync(join(dir, 'manifest.json')) &&
      !existsSync(join(dir, 'latest')) &&
      (existsSync(join(dir, SAFE_WEIGHTS_NAME)) || existsSync(join(dir, SAFE_WEIGHTS_INDEX_NAME))))) {
    const files = statSync(dir).isFile() ? [new SafetensorsFile(dir)]
      : [...new ShardedSafetensors(dir).files.values()];
    const rows = openRows(files);
    const total = files.reduce((s, f) => s + f.fileSize, 0);
    const meta = files[0]?.metadata;
    return [
      `weights     ${dir} (${files.length} file${files.length === 1 ? '' : 's'}, no checkpoint manifest)`,
      ...(meta ? [`metadata    ${JSON.stringify(meta)}`] : []),
      ...modelLines(rows),
      'tensors',
      ...table(rows, maxRows),
      `total       ${fmtInt(total)} bytes (${fmtBytes(total)})`,
    ].join('\n') + '\n';
  }

  const { dir: ckpt, step } = resolveCheckpoint(dir);
  const lines = [`checkpoint  ${ckpt}`, `step        ${step}`];
  let manifest: CheckpointManifest | undefined;
  try {
    manifest = readManifest(ckpt);
    lines.push(`format      ${manifest.format} v${manifest.version}` +
      (manifest.created ? `, written ${manifest.created}` : ''));
  } catch (e) {
    lines.push(`manifest    UNREADABLE: ${(e as Error).message}`);
  }
  if (manifest === undefined) return lines.join('\n') + '\n';

  if (opts.verify ?? true) {
    const v = verifyCheckpoint(ckpt);
    lines.push(v.ok ? `manifest    verified: ${v.files.length} files, sizes and sha256 match`
      : `manifest    FAILED: ${v.problems.join('; ')}`);
  } else {
    lines.push('manifest    not verified');
  }

  const modelFiles: SafetensorsFile[] = [];
  const optimizerFiles: SafetensorsFile[] = [];
  for (const f of manifest.files) {
    if (!f.name.endsWith('.safetensors') || !existsSync(join(ckpt, f.name))) continue;
    try {
      const file = new SafetensorsFile(join(ckpt, f.name));
      if (f.kind === 'model') modelFiles.push(file);
      else if (f.kind === 'optimizer') optimizerFiles.push(file);
    } catch (e) {
      lines.push(`unreadable  ${f.name}: ${(e as Error).message}`);
    }
  }
  lines.push(...stateLines(ckpt, manifest));
  const rows = openRows(modelFiles);
  lines.push(...modelLines(rows));
  if (optimizerFiles.length > 0) {
    const opt = openRows(optimizerFiles);
    const bytes = opt.reduce((s, r) => s + r.info.dataOffsets[1] - r.info.dataOffsets[0], 0);
    lines.push(`optimizer   ${opt.length} tensor${opt.length === 1 ? '' : 's'} (${fmtBytes(bytes)})`);
  } else {
    lines.push('optimizer   none');
  }
  lines.push('files');
  for (const f of manifest.files) {
    lines.push(`  ${f.name.padEnd(24)} ${f.kind.padEnd(10)} ${fmtBytes(f.bytes).padStart(10)}`);
  }
  lines.push('tensors', ...table(rows, maxRows));
  const total = manifest.files.reduce((s, f) => s + f.bytes, 0);
  lines.push(`total       ${fmtInt(total)} bytes (${fmtBytes(total)}) in ${manifest.files.length} files`);
  return lines.join('\n') + '\n';
}
