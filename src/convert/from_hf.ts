// `neox convert from-hf HFDIR OUT`: a Hugging Face GPT-NeoX/Pythia, Llama or Mistral folder
// (config.json + model.safetensors or shards, fp32/fp16/bf16) → a NeoX.ts run folder:
//
//   OUT/neox.yml                        GPT-NeoX model keys that rebuild the HF network exactly,
//                                       precision, tokenizer, `load: OUT/checkpoint`, `finetune: true`
//   OUT/checkpoint/latest               → global_step0
//   OUT/checkpoint/global_step0/        model.safetensors (fp32, our names and layouts), state.json,
//                                       config.json (the merged config), manifest.json
//   OUT/hf/                             the HF folder's tokenizer files, generation_config.json and
//                                       its config.json (for reference); neox.yml points at them
//
// Fine-tune with `neox train OUT/neox.yml your_training.yml` (batch sizes, optimizer, data).
// Tensors stream one at a time from the HF shards into the checkpoint, widened to fp32 (exact);
// every HF tensor must be used (buffers such as rotary_emb.inv_freq excepted) and every one of ours
// found, with the shapes the config implies, before anything is written.
//
// defines: convertFromHF, FromHFOptions, FromHFResult, castHost

import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

import { CheckpointWriter } from '../checkpoint/checkpoint.js';
import {
  ShardedSafetensors, hostArrayOf, hostTensor, numel, type HostTensor, type STDType, type TensorInfo,
} from '../checkpoint/safetensors.js';
import { loadConfig, padVocabSize } from '../config/index.js';
import { resolveModelConfig, type GPTNeoXConfig } from '../models/gpt_neox/config.js';
import { joinRows, ourParameters, partRows } from '../models/gpt_neox/hf_adapter.js';
import { f16ToF32, f32ToBf16, f32ToF16 } from '../tensor/dtype.js';
import { ConvertError, adapterFor, neoxModelKeys, readHFConfig, type HFDType, type HFModelSpec } from './hf_config.js';

export interface FromHFOptions {
  /** Progress lines (default: none). */
  log?: (line: string) => void;
}

export interface FromHFResult {
  outDir: string;
  /** OUT/neox.yml */
  configPath: string;
  /** OUT/checkpoint (the save folder: `load` in neox.yml) */
  checkpointDir: string;
  spec: HFModelSpec;
  model: GPTNeoXConfig;
  dtype: HFDType;
  tensors: number;
  parameters: number;
  /** Things the user should know (no tokenizer found, ...). */
  notes: string[];
}

/** Files copied from the HF folder into OUT/hf/ when present. */
const SIDE_FILES = [
  'config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json',
  'added_tokens.json', 'vocab.json', 'merges.txt', 'tokenizer.model', 'chat_template.jinja',
];

const HF_DTYPE_OF: Partial<Record<STDType, HFDType>> = { F32: 'float32', F16: 'float16', BF16: 'bfloat16', F64: 'float32' };
const PRECISION_OF: Record<HFDType, string> = { float32: 'fp32', float16: 'fp16', bfloat16: 'bfloat16' };

/** A float tensor converted to F32, F16 or BF16 (round to nearest even when narrowing). */
export function castHost(t: HostTensor, to: 'F32' | 'F16' | 'BF16', name: string): HostTensor {
  if (t.dtype === to) return t;
  if (!['F32', 'F16', 'BF16', 'F64'].includes(t.dtype)) throw new ConvertError(`tensor ${name} is ${t.dtype}; only float tensors convert`);
  const { data } = hostArrayOf(t);
  const n = numel(t.shape);
  let f32: Float32Array;
  if (t.dtype === 'F32') f32 = data as Float32Array;
  else if (t.dtype === 'BF16') {
    const u32 = new Uint32Array(n); // bf16 is the top half of an f32: exact, NaN payloads kept
    for (let i = 0; i < n; i++) u32[i] = (data[i]! << 16) >>> 0;
    f32 = new Float32Array(u32.buffer);
  } else if (t.dtype === 'F16') {
    f32 = new Float32Array(n);
    for (let i = 0; i < n; i++) f32[i] = f16ToF32(data[i]!);
  } else f32 = Float32Array.from(data as Float64Array);
  if (to === 'F32') return hostTensor('f32', t.shape, f32);
  const out = new Uint16Array(n);
  if (to === 'BF16') for (let i = 0; i < n; i++) out[i] = f32ToBf16(f32[i]!);
  else {
    for (let i = 0; i < n; i++) {
      const h = f32ToF16(f32[i]!);
      if ((h & 0x7fff) === 0x7c00 && Number.isFinite(f32[i]!)) {
        throw new ConvertError(`tensor ${name} holds ${f32[i]}, beyond fp16's range (±65504); export in bf16 or fp32`);
      }
      out[i] = h;
    }
  }
  return hostTensor(to === 'BF16' ? 'bf16' : 'f16', t.shape, out);
}

/** A number as PyYAML 1.1 reads it back as the same float (1e-7 would be a string there). */
function yamlNumber(x: number): string {
  if (Number.isInteger(x)) return String(x);
  const s = String(x);
  if (s.includes('.')) return s;
  return s.includes('e') ? s.replace('e', '.0e') : `${s}.0`;
}

function yamlValue(v: unknown): string {
  if (typeof v === 'number') return yamlNumber(v);
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (v === null) return 'null';
  return JSON.stringify(v); // a YAML double-quoted string
}

function readJson(path: string): unknown {
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new ConvertError(`${path}: cannot read JSON (${(e as Error).message})`);
  }
}

/** Converts HFDIR into OUT (see the file header). Throws ConvertError naming what does not fit. */
export async function convertFromHF(hfDir: string, outDir: string, opts: FromHFOptions = {}): Promise<FromHFResult> {
  const log = opts.log ?? (() => {});
  const notes: string[] = [];
  const configFile = join(hfDir, 'config.json');
  if (!existsSync(configFile)) throw new ConvertError(`${hfDir} has no config.json: not a Hugging Face model folder`);
  const spec = readHFConfig(readJson(configFile), configFile);
  const adapter = adapterFor(spec.architecture);
  const hasWeights = existsSync(join(hfDir, 'model.safetensors')) || existsSync(join(hfDir, 'model.safetensors.index.json'));
  if (!hasWeights) {
    throw new ConvertError(`${hfDir} has no model.safetensors or model.safetensors.index.json ` +
      '(pytorch_model.bin is not read: save the model with safe_serialization first)');
  }
  const st = new ShardedSafetensors(hfDir);
  log(`${hfDir}: ${adapter.hfClass}, config in the ${spec.form === 'transformers5' ? 'transformers 5' : 'transformers 4'} form, ${st.files.size} weight file(s)`);

  // HF names present, by the canonical name of the adapter's table.
  const present = new Map<string, string>();
  for (const name of st.names()) {
    if (adapter.skipOnImport.some((re) => re.test(name))) continue;
    const canonical = adapter.aliases[name] ?? name;
    if (present.has(canonical)) throw new ConvertError(`${hfDir} holds both ${present.get(canonical)} and ${name}`);
    present.set(canonical, name);
  }
  // The precision is the weights' own dtype (config.json's may disagree), so that to-hf
  // --precision auto writes the same bytes back.
  const dtypes = [...new Set(st.names().map((n) => st.info(n).dtype))];
  const embedInfo = st.has(present.get(adapter.embedName) ?? '') ? st.info(present.get(adapter.embedName)!) : null;
  const dtype: HFDType = (embedInfo && HF_DTYPE_OF[embedInfo.dtype]) ?? spec.dtype ?? 'float32';
  if (dtypes.length > 1) notes.push(`the weights mix ${dtypes.join(', ')}; the run's precision is ${dtype} and to-hf writes every tensor in one dtype`);

  // OUT/hf will hold the tokenizer and generation files (copied once the weights have checked out).
  const out = resolve(outDir);
  const sideDir = join(out, 'hf');
  const copied = SIDE_FILES.filter((f) => existsSync(join(hfDir, f)));
  const tokenizer: Record<string, unknown> = {};
  if (copied.includes('tokenizer.json')) {
    Object.assign(tokenizer, { tokenizer_type: 'HFTokenizer', vocab_file: join(sideDir, 'tokenizer.json') });
  } else if (copied.includes('vocab.json') && copied.includes('merges.txt')) {
    Object.assign(tokenizer, { tokenizer_type: 'GPT2BPETokenizer', vocab_file: join(sideDir, 'vocab.json'), merge_file: join(sideDir, 'merges.txt') });
  } else if (copied.includes('tokenizer.model')) {
    Object.assign(tokenizer, { tokenizer_type: 'SPMTokenizer', vocab_file: join(sideDir, 'tokenizer.model') });
  } else {
    notes.push(`no tokenizer files in ${hfDir}: set tokenizer_type and vocab_file in your training config`);
  }

  // The config exactly as `neox train` will load it from neox.yml (written last).
  const checkpointDir = join(out, 'checkpoint');
  const configPath = join(out, 'neox.yml');
  const keys: Record<string, unknown> = {
    ...neoxModelKeys(spec), precision: PRECISION_OF[dtype], ...tokenizer, load: checkpointDir, finetune: true,
  };
  const loadOpts = { overrides: { train_micro_batch_size_per_gpu: 1 } };
  const c = loadConfig([], { overrides: { ...keys, ...loadOpts.overrides } }).config;
  const cfg = resolveModelConfig(c, padVocabSize(spec.vocabSize, c.make_vocab_size_divisible_by, c.model_parallel_size));
  const mismatch = ([
    ['vocab size', cfg.vocabSize, spec.vocabSize], ['MLP width', cfg.ffnSize, spec.intermediateSize],
    ['kv heads', cfg.numKvHeads, spec.numKvHeads], ['sliding window', cfg.slidingWindow, spec.slidingWindow],
    ['activation', cfg.activation, spec.activation],
  ] as const).filter(([, a, b]) => a !== b);
  if (mismatch.length) throw new ConvertError(`internal: the keys resolve to ${mismatch.map(([w, a, b]) => `${w} ${a}, not ${b}`).join('; ')}`);
  const unfit = adapter.unsupported(cfg);
  if (unfit.length) throw new ConvertError(`internal: the converted config does not fit ${adapter.hfClass}: ${unfit.join('; ')}`);

  // Every HF tensor accounted for, every one of ours found with the right shape, before writing.
  const expected = new Set(adapter.hfNames(cfg));
  if (spec.tied && present.has(adapter.headName) && !expected.has(adapter.headName)) {
    const head = castHost(st.read(present.get(adapter.headName)!), 'F32', adapter.headName).data;
    const embed = castHost(st.read(present.get(adapter.embedName)!), 'F32', adapter.embedName).data;
    if (head.length !== embed.length || !head.every((b, i) => b === embed[i])) {
      throw new ConvertError(`${configFile} says tie_word_embeddings true, but ${adapter.headName} differs from ${adapter.embedName}`);
    }
    present.delete(adapter.headName);
  }
  const missing = [...expected].filter((n) => !present.has(n));
  const extra = [...present.keys()].filter((n) => !expected.has(n));
  if (missing.length || extra.length) {
    const list = (xs: string[]): string => xs.slice(0, 8).join(', ') + (xs.length > 8 ? `, … (${xs.length} in all)` : '');
    throw new ConvertError(`${hfDir}: the weights do not match config.json` +
      (missing.length ? `; missing ${list(missing)}` : '') + (extra.length ? `; not part of a ${adapter.hfClass} with this config: ${list(extra)}` : ''));
  }
  const shapes = new Map(ourParameters(cfg));
  const rules = adapter.rules(cfg);
  for (const rule of rules) {
    const infos: TensorInfo[] = rule.hf.map((n) => st.info(present.get(n)!));
    infos.forEach((info, p) => {
      if (!['F32', 'F16', 'BF16', 'F64'].includes(info.dtype)) throw new ConvertError(`${rule.hf[p]} is ${info.dtype}; only float weights convert`);
    });
    const rows = rule.rows ? partRows(rule) : [infos[0]!.shape[0]!];
    const want = shapes.get(rule.ours)!;
    const got = [rows.reduce((a, b) => a + b, 0), ...infos[0]!.shape.slice(1)];
    const partsOk = infos.every((info, p) => info.shape[0] === rows[p] && info.shape.slice(1).join() === want.slice(1).join());
    if (!partsOk || got.join() !== want.join()) {
      throw new ConvertError(`${rule.hf.map((n, p) => `${n} [${infos[p]!.shape}]`).join(', ')} do not make ${rule.ours} [${want}] as config.json implies`);
    }
  }

  // The checkpoint: tensor by tensor, widened to fp32.
  const byOurs = new Map(rules.map((r) => [r.ours, r]));
  const w = new CheckpointWriter(checkpointDir, 0);
  let parameters = 0;
  try {
    await w.addSafetensorsFrom('model.safetensors', 'model',
      rules.map((r) => [r.ours, { dtype: 'F32' as const, shape: shapes.get(r.ours)! }] as const),
      (name) => {
        const rule = byOurs.get(name)!;
        const t = joinRows(rule, rule.hf.map((n) => castHost(st.read(present.get(n)!), 'F32', n)));
        parameters += numel(t.shape);
        return t.data;
      });
    w.addJson('state.json', 'state', {
      iteration: 0, optimizer_step: 0, consumed_train_samples: 0,
      converted_from: { path: resolve(hfDir), model_type: spec.modelType, dtype, config_form: spec.form },
    });
    w.addJson('config.json', 'config', c);
    w.commit();
  } catch (e) {
    w.abort();
    throw e;
  }

  // OUT/hf and neox.yml; the file must load to the very config checked above.
  mkdirSync(sideDir, { recursive: true });
  for (const f of copied) copyFileSync(join(hfDir, f), join(sideDir, f));
  const section = (title: string, names: string[]): string[] =>
    names.length ? [`# ${title}`, ...names.map((k) => `${k}: ${yamlValue(keys[k])}`), ''] : [];
  writeFileSync(configPath, [
    `# Converted by \`neox convert from-hf\` from ${resolve(hfDir)}`,
    `# (${adapter.hfClass}, ${spec.form === 'transformers5' ? 'transformers 5' : 'transformers 4'} config form, ${dtype} weights).`,
    '# The model keys rebuild the Hugging Face network exactly. Put batch sizes, optimizer, schedule and',
    '# data in a second file:  neox train neox.yml finetune.yml',
    '',
    ...section('model', Object.keys(neoxModelKeys(spec))),
    ...section('precision of the Hugging Face weights', ['precision']),
    ...section('tokenizer (copied into hf/)', Object.keys(tokenizer)),
    ...section('start from the converted weights (weights only, iteration 0)', ['load', 'finetune']),
  ].join('\n'));
  if (JSON.stringify(loadConfig([configPath], loadOpts).config) !== JSON.stringify(c)) {
    throw new ConvertError(`internal: ${configPath} does not load to the config the checkpoint was checked against`);
  }
  log(`wrote ${checkpointDir} (${rules.length} tensors, ${parameters} parameters) and ${configPath}`);
  for (const n of notes) log(`note: ${n}`);
  return { outDir: out, configPath, checkpointDir, spec, model: cfg, dtype, tensors: rules.length, parameters, notes };
}
