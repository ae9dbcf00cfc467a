// The process-group interface: collectives over tensors among the ranks of a job, implemented by
// cpu_group.ts (TCP, for CI and CPU training) and later by an NCCL group (CUDA tensors, streams).
//
// defines: ReduceOp, Work, ProcessGroup, SyncCollectives, syncCollectivesOf, CollectiveError, CompletedWork, PromiseWork,
//          GroupFactory, GroupInit, registerProcessGroupBackend, createProcessGroup, chunkBounds
//
// Semantics (those of torch.distributed / NCCL, so an NCCL group can slot in unchanged):
// - Every member calls the same collectives in the same order. Ranks, roots and peers are ranks
//   *within the group* (0 … size-1); `ranks` maps them to global ranks.
// - Every call returns at once with a Work. Operations of one group run in issue order (a
//   stream); `await work` (or work.wait()) resolves when this rank's part is done and the output
//   tensors hold the result. Until then, neither read outputs nor write inputs: on CUDA the
//   NCCL group records an event, and wait() makes the compute stream wait on it, so
//   communication overlaps compute without the host blocking.
// - Releasing memory early, without awaiting (what ZeRO-2 does from backward's gradient-ready hook,
//   which cannot await): `work.inputsConsumed` true means the group has already read the inputs
//   (the CPU group copies a reduce-scatter's input when it is issued), so they may be freed or
//   overwritten now; `work.streamWait()`, where defined (NCCL), orders the compute stream after the
//   operation at once, so any device work queued afterwards (a read of the outputs, a free to the
//   stream-ordered allocator and the reuse of that memory) comes after it. Neither blocks the host.
// - Results are identical on every rank (bitwise): a reduction sums contributions in group-rank
//   order, whoever computes it. `avg` is that sum divided by the group size.
// - A peer that dies or never sends makes the operation fail with a CollectiveError naming the
//   operation, this rank and the missing ranks, within the group's timeout, instead of hanging.
// - Shapes: reduceScatter(output (n), input (size·n)): rank r gets the reduction of chunk r;
//   allGather(output (size·n), input (n)): chunk r of output is rank r's input.
// - In place (NCCL's in-place forms, which ZeRO uses on slices of its flat buffers): reduceScatter
//   may take as output chunk `rank` of its input, allGather as input chunk `rank` of its output.
//   Tensors may be views (tensor/views.ts: sliceView) of a larger buffer.
// - Synchronous collectives (SyncCollectives, optional): allGatherNow / reduceScatterNow return
//   when the result is usable in stream order, from code that cannot await (ZeRO stage 3 gathers
//   a layer's parameters from inside the model's forward, and inside backward when activation
//   checkpointing recomputes a layer). NCCL: issue, then Work.streamWait() (the host does not
//   block; kernels queued afterwards see the result). The in-process worker-thread group
//   (thread_group.ts, tests) completes them before returning. The TCP CPU group has none: its
//   collectives are asynchronous work on the event loop, which a synchronous caller would starve.

import type { Tensor } from '../tensor/tensor.js';
import type { Store } from './store.js';

export type ReduceOp = 'sum' | 'avg' | 'max' | 'min';

/** A handle on an operation in flight; awaitable. */
export interface Work extends PromiseLike<void> {
  /** Resolves when the operation's results are ready for this rank (rejects with a CollectiveError). */
  wait(): Promise<void>;
  /** Whether it has finished (successfully or not). */
  readonly completed: boolean;
  /**
   * True when the operation has already read its inputs, so the caller may free or overwrite them
   * now (outputs still need wait()). The CPU group's reduceScatter copies its input when issued,
   * unless an operation still pending writes into it. Absent or false: keep inputs until wait().
   */
  readonly inputsConsumed?: boolean;
  /**
   * Defined where waiting needs no host wait (NCCL): makes the compute stream wait for the
   * operation right now, as wait() does, and throws its CollectiveError if it failed. Device work
   * queued afterwards, freeing its tensors included, is ordered after the operation. Calling it
   * early makes the compute stream stall until the collective is done.
   */
  streamWait?(): void;
}

export interface ProcessGroup {
  /** 'cpu' or 'nccl'. */
  readonly backend: string;
  /** This process's rank within the group. */
  readonly rank: number;
  readonly size: number;
  /** Global rank of each member, in group-rank order. */
  readonly ranks: readonly number[];

  /** In place: every rank's tensor becomes the reduction over all ranks. */
  allReduce(t: Tensor, op?: ReduceOp): Work;
  /** allReduce of several tensors of one dtype as one operation (a gradient bucket). */
  allReduceCoalesced(ts: Tensor[], op?: ReduceOp): Work;
  /** output (n) ← reduction of chunk `rank` of every rank's input (size·n). */
  reduceScatter(output: Tensor, input: Tensor, op?: ReduceOp): Work;
  /** output (size·n) ← every rank's input (n), in rank order. */
  allGather(output: Tensor, input: Tensor): Work;
  /** In place: every rank's tensor becomes root's. */
  broadcast(t: Tensor, root: number): Work;
  send(t: Tensor, dst: number): Work;
  /** Fills `t` with what `src` sent (same numel and dtype). */
  recv(t: Tensor, src: number): Work;
  barrier(): Work;
  /**
   * A group of some of this group's ranks (group ranks, listed in the new group's order). Every
   * member of this group must call it, in the same order; returns null on non-members.
   */
  newGroup(ranks: number[]): ProcessGroup | null;
  /** Releases connections (communicators); the group can't be used afterwards. */
  destroy(): Promise<void>;
}

/**
 * Collectives whose result is usable (in stream order) when the call returns; same shapes and
 * semantics as ProcessGroup.allGather / reduceScatter, in the same issue order as every other
 * collective of the group.
 */
export interface SyncCollectives {
  allGatherNow(output: Tensor, input: Tensor): void;
  reduceScatterNow(output: Tensor, input: Tensor, op?: ReduceOp): void;
}

/** The group's synchronous collectives, or null when it has none (the TCP CPU group). */
export function syncCollectivesOf(g: ProcessGroup): (ProcessGroup & SyncCollectives) | null {
  const s = g as Partial<SyncCollectives>;
  return typeof s.allGatherNow === 'function' && typeof s.reduceScatterNow === 'function' ? (g as ProcessGroup & SyncCollectives) : null;
}

/** What a backend needs to build the world group. */
export interface GroupInit {
  store: Store;
  rank: number;
  size: number;
  /** Default timeout of each operation, ms. */
  timeoutMs: number;
  /** GPU ordinal for NCCL (the local rank); unused on CPU. */
  localRank?: number;
}

export type GroupFactory = (init: GroupInit) => Promise<ProcessGroup>;

const factories = new Map<string, GroupFactory>();

/** Makes a backend available to createProcessGroup; the CUDA module registers 'nccl'. */
export function registerProcessGroupBackend(name: string, factory: GroupFactory): void {
  factories.set(name, factory);
}

/** The world group of `backend`, built collectively (every rank calls it) over the store. */
export async function createProcessGroup(backend: string, init: GroupInit): Promise<ProcessGroup> {
  const f = factories.get(backend);
  if (!f) {
    const known = [...factories.keys()].join(', ') || 'none';
    throw new CollectiveError('init', init.rank,
      `no '${backend}' process-group backend is registered (available: ${known})` +
      (backend === 'nccl' ? '; the CUDA backend registers it when it loads and finds a GPU: train with device cuda, or device cpu for CPU ranks' : ''));
  }
  return f(init);
}

export class CollectiveError extends Error {
  override name = 'NeoxError';
  constructor(readonly op: string, readonly rank: number, detail: string, readonly missingRanks: number[] = []) {
    super(`${op} on rank ${rank}: ${detail}`);
  }
}

/** A Work over a promise. A failure is held until someone waits (no unhandled rejection). */
export class PromiseWork implements Work {
  private done = false;
  /** Set by a group that read the inputs when the operation was issued (see Work). */
  inputsConsumed = false;
  private readonly promise: Promise<void>;

  constructor(promise: Promise<void>) {
    this.promise = promise.finally(() => {
      this.done = true;
    });
    this.promise.catch(() => {});
  }

  get completed(): boolean {
    return this.done;
  }

  wait(): Promise<void> {
    return this.promise;
  }

  then<A = void, B = never>(onOk?: ((v: void) => A | PromiseLike<A>) | null, onErr?: ((e: unknown) => B | PromiseLike<B>) | null): PromiseLike<A | B> {
    return this.promise.then(onOk, onErr);
  }
}

export class CompletedWork extends PromiseWork {
  constructor() {
    super(Promise.resolve());
  }
}

/** [start, end) of chunk r of n elements split into `parts` nearly equal contiguous chunks. */
export function chunkBounds(n: number, parts: number, r: number): [number, number] {
  return [Math.floor((r * n) / parts), Math.floor(((r + 1) * n) / parts)];
}
