// Parallelism: ranks, rendezvous, process groups, data parallelism and the launcher.
//
//   env.ts            readDistEnv: rank / world size / local rank / master address from torchrun,
//                     Slurm, Open MPI, MVAPICH or PMI variables; expandNodelist ("gpu[01-03]")
//   store.ts          the TCP key-value store rank 0 hosts on MASTER_ADDR:MASTER_PORT: set/get/
//                     wait/add/barrier with timeouts that name the missing keys or ranks
//   wire.ts           byte queue and typed-array helpers for the two socket protocols
//   process_group.ts  the ProcessGroup interface (allReduce, reduceScatter, allGather, broadcast,
//                     send/recv, barrier; async Work handles), backend registry, CollectiveError
//   cpu_group.ts      the CPU process group: TCP mesh, deterministic rank-order reductions
//   data_parallel.ts  DataParallel: parameter broadcast, bucketed gradient averaging overlapped
//                     with backward (beginBackward/finish) or after it (syncGradients); checksums
//   thread_group.ts   ThreadProcessGroup: ranks as threads of one process, collectives through a
//                     SharedArrayBuffer that complete synchronously (CPU tests of ZeRO stage 3)
//   zero.ts           ZeroOptimizer: ZeRO stages 1 (AdamW states sharded across ranks), 2
//                     (gradients too) and 3 (parameters too, gathered per model unit), on flat
//                     device buffers, reduce-scattered during backward (beginBackward/finish) or
//                     after it; full-state checkpoints that load at any world size
//   zero_layout.ts    ZeRO's flat layout: parameter offsets, buckets, each rank's slices
//   hostfile.ts       hostfiles (`host slots=N`), include/exclude/num_nodes/num_gpus filters
//   runners.ts        per-node pdsh commands, srun and mpirun lines, exported variables
//   launcher.ts       `neox launch`: supervises local ranks (torchrun-like: fail fast, signals,
//                     failure report) and drives the pdsh / slurm / openmpi launchers
//
// This file: the small API the trainer calls, initDistributed() → Dist (null for one process).

import type { Backend } from '../tensor/backend.js';
import { tensor } from '../tensor/engine.js';
import type { Tensor } from '../tensor/tensor.js';
import './cpu_group.js'; // registers the 'cpu' process-group backend
import { DataParallel, parameterChecksum } from './data_parallel.js';
import { type DistEnv, readDistEnv } from './env.js';
import { type ProcessGroup, type ReduceOp, CollectiveError, createProcessGroup } from './process_group.js';
import { type Store, connectStore } from './store.js';

export { DistError, expandNodelist, parseTasksPerNode, readDistEnv } from './env.js';
export type { DistEnv, DistEnvDefaults, DistSource } from './env.js';
export { Store, StoreError, StoreServer, StoreTimeoutError, connectStore, startStoreServer } from './store.js';
export {
  CollectiveError, CompletedWork, PromiseWork, chunkBounds, createProcessGroup, registerProcessGroupBackend,
} from './process_group.js';
export type { GroupFactory, GroupInit, ProcessGroup, ReduceOp, SyncCollectives, Work } from './process_group.js';
export { syncCollectivesOf } from './process_group.js';
export { ThreadProcessGroup, threadGroupInit } from './thread_group.js';
export type { ThreadGroupInit } from './thread_group.js';
export { CpuProcessGroup, createCpuGroup } from './cpu_group.js';
export { DataParallel, buildBuckets, parameterChecksum } from './data_parallel.js';
export type { DataParallelOptions } from './data_parallel.js';
export { BUCKETS_IN_FLIGHT, ZeroOptimizer, shardRange, zeroLayout } from './zero.js';
export type { FullStateEntry, GatherUnit, ParameterGather, ZeroBucket, ZeroLayout, ZeroLayoutOptions, ZeroMemory, ZeroOptions, ZeroStage } from './zero.js';

/** The config keys initDistributed reads (NeoXConfig has them all). */
export interface DistConfig {
  master_addr?: string | null;
  master_port?: number | null;
  zero_optimization?: { reduce_bucket_size?: number } | null;
}

export interface InitOptions {
  /** Environment to read (default process.env). */
  env?: Record<string, string | undefined>;
  /** Timeout of rendezvous and of each collective, ms (default 5 min). */
  timeoutMs?: number;
  /** Process-group backend; default 'nccl' for CUDA tensors, 'cpu' otherwise. */
  groupBackend?: string;
}

const DEFAULT_TIMEOUT_MS = 5 * 60_000;

/**
 * Joins the job this process was started in (by `neox launch`, srun, mpirun): rendezvous through
 * the store on MASTER_ADDR:MASTER_PORT, then the world process group. Returns null when the world
 * has one process. Every rank must call it.
 */
export async function initDistributed(cfg: DistConfig, backend: Backend, opts: InitOptions = {}): Promise<Dist | null> {
  const env = readDistEnv(opts.env ?? process.env, { masterAddr: cfg.master_addr, masterPort: cfg.master_port });
  if (env.worldSize === 1) return null;
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const store = await connectStore(env.masterAddr, env.masterPort, env.rank, { timeoutMs });
  try {
    await store.barrier('init', env.rank, env.worldSize, timeoutMs);
    const groupBackend = opts.groupBackend ?? (backend.name === 'cuda' ? 'nccl' : 'cpu');
    const group = await createProcessGroup(groupBackend, { store, rank: env.rank, size: env.worldSize, timeoutMs, localRank: env.localRank });
    watchLauncher(opts.env ?? process.env);
    // The overlapped all-reduce needs buckets well under the model's size to overlap anything:
    // GPT-NeoX's default reduce_bucket_size (5e8) is one bucket for most models, so without ZeRO
    // buckets are capped at PyTorch DDP's 25 MiB of f32 (a smaller reduce_bucket_size wins).
    const bucket = Math.min(cfg.zero_optimization?.reduce_bucket_size ?? Infinity, DDP_BUCKET_ELEMENTS);
    return new Dist(env, store, group, backend, bucket);
  } catch (e) {
    await store.close();
    throw e;
  }
}

/** PyTorch DDP's bucket_cap_mb (25 MiB) in f32 elements. */
export const DDP_BUCKET_ELEMENTS = (25 * 2 ** 20) / 4;

/** This process's membership in a multi-process job. */
export class Dist {
  readonly rank: number;
  readonly worldSize: number;
  readonly localRank: number;
  readonly localWorldSize: number;
  private readonly dp = new WeakMap<readonly Tensor[], DataParallel>();
  private objectSeq = 0;
  private destroyed = false;

  constructor(readonly env: DistEnv, readonly store: Store, readonly group: ProcessGroup, readonly backend: Backend,
    private readonly bucketElements?: number) {
    this.rank = env.rank;
    this.worldSize = env.worldSize;
    this.localRank = env.localRank;
    this.localWorldSize = env.localWorldSize;
  }

  /** Rank 0: the one that logs, evaluates for the record and writes checkpoints. */
  get isMain(): boolean {
    return this.rank === 0;
  }

  /**
   * The data-parallel wrapper for this parameter list (built once per list; `names`, in `params`
   * order, name parameters in its errors). Its beginBackward()/finish() overlap the gradient
   * reduction with the last micro-batch's backward.
   */
  dataParallel(params: readonly Tensor[], names?: readonly string[]): DataParallel {
    let dp = this.dp.get(params);
    if (!dp) {
      dp = new DataParallel(this.group, params, { bucketElements: this.bucketElements, names });
      this.dp.set(params, dp);
    }
    return dp;
  }

  /** Makes every rank's parameters rank 0's. */
  broadcastParameters(params: readonly Tensor[]): Promise<void> {
    return this.dataParallel(params).broadcastParameters(0);
  }

  /** Averages gradients over the ranks (after the last micro-batch's backward, before clipping). */
  syncGradients(params: readonly Tensor[]): Promise<void> {
    return this.dataParallel(params).syncGradients();
  }

  /** Reduces a few numbers (losses, token counts) across ranks; every rank gets the result. */
  async allReduceNumbers(values: number[], op: ReduceOp = 'avg'): Promise<number[]> {
    const t = tensor(Float64Array.from(values), [values.length], this.backend.name === 'cpu' ? 'f64' : 'f32', this.backend).keep();
    try {
      await this.group.allReduce(t, op);
      return Array.from(t.toArray());
    } finally {
      t.dispose();
    }
  }

  /** Every rank's JSON-serializable value, in rank order (through the store; small values only). */
  async allGatherObject<T>(value: T): Promise<T[]> {
    const seq = this.objectSeq++;
    const key = (s: number, r: number) => `object/${s}/${r}`;
    await this.store.set(key(seq, this.rank), JSON.stringify(value));
    const out: T[] = [];
    for (let r = 0; r < this.worldSize; r++) out.push(JSON.parse(await this.store.getString(key(seq, r))) as T);
    // Everyone who set `seq` has read all of seq - 1, so rank 0 can drop that round now.
    if (this.rank === 0 && seq > 0) for (let r = 0; r < this.worldSize; r++) await this.store.delete(key(seq - 1, r));
    return out;
  }

  /** Throws naming the ranks whose parameters differ from rank 0's (a checksum comparison). */
  async checkParametersInSync(params: readonly Tensor[]): Promise<string> {
    const sums = await this.allGatherObject(parameterChecksum(params));
    const bad = sums.map((s, r) => (s === sums[0] ? -1 : r)).filter((r) => r >= 0);
    if (bad.length) {
      throw new CollectiveError('checkParametersInSync', this.rank, `parameters of ${bad.length === 1 ? 'rank' : 'ranks'} ${bad.join(', ')} differ from rank 0's`, bad);
    }
    return sums[0]!;
  }

  /** Waits for every rank; a timeout names the ranks that never arrived. */
  barrier(name = 'user', timeoutMs?: number): Promise<void> {
    return this.store.barrier(name, this.rank, this.worldSize, timeoutMs);
  }

  /** Waits for every rank, then closes the group and the store (rank 0 last, since it hosts the store). */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    try {
      await this.store.barrier('destroy', this.rank, this.worldSize);
    } finally {
      await this.group.destroy();
      await this.store.close();
    }
  }
}

/** Ranks started by `neox launch` exit when the launcher is gone (checked while idle, every second). */
function watchLauncher(env: Record<string, string | undefined>): void {
  const pid = Number(env.NEOX_LAUNCHER_PID);
  if (!Number.isInteger(pid) || pid <= 0 || process.ppid !== pid) return;
  setInterval(() => {
    if (process.ppid !== pid) {
      process.stderr.write(`neox: the launcher (pid ${pid}) exited; rank ${env.RANK ?? '?'} stops\n`);
      process.exit(1);
    }
  }, 1000).unref();
}
