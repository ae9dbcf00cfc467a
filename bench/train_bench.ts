// `npm run bench`: training throughput on Pythia-shaped models with random tokens, one JSON line
// per configuration (tokens/s, TFLOP/s, MFU, peak memory), measured the way
// ../shared/bench/torch_reference.py measures PyTorch so the two can be compared line by line.
//
//   node dist/bench/train_bench.js [pythia-160m pythia-410m pythia-1.4b | tiny] [--seq N] [--mb N]
//        [--steps N] [--warmup N] [--device auto|cpu|cuda] [--precision bf16|fp32] [--loss-chunk TOKENS]
//        [--zero 0|1|2|3] [--bias-gelu-fusion]
// --bias-gelu-fusion trains the tanh GELU through linearGelu (GPT-NeoX's bias_gelu_fusion; on CUDA
// cuBLASLt's GELU epilogue) instead of Pythia's exact GELU, which HF's GPTNeoX (the reference) uses.
//
// Data parallel (as ../shared/bench/torch_ddp.py under torchrun), one process per GPU:
//   neox launch --nproc-per-node N --exec node dist/bench/train_bench.js MODEL [--zero 1|2|3]
// Each rank trains its micro-batch; gradients are averaged in buckets during backward (zero 0) or
// reduce-scattered by ZeRO; rank 0 prints tokens/s over all GPUs and per GPU, and every rank's peak.
//
// MFU = (6 · non-embedding params + 12 · layers · hidden · seq) · tokens/s / 989e12 (H100/H200
// dense bf16 peak), REFERENCE.md's formula.

import { parseArgs } from 'node:util';
import { GPTNeoX, resolveModelConfig } from '../src/models/gpt_neox/index.js';
import { SHAPES, pythiaKeys } from './pythia.js';
import { AdamW, clipFactorOf, gradSquaredNorm } from '../src/optim/index.js';
import { DDP_BUCKET_ELEMENTS, ZeroOptimizer, initDistributed } from '../src/parallel/index.js';
import { backward, kernelProfileReport, noGrad, profileKernels, scope, tensor } from '../src/tensor/index.js';
import { selectBackend } from '../src/train/device.js';

const PEAK_FLOPS = 989e12;

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      seq: { type: 'string' }, mb: { type: 'string' }, steps: { type: 'string' }, warmup: { type: 'string' }, device: { type: 'string' },
      precision: { type: 'string' }, 'loss-chunk': { type: 'string' }, zero: { type: 'string' },
      'bias-gelu-fusion': { type: 'boolean' },
    },
  });
  const names = positionals.length ? positionals : ['pythia-160m', 'pythia-410m', 'pythia-1.4b'];
  const backend = await selectBackend(values.device ?? 'auto');
  // Launched with WORLD_SIZE > 1: data parallel over NCCL (CUDA) or the CPU group.
  const zeroStage = Number(values.zero ?? 0);
  if (![0, 1, 2, 3].includes(zeroStage)) throw new Error(`--zero must be 0, 1, 2 or 3, got ${values.zero}`);
  const dist = await initDistributed({ zero_optimization: { reduce_bucket_size: DDP_BUCKET_ELEMENTS } }, backend);
  const world = dist?.worldSize ?? 1;
  const steps = Number(values.steps ?? 20); // the PyTorch reference's 20 timed steps after 5 warm-up steps
  const warmup = Number(values.warmup ?? 5);
  for (const name of names) {
    const shape = SHAPES[name];
    if (!shape) throw new Error(`unknown model '${name}'; one of ${Object.keys(SHAPES).join(', ')}`);
    const seq = Number(values.seq ?? (name === 'tiny' ? 64 : 2048));
    const mb = Number(values.mb ?? shape.mb);
    const V = 50304; // Pythia's padded vocabulary
    const model = new GPTNeoX(resolveModelConfig({ ...pythiaKeys(shape, seq), bias_gelu_fusion: values['bias-gelu-fusion'] ?? false }, name === 'tiny' ? 512 : V), backend);
    // As the reference: bf16 autocast over f32 master weights (the CPU computes in f32).
    const compute = backend.name === 'cpu' ? 'f32' : values.precision === 'fp32' ? 'f32' : 'bf16';
    model.setComputeDtype(compute);
    if (values['loss-chunk']) model.setLossChunk(Number(values['loss-chunk']));
    const params = model.parameters();
    if (dist) await dist.broadcastParameters(params);
    const groups = [{ params, weightDecay: 0.01 }];
    const adam = { betas: [0.9, 0.95] as [number, number], eps: 1e-8 };
    // Stage 3 (NCCL only: the constructor refuses a group without synchronous collectives) gathers each unit around its forward.
    const zero = dist && zeroStage > 0
      ? new ZeroOptimizer(dist.group, groups, { ...adam, stage: zeroStage as 1 | 2 | 3, bucketElements: DDP_BUCKET_ELEMENTS, units: zeroStage === 3 ? model.gatherUnits() : undefined })
      : null;
    if (zero?.stage === 3) model.setParameterGather(zero.parameterGather());
    const opt = zero ? null : new AdamW(groups, adam);
    const ddp = dist && !zero ? dist.dataParallel(params) : null;
    const vocab = model.cfg.vocabSize;
    let seed = 1 + 7919 * (dist?.rank ?? 0); // each rank its own tokens
    const randomIds = () => Int32Array.from({ length: mb * seq }, () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8) % vocab);
    const mask = new Float32Array(mb * seq).fill(1);
    // One step as the reference's: forward, backward, clip_grad_norm_(…, 1.0), AdamW; nothing read
    // back to the host (the clip factor stays on the device).
    let afterForward = 0;
    const step = async (): Promise<void> => {
      scope(() => {
        const ids = tensor(randomIds(), [mb, seq], 'i32', backend);
        const labels = tensor(randomIds(), [mb, seq], 'i32', backend);
        const loss = model.loss(ids, labels, tensor(mask, [mb, seq], 'f32', backend), mb * seq);
        afterForward = backend.memoryStats().allocated;
        backward(loss, undefined, { onGradReady: ddp?.beginBackward() });
      });
      if (zero) {
        if (zeroStage >= 2) await zero.reduceGradients();
        await zero.update(1e-4, 1.0);
        zero.zeroGrad();
        return;
      }
      if (ddp) await ddp.finish();
      scope(() => {
        const sumSquares = gradSquaredNorm(params)!;
        noGrad(() => opt!.update(1e-4, 1, clipFactorOf(sumSquares, 1.0)));
      });
      opt!.zeroGrad();
    };
    const weightsAndState = backend.memoryStats().allocated;
    for (let i = 0; i < warmup; i++) await step();
    backend.synchronize();
    await dist?.barrier(`warm ${name}`);
    const profiling = process.env.NEOX_PROFILE_KERNELS === '1';
    if (profiling) profileKernels(true); // the timed steps only
    const t0 = performance.now();
    for (let i = 0; i < steps; i++) await step();
    backend.synchronize();
    await dist?.barrier(`timed ${name}`);
    const seconds = (performance.now() - t0) / 1000;
    const tokensPerSec = (steps * mb * seq * world) / seconds; // all GPUs
    const mine = [backend.memoryStats().peak, weightsAndState];
    const perRank = dist ? await dist.allGatherObject(mine) : [mine];
    if (dist && dist.rank !== 0) continue;
    const flops = model.flopsPerToken(seq) * tokensPerSec / world; // per GPU
    console.log(JSON.stringify({
      impl: 'neox-ts', model: name, device: backend.name, compute, seq, micro_batch: mb, steps,
      ...(values['bias-gelu-fusion'] ? { bias_gelu_fusion: true } : {}),
      ...(dist ? { gpus: world, zero_stage: zeroStage, tokens_per_sec_per_gpu: Math.round(tokensPerSec / world), peak_mem_gib_per_rank: perRank.map(([p]) => +(p! / 2 ** 30).toFixed(2)),
        state_gib_per_rank: perRank.map(([, st]) => +(st! / 2 ** 30).toFixed(2)) } : {}),
      params: model.numParameters(), non_embedding_params: model.nonEmbeddingParameters(),
      tokens_per_sec: Math.round(tokensPerSec), tflops: +(flops / 1e12).toFixed(2), mfu: +(flops / PEAK_FLOPS).toFixed(4),
      peak_mem_gib: +(backend.memoryStats().peak / 2 ** 30).toFixed(2),
      // where the memory goes: weights + AdamW state before the first step, and live after a forward
      state_gib: +(weightsAndState / 2 ** 30).toFixed(2), after_forward_gib: +(afterForward / 2 ** 30).toFixed(2),
    }));
    if (profiling) {
      console.error(`kernel profile, ${name} (${steps} steps; ${backend.timing ? 'device time between events around each kernel' : 'synchronized around each kernel'}):`);
      for (const line of kernelProfileReport().slice(0, 40)) console.error(line);
    }
  }
  await dist?.destroy();
}

main().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
});
