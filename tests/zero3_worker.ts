// One rank of the ZeRO stage 3 tests (tests/zero3.test.ts), run as a worker thread: ranks share a
// ThreadProcessGroup (synchronous collectives through a SharedArrayBuffer). Trains GPT-NeoX for a
// few steps with ZeRO stage 2 or 3 (reduced during backward) and posts the whole parameters
// (gathered), the norms and memory figures back.
import { parentPort, workerData } from 'node:worker_threads';
import '../src/backends/cpu/index.js';
import { GPTNeoX, resolveModelConfig } from '../src/models/gpt_neox/index.js';
import { AdamW } from '../src/optim/index.js';
import { ThreadProcessGroup, type ThreadGroupInit, ZeroOptimizer, type ZeroStage } from '../src/parallel/index.js';
import { type Tensor, backward, copyInto, getBackend, noGrad, scope, tensor } from '../src/tensor/index.js';
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
  /**
   * Checkpoint tests: every rank's data is its share (rows r·G/W …) of one global batch of G rows,
   * so the global gradient is the same at any W (to rounding); dropout off (its masks would follow the split).
   */
  globalRows?: number;
  /** The data of steps firstStep … (a run resumed after that many steps). */
  firstStep?: number;
  /** After this many steps, take fullParameters() + fullState() (the result's `saved`). */
  saveAt?: number;
  /** Start from whole tensors (a checkpoint of any W and stage, or of AdamW): parameters, moments, step. */
  resume?: Checkpoint;
}

/** Whole tensors named as the model's parameters and AdamW's state (`{name}.exp_avg`, `{name}.exp_avg_sq`). */
export interface Checkpoint {
  params: [string, Float32Array][];
  state: [string, Float32Array][];
  step: number;
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
  saved?: Checkpoint;
}

const V = 13, B = 2, T = 6;
const cpu = getBackend('cpu');

function microLoss(model: GPTNeoX, r: number, s: number, m: number, share?: { W: number; rows: number }): Tensor {
  if (share) {
    // Rows r·G/W … (r+1)·G/W of the step's global batch of G rows.
    const rand = rng(1000 * s + 100 * m + 1);
    const all = Int32Array.from({ length: 2 * share.rows * T }, () => Math.floor(rand() * V));
    const n = share.rows / share.W, lo = r * n * T;
    const ids = all.slice(lo, lo + n * T);
    const labels = all.slice(share.rows * T + lo, share.rows * T + lo + n * T);
    return model.loss(tensor(ids, [n, T], 'i32', cpu), tensor(labels, [n, T], 'i32', cpu), tensor(new Float32Array(n * T).fill(1), [n, T], 'f32', cpu));
  }
  const rand = rng(1000 * s + 100 * m + r + 1);
  const ids = Int32Array.from({ length: B * T }, () => Math.floor(rand() * V));
  const labels = Int32Array.from({ length: B * T }, () => Math.floor(rand() * V));
  model.setDropoutSeed(10 * s + m);
  return model.loss(tensor(ids, [B, T], 'i32', cpu), tensor(labels, [B, T], 'i32', cpu), tensor(new Float32Array(B * T).fill(1), [B, T], 'f32', cpu));
}

export async function runZero3Job(job: Zero3Job): Promise<Zero3Result> {
  const g = new ThreadProcessGroup(job.init, job.rank);
  const model = newModel(job);
  if (job.every) model.setActivationCheckpointing(job.every);
  if (job.lossChunk) model.setLossChunk(job.lossChunk);
  const { decay, noDecay } = model.weightDecayGroups();
  const names = new Map(model.namedParameters().map(([n, p]) => [p, n] as const));
  if (job.resume && job.stage !== 3) loadParameters(model, job.resume); // stages 1–2: into the parameters, before ZeRO moves them
  const zero = new ZeroOptimizer(g, [{ params: decay, weightDecay: 0.1 }, { params: noDecay, weightDecay: 0 }], {
    betas: [0.9, 0.95], eps: 1e-8, stage: job.stage, names, order: model.parameters(),
    units: job.stage === 3 ? model.gatherUnits() : undefined,
  });
  if (job.stage === 3) model.setParameterGather(zero.parameterGather());
  if (job.resume) {
    const lookup = lookupOf(job.resume);
    if (job.stage === 3) zero.loadFullParameters(lookup, names);
    zero.loadFullState(lookup, names, job.resume.step);
  }
  const share = job.globalRows ? { W: g.size, rows: job.globalRows } : undefined;
  const norms: number[] = [];
  let saved: Checkpoint | undefined;
  for (let s = job.firstStep ?? 0; s < (job.firstStep ?? 0) + job.steps; s++) {
    if (s === job.saveAt) saved = await checkpointOf(zero, names);
    model.train();
    for (let m = 0; m < job.gas; m++) {
      scope(() => {
        const loss = microLoss(model, job.rank, s, m, share);
        const hook = zero.beginBackward();
        backward(loss, job.gas === 1 ? undefined : tensor([1 / job.gas], [], 'f32', cpu), { onGradReady: hook });
      });
      await zero.finish();
    }
    norms.push((await zero.update(0.01, job.clip)).norm);
    zero.zeroGrad();
  }
  if ((job.firstStep ?? 0) + job.steps === job.saveAt) saved = await checkpointOf(zero, names);
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
    params: full.map((e) => [e.name, Array.from(e.data)]), norms, paramBytes: zero.memory().parameters, allocatedAtRest, touchError, gatheredAtRest, evalLoss, saved,
  };
}

function newModel(job: Pick<Zero3Job, 'tied' | 'globalRows'>): GPTNeoX {
  const keys = modelKeys({ no_weight_tying: !job.tied, hidden_size: 32, num_layers: 3, ...(job.globalRows ? { hidden_dropout: 0 } : {}) });
  return new GPTNeoX(resolveModelConfig(keys, V), cpu);
}

function lookupOf(c: Checkpoint): (name: string) => Float32Array | undefined {
  const all = new Map([...c.params, ...c.state]);
  return (name) => all.get(name);
}

function loadParameters(model: GPTNeoX, c: Checkpoint): void {
  const lookup = lookupOf(c);
  for (const [n, p] of model.namedParameters()) {
    const data = lookup(n);
    if (!data || data.length !== p.numel) throw new Error(`checkpoint: parameter ${n} missing or of another size`);
    copyInto(p, tensor(data, p.shape, 'f32', cpu));
  }
}

/** fullParameters() + fullState(): collective, every rank calls it. */
async function checkpointOf(zero: ZeroOptimizer, names: Map<Tensor, string>): Promise<Checkpoint> {
  const params = (await zero.fullParameters(names)).map((e) => [e.name, e.data] as [string, Float32Array]);
  const state = (await zero.fullState(names)).map((e) => [e.name, e.data] as [string, Float32Array]);
  return { params, state, step: zero.step };
}

export interface PlainJob {
  tied: boolean;
  steps: number;
  firstStep?: number;
  globalRows: number;
  /** The data-parallel ranks emulated: each step, one backward per rank's share (accumulated), the sum scaled by 1/W in the update. */
  W: number;
  resume?: Checkpoint;
  saveAt?: number;
}

/**
 * Without ZeRO, in this thread: one model + AdamW. Each step runs the W ranks' shares one after the
 * other into .grad (g₀ + g₁ + …, the thread group's rank-order sum) and updates with gradScale 1/W
 * (for W = 2 exactly the group's average). No clipping.
 */
export function runPlainJob(job: PlainJob): { params: [string, number[]][]; saved?: Checkpoint } {
  const model = newModel({ tied: job.tied, globalRows: job.globalRows });
  const { decay, noDecay } = model.weightDecayGroups();
  const names = new Map(model.namedParameters().map(([n, p]) => [p, n] as const));
  const adam = new AdamW([{ params: decay, weightDecay: 0.1 }, { params: noDecay, weightDecay: 0 }], { betas: [0.9, 0.95], eps: 1e-8 });
  if (job.resume) {
    loadParameters(model, job.resume);
    const lookup = lookupOf(job.resume);
    for (const [n, p] of model.namedParameters()) {
      const { m, v } = adam.moments(p);
      copyInto(m, tensor(lookup(`${n}.exp_avg`)!, p.shape, 'f32', cpu));
      copyInto(v, tensor(lookup(`${n}.exp_avg_sq`)!, p.shape, 'f32', cpu));
    }
    adam.step = job.resume.step;
  }
  const share = { W: job.W, rows: job.globalRows };
  let saved: Checkpoint | undefined;
  const save = (): Checkpoint => ({
    params: model.namedParameters().map(([n, p]) => [n, p.toFloat32().slice()]),
    state: adam.stateTensors(names).map(([n, t]) => [n, t.toFloat32().slice()]),
    step: adam.step,
  });
  const first = job.firstStep ?? 0;
  for (let s = first; s < first + job.steps; s++) {
    if (s === job.saveAt) saved = save();
    model.train();
    for (let r = 0; r < job.W; r++) scope(() => backward(microLoss(model, r, s, 0, share)));
    noGrad(() => adam.update(0.01, 1 / job.W));
    adam.zeroGrad();
  }
  if (first + job.steps === job.saveAt) saved = save();
  return { params: model.namedParameters().map(([n, p]) => [n, Array.from(p.toFloat32())]), saved };
}

if (parentPort && workerData) {
  runZero3Job(workerData as Zero3Job).then((r) => parentPort!.postMessage({ ok: r }), (e: Error) => parentPort!.postMessage({ error: `${e.stack ?? e.message}` }));
}
