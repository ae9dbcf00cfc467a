// `neox convert to-hf CKPT OUT --architecture neox|llama|mistral --precision auto|fp16|bf16|fp32`:
// a NeoX.ts checkpoint → a folder that transformers' AutoModelForCausalLM.from_pretrained loads:
//
//   OUT/config.json                     every key the HF class reads (transformers 4 form; rotary_pct
//                                       always; tanh GELU as gelu_new), sorted as transformers writes
//   OUT/model.safetensors               or model-0000i-of-0000K.safetensors + model.safetensors.index.json
//                                       above --max-shard-size (default 5GB), tensors in the HF model's
//                                       state-dict order, sharded as save_pretrained shards
//   OUT/generation_config.json          bos/eos ids (copied when the tokenizer folder has one)
//   OUT/tokenizer.json | vocab.json + merges.txt | tokenizer.model, tokenizer_config.json, ...
//                                       when the run used an HF-style tokenizer
//
// CKPT is a save folder (its `latest` is used), one global_step{N} folder, or a `convert from-hf`
// output folder. The checkpoint's model, config and state files are checksummed against its
// manifest first; tensors are then read one at a time. --precision auto exports in the run's
// `precision` (bfloat16 → bf16, fp16 → fp16, fp32 → fp32); narrowing rounds to nearest even.
// A model the chosen class cannot express fails before anything is written, naming each feature.
//
// defines: convertToHF, ToHFOptions, ToHFResult, ExportPrecision
//          openModelCheckpoint, ModelCheckpoint   a verified checkpoint's config and tensors
//          loadNeoXModel                          a GPTNeoX with a checkpoint's weights (generation, tests)

import { createHash } from 'node:crypto';
import { closeSync, copyFileSync, existsSync, mkdirSync, openSync, readFileSync, readSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

import { readManifest, resolveCheckpoint, CheckpointError } from '../checkpoint/checkpoint.js';
import { SafetensorsFile, hostArrayOf, numel, writeShardedFrom, type HostTensor, type TensorDesc, type TensorInfo } from '../checkpoint/safetensors.js';
import type { NeoXConfig } from '../config/index.js';
import { resolveModelConfig, type GPTNeoXConfig, type NeoXModelKeys } from '../models/gpt_neox/config.js';
import { ourParameters, partRows, splitRows, type HFArchitecture, type TensorRule } from '../models/gpt_neox/hf_adapter.js';
import { GPTNeoX } from '../models/gpt_neox/model.js';
import * as ops from '../ops/index.js';
import type { Backend } from '../tensor/backend.js';
import { getBackend, noGrad, tensor } from '../tensor/engine.js';
import { castHost } from './from_hf.js';
import {
  ConvertError, adapterFor, generationConfigJson, hfConfigJson, inferArchitecture, pythonJson, type HFDType,
} from './hf_config.js';

export type ExportPrecision = 'auto' | 'fp16' | 'bf16' | 'fp32';

export interface ToHFOptions {
  /** The HF class; default: what the model fits (mistral with a window, llama for RMSNorm + gated MLP, else neox). */
  architecture?: HFArchitecture;
  precision?: ExportPrecision;
  /** Shard above this many bytes (default 5e9, transformers' "5GB"). */
  maxShardBytes?: number;
  /** Override the token ids written to config.json and generation_config.json. */
  bosTokenId?: number | null;
  eosTokenId?: number | null;
  log?: (line: string) => void;
}

export interface ToHFResult {
  outDir: string;
  architecture: HFArchitecture;
  hfClass: string;
  dtype: HFDType;
  /** Weight files written. */
  files: string[];
  tensors: number;
  parameters: number;
  notes: string[];
}

// ─── reading our checkpoints ─────────────────────────────────────────────────────────────────────

export interface ModelCheckpoint {
  dir: string;
  step: number;
  /** The merged config saved with the checkpoint. */
  config: Record<string, unknown>;
  names(): string[];
  info(name: string): TensorInfo;
  read(name: string): HostTensor;
}

function sha256File(path: string): string {
  const hash = createHash('sha256');
  const buf = new Uint8Array(16 << 20);
  const fd = openSync(path, 'r');
  try {
    for (let n; (n = readSync(fd, buf, 0, buf.length, null)) > 0;) hash.update(buf.subarray(0, n));
  } finally {
    closeSync(fd);
  }
  return hash.digest('hex');
}

/**
 * Opens a checkpoint's model for reading: `path` is a save folder, a global_step{N} folder or a
 * `convert from-hf` output folder. Model, config and state files are verified against the
 * manifest (size and sha256) here; the optimizer is not read.
 */
export function openModelCheckpoint(path: string): ModelCheckpoint {
  if (!existsSync(join(path, 'manifest.json')) && !existsSync(join(path, 'latest')) && existsSync(join(path, 'checkpoint', 'latest'))) {
    path = join(path, 'checkpoint');
  }
  const { dir, step } = resolveCheckpoint(path);
  const manifest = readManifest(dir);
  const where = new Map<string, SafetensorsFile>();
  let config: Record<string, unknown> | null = null;
  for (const f of manifest.files) {
    if (!['model', 'config', 'state'].includes(f.kind)) continue;
    const file = join(dir, f.name);
    if (!existsSync(file)) throw new CheckpointError(`checkpoint ${dir} is corrupt: ${f.name} is missing; not loading it`, file);
    const sha = sha256File(file);
    if (sha !== f.sha256) throw new CheckpointError(`checkpoint ${dir} is corrupt: ${f.name}: sha256 mismatch; not loading it`, file);
    if (f.kind === 'config') config = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
    if (f.kind === 'model') {
      const st = new SafetensorsFile(file);
      for (const n of st.names()) where.set(n, st);
    }
  }
  if (!config) throw new CheckpointError(`checkpoint ${dir} has no config file`);
  const fileOf = (name: string): SafetensorsFile => {
    const f = where.get(name);
    if (!f) throw new ConvertError(`checkpoint ${dir} has no tensor ${name}`);
    return f;
  };
  return {
    dir, step, config,
    names: () => [...where.keys()],
    info: (name) => fileOf(name).info(name),
    read: (name) => fileOf(name).read(name),
  };
}

/** The model config of a checkpoint: its saved config with the vocabulary its embedding has. */
function modelConfigOf(ck: ModelCheckpoint): GPTNeoXConfig {
  const vocab = ck.info('embed_in.weight').shape[0]!;
  return resolveModelConfig(ck.config as unknown as NeoXModelKeys, vocab);
}

/** Our parameters in the checkpoint must be exactly those the config implies, with their shapes. */
function checkTensors(ck: ModelCheckpoint, cfg: GPTNeoXConfig): void {
  const want = ourParameters(cfg);
  const have = new Set(ck.names());
  const missing = want.filter(([n]) => !have.has(n)).map(([n]) => n);
  const extra = [...have].filter((n) => !want.some(([w]) => w === n));
  if (missing.length || extra.length) {
    throw new ConvertError(`checkpoint ${ck.dir} does not match its config` +
      (missing.length ? `; missing ${missing.join(', ')}` : '') + (extra.length ? `; unexpected ${extra.join(', ')}` : ''));
  }
  for (const [n, shape] of want) {
    const got = ck.info(n).shape;
    if (got.join() !== shape.join()) throw new ConvertError(`checkpoint ${ck.dir}: ${n} is [${got}], its config implies [${shape}]`);
  }
}

/**
 * A GPTNeoX built from a checkpoint's config, holding its weights (`dtype` f32, or f64 for
 * gradient checks). `path` as for openModelCheckpoint.
 */
export function loadNeoXModel(path: string, opts: { backend?: Backend; dtype?: 'f32' | 'f64' } = {}): { model: GPTNeoX; config: NeoXConfig; dir: string } {
  const ck = openModelCheckpoint(path);
  const cfg = modelConfigOf(ck);
  checkTensors(ck, cfg);
  const model = new GPTNeoX(cfg, opts.backend ?? getBackend(), opts.dtype ?? 'f32');
  for (const [name, p] of model.namedParameters()) {
    const values = hostArrayOf(castHost(ck.read(name), 'F32', name)).data;
    const t = tensor(values, p.shape, p.dtype, p.backend);
    noGrad(() => {
      ops.scaleInPlace(p, 0);
      ops.addInPlace(p, t);
    });
    t.dispose();
  }
  return { model, config: ck.config as unknown as NeoXConfig, dir: ck.dir };
}

// ─── tokenizer and generation files ──────────────────────────────────────────────────────────────

/** Files that travel with a tokenizer (from-hf puts them beside it in OUT/hf/). */
const TOKENIZER_SIDE_FILES = ['tokenizer_config.json', 'special_tokens_map.json', 'added_tokens.json', 'chat_template.jinja'];

function tryJson(path: string): Record<string, unknown> | null {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  } catch {
    return null;
  }
}

/** The id of a token string in a tokenizer.json (added tokens, then the model vocabulary) or vocab.json. */
function tokenId(tok: string, tokenizerJson: Record<string, unknown> | null, vocabJson: Record<string, unknown> | null): number | null {
  const added = tokenizerJson?.['added_tokens'];
  if (Array.isArray(added)) {
    const hit = added.find((a) => (a as { content?: unknown }).content === tok) as { id?: unknown } | undefined;
    if (typeof hit?.id === 'number') return hit.id;
  }
  const vocab = (tokenizerJson?.['model'] as Record<string, unknown> | undefined)?.['vocab'] ?? vocabJson;
  const id = vocab && !Array.isArray(vocab) ? (vocab as Record<string, unknown>)[tok] : undefined;
  return typeof id === 'number' ? id : null;
}

interface TokenizerExport {
  bos: number | number[] | null;
  eos: number | number[] | null;
  /** generation_config.json to copy as is, when the tokenizer folder has one. */
  generationConfig: string | null;
}

/**
 * Copies the run's tokenizer files into OUT. generation_config.json is taken from the tokenizer's
 * folder, else from `genDirs` (a from-hf output's hf/ folder).
 */
function exportTokenizer(neox: NeoXConfig, outDir: string, genDirs: string[], notes: string[]): TokenizerExport {
  const type = neox.tokenizer_type;
  const vocab = neox.vocab_file;
  const copy = (src: string | null, name: string): boolean => {
    if (!src) return false;
    if (!existsSync(src)) {
      notes.push(`tokenizer file ${src} not found; not copied`);
      return false;
    }
    copyFileSync(src, join(outDir, name));
    return true;
  };
  if (!vocab && type !== 'CharLevelTokenizer') notes.push(`vocab_file is not set: no tokenizer files written`);
  let copied = false;
  let tokenizerJson: Record<string, unknown> | null = null;
  let vocabJson: Record<string, unknown> | null = null;
  if (type === 'HFTokenizer' || (type === 'HFGPT2Tokenizer' && vocab?.endsWith('.json'))) {
    copied = copy(vocab, 'tokenizer.json');
    if (copied) tokenizerJson = tryJson(vocab!);
  } else if (type === 'GPT2BPETokenizer' || type === 'HFGPT2Tokenizer') {
    copied = copy(vocab, 'vocab.json');
    copied = copy(neox.merge_file, 'merges.txt') && copied;
    if (copied) vocabJson = tryJson(vocab!);
  } else if (type === 'SPMTokenizer') {
    copied = copy(vocab, 'tokenizer.model');
  } else {
    notes.push(`tokenizer ${type} has no Hugging Face files; add a tokenizer to ${outDir} to use it with transformers`);
  }
  const dir = vocab && copied ? dirname(vocab) : null;
  let config: Record<string, unknown> | null = null;
  if (dir) {
    for (const f of TOKENIZER_SIDE_FILES) {
      if (existsSync(join(dir, f)) && basename(vocab!) !== f) copyFileSync(join(dir, f), join(outDir, f));
    }
    config = tryJson(join(dir, 'tokenizer_config.json'));
  }
  const gen = [...(dir ? [dir] : []), ...genDirs].map((d) => join(d, 'generation_config.json')).find((f) => existsSync(f));
  if (gen) {
    const g = tryJson(gen) ?? {};
    const id = (v: unknown): number | number[] | null => (typeof v === 'number' || Array.isArray(v) ? v as number | number[] : null);
    return { bos: id(g['bos_token_id']), eos: id(g['eos_token_id']), generationConfig: gen };
  }
  if (type === 'CharLevelTokenizer') return { bos: 0, eos: 0, generationConfig: null }; // GPT-NeoX's eod
  const named = (v: unknown): string | null => (typeof v === 'string' ? v : typeof (v as { content?: unknown })?.content === 'string' ? (v as { content: string }).content : null);
  const lookup = (key: string): number | null => {
    const tok = named(config?.[key]) ?? (tokenizerJson || vocabJson ? '<|endoftext|>' : null);
    return tok === null ? null : tokenId(tok, tokenizerJson, vocabJson);
  };
  return { bos: lookup('bos_token'), eos: lookup('eos_token'), generationConfig: null };
}

// ─── export ──────────────────────────────────────────────────────────────────────────────────────

const DTYPE_OF_PRECISION: Record<string, HFDType> = { bfloat16: 'bfloat16', bf16: 'bfloat16', fp16: 'float16', fp32: 'float32' };
const ST_OF: Record<HFDType, 'F32' | 'F16' | 'BF16'> = { float32: 'F32', float16: 'F16', bfloat16: 'BF16' };

/** Writes OUT from the checkpoint at CKPT (see the file header). */
export async function convertToHF(ckptPath: string, outDir: string, opts: ToHFOptions = {}): Promise<ToHFResult> {
  const log = opts.log ?? (() => {});
  const notes: string[] = [];
  const ck = openModelCheckpoint(ckptPath);
  const neox = ck.config as unknown as NeoXConfig;
  const cfg = modelConfigOf(ck);
  checkTensors(ck, cfg);
  const architecture = opts.architecture ?? inferArchitecture(cfg);
  const adapter = adapterFor(architecture);
  const unfit = adapter.unsupported(cfg);
  if (unfit.length) {
    throw new ConvertError(`the model in ${ck.dir} does not fit ${adapter.hfClass} (--architecture ${architecture}):\n  ${unfit.join('\n  ')}`);
  }
  const precision = opts.precision ?? 'auto';
  const dtype = DTYPE_OF_PRECISION[precision === 'auto' ? neox.precision ?? 'fp32' : precision];
  if (!dtype) throw new ConvertError(`--precision ${precision}: use auto, fp16, bf16 or fp32`);
  const target = ST_OF[dtype];

  // HF tensors: shapes from the rules, order from the HF model's state dict.
  const rules = adapter.rules(cfg);
  const owner = new Map<string, { rule: TensorRule; part: number }>();
  const descs = new Map<string, TensorDesc>();
  for (const rule of rules) {
    const shape = ck.info(rule.ours).shape;
    const rows = rule.rows ? partRows(rule) : [shape[0]!];
    rule.hf.forEach((n, part) => {
      owner.set(n, { rule, part });
      descs.set(n, { dtype: target, shape: [rows[part]!, ...shape.slice(1)] });
    });
  }
  const order = adapter.hfNames(cfg);
  if (order.length !== descs.size || order.some((n) => !descs.has(n))) {
    throw new ConvertError(`internal: the ${adapter.hfClass} table and its tensor list disagree`);
  }
  // q, k and v come from one of our tensors: split once, hand out the parts as they are asked for.
  const pending = new Map<TensorRule, { parts: HostTensor[]; left: number }>();
  const produce = (name: string): Uint8Array => {
    const { rule, part } = owner.get(name)!;
    let entry = pending.get(rule);
    if (!entry) {
      entry = { parts: splitRows(rule, ck.read(rule.ours)), left: rule.hf.length };
      pending.set(rule, entry);
    }
    if (--entry.left === 0) pending.delete(rule);
    return castHost(entry.parts[part]!, target, name).data;
  };
  mkdirSync(outDir, { recursive: true });
  const totalParameters = order.reduce((n, name) => n + numel(descs.get(name)!.shape), 0);
  const written = await writeShardedFrom(outDir, order.map((n) => [n, descs.get(n)!] as const), produce,
    opts.maxShardBytes ?? 5e9, { totalParameters });

  // A from-hf output (OUT/neox.yml, OUT/hf, OUT/checkpoint/global_step0) keeps the HF
  // generation_config.json in OUT/hf.
  const root = dirname(dirname(ck.dir));
  const genDirs = existsSync(join(root, 'neox.yml')) ? [join(root, 'hf')] : [];
  const tok = exportTokenizer(neox, outDir, genDirs, notes);
  const bos = opts.bosTokenId !== undefined ? opts.bosTokenId : tok.bos;
  const eos = opts.eosTokenId !== undefined ? opts.eosTokenId : tok.eos;
  const config = hfConfigJson(cfg, adapter, {
    dtype, maxPositions: neox.max_position_embeddings ?? neox.seq_length, initStd: neox.init_method_std ?? 0.02,
    bosTokenId: bos, eosTokenId: eos,
  });
  writeFileSync(join(outDir, 'config.json'), pythonJson(config));
  if (tok.generationConfig && opts.bosTokenId === undefined && opts.eosTokenId === undefined) {
    copyFileSync(tok.generationConfig, join(outDir, 'generation_config.json'));
  } else {
    writeFileSync(join(outDir, 'generation_config.json'), pythonJson(generationConfigJson(bos, eos)));
  }
  const files = written.files.map((f) => basename(f.path));
  log(`wrote ${outDir}: ${adapter.hfClass}, ${dtype}, ${order.length} tensors (${totalParameters} parameters) in ${files.length} file(s)`);
  for (const n of notes) log(`note: ${n}`);
  return { outDir, architecture, hfClass: adapter.hfClass, dtype, files, tensors: order.length, parameters: totalParameters, notes };
}
