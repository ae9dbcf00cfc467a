// The training loop, readable top to bottom:
//   set up (device, tokenizer, data, model, optimizer, resume) → for each step: micro-batches with
//   gradient accumulation → clip → AdamW → LR schedule → log / evaluate / checkpoint.
//
// Determinism: batch k, dropout seeds and the LR are functions of the iteration, so a run stopped
// and resumed from a checkpoint computes exactly what the uninterrupted run would have.
// Data parallelism (WORLD_SIZE > 1): without ZeRO, gradient buckets are averaged across ranks
// while the last micro-batch's backward runs (DataParallel.beginBackward / finish).
// With zero_optimization.stage 1 or 2, ZeroOptimizer replaces that and AdamW: its buckets are
// reduce-scattered while backward runs (ZeroOptimizer.beginBackward / finish): stage 2 every
// micro-batch's, into this rank's gradient shard, freeing the full gradients bucket by bucket;
// stage 1 the last micro-batch's, in place. update() clips, updates this rank's shard and
// all-gathers the parameters. Stage 3 (NCCL only: it needs synchronous collectives) keeps only
// this rank's shard of the parameters too: the model gathers each unit's parameters around its
// forward (GPTNeoX.setParameterGather), update() gathers nothing, and checkpoints gather whole
// tensors (ZeroOptimizer.fullParameters), so they load at any world size and stage.

import { existsSync } from 'node:fs';
import { basename, extname, join } from 'node:path';
import { loadCheckpoint, saveCheckpoint, hostTensor, hostArrayOf, type HostTensor } from '../checkpoint/index.js';
import type { LoadedConfig, NeoXConfig } from '../config/index.js';
import { assertTrainable, padVocabSize } from '../config/index.js';
import { LossScaler, type LossScalerState } from './loss_scaler.js';
import { type Batch, BatchIterator, buildDatasets } from '../data/loader.js';
import { buildTokenizer, type Tokenizer } from '../data/tokenizer.js';
import { indexPaths } from '../data/indexed_dataset.js';
import { preprocess } from '../data/preprocess.js';
import { GPTNeoX, resolveModelConfig } from '../models/gpt_neox/index.js';
import * as ops from '../ops/index.js';
import { AdamW, clipFactorOf, gradSquaredNorm, learningRate, type ScheduleOptions } from '../optim/index.js';
import type { Backend } from '../tensor/backend.js';
import { backward, noGrad, scope, tensor, zeros } from '../tensor/engine.js';
import type { Tensor } from '../tensor/tensor.js';
import { selectBackend } from './device.js';
import { initDistributed } from '../parallel/index.js';
import { type FullStateEntry, ZeroOptimizer } from '../parallel/zero.js';
import { syncCollectivesOf } from '../parallel/process_group.js';
import { TrainLogger, humanCount } from './logger.js';
import { wandbGroupName } from './wandb.js';
import { generate } from './sample.js';
import { curriculumSeqLength, validateCurriculum } from './curriculum.js';
import { runEvalTasks } from '../infer/eval.js';
import { resolveTaskSpec } from '../infer/tasks.js';

export class TrainingError extends Error {
  override name = 'NeoxError';
}

export interface TrainOptions {
  /** Overrides the config's `device`. */
  device?: string;
  /** Where log lines go (default console.log). */
  print?: (line: string) => void;
  /** Stop after this many iterations in this process (tests of resume); the config's train_iters still sets the schedule. */
  stopAfter?: number;
}

export interface TrainResult {
  iteration: number;
  /** Mean training loss of each completed iteration, in order (this process only). */
  losses: number[];
  validLoss: number | null;
  runDir: string | null;
  model: GPTNeoX;
  tokenizer: Tokenizer;
}

export async function train(loaded: LoadedConfig, opts: TrainOptions = {}): Promise<TrainResult> {
  const cfg = loaded.config;
  assertTrainable(loaded); // tensor / pipeline parallelism: refused before any work
  const backend = await selectBackend(opts.device ?? cfg.device);
  // Data parallelism when launched with WORLD_SIZE > 1 (neox launch, Slurm, MPI); null otherwise.
  const dist = await initDistributed(cfg, backend);
  const rank = dist?.rank ?? 0;
  const dp = dist?.worldSize ?? 1;
  const isMain = rank === 0;
  const runDir = cfg.log_dir ?? cfg.save ?? join('runs', basename(loaded.sources.at(-1) ?? 'run', extname(loaded.sources.at(-1) ?? '')));
  const log = new TrainLogger(isMain ? runDir : null, isMain ? opts.print : () => {}, { tensorboardDir: isMain ? cfg.tensorboard_dir : null });
  if (cfg.precision !== 'fp32' && backend.name === 'cpu') {
    log.info(`note: precision ${cfg.precision} applies on CUDA; the CPU backend computes in fp32`);
  }
  for (const t of cfg.eval_tasks ?? []) resolveTaskSpec(t); // fail early on a missing task file
  if (!cfg.train_iters && !cfg.train_epochs) throw new TrainingError('set train_iters (or train_epochs)');
  // Weights & Biases, rank 0 only like TensorBoard: GPT-NeoX's group naming (a random suffix per launch)
  // and the whole config; no API key or an unreachable server → a warning, training goes on.
  if (isMain && cfg.use_wandb) {
    await log.startWandb({
      project: cfg.wandb_project, entity: cfg.wandb_team, group: wandbGroupName(cfg.wandb_group),
      name: cfg.wandb_run_name, host: cfg.wandb_host, config: cfg as unknown as Record<string, unknown>,
    });
  }

  try {
    return await run({ loaded, opts, backend, dist, runDir, log });
  } catch (e) {
    await log.close(1); // the TensorBoard file flushed, the W&B run marked as failed
    throw e;
  }
}

/** What train() has set up before the run: the device, the process group, where logs go. */
interface RunContext {
  loaded: LoadedConfig;
  opts: TrainOptions;
  backend: Backend;
  dist: Awaited<ReturnType<typeof initDistributed>>;
  runDir: string;
  log: TrainLogger;
}

/** The run: data, model, optimizer, resume, the loop with evaluation and checkpoints, samples. */
async function run({ loaded, opts, backend, dist, runDir, log }: RunContext): Promise<TrainResult> {
  const cfg = loaded.config;
  const rank = dist?.rank ?? 0;
  const dp = dist?.worldSize ?? 1; // data-parallel size
  const isMain = rank === 0;

  // --- tokenizer and data
  const tokenizer = buildTokenizer(cfg);
  // Rank 0 preprocesses and caches the index maps first; the others then read them.
  if (isMain) await ensureData(cfg, log);
  await dist?.barrier('data');
  const buildData = () => buildDatasets(cfg, { log: (m) => log.record('data', { message: m }) });
  let data = isMain ? buildData() : null;
  await dist?.barrier('index-maps');
  data ??= buildData();
  const trainIters = data.trainIters; // train_iters, or what train_epochs amounts to
  if (!data.train) throw new TrainingError('the train split is empty: check `split` and the data');
  const micro = cfg.train_micro_batch_size_per_gpu;
  const gas = cfg.gradient_accumulation_steps;
  const iterOpts = { eodMaskLoss: cfg.eod_mask_loss, eodId: tokenizer.eodId };

  // --- model and optimizer
  const vocab = padVocabSize(tokenizer.vocabSize, cfg.make_vocab_size_divisible_by, cfg.model_parallel_size);
  const model = new GPTNeoX(resolveModelConfig(cfg, vocab), backend);
  // Mixed precision on CUDA: f32 master weights, gradients and AdamW states; bf16/f16 compute.
  const computeDtype = backend.name === 'cpu' ? 'f32' : cfg.precision === 'bfloat16' ? 'bf16' : cfg.precision === 'fp16' ? 'f16' : 'f32';
  model.setComputeDtype(computeDtype);
  if (cfg.checkpoint_activations) model.setActivationCheckpointing(cfg.checkpoint_num_layers);
  if (cfg.loss_chunk_tokens) model.setLossChunk(cfg.loss_chunk_tokens);
  const lossScaler = computeDtype === 'f16' ? new LossScaler(cfg.fp16) : null;
  const { decay, noDecay } = model.weightDecayGroups();
  const opt = cfg.optimizer.params;
  const groups = [{ params: decay, weightDecay: cfg.weight_decay }, { params: noDecay, weightDecay: 0 }];
  const adamOpts = { betas: [opt.betas?.[0] ?? 0.9, opt.betas?.[1] ?? 0.999] as [number, number], eps: opt.eps ?? 1e-8 };
  // ZeRO shards AdamW's moments (stage 1) and the gradients (stage 2) across the data-parallel
  // ranks; without it every rank holds them all. One process has nothing to shard: plain AdamW.
  const zeroStage = cfg.zero_optimization?.stage ?? 0;
  if (zeroStage > 3) throw new TrainingError(`zero_optimization.stage ${zeroStage} does not exist; use 1 (optimizer states), 2 (and gradients) or 3 (and parameters)`);
  if (zeroStage === 3 && dist && !syncCollectivesOf(dist.group)) {
    throw new TrainingError(`zero_optimization.stage 3 needs the NCCL group (device cuda): it gathers each layer's parameters inside forward and backward ` +
      `with synchronous collectives, which the CPU group (${dist.group.backend}) does not have; use stage 1 or 2 on CPU ranks`);
  }
  // Stage 3 shards the parameters at once: every rank starts from rank 0's first.
  if (zeroStage === 3 && dist) await dist.broadcastParameters(model.parameters());
  const zero = dist && zeroStage > 0
    ? new ZeroOptimizer(dist.group, groups, {
      ...adamOpts, stage: zeroStage as 1 | 2 | 3, bucketElements: cfg.zero_optimization.reduce_bucket_size,
      names: new Map(model.namedParameters().map(([n, p]) => [p, n] as const)),
      order: model.parameters(), // buckets in backward order, not the groups' (all matrices, then all vectors)
      units: zeroStage === 3 ? model.gatherUnits() : undefined, // stage 3: buckets per unit, gathered around its forward
    })
    : null;
  if (zero?.stage === 3) model.setParameterGather(zero.parameterGather());
  const optimizer = zero ?? new AdamW(groups, adamOpts);
  if (zero) {
    const m = zero.memory();
    log.info(`ZeRO-${zeroStage}: ${humanCount(m.optimizerState)}B of optimizer state on this rank (1/${dp} of ${humanCount(8 * model.numParameters())}B), ` +
      `${humanCount(m.gradients)}B of gradients (${zeroStage >= 2 ? `a 1/${dp} shard` : 'all'}), ` +
      `${humanCount(m.parameters)}B of f32 parameters (${zeroStage === 3 ? `a 1/${dp} shard, each unit gathered around its forward` : 'all'}); ` +
      `${zero.layout.buckets.length} bucket${zero.layout.buckets.length === 1 ? '' : 's'} reduce-scattered during backward`);
  }
  const decayIters = cfg.lr_decay_iters ?? trainIters;
  const schedule: ScheduleOptions = {
    lr: cfg.lr, minLr: cfg.min_lr, warmupIters: Math.floor(cfg.warmup * decayIters), decayIters, style: cfg.lr_decay_style,
  };
  const flopsPerToken = model.flopsPerToken(cfg.seq_length);
  log.info(`model: ${humanCount(model.numParameters())} parameters (${humanCount(model.nonEmbeddingParameters())} non-embedding), ` +
    `${cfg.num_layers} layers, hidden ${cfg.hidden_size}, vocab ${vocab}; device ${backend.name}; ${trainIters} iterations of ${cfg.train_batch_size} × ${cfg.seq_length} tokens`);

  // --- resume
  let iteration = 0;
  // fp16 steps skipped for overflow: counted as iterations (checkpoints, logs, data) but, as in
  // DeepSpeed, not by the learning-rate schedule.
  let skippedIters = 0;
  if (cfg.load && existsSync(join(cfg.load, 'latest'))) {
    ({ iteration, skippedIters } = restore(cfg, model, optimizer, backend, log, lossScaler));
    if (iteration >= trainIters) log.info(`nothing left to train: the checkpoint is at iteration ${iteration} of ${trainIters} (raise train_iters, or delete ${cfg.load} to start over)`);
  }
  if (dist && zero?.stage !== 3) await dist.broadcastParameters(model.parameters());

  // A loader step is micro × dp samples; this rank reads its `micro` rows of it.
  const distOpts = { ...iterOpts, rank, worldSize: dp };
  const trainBatches = new BatchIterator(data.train, micro * dp, 0, distOpts);
  const validBatches = data.valid ? new BatchIterator(data.valid, micro * dp, 0, distOpts) : null;
  const toTensors = (b: Batch, length = b.seqLength) => batchTensors(b, backend, length);
  const curriculum = cfg.curriculum_learning?.enabled ? cfg.curriculum_learning : null;
  if (curriculum) validateCurriculum(curriculum, cfg.seq_length);

  const params = model.parameters();
  // Data parallelism without ZeRO: the last micro-batch's backward all-reduces each gradient
  // bucket as soon as it is complete (DataParallel.beginBackward / finish), as PyTorch DDP does.
  const ddp = dist && !zero ? dist.dataParallel(params, model.namedParameters().map(([n]) => n)) : null;
  const losses: number[] = [];
  let validLoss: number | null = null;
  let windowStart = performance.now();
  let windowSteps = 0;
  let windowTokens = 0;
  const startedAt = performance.now();
  const startIteration = iteration;
  const stopAt = opts.stopAfter !== undefined ? Math.min(trainIters, iteration + opts.stopAfter) : trainIters;

  // --- the loop
  while (iteration < stopAt) {
    const lr = learningRate(iteration - skippedIters, schedule);
    const seqLength = curriculum ? curriculumSeqLength(curriculum, iteration + 1) : cfg.seq_length;
    model.train();
    // Micro-batch losses add up on the device: one value reaches the host per iteration.
    const lossSum = zeros([], 'f32', backend);
    for (let m = 0; m < gas; m++) {
      const k = iteration * gas + m; // loader step
      model.setDropoutSeed(cfg.seed + k * 2 ** 32);
      // ZeRO-2 reduce-scatters every micro-batch's gradients as backward makes them (the full
      // gradients of one bucket or two exist at a time); ZeRO-1, and DDP, the last micro-batch's.
      const zeroHook = zero && (zero.stage !== 1 || m === gas - 1);
      scope(() => {
        const [ids, labels, mask, maskCount] = toTensors(trainBatches.batch(k), seqLength);
        const loss = model.loss(ids, labels, mask, maskCount);
        const factor = (lossScaler?.scale ?? 1) / gas;
        // The factor rides in as the seed gradient, so `loss` stays the root (and stays readable).
        const onGradReady = zeroHook ? zero.beginBackward() : ddp && m === gas - 1 ? ddp.beginBackward() : undefined;
        backward(loss, factor === 1 ? undefined : ops.fill([], factor, loss.dtype, backend), { onGradReady });
        ops.addInPlace(lossSum, ops.cast(loss, 'f32'));
      });
      if (zeroHook) await zero.finish(); // the buckets backward did not complete, then wait for all
    }
    // The mean loss of the iteration over all ranks (reading it waits for the device).
    const readLoss = async (): Promise<number> => {
      const local = lossSum.item() / gas;
      lossSum.dispose();
      return dist ? (await dist.allReduceNumbers([local]))[0]! : local;
    };
    let norm: number;
    let loss: number;
    let overflow = false; // fp16: a non-finite gradient norm, the step skipped on the device
    if (optimizer instanceof ZeroOptimizer) {
      loss = await readLoss();
      if (!lossScaler && !Number.isFinite(loss)) throw nonFinite(loss, iteration, cfg, optimizer);
      // Clip by the global norm (of the reduce-scattered gradients, fp16: unscaled), update this
      // rank's shard, all-gather the parameters. Every rank sees the same norm, so under fp16 they
      // agree on an overflow, which the device has already skipped.
      norm = (await optimizer.update(lr, cfg.gradient_clipping, 1 / (lossScaler?.scale ?? 1))).norm;
      overflow = lossScaler !== null && !lossScaler.update(Number.isFinite(norm));
      if (!overflow && !Number.isFinite(loss)) throw nonFinite(loss, iteration, cfg, optimizer);
      if (!overflow && !Number.isFinite(norm)) throw nonFinite(norm, iteration, cfg, optimizer, 'gradient norm'); // the device skipped the step
    } else {
      if (ddp) await ddp.finish(); // the buckets backward did not complete, then wait for all
      // fp16: gradients carry the loss scale; an overflow skips the step and lowers the scale.
      // The clip factor stays on the device and the update skips itself when the norm is not
      // finite, so the host reads the norm only now, after the step is queued.
      const unscale = 1 / (lossScaler?.scale ?? 1);
      const sumSquares = gradSquaredNorm(params);
      if (sumSquares) {
        noGrad(() => scope(() => optimizer.update(lr, unscale, clipFactorOf(sumSquares, cfg.gradient_clipping, unscale))));
        norm = Math.sqrt(sumSquares.item()) * unscale;
        sumSquares.dispose();
      } else {
        norm = 0;
      }
      loss = await readLoss();
      if (!Number.isFinite(norm)) optimizer.undoStep(); // the device skipped it
      overflow = lossScaler !== null && !lossScaler.update(Number.isFinite(norm));
      if (!overflow && !Number.isFinite(loss)) throw nonFinite(loss, iteration, cfg, optimizer);
      if (!overflow && !Number.isFinite(norm)) throw nonFinite(norm, iteration, cfg, optimizer, 'gradient norm');
    }
    optimizer.zeroGrad();
    iteration++;
    windowSteps++;
    windowTokens += cfg.train_batch_size * seqLength;
    if (overflow) {
      // The update was skipped; the iteration still counts (its logs, evaluation and checkpoint below happen).
      skippedIters++;
      log.info(`iteration ${iteration}: gradient overflow, step skipped; loss scale now ${lossScaler!.scale}`);
      log.record('skipped', { iteration, loss_scale: lossScaler!.scale });
    } else {
      losses.push(loss);
      log.record('train', { iteration, loss, lr, grad_norm: norm, ...(curriculum ? { seq_length: seqLength } : {}) });
    }
    const perIter = (performance.now() - startedAt) / (iteration - startIteration);
    log.progress(iteration, trainIters, `loss ${loss.toFixed(4)} | ${formatDuration(perIter * (trainIters - iteration))} left`);

    if (iteration % cfg.log_interval === 0 || iteration === stopAt) {
      const seconds = (performance.now() - windowStart) / 1000;
      const tokensPerSec = windowTokens / seconds;
      // Peak memory of every rank (data parallelism: one number per GPU; a collective, at the same iterations on every rank).
      const peaks = dist ? await dist.allGatherObject(backend.memoryStats().peak) : [backend.memoryStats().peak];
      const gib = (b: number) => (b / 2 ** 30).toFixed(2);
      log.info(`iteration ${String(iteration).padStart(String(trainIters).length)}/${trainIters} | loss ${loss.toFixed(4)} | lr ${lr.toExponential(3)} | ` +
        `grad norm ${norm.toFixed(3)} | ${humanCount(tokensPerSec)} tok/s | ${humanCount(tokensPerSec * flopsPerToken)}FLOP/s | ${(1000 * seconds / windowSteps).toFixed(0)} ms/step | ` +
        `peak mem ${peaks.length > 1 ? `${peaks.map(gib).join(' / ')} GiB (ranks 0–${peaks.length - 1})` : `${gib(peaks[0]!)} GiB`}`);
      log.record('speed', {
        iteration, tokens_per_sec: tokensPerSec, flops_per_sec: tokensPerSec * flopsPerToken, step_ms: (1000 * seconds) / windowSteps,
        mem_peak_bytes: peaks[0]!, ...(peaks.length > 1 ? Object.fromEntries(peaks.map((p, r) => [`mem_peak_bytes_rank${r}`, p])) : {}),
      });
      windowStart = performance.now();
      windowSteps = 0;
      windowTokens = 0;
    }
    if (validBatches && cfg.eval_iters > 0 && (iteration % cfg.eval_interval === 0 || iteration === trainIters)) {
      const evalRound = Math.floor((iteration - 1) / cfg.eval_interval); // a fixed position per evaluation
      validLoss = evaluate(model, validBatches, evalRound * cfg.eval_iters, cfg.eval_iters, toTensors);
      if (dist) validLoss = (await dist.allReduceNumbers([validLoss]))[0]!;
      log.info(`validation at iteration ${iteration} | loss ${validLoss.toFixed(4)} | perplexity ${Math.exp(validLoss).toFixed(3)}`);
      log.record('valid', { iteration, loss: validLoss, ppl: Math.exp(validLoss) });
    }
    if (cfg.eval_tasks?.length && (iteration % cfg.eval_interval === 0 || iteration === trainIters)) {
      const m = runEvalTasks(model, tokenizer, cfg.eval_tasks, { contextLength: cfg.seq_length, batchSize: micro });
      log.info(`eval tasks at iteration ${iteration} | ${Object.entries(m).map(([k, v]) => `${k} ${v.toFixed(4)}`).join(' | ')}`);
      log.record('eval_tasks', { iteration, ...m });
    }
    const every = cfg.checkpoint_factor;
    if (cfg.save && ((every && iteration % every === 0) || iteration === trainIters)) {
      // ZeRO's moments are gathered from every rank (a collective); rank 0 writes.
      const names = new Map(model.namedParameters().map(([n, p]) => [p, n]));
      const gathered = optimizer instanceof ZeroOptimizer && !cfg.no_save_optim ? await optimizer.fullState(names) : null;
      // Stage 3: the whole parameters gathered from every rank's shard (a collective too).
      const weights = optimizer instanceof ZeroOptimizer && optimizer.stage === 3 ? await optimizer.fullParameters(names) : null;
      if (isMain) save(cfg, model, optimizer, gathered, weights, log, { iteration, skippedIters, lossScaler });
    }
  }
  await log.close(); // clears the progress line, closes the TensorBoard file, finishes the W&B run

  if (dist && zero?.stage !== 3) { // stage 3: each rank holds its own shard, nothing to compare
    const checksum = await dist.checkParametersInSync(params);
    log.info(`data parallel: parameters identical on all ${dp} ranks (checksum ${checksum})`);
  }
  // Stage 3: every rank runs the forward passes (each gathers parameters collectively); rank 0 logs.
  if ((isMain || zero?.stage === 3) && cfg.sample_after_training && iteration === trainIters) {
    // Prompted with the start of a held-out sample, so the text continues something real.
    const heldOut = (data.valid ?? data.train).get(0);
    const prompt = Array.from(heldOut.subarray(0, Math.min(48, heldOut.length - 1)));
    log.info(`prompt (from the ${data.valid ? 'validation' : 'training'} data):\n${tokenizer.decode(prompt)}\n`);
    for (const temperature of [0, 0.8]) {
      const ids = generate(model, prompt, { maxNewTokens: 160, temperature, topK: 0, topP: 0, seed: cfg.seed, contextLength: cfg.seq_length });
      log.info(`sample (${temperature === 0 ? 'greedy' : `temperature ${temperature}`}):\n${tokenizer.decode(prompt)}${tokenizer.decode(ids)}\n`);
    }
  }
  await dist?.destroy();
  return { iteration, losses, validLoss, runDir, model, tokenizer };
}

/** 83000 ms → "1m23s". */
function formatDuration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  return h > 0 ? `${h}h${String(m).padStart(2, '0')}m` : m > 0 ? `${m}m${String(sec).padStart(2, '0')}s` : `${sec}s`;
}

/**
 * A batch's ids, labels (rows, T) i32 and loss mask (rows, T) f32 on the device, each row cut to
 * `length` (curriculum), and the mask's sum (from the host copy, so the loss never reads it back).
 */
function batchTensors(b: Batch, backend: Backend, length: number): readonly [Tensor, Tensor, Tensor, number] {
  const cut = <A extends Int32Array | Float32Array>(a: A): A => {
    if (length === b.seqLength) return a;
    const out = new (a.constructor as new (n: number) => A)(b.rows * length);
    for (let r = 0; r < b.rows; r++) out.set(a.subarray(r * b.seqLength, r * b.seqLength + length), r * length);
    return out;
  };
  const shape = [b.rows, length];
  const mask = cut(b.lossMask);
  let count = 0;
  for (let i = 0; i < mask.length; i++) count += mask[i]!;
  return [tensor(cut(b.tokens), shape, 'i32', backend), tensor(cut(b.labels), shape, 'i32', backend), tensor(mask, shape, 'f32', backend), count];
}

/** Mean loss over `iters` validation batches starting at loader step `start`, without gradients. */
function evaluate(model: GPTNeoX, batches: BatchIterator, start: number, iters: number,
  toTensors: (b: Batch) => readonly [Tensor, Tensor, Tensor, number]): number {
  model.eval();
  let sum = 0;
  for (let i = 0; i < iters; i++) {
    sum += noGrad(() => scope(() => {
      const [ids, labels, mask, count] = toTensors(batches.batch(start + i));
      return model.loss(ids, labels, mask, count).item();
    }));
  }
  model.train();
  return sum / iters;
}

/** Preprocesses `preprocess_inputs` into data_path when its .bin/.idx are missing (the quickstart's first run). */
async function ensureData(cfg: NeoXConfig, log: TrainLogger): Promise<void> {
  if (!cfg.data_path) {
    const paths = [...(cfg.train_data_paths ?? []), ...(cfg.valid_data_paths ?? []), ...(cfg.test_data_paths ?? [])];
    if (paths.length === 0) throw new TrainingError('set data_path, or train_data_paths (with valid_data_paths / test_data_paths)');
    for (const p of paths) {
      const { binPath, idxPath } = indexPaths(p);
      if (!existsSync(binPath) || !existsSync(idxPath)) throw new TrainingError(`${p}: ${binPath} / ${idxPath} not found; run \`neox preprocess\` first`);
    }
    return;
  }
  const { binPath, idxPath } = indexPaths(cfg.data_path);
  if (existsSync(binPath) && existsSync(idxPath)) return;
  if (!cfg.preprocess_inputs?.length) {
    throw new TrainingError(`data_path ${cfg.data_path}: ${binPath} / ${idxPath} not found; run \`neox preprocess\` first`);
  }
  // data_path is `{prefix}_text_document`; preprocess writes `{prefix}_{key}_document`.
  const m = /^(.*)_text_document$/.exec(cfg.data_path);
  if (!m) throw new TrainingError(`data_path ${cfg.data_path} must end in _text_document to be built from preprocess_inputs`);
  log.info(`preparing ${cfg.data_path} from ${cfg.preprocess_inputs.join(', ')} (first run only)`);
  const stats = await preprocess({
    input: cfg.preprocess_inputs, jsonlKeys: ['text'], tokenizerType: cfg.tokenizer_type, vocabFile: cfg.vocab_file,
    mergeFile: cfg.merge_file, outputPrefix: m[1]!, appendEod: true, log: () => {},
  });
  log.info(`  ${stats.documents} documents, ${humanCount(stats.tokens)} tokens`);
}

/** The error for a non-finite loss (the gradients are dropped; nothing is saved). */
function nonFinite(value: number, iteration: number, cfg: NeoXConfig, optimizer: AdamW | ZeroOptimizer, what = 'loss'): TrainingError {
  optimizer.zeroGrad();
  return new TrainingError(`${what} is ${value} at iteration ${iteration + 1}; stopping. ` +
    `${cfg.save ? `The last good checkpoint in ${cfg.save} is untouched. ` : ''}Try a lower learning rate or gradient_clipping.`);
}

/** The run's position and fp16 state, saved with the weights so that a resumed run continues exactly. */
interface RunState {
  iteration: number;
  /** fp16 iterations skipped for overflow (the learning-rate schedule does not count them). */
  skippedIters: number;
  lossScaler: LossScaler | null;
}

function save(cfg: NeoXConfig, model: GPTNeoX, optimizer: AdamW | ZeroOptimizer, gathered: FullStateEntry[] | null,
  weights: FullStateEntry[] | null, log: TrainLogger, { iteration, skippedIters, lossScaler }: RunState): void {
  const named = model.namedParameters();
  const names = new Map(named.map(([n, p]) => [p, n] as const));
  const asHost = (t: Tensor): HostTensor => hostTensor(t.dtype, t.shape, t.toArray());
  const modelTensors = weights ? weights.map((e) => [e.name, hostTensor('f32', e.shape, e.data)] as const) : named.map(([n, p]) => [n, asHost(p)] as const);
  const optimTensors = cfg.no_save_optim ? undefined
    : gathered ? gathered.map((e) => [e.name, hostTensor('f32', e.shape, e.data)] as const)
      : (optimizer as AdamW).stateTensors(names).map(([n, t]) => [n, asHost(t)] as const);
  const result = saveCheckpoint(cfg.save!, iteration, {
    model: modelTensors,
    optimizer: optimTensors,
    state: {
      iteration, optimizer_step: optimizer.step, consumed_train_samples: iteration * cfg.train_batch_size, skipped_iterations: skippedIters,
      ...(lossScaler ? { loss_scaler: lossScaler.state() } : {}), // fp16: resume at the same scale
    },
    config: cfg as unknown as object,
  }, { keepLastN: cfg.keep_last_n_checkpoints ?? undefined });
  log.info(`saved checkpoint ${result.dir}`);
}

/** Loads weights (and, unless finetuning, optimizer state, the iteration and the fp16 state). Returns where to continue. */
function restore(cfg: NeoXConfig, model: GPTNeoX, optimizer: AdamW | ZeroOptimizer, backend: Backend, log: TrainLogger,
  lossScaler: LossScaler | null): { iteration: number; skippedIters: number } {
  const weightsOnly = cfg.finetune || cfg.no_load_optim;
  const ckpt = loadCheckpoint(cfg.load!, { weightsOnly });
  const named = model.namedParameters();
  const copyInto = (dst: Tensor, src: HostTensor | undefined, what: string) => {
    if (!src) throw new TrainingError(`checkpoint ${ckpt.dir} has no tensor ${what}`);
    const { data } = hostArrayOf(src);
    if (src.shape.join(',') !== dst.shape.join(',')) {
      throw new TrainingError(`checkpoint ${ckpt.dir}: ${what} has shape [${src.shape}], the model expects [${dst.shape}]`);
    }
    const t = tensor(data, dst.shape, dst.dtype, backend);
    noGrad(() => {
      ops.scaleInPlace(dst, 0);
      ops.addInPlace(dst, t);
    });
    t.dispose();
  };
  if (optimizer instanceof ZeroOptimizer && optimizer.stage === 3) {
    // Stage 3: whole tensors (saved at any world size and stage) → this rank's parameter shard.
    for (const [n, p] of named) {
      const src = ckpt.model.get(n);
      if (!src) throw new TrainingError(`checkpoint ${ckpt.dir} has no tensor ${n}`);
      if (src.shape.join(',') !== p.shape.join(',')) throw new TrainingError(`checkpoint ${ckpt.dir}: ${n} has shape [${src.shape}], the model expects [${p.shape}]`);
    }
    const weights = (name: string) => { const t = ckpt.model.get(name); return t ? Float32Array.from(hostArrayOf(t).data) : undefined; };
    optimizer.loadFullParameters(weights, new Map(named.map(([n, p]) => [p, n])));
  } else {
    for (const [n, p] of named) copyInto(p, ckpt.model.get(n), n);
  }
  if (cfg.finetune) {
    log.info(`finetuning from ${ckpt.dir} (weights only, starting at iteration 0)`);
    return { iteration: 0, skippedIters: 0 };
  }
  const state = ckpt.state as { iteration: number; optimizer_step: number; loss_scaler?: LossScalerState; skipped_iterations?: number };
  if (!weightsOnly && lossScaler && state.loss_scaler) lossScaler.load(state.loss_scaler);
  if (!weightsOnly && ckpt.optimizer && optimizer instanceof ZeroOptimizer) {
    // Whole moments (saved at any world size) → this rank's shard.
    const moments = ckpt.optimizer;
    const lookup = (name: string) => { const t = moments.get(name); return t ? (hostArrayOf(t).data as Float32Array) : undefined; };
    optimizer.loadFullState(lookup, new Map(named.map(([n, p]) => [p, n])), state.optimizer_step);
  } else if (!weightsOnly && ckpt.optimizer) {
    for (const [n, p] of named) {
      const s = (optimizer as AdamW).moments(p);
      copyInto(s.m, ckpt.optimizer.get(`${n}.exp_avg`), `${n}.exp_avg`);
      copyInto(s.v, ckpt.optimizer.get(`${n}.exp_avg_sq`), `${n}.exp_avg_sq`);
    }
    optimizer.step = state.optimizer_step;
  }
  log.info(`resumed from ${ckpt.dir} at iteration ${state.iteration}`);
  return { iteration: state.iteration, skippedIters: state.skipped_iterations ?? 0 };
}
