// The CPU backend: TypeScript kernels over typed arrays, the numerical reference for every kernel.
//   backend.ts    allocator (typed arrays; SharedArrayBuffer-backed when large)
//   gemm.ts       the matrix-multiply core;  pool.ts + pool_worker.ts: rows split across threads
//   sample.ts     large Philox draws (weight init) on the pool, registered with tensor/philox.ts
//                 below (its bulk-sampler hook: the tensor layer does not import backends)
//   kernels/      one file per kernel family, registering implementations by kernel name
import { registerBackend } from '../../tensor/engine.js';
import { setBulkSampler } from '../../tensor/philox.js';
import { CpuBackend } from './backend.js';
import { parallelSample } from './sample.js';
import './kernels/basic.js';
import './kernels/matmul.js';
import './kernels/shape.js';
import './kernels/norm.js';
import './kernels/activation.js';
import './kernels/dropout.js';
import './kernels/rotary.js';
import './kernels/attention.js';
import './kernels/loss.js';
import './kernels/optim.js';

export const cpu = new CpuBackend();
registerBackend(cpu);
setBulkSampler(parallelSample);
