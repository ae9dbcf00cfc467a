// An in-process process group whose ranks are threads (the main thread and worker_threads, or all
// workers) of one process, exchanging through a SharedArrayBuffer with Atomics barriers. Every
// collective completes before it returns, so the group has synchronous collectives
// (SyncCollectives: what ZeRO stage 3 needs to gather a layer's parameters from inside forward
// and backward), which the TCP CPU group cannot offer. For tests of stage 3 on CPU, in CI.
//
// defines: ThreadGroupInit, threadGroupInit, ThreadProcessGroup
//
// Usage: the parent makes one ThreadGroupInit (threadGroupInit(W)) and hands it to each of the W
// threads (postMessage / workerData: SharedArrayBuffers are shared, not copied); thread r builds
// new ThreadProcessGroup(init, r). Every rank must call the same collectives in the same order.
//
// Exchange: W scratch regions of `scratchBytes` each in one SharedArrayBuffer; each collective
// goes in pieces that fit: every rank writes its part into its region, barrier, every rank reads
// what it needs from all regions, barrier. Reductions are those of the TCP CPU group (cpu_group.ts):
// in the tensor's own type, contributions summed in group-rank order 0 … W-1, `avg` that sum
// divided by W, so every rank gets the same bits. f32, f64 and i32 tensors can be reduced; any
// dtype gathered or broadcast. The tensors are copied through the scratch (a CPU tensor's own
// memory may be an ordinary ArrayBuffer, invisible to the other threads).
// A barrier records each rank's operation code first and checks them, so ranks that call
// different collectives fail with a message instead of exchanging the wrong bytes; a rank that
// does not arrive within the timeout fails the waiting ranks (the group is then broken).
// Point-to-point and sub-groups are not supported.

import { CpuStorage } from '../backends/cpu/backend.js';
import { ITEM_SIZE } from '../tensor/dtype.js';
import type { Tensor } from '../tensor/tensor.js';
import { type ProcessGroup, type ReduceOp, type SyncCollectives, type Work, CollectiveError, PromiseWork } from './process_group.js';

export interface ThreadGroupInit {
  size: number;
  /** [0]: arrivals, [1]: barrier generation, [2]: broken flag, [3 + (generation & 1)·size + r]: rank r's operation code (two banks, so a rank already at the next barrier does not overwrite what a slower one still checks). */
  control: SharedArrayBuffer;
  /** size regions of scratchBytes each. */
  data: SharedArrayBuffer;
  scratchBytes: number;
  timeoutMs: number;
}

/** The shared state of a group of `size` thread ranks (make it once, give it to every rank). */
export function threadGroupInit(size: number, scratchBytes = 1 << 20, timeoutMs = 60_000): ThreadGroupInit {
  if (!Number.isInteger(size) || size < 1) throw new Error(`threadGroupInit: size ${size}`);
  const bytes = Math.max(64, Math.floor(scratchBytes / 64) * 64);
  return { size, control: new SharedArrayBuffer(4 * (3 + 2 * size)), data: new SharedArrayBuffer(bytes * size), scratchBytes: bytes, timeoutMs };
}

const OPS = ['allReduce', 'reduceScatter', 'allGather', 'broadcast', 'barrier'] as const;
type OpName = (typeof OPS)[number];

type Reducible = Float32Array | Float64Array | Int32Array;

function bytesOf(t: Tensor, op: string, rank: number): Uint8Array {
  const s = t.storage;
  if (!(s instanceof CpuStorage)) throw new CollectiveError(op, rank, `${t} is not on the CPU backend`);
  return new Uint8Array(s.data.buffer, s.data.byteOffset, t.numel * ITEM_SIZE[t.dtype]);
}

function reducibleOf(t: Tensor, op: string, rank: number): Reducible {
  const s = t.storage;
  if (!(s instanceof CpuStorage)) throw new CollectiveError(op, rank, `${t} is not on the CPU backend`);
  const d = s.data;
  if (!(d instanceof Float32Array || d instanceof Float64Array || d instanceof Int32Array) || !['f32', 'f64', 'i32'].includes(t.dtype)) {
    throw new CollectiveError(op, rank, `the thread group reduces f32, f64 and i32 tensors, not ${t.dtype}`);
  }
  return d.subarray(0, t.numel);
}

function ctorOf(a: Reducible): new (buf: ArrayBufferLike, off: number, n: number) => Reducible {
  return a.constructor as new (buf: ArrayBufferLike, off: number, n: number) => Reducible;
}

export class ThreadProcessGroup implements ProcessGroup, SyncCollectives {
  readonly backend = 'threads';
  readonly size: number;
  readonly ranks: readonly number[];
  private readonly ctl: Int32Array;
  private readonly scratch: Uint8Array;
  private readonly region: number;
  private destroyed = false;

  constructor(readonly init: ThreadGroupInit, readonly rank: number) {
    this.size = init.size;
    if (!Number.isInteger(rank) || rank < 0 || rank >= this.size) throw new Error(`ThreadProcessGroup: rank ${rank} of ${this.size}`);
    this.ranks = Array.from({ length: this.size }, (_, r) => r);
    this.ctl = new Int32Array(init.control);
    this.scratch = new Uint8Array(init.data);
    this.region = init.scratchBytes;
  }

  // --- synchronous collectives

  allGatherNow(output: Tensor, input: Tensor): void {
    const op = 'allGather';
    const n = input.numel * ITEM_SIZE[input.dtype];
    if (output.numel !== input.numel * this.size || output.dtype !== input.dtype) {
      throw new CollectiveError(op, this.rank, `output ${output} must hold size × input = ${this.size} × ${input.numel} elements of ${input.dtype}`);
    }
    const src = bytesOf(input, op, this.rank);
    const dst = bytesOf(output, op, this.rank);
    const step = this.region;
    for (let off = 0; off === 0 || off < n; off += step) {
      const len = Math.min(step, n - off);
      this.scratch.set(src.subarray(off, off + len), this.rank * this.region);
      this.barrier_(op);
      for (let r = 0; r < this.size; r++) dst.set(this.scratch.subarray(r * this.region, r * this.region + len), r * n + off);
      this.barrier_(op);
    }
  }

  reduceScatterNow(output: Tensor, input: Tensor, op: ReduceOp = 'sum'): void {
    const name = 'reduceScatter';
    const n = output.numel;
    if (input.numel !== n * this.size || input.dtype !== output.dtype) {
      throw new CollectiveError(name, this.rank, `input ${input} must hold size × output = ${this.size} × ${n} elements of ${output.dtype}`);
    }
    const inp = reducibleOf(input, name, this.rank);
    const out = reducibleOf(output, name, this.rank);
    const Ctor = ctorOf(inp);
    const item = inp.BYTES_PER_ELEMENT;
    const step = Math.max(1, Math.floor(this.region / (item * this.size)));
    for (let off = 0; off === 0 || off < n; off += step) {
      const len = Math.min(step, n - off);
      const mine = new Ctor(this.scratch.buffer, this.rank * this.region, this.size * len);
      for (let r = 0; r < this.size; r++) mine.set(inp.subarray(r * n + off, r * n + off + len), r * len);
      this.barrier_(name);
      const acc = this.reduce(Ctor, (s) => s * this.region + this.rank * len * item, len, op);
      this.barrier_(name);
      out.set(acc, off);
    }
  }

  /** Sum (etc.) over the regions, in rank order, of `len` elements at byteAt(region). */
  private reduce(Ctor: new (buf: ArrayBufferLike, off: number, n: number) => Reducible, byteAt: (s: number) => number, len: number, op: ReduceOp): Reducible {
    const first = new Ctor(this.scratch.buffer, byteAt(0), len);
    const acc = first.slice();
    for (let s = 1; s < this.size; s++) {
      const x = new Ctor(this.scratch.buffer, byteAt(s), len);
      if (op === 'sum' || op === 'avg') for (let i = 0; i < len; i++) acc[i]! += x[i]!;
      else if (op === 'max') for (let i = 0; i < len; i++) acc[i] = Math.max(acc[i]!, x[i]!);
      else for (let i = 0; i < len; i++) acc[i] = Math.min(acc[i]!, x[i]!);
    }
    if (op === 'avg') for (let i = 0; i < len; i++) acc[i] = acc[i]! / this.size;
    return acc;
  }

  private allReduceNow(t: Tensor, op: ReduceOp): void {
    const data = reducibleOf(t, 'allReduce', this.rank);
    const Ctor = ctorOf(data);
    const step = Math.max(1, Math.floor(this.region / data.BYTES_PER_ELEMENT));
    for (let off = 0; off === 0 || off < data.length; off += step) {
      const len = Math.min(step, data.length - off);
      new Ctor(this.scratch.buffer, this.rank * this.region, len).set(data.subarray(off, off + len));
      this.barrier_('allReduce');
      const acc = this.reduce(Ctor, (s) => s * this.region, len, op);
      this.barrier_('allReduce');
      data.set(acc, off);
    }
  }

  private broadcastNow(t: Tensor, root: number): void {
    if (!Number.isInteger(root) || root < 0 || root >= this.size) throw new CollectiveError('broadcast', this.rank, `root ${root} is not a rank of this group`);
    const data = bytesOf(t, 'broadcast', this.rank);
    for (let off = 0; off === 0 || off < data.length; off += this.region) {
      const len = Math.min(this.region, data.length - off);
      if (this.rank === root) this.scratch.set(data.subarray(off, off + len), 0);
      this.barrier_('broadcast');
      if (this.rank !== root) data.set(this.scratch.subarray(0, len), off);
      this.barrier_('broadcast');
    }
  }

  /** Waits until every rank has arrived (at the same operation). */
  private barrier_(op: OpName): void {
    if (this.destroyed) throw new CollectiveError(op, this.rank, 'the group was destroyed');
    const c = this.ctl;
    if (Atomics.load(c, 2) !== 0) throw new CollectiveError(op, this.rank, 'the group is broken (an earlier operation failed on some rank)');
    const gen = Atomics.load(c, 1);
    const bank = 3 + (gen & 1) * this.size;
    Atomics.store(c, bank + this.rank, OPS.indexOf(op) + 1);
    if (Atomics.add(c, 0, 1) === this.size - 1) {
      Atomics.store(c, 0, 0);
      Atomics.add(c, 1, 1);
      Atomics.notify(c, 1);
    } else {
      const deadline = performance.now() + this.init.timeoutMs;
      while (Atomics.load(c, 1) === gen) {
        const left = deadline - performance.now();
        if (left <= 0 || Atomics.wait(c, 1, gen, left) === 'timed-out' && Atomics.load(c, 1) === gen) {
          Atomics.store(c, 2, 1);
          throw new CollectiveError(op, this.rank, `not every rank arrived within ${this.init.timeoutMs} ms`);
        }
      }
    }
    for (let r = 0; r < this.size; r++) {
      const code = Atomics.load(c, bank + r);
      if (code !== OPS.indexOf(op) + 1) {
        Atomics.store(c, 2, 1);
        throw new CollectiveError(op, this.rank, `rank ${r} called ${OPS[code - 1] ?? 'something else'} instead`, [r]);
      }
    }
  }

  // --- ProcessGroup: each operation completes before the call returns

  private run(fn: () => void): Work {
    let w: PromiseWork;
    try {
      fn();
      w = new PromiseWork(Promise.resolve());
    } catch (e) {
      w = new PromiseWork(Promise.reject(e));
    }
    w.inputsConsumed = true;
    return w;
  }

  allReduce(t: Tensor, op: ReduceOp = 'sum'): Work {
    return this.run(() => this.allReduceNow(t, op));
  }

  allReduceCoalesced(ts: Tensor[], op: ReduceOp = 'sum'): Work {
    return this.run(() => { for (const t of ts) this.allReduceNow(t, op); });
  }

  reduceScatter(output: Tensor, input: Tensor, op: ReduceOp = 'sum'): Work {
    return this.run(() => this.reduceScatterNow(output, input, op));
  }

  allGather(output: Tensor, input: Tensor): Work {
    return this.run(() => this.allGatherNow(output, input));
  }

  broadcast(t: Tensor, root: number): Work {
    return this.run(() => this.broadcastNow(t, root));
  }

  barrier(): Work {
    return this.run(() => this.barrier_('barrier'));
  }

  send(): Work {
    throw new CollectiveError('send', this.rank, 'the thread group has no point-to-point operations');
  }

  recv(): Work {
    throw new CollectiveError('recv', this.rank, 'the thread group has no point-to-point operations');
  }

  newGroup(): ProcessGroup | null {
    throw new CollectiveError('newGroup', this.rank, 'the thread group has no sub-groups');
  }

  async destroy(): Promise<void> {
    this.destroyed = true;
  }
}
