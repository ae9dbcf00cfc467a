// A model and its tokenizer from a checkpoint folder, built from the config saved beside the
// weights, by the same path as the trainer: buildTokenizer → padVocabSize → resolveModelConfig.
//
// defines: loadModel (checkpoint folder → LoadedModel), buildModel (config → fresh model),
//          copyWeights (checkpoint tensors → the model's parameters), LoadedModel

import { loadCheckpoint, hostArrayOf, type HostTensor } from '../checkpoint/index.js';
import { padVocabSize, type NeoXConfig } from '../config/index.js';
import { buildTokenizer, type Tokenizer } from '../data/tokenizer.js';
import { GPTNeoX, resolveModelConfig, type NeoXModelKeys } from '../models/gpt_neox/index.js';
import * as ops from '../ops/index.js';
import type { Backend } from '../tensor/backend.js';
import { toF32 } from '../tensor/dtype.js';
import { noGrad, scope, tensor } from '../tensor/engine.js';
import { selectBackend } from '../train/device.js';

export class ModelLoadError extends Error {
  override name = 'NeoxError';
}

export interface LoadedModel {
  model: GPTNeoX;
  tokenizer: Tokenizer;
  /** The merged config the checkpoint was trained with. */
  config: NeoXConfig;
  /** The checkpoint's step and folder. */
  step: number;
  dir: string;
  /** Most tokens the model reads at once: the config's seq_length (GPT-NeoX's generation limit). */
  contextLength: number;
}

export interface LoadModelOptions {
  /** auto | cpu | cuda (default: the checkpoint config's `device`, else auto). */
  device?: string;
  /** Load global_step{step} instead of `latest`. */
  step?: number;
}

/** The network a config describes, with fresh weights, and its tokenizer. */
export function buildModel(config: NeoXConfig, backend: Backend): { model: GPTNeoX; tokenizer: Tokenizer } {
  const tokenizer = buildTokenizer(config);
  const vocab = padVocabSize(tokenizer.vocabSize, config.make_vocab_size_divisible_by, config.model_parallel_size);
  const model = new GPTNeoX(resolveModelConfig(config as unknown as NeoXModelKeys, vocab), backend);
  model.eval();
  return { model, tokenizer };
}

/** Loads a checkpoint folder (a save folder with `latest`, or one global_step{N}) for inference. */
export async function loadModel(dir: string, opts: LoadModelOptions = {}): Promise<LoadedModel> {
  const ckpt = loadCheckpoint(dir, { weightsOnly: true, step: opts.step });
  const config = ckpt.config as unknown as NeoXConfig;
  if (typeof config.hidden_size !== 'number' || typeof config.tokenizer_type !== 'string') {
    throw new ModelLoadError(`checkpoint ${ckpt.dir}: config.json does not describe a model (no hidden_size / tokenizer_type)`);
  }
  const backend = await selectBackend(opts.device ?? config.device ?? 'auto');
  const { model, tokenizer } = buildModel(config, backend);
  copyWeights(model, ckpt.model, ckpt.dir);
  return { model, tokenizer, config, step: ckpt.step, dir: ckpt.dir, contextLength: config.seq_length };
}

/** Copies every parameter from `tensors` (by name), converting dtypes; fails naming what is missing or mis-shaped. */
export function copyWeights(model: GPTNeoX, tensors: ReadonlyMap<string, HostTensor>, where: string): void {
  const named = model.namedParameters();
  for (const [name, p] of named) {
    const src = tensors.get(name);
    if (!src) throw new ModelLoadError(`checkpoint ${where} has no tensor ${name}`);
    if (src.shape.join(',') !== p.shape.join(',')) {
      throw new ModelLoadError(`checkpoint ${where}: ${name} has shape [${src.shape}], the model expects [${p.shape}]`);
    }
    const { dtype, data } = hostArrayOf(src);
    // 16-bit floats arrive as raw words; tensor() takes numbers for those, so widen them on the host.
    const [values, as] = dtype === 'bf16' || dtype === 'f16' ? [toF32(dtype, data), 'f32' as const] : [data, dtype];
    noGrad(() => scope(() => {
      const t = ops.cast(tensor(values, p.shape, as, p.backend), p.dtype);
      ops.scaleInPlace(p, 0);
      ops.addInPlace(p, t);
    }));
  }
  const expected = new Set(named.map(([n]) => n));
  const extra = [...tensors.keys()].filter((n) => !expected.has(n));
  if (extra.length) throw new ModelLoadError(`checkpoint ${where} has tensors this model does not: ${extra.slice(0, 5).join(', ')}${extra.length > 5 ? ', …' : ''}`);
}
