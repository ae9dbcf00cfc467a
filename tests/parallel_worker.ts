// A small data-parallel training loop over the real model, optimizer and batch iterator, run by
// the parallel tests in processes started by `neox launch` (and in-process for one rank). It is
// the loop trainer.ts runs (docs/parallel.md): without ZeRO, the last micro-batch's backward
// reduces gradient buckets as they are ready (DataParallel.beginBackward/finish); `sync` reduces
// them all after backward instead (syncGradients, the reference).
//
//   node dist/tests/parallel_worker.js CONFIG.yml OUT_PREFIX STEPS [zero] [perturb] [sync]
// writes OUT_PREFIX.rank{r}.json: { rank, worldSize, losses (averaged over ranks), checksum,
// samples, stateBytes, buckets, earlyBuckets (issued before the last backward returned, summed over steps) }.

import { writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import '../src/backends/cpu/index.js';
import { loadConfig } from '../src/config/index.js';
import type { SampleDataset } from '../src/data/gpt2_dataset.js';
import { BatchIterator } from '../src/data/loader.js';
import { GPTNeoX, resolveModelConfig } from '../src/models/gpt_neox/index.js';
import * as ops from '../src/ops/index.js';
import { AdamW, gradNormAndClip, learningRate } from '../src/optim/index.js';
import { ZeroOptimizer, initDistributed, parameterChecksum, readDistEnv } from '../src/parallel/index.js';
import { backward, getBackend, noGrad, scope, tensor } from '../src/tensor/engine.js';

export const VOCAB = 64;

/** Deterministic token sequences with some structure to learn. */
export class SyntheticDataset implements SampleDataset {
  readonly name = 'synthetic';
  constructor(readonly length: number, readonly seqLength: number) {}
  get(i: number): Int32Array {
    const out = new Int32Array(this.seqLength + 1);
    for (let t = 0; t <= this.seqLength; t++) out[t] = (i * 7 + t * 3 + ((i * t) % 5)) % VOCAB;
    return out;
  }
}

export interface WorkerResult {
  rank: number;
  worldSize: number;
  losses: number[];
  checksum: string;
  /** Dataset samples this rank trained on, per loader step. */
  samples: number[][];
  stateBytes: number;
  /** Gradient buckets per reduction, and how many were issued while backward ran (all steps). */
  buckets: number;
  earlyBuckets: number;
}

export async function dpTrain(configFile: string, steps: number, o: { zero?: boolean; perturb?: boolean; sync?: boolean; env?: Record<string, string | undefined> } = {}): Promise<WorkerResult> {
  const env = o.env ?? process.env;
  const where = readDistEnv(env);
  const cfg = loadConfig([configFile], { worldSize: where.worldSize }).config;
  const backend = getBackend('cpu');
  const dist = await initDistributed(cfg, backend, { env, timeoutMs: 60_000 });
  const rank = dist?.rank ?? 0;
  const dp = dist?.worldSize ?? 1;

  const model = new GPTNeoX(resolveModelConfig(cfg, VOCAB), backend);
  const params = model.parameters();
  if (o.perturb && rank !== 0) noGrad(() => params.forEach((p) => ops.scaleInPlace(p, 0.5))); // broadcast must repair this
  if (dist) await dist.broadcastParameters(params);
  const { decay, noDecay } = model.weightDecayGroups();
  const groups = [{ params: decay, weightDecay: cfg.weight_decay }, { params: noDecay, weightDecay: 0 }];
  const adamOpts = { betas: [cfg.optimizer.params.betas[0], cfg.optimizer.params.betas[1]] as [number, number], eps: cfg.optimizer.params.eps };
  const zero = o.zero && dist ? new ZeroOptimizer(dist.group, groups, adamOpts) : null;
  const adam = zero ? null : new AdamW(groups, adamOpts);
  const ddp = dist && !zero ? dist.dataParallel(params, model.namedParameters().map(([n]) => n)) : null;
  const overlap = ddp && !o.sync ? ddp : null;
  let earlyBuckets = 0;

  const micro = cfg.train_micro_batch_size_per_gpu;
  const gas = cfg.gradient_accumulation_steps;
  // The loader step is micro × dp samples; this rank gets its micro rows of it.
  const batches = new BatchIterator(new SyntheticDataset(512, cfg.seq_length), micro * dp, 0, { rank, worldSize: dp });
  const schedule = { lr: cfg.lr, minLr: cfg.min_lr, warmupIters: 1, decayIters: steps, style: cfg.lr_decay_style };
  const losses: number[] = [];
  const samples: number[][] = [];
  for (let it = 0; it < steps; it++) {
    const lr = learningRate(it, schedule);
    let lossSum = 0;
    for (let m = 0; m < gas; m++) {
      const k = it * gas + m;
      model.setDropoutSeed(cfg.seed + k * 2 ** 32);
      lossSum += scope(() => {
        const b = batches.batch(k);
        samples.push(b.samples);
        const shape = [b.rows, b.seqLength];
        const loss = model.loss(tensor(b.tokens, shape, 'i32', backend), tensor(b.labels, shape, 'i32', backend), tensor(b.lossMask, shape, 'f32', backend));
        // Only the last micro-batch reduces, overlapped with its backward.
        const onGradReady = overlap && m === gas - 1 ? overlap.beginBackward() : undefined;
        backward(loss, gas === 1 ? undefined : ops.fill([], 1 / gas, loss.dtype, loss.backend), { onGradReady });
        if (onGradReady) earlyBuckets += overlap!.issuedBuckets;
        return loss.item();
      });
    }
    const local = lossSum / gas;
    losses.push(dist ? (await dist.allReduceNumbers([local], 'avg'))[0]! : local);
    if (zero) {
      await zero.update(lr, cfg.gradient_clipping);
      zero.zeroGrad();
    } else {
      if (overlap) await overlap.finish();
      else if (dist) await dist.syncGradients(params);
      const { scale } = gradNormAndClip(params, cfg.gradient_clipping);
      noGrad(() => adam!.update(lr, scale));
      adam!.zeroGrad();
    }
  }
  const checksum = dist ? await dist.checkParametersInSync(params) : parameterChecksum(params);
  const stateBytes = zero ? zero.stateBytes() : params.reduce((n, p) => n + 8 * p.numel, 0);
  await dist?.destroy();
  return { rank, worldSize: dp, losses, checksum, samples, stateBytes, buckets: ddp?.buckets.length ?? 0, earlyBuckets };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const [configFile, outPrefix, steps, ...flags] = process.argv.slice(2);
  const r = await dpTrain(configFile!, Number(steps), { zero: flags.includes('zero'), perturb: flags.includes('perturb'), sync: flags.includes('sync') });
  writeFileSync(`${outPrefix}.rank${r.rank}.json`, JSON.stringify(r));
}
