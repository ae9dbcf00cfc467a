// One rank of the ZeRO stage 3 tests (tests/zero3.test.ts), run as a worker thread: ranks share a
// ThreadProcessGroup (synchronous collectives through a SharedArrayBuffer). Trains GPT-NeoX for a
// few steps with ZeRO stage 2 or 3 (reduced during backward) and posts the whole parameters
// (gathered), the norms and memory figures back.
import { parentPort, workerData } from 'node:worker_threads';
import '../src/backends/cpu/index.js';
import { GPTNeoX, resolveModelConfig } from '../src/models/gpt_neox/index.js';
import { ThreadProcessGroup, type ThreadGroupInit, ZeroOptimizer, type ZeroStage } from '../src/parallel/index.js';
import { type Tensor, backward, getBackend, noGrad, scope, tensor } from '../src/tensor/index.js';
import { rng } from './helpers/check.js';
import { modelKeys } from './helpers/model.js';

export interface Zero3Job {
  init: ThreadGroupInit;
  rank: number;
  stage: ZeroStage;
  gas: number;
  /** Activation checkpointing every this many layers (0: off). */
  every: number;
  tied: boolean;
  clip: number;
  steps: number;
  lossChunk?: number;
}

export interface Zero3Result {
  params: [string, number[]][];
  norms: number[];
  paramBytes: number;
  /** Allocator bytes held between steps (after zeroGrad). */
  allocatedAtRest: number;
  /** The message of touching a parameter between steps (stage 3), or null. */
  touchError: string | null;
  gatheredAtRest: number;
  evalLoss: number;
}

const V = 13, B = 2, T = 6;
const cpu = getBackend('cpu');

function microLoss(model: GPTNeoX, r: number, s: number, m: number): Tensor {
  const rand = rng(1000 * s + 100 * m + r + 1);
  const ids = Int32Array.from({ length: B * T }, () => Math.floor(rand() * V));
  const labels = Int32Array.from({ length: B * T }, () => Math.floor(rand() * V));
  model.setDropoutSeed(10 * s + m);
  return model.loss(tensor(ids, [B, T], 'i32', cpu), tensor(labels, [B, T], 'i32', cpu), tensor(new Float32Array(B * T).fill(1), [B, T], 'f32', cpu));
}

export async function runZero3Job(job: Zero3Job): Promise<Zero3Result> {
  const g = new ThreadProcessGroup(job.init, job.rank);
  const model = new GPTNeoX(resolveModelConfig(modelKeys({ no_weight_tying: !job.tied, hidden_size: 32, num_layers: 3 }), V), cpu);
  if (job.every) model.setActivationCheckpointing(job.every);
  if (job.lossChunk) model.setLossChunk(job.lossChunk);
  const { decay, noDecay } = model.weightDecayGroups();
  const names = new Map(model.namedParameters().map(([n, p]) => [p, n] as const));
  const zero = new ZeroOptimizer(g, [{ params: decay, weightDecay: 0.1 }, { params: noDecay, weightDecay: 0 }], {
    betas: [0.9, 0.95], eps: 1e-8, stage: job.stage, names, order: model.parameters(),
    units: job.stage === 3 ? model.gatherUnits() : undefined,
  });
  if (job.stage === 3) model.setParameterGather(zero.parameterGather());
  const norms: number[] = [];
  for (let s = 0; s < job.steps; s++) {
    model.train();
    for (let m = 0; m < job.gas; m++) {
      scope(() => {
        const loss = microLoss(model, job.rank, s, m);
        const hook = zero.beginBackward();
        backward(loss, job.gas === 1 ? undefined : tensor([1 / job.gas], [], 'f32', cpu), { onGradReady: hook });
      });
      await zero.finish();
    }
    norms.push((await zero.update(0.01, job.clip)).norm);
    zero.zeroGrad();
  }
  let touchError: string | null = null;
  if (job.stage === 3) {
    try {
      model.layers[0]!.attention.dense.weight.toFloat32();
    } catch (e) {
      touchError = (e as Error).message;
    }
  }
  const allocatedAtRest = cpu.memoryStats().allocated;
  const gatheredAtRest = job.stage === 3 ? zero.gatheredBuckets : 0;
  model.eval();
  const evalLoss = noGrad(() => scope(() => microLoss(model, 0, 99, 0).item()));
  const full = await zero.fullParameters(names);
  return {
    params: full.map((e) => [e.name, Array.from(e.data)]), norms, paramBytes: zero.memory().parameters, allocatedAtRest, touchError, gatheredAtRest, evalLoss,
  };
}

if (parentPort && workerData) {
  runZero3Job(workerData as Zero3Job).then((r) => parentPort!.postMessage({ ok: r }), (e: Error) => parentPort!.postMessage({ error: `${e.stack ?? e.message}` }));
}
