// The CPU process group: collectives over a full mesh of TCP connections (one per pair of ranks),
// set up through the rendezvous store. What CI and CPU training use; the reference semantics the
// NCCL group must match.
//
// defines: CpuProcessGroup, createCpuGroup (registered as backend 'cpu')
//
// Algorithms (W members, each pair connected directly):
//   allReduce      reduce-scatter then all-gather on W near-equal chunks: rank j receives chunk j
//                  from everyone, sums the W contributions in group-rank order 0 … W-1, and sends
//                  the result to everyone. Each element is reduced once, in one fixed order, so
//                  every rank holds the same bits (and the result does not depend on who reduced
//                  it). Traffic per rank 2·(W-1)/W of the data, as a ring.
//   reduceScatter  the first half; allGather the second; broadcast root → all; barrier: an
//                  empty message from everyone to everyone.
// Inputs are read when the operation runs, in issue order, except reduceScatter's: it copies its
// input when it is issued (unless an operation still pending writes into that memory, then in
// order), and says so (Work.inputsConsumed), so the caller may free it at once. ZeRO-2 frees
// each bucket's staging buffer that way during backward, which does not yield to the event loop:
// the bytes wait in the group's copy, outside the allocator, until the collective runs.
// Frames: a 16-byte header (u32 channel, u32 seq, u32 op code, u32 byte length, big-endian),
// then the payload. A channel is (group, collective | point-to-point), FIFO per peer. The seq
// and op code are checked on receipt, so ranks that call different collectives fail with a
// message saying which, instead of exchanging the wrong bytes.
//
// Arithmetic is in the tensor's own type (f32 sums round to f32 at each step; bf16/f16 are
// summed in f32 and rounded once). Tensors must live on the CPU backend; outputs are written
// into their storage in place.
//
// Failure: a peer that closes its connection fails the pending (and every later) operation
// naming it; a peer that sends nothing fails it after the group timeout naming every rank that
// did not deliver. After a failure the group is broken: later calls fail at once.

import { randomBytes } from 'node:crypto';
import { type AddressInfo, type Server, type Socket, connect, createServer } from 'node:net';
import { CpuStorage } from '../backends/cpu/backend.js';
import { type DType, type HostArray, ITEM_SIZE, f32ToBf16, f32ToF16, toF32 } from '../tensor/dtype.js';
import type { Tensor } from '../tensor/tensor.js';
import {
  type GroupInit, type ProcessGroup, type ReduceOp, type Work, CollectiveError, PromiseWork, chunkBounds,
  registerProcessGroupBackend,
} from './process_group.js';
import type { Store } from './store.js';
import { ByteQueue, bytesOf, typedFromBytes } from './wire.js';

const HEADER_BYTES = 16;
const OPS = ['hello', 'allReduce', 'reduceScatter', 'allGather', 'broadcast', 'barrier', 'send'] as const;
type OpName = (typeof OPS)[number];
const opCode = (op: OpName, phase = 0): number => OPS.indexOf(op) * 4 + phase;
const opLabel = (code: number): string => OPS[code >> 2] ?? `op ${code}`;

interface Message {
  seq: number;
  op: number;
  payload: Buffer;
}

interface Waiter {
  resolve: (m: Message) => void;
  reject: (e: Error) => void;
}

/** One TCP connection to another rank, demultiplexed into channels. */
class Peer {
  private readonly queue = new ByteQueue();
  private readonly inbox = new Map<number, Message[]>();
  private readonly waiters = new Map<number, Waiter>();
  dead: string | null = null;

  constructor(readonly rank: number, readonly socket: Socket) {
    socket.setNoDelay(true);
    socket.unref(); // pending operations hold timers; an idle mesh must not keep the process alive
    socket.on('data', (c) => this.onData(c));
    socket.on('error', (e) => this.die(e.message));
    socket.on('close', () => this.die('connection closed'));
    socket.resume(); // readHello paused it so that nothing after the hello is lost
  }

  send(channel: number, seq: number, op: number, payload: Uint8Array[] = []): void {
    if (this.dead) return; // the receive side reports it
    const len = payload.reduce((n, p) => n + p.byteLength, 0);
    const h = Buffer.allocUnsafe(HEADER_BYTES);
    h.writeUInt32BE(channel, 0);
    h.writeUInt32BE(seq >>> 0, 4);
    h.writeUInt32BE(op, 8);
    h.writeUInt32BE(len, 12);
    this.socket.write(h);
    for (const p of payload) if (p.byteLength) this.socket.write(p);
  }

  /** The next message on a channel (one waiter per channel at a time). */
  next(channel: number): Promise<Message> {
    const queued = this.inbox.get(channel);
    if (queued?.length) return Promise.resolve(queued.shift()!);
    if (this.dead) return Promise.reject(new Error(this.dead));
    return new Promise((resolve, reject) => this.waiters.set(channel, { resolve, reject }));
  }

  cancel(channel: number): void {
    this.waiters.delete(channel);
  }

  private onData(chunk: Buffer): void {
    this.queue.push(chunk);
    while (this.queue.length >= HEADER_BYTES) {
      const h = this.queue.peek(HEADER_BYTES);
      const len = h.readUInt32BE(12);
      if (this.queue.length < HEADER_BYTES + len) return;
      const channel = h.readUInt32BE(0);
      const m: Message = { seq: h.readUInt32BE(4), op: h.readUInt32BE(8), payload: Buffer.alloc(0) };
      this.queue.read(HEADER_BYTES);
      m.payload = this.queue.read(len);
      const w = this.waiters.get(channel);
      if (w) {
        this.waiters.delete(channel);
        w.resolve(m);
      } else {
        let q = this.inbox.get(channel);
        if (!q) this.inbox.set(channel, (q = []));
        q.push(m);
      }
    }
  }

  private die(why: string): void {
    if (this.dead) return;
    this.dead = `rank ${this.rank} closed its connection (${why}); it probably exited`;
    const err = new Error(this.dead);
    for (const w of this.waiters.values()) w.reject(err);
    this.waiters.clear();
  }

  close(): void {
    this.dead ??= 'closed';
    this.socket.destroy();
  }
}

/** The connections of the world group, shared by its sub-groups. */
class Mesh {
  constructor(readonly rank: number, readonly size: number, readonly peers: (Peer | null)[]) {}

  static async connect(store: Store, rank: number, size: number, timeoutMs: number): Promise<Mesh> {
    const prefix = 'cpu_group';
    const host = normalizeHost(store.localAddress);
    if (rank === 0) await store.set(`${prefix}/token`, randomBytes(16).toString('hex'));
    const token = await store.getString(`${prefix}/token`, timeoutMs);
    const peers: (Peer | null)[] = Array.from({ length: size }, () => null);
    const server: Server = createServer({ noDelay: true });
    const accepted = new Promise<void>((resolve, reject) => {
      let expected = size - 1 - rank; // higher ranks connect to us
      if (expected === 0) resolve();
      server.on('connection', (s) => {
        readHello(s, token, timeoutMs).then((r) => {
          if (r <= rank || r >= size || peers[r]) throw new Error(`unexpected hello from rank ${r}`);
          peers[r] = new Peer(r, s);
          if (--expected === 0) resolve();
        }).catch(() => s.destroy());
      });
      server.on('error', reject);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host, port: 0 }, () => resolve());
    });
    server.unref();
    await store.set(`${prefix}/addr/${rank}`, `${host}:${(server.address() as AddressInfo).port}`);
    // Connect to every lower rank.
    const lower = Array.from({ length: rank }, (_, r) => r);
    await Promise.all(lower.map(async (r) => {
      const addr = await store.getString(`${prefix}/addr/${r}`, timeoutMs);
      const i = addr.lastIndexOf(':');
      const s = await new Promise<Socket>((resolve, reject) => {
        const sock = connect({ host: addr.slice(0, i), port: Number(addr.slice(i + 1)), noDelay: true });
        sock.once('connect', () => resolve(sock));
        sock.once('error', (e) => reject(new CollectiveError('init', rank, `cannot connect to rank ${r} at ${addr}: ${e.message}`)));
      });
      const hello = Buffer.alloc(4 + 32);
      hello.writeUInt32BE(rank, 0);
      hello.write(token, 4, 'ascii');
      s.write(hello);
      peers[r] = new Peer(r, s);
    }));
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const missing = Array.from({ length: size }, (_, r) => r).filter((r) => r > rank && !peers[r]);
        reject(new CollectiveError('init', rank, `ranks ${missing.join(', ')} did not connect within ${timeoutMs / 1000} s`, missing));
      }, timeoutMs);
    });
    try {
      await Promise.race([accepted, timeout]);
    } finally {
      clearTimeout(timer);
      server.close();
    }
    // Everyone is connected to everyone before the first collective.
    await store.barrier('cpu_group/connected', rank, size, timeoutMs);
    return new Mesh(rank, size, peers);
  }

  close(): void {
    for (const p of this.peers) p?.close();
  }
}

/** Reads the 36-byte hello (u32 rank, 32-char token) a connecting rank sends first. */
function readHello(s: Socket, token: string, timeoutMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const q = new ByteQueue();
    const timer = setTimeout(() => reject(new Error('hello timed out')), timeoutMs);
    const onData = (c: Buffer) => {
      q.push(c);
      if (q.length < 36) return;
      s.pause();
      s.removeListener('data', onData);
      clearTimeout(timer);
      const h = q.read(36);
      if (h.toString('ascii', 4, 36) !== token) return reject(new Error('bad token'));
      if (q.length) s.unshift(q.read(q.length));
      resolve(h.readUInt32BE(0));
    };
    s.on('data', onData);
  });
}

function normalizeHost(h: string): string {
  return h.startsWith('::ffff:') ? h.slice(7) : h;
}

// ---------------------------------------------------------------------------------------------
// Tensors ↔ arrays we can add

/** The array reductions run on: f32 for bf16/f16, the tensor's own otherwise. */
type ComputeArray = Float32Array | Float64Array | Int32Array | Uint16Array | Uint8Array;

function storageOf(t: Tensor, op: string, rank: number): HostArray {
  const s = t.storage;
  if (!(s instanceof CpuStorage)) {
    throw new CollectiveError(op, rank, `the CPU process group needs CPU tensors, got ${t} (CUDA tensors use the NCCL group)`);
  }
  return s.data.subarray(0, t.numel);
}

/** A fresh copy of the tensor's values in compute form. */
function readCompute(t: Tensor, op: string, rank: number): ComputeArray {
  const data = storageOf(t, op, rank);
  if (t.dtype === 'bf16' || t.dtype === 'f16') return toF32(t.dtype, data);
  return data.slice();
}

function computeCtor(dtype: DType): { new(n: number): ComputeArray; BYTES_PER_ELEMENT: number } & (new(buf: ArrayBufferLike, off: number, n: number) => ComputeArray) {
  switch (dtype) {
    case 'f64': return Float64Array as never;
    case 'i32': return Int32Array as never;
    case 'u16': return Uint16Array as never;
    case 'u8': return Uint8Array as never;
    default: return Float32Array as never; // f32, bf16, f16
  }
}

function writeCompute(t: Tensor, values: ArrayLike<number>, op: string, rank: number): void {
  const data = storageOf(t, op, rank);
  if (values.length !== t.numel) throw new Error(`internal: ${values.length} values for ${t}`);
  if (t.dtype === 'bf16') for (let i = 0; i < values.length; i++) data[i] = f32ToBf16(values[i]!);
  else if (t.dtype === 'f16') for (let i = 0; i < values.length; i++) data[i] = f32ToF16(values[i]!);
  else (data as Float32Array).set(values);
}

function reduceInto(acc: ComputeArray, x: ArrayLike<number>, op: ReduceOp): void {
  const n = acc.length;
  if (op === 'sum' || op === 'avg') for (let i = 0; i < n; i++) acc[i]! += x[i]!;
  else if (op === 'max') for (let i = 0; i < n; i++) acc[i] = Math.max(acc[i]!, x[i]!);
  else for (let i = 0; i < n; i++) acc[i] = Math.min(acc[i]!, x[i]!);
}

/** Where a CPU tensor's elements lie: its buffer and byte range (null for other tensors). */
interface ByteRange {
  buffer: ArrayBufferLike;
  start: number;
  end: number;
}

function byteRange(t: Tensor): ByteRange | null {
  const s = t.disposed ? null : t.storage;
  if (!(s instanceof CpuStorage)) return null;
  return { buffer: s.data.buffer, start: s.data.byteOffset, end: s.data.byteOffset + t.numel * ITEM_SIZE[t.dtype] };
}

// ---------------------------------------------------------------------------------------------
// The group

export class CpuProcessGroup implements ProcessGroup {
  readonly backend = 'cpu';
  readonly rank: number;
  readonly size: number;
  private tail: Promise<void> = Promise.resolve();
  private seq = 0;
  private readonly p2pSent = new Map<number, number>();
  private readonly p2pRecv = new Map<number, number>();
  private broken: Error | null = null;
  private nextSubgroup = 1;
  /** Memory that operations still pending will write (byte ranges of their outputs' buffers). */
  private readonly writing = new Set<ByteRange>();

  constructor(private readonly mesh: Mesh, readonly ranks: readonly number[], private readonly id: number,
    readonly timeoutMs: number, private readonly ownsMesh: boolean) {
    this.rank = ranks.indexOf(mesh.rank);
    this.size = ranks.length;
  }

  allReduce(t: Tensor, op: ReduceOp = 'sum'): Work {
    return this.allReduceCoalesced([t], op, 'allReduce');
  }

  allReduceCoalesced(ts: Tensor[], op: ReduceOp = 'sum', name: OpName = 'allReduce'): Work {
    return this.enqueue(name, ts, async (seq) => {
      if (ts.length === 0) return;
      const dtype = ts[0]!.dtype;
      for (const t of ts) if (t.dtype !== dtype) throw this.error(name, seq, `mixed dtypes ${dtype} and ${t.dtype} in one coalesced all-reduce`);
      const N = ts.reduce((n, t) => n + t.numel, 0);
      const Ctor = computeCtor(dtype);
      const flat = new Ctor(N);
      let off = 0;
      for (const t of ts) {
        flat.set(readCompute(t, name, this.rank), off);
        off += t.numel;
      }
      const W = this.size;
      const bounds = Array.from({ length: W }, (_, r) => chunkBounds(N, W, r));
      const mine = await this.reduceChunks(name, seq, flat, bounds, op);
      const result = await this.gatherChunks(name, seq, mine, bounds, N, Ctor);
      off = 0;
      for (const t of ts) {
        writeCompute(t, result.subarray(off, off + t.numel), name, this.rank);
        off += t.numel;
      }
    });
  }

  reduceScatter(output: Tensor, input: Tensor, op: ReduceOp = 'sum'): Work {
    // The input is copied now, unless a pending operation still writes into it (then it is read in
    // issue order): what it holds now is what it will hold when the operation runs, so the caller
    // may free it at once (inputsConsumed). A read that fails is left to the operation to report.
    let early: ComputeArray | null = null;
    if (!this.broken) {
      try {
        if (!this.writePending(input)) early = readCompute(input, 'reduceScatter', this.rank);
      } catch {
        early = null;
      }
    }
    const work = this.enqueue('reduceScatter', [output], async (seq) => {
      const n = output.numel;
      if (input.numel !== n * this.size || input.dtype !== output.dtype) {
        throw this.error('reduceScatter', seq, `input ${input} must hold size × output = ${this.size} × ${n} elements of ${output.dtype}`);
      }
      const bounds = Array.from({ length: this.size }, (_, r) => [r * n, (r + 1) * n] as [number, number]);
      const mine = await this.reduceChunks('reduceScatter', seq, early ?? readCompute(input, 'reduceScatter', this.rank), bounds, op);
      writeCompute(output, mine, 'reduceScatter', this.rank);
    });
    work.inputsConsumed = early !== null;
    return work;
  }

  allGather(output: Tensor, input: Tensor): Work {
    return this.enqueue('allGather', [output], async (seq) => {
      const n = input.numel;
      if (output.numel !== n * this.size || input.dtype !== output.dtype) {
        throw this.error('allGather', seq, `output ${output} must hold size × input = ${this.size} × ${n} elements of ${input.dtype}`);
      }
      const bounds = Array.from({ length: this.size }, (_, r) => [r * n, (r + 1) * n] as [number, number]);
      const result = await this.gatherChunks('allGather', seq, readCompute(input, 'allGather', this.rank), bounds, n * this.size, computeCtor(input.dtype));
      writeCompute(output, result, 'allGather', this.rank);
    });
  }

  broadcast(t: Tensor, root: number): Work {
    return this.enqueue('broadcast', [t], async (seq) => {
      this.checkRank(root, 'broadcast', seq);
      const code = opCode('broadcast');
      if (this.rank === root) {
        const bytes = bytesOf(readCompute(t, 'broadcast', this.rank));
        for (let r = 0; r < this.size; r++) if (r !== root) this.peer(r).send(this.channel(false), seq, code, [bytes]);
        return;
      }
      const got = await this.receive('broadcast', seq, code, [root], false);
      const values = typedFromBytes(got.get(root)!, computeCtor(t.dtype));
      if (values.length !== t.numel) throw this.error('broadcast', seq, `rank ${root} sent ${values.length} elements, this rank's tensor has ${t.numel}`);
      writeCompute(t, values, 'broadcast', this.rank);
    });
  }

  send(t: Tensor, dst: number): Work {
    return this.enqueue('send', [], async (seq) => {
      this.checkRank(dst, 'send', seq);
      const n = this.p2pSent.get(dst) ?? 0;
      this.p2pSent.set(dst, n + 1);
      this.peer(dst).send(this.channel(true), n, opCode('send'), [bytesOf(readCompute(t, 'send', this.rank))]);
    });
  }

  recv(t: Tensor, src: number): Work {
    return this.enqueue('recv', [t], async (seq) => {
      this.checkRank(src, 'recv', seq);
      const n = this.p2pRecv.get(src) ?? 0;
      this.p2pRecv.set(src, n + 1);
      const got = await this.receive('recv', n, opCode('send'), [src], true);
      const values = typedFromBytes(got.get(src)!, computeCtor(t.dtype));
      if (values.length !== t.numel) throw this.error('recv', seq, `rank ${src} sent ${values.length} elements, the receiving tensor has ${t.numel}`);
      writeCompute(t, values, 'recv', this.rank);
    });
  }

  barrier(): Work {
    return this.enqueue('barrier', [], async (seq) => {
      const code = opCode('barrier');
      const others = this.others();
      for (const r of others) this.peer(r).send(this.channel(false), seq, code);
      await this.receive('barrier', seq, code, others, false);
    });
  }

  newGroup(ranks: number[]): ProcessGroup | null {
    const id = this.id * 1000 + this.nextSubgroup++; // the same on every rank: all members call newGroup in order
    for (const r of ranks) {
      if (!Number.isInteger(r) || r < 0 || r >= this.size) throw new CollectiveError('newGroup', this.rank, `rank ${r} is not in this group of ${this.size}`);
    }
    if (new Set(ranks).size !== ranks.length) throw new CollectiveError('newGroup', this.rank, `ranks [${ranks}] repeat a rank`);
    if (!ranks.includes(this.rank)) return null;
    return new CpuProcessGroup(this.mesh, ranks.map((r) => this.ranks[r]!), id, this.timeoutMs, false);
  }

  async destroy(): Promise<void> {
    await this.tail.catch(() => {});
    this.broken ??= new CollectiveError('destroy', this.rank, 'the process group was destroyed');
    if (this.ownsMesh) this.mesh.close();
  }

  // --- internals

  /** Runs operations one after another in issue order, like a stream; `writes`: the tensors it writes. */
  private enqueue(op: string, writes: readonly Tensor[], body: (seq: number) => Promise<void>): PromiseWork {
    const seq = ++this.seq;
    const ranges = writes.flatMap((t) => byteRange(t) ?? []);
    for (const r of ranges) this.writing.add(r);
    const run = this.tail.then(async () => {
      try {
        if (this.broken) throw this.broken instanceof CollectiveError && this.broken.op === 'destroy'
          ? this.broken
          : new CollectiveError(`${op} #${seq}`, this.rank, `the group failed earlier: ${this.broken.message}`);
        try {
          await body(seq);
        } catch (e) {
          this.broken ??= e as Error;
          throw e;
        }
      } finally {
        for (const r of ranges) this.writing.delete(r);
      }
    });
    this.tail = run.catch(() => {});
    return new PromiseWork(run);
  }

  /** Whether an operation still pending writes into memory of `t`'s. */
  private writePending(t: Tensor): boolean {
    const mine = byteRange(t);
    if (!mine) return true; // not a CPU tensor: let the operation fail in order
    for (const r of this.writing) {
      if (r.buffer === mine.buffer && r.start < mine.end && mine.start < r.end) return true;
    }
    return false;
  }

  /** Phase 1: send chunk r of `flat` to rank r; reduce the W contributions to my chunk in rank order. */
  private async reduceChunks(name: OpName, seq: number, flat: ComputeArray, bounds: [number, number][], op: ReduceOp): Promise<ComputeArray> {
    const code = opCode(name, 1);
    const others = this.others();
    for (const r of others) this.peer(r).send(this.channel(false), seq, code, [bytesOf(flat.subarray(...bounds[r]!))]);
    const got = await this.receive(name, seq, code, others, false);
    const [lo, hi] = bounds[this.rank]!;
    const Ctor = flat.constructor as ReturnType<typeof computeCtor>;
    let acc: ComputeArray | null = null;
    for (let r = 0; r < this.size; r++) {
      const part = r === this.rank ? flat.subarray(lo, hi) : typedFromBytes(got.get(r)!, Ctor);
      if (part.length !== hi - lo) throw this.error(name, seq, `rank ${r} sent ${part.length} elements for chunk ${this.rank}, expected ${hi - lo} (tensor sizes differ across ranks?)`);
      if (acc === null) {
        acc = new Ctor(hi - lo);
        acc.set(part);
      } else {
        reduceInto(acc, part, op);
      }
    }
    if (op === 'avg') for (let i = 0; i < acc!.length; i++) acc![i] = acc![i]! / this.size;
    return acc!;
  }

  /** Phase 2: send my chunk to everyone; assemble all chunks in rank order. */
  private async gatherChunks(name: OpName, seq: number, mine: ComputeArray, bounds: [number, number][], N: number,
    Ctor: ReturnType<typeof computeCtor>): Promise<ComputeArray> {
    const code = opCode(name, 2);
    const others = this.others();
    const bytes = bytesOf(mine);
    for (const r of others) this.peer(r).send(this.channel(false), seq, code, [bytes]);
    const got = await this.receive(name, seq, code, others, false);
    const out = new Ctor(N);
    for (let r = 0; r < this.size; r++) {
      const [lo, hi] = bounds[r]!;
      const part = r === this.rank ? mine : typedFromBytes(got.get(r)!, Ctor);
      if (part.length !== hi - lo) throw this.error(name, seq, `rank ${r} sent ${part.length} elements, expected ${hi - lo} (tensor sizes differ across ranks?)`);
      out.set(part, lo);
    }
    return out;
  }

  /**
   * One message from each of `from` (group ranks) on this group's channel, checked against the
   * expected seq and op code. Fails naming every rank that has not delivered by the timeout.
   */
  private receive(name: string, seq: number, code: number, from: number[], p2p: boolean): Promise<Map<number, Buffer>> {
    const channel = this.channel(p2p);
    const got = new Map<number, Buffer>();
    if (from.length === 0) return Promise.resolve(got);
    return new Promise((resolve, reject) => {
      let settled = false;
      const finish = (e: Error | null) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        for (const r of from) if (!got.has(r)) this.peer(r).cancel(channel);
        if (e) reject(e);
        else resolve(got);
      };
      const timer = setTimeout(() => {
        const missing = from.filter((r) => !got.has(r));
        finish(this.error(name, seq, `timed out after ${this.timeoutMs / 1000} s waiting for ${missing.length === 1 ? 'rank' : 'ranks'} ` +
          `${missing.map((r) => this.ranks[r]).join(', ')} (stuck, or not calling ${name})`, missing.map((r) => this.ranks[r]!)));
      }, this.timeoutMs);
      for (const r of from) {
        this.peer(r).next(channel).then((m) => {
          if (m.seq !== (seq >>> 0) || m.op !== code) {
            const what = p2p ? `message #${m.seq}` : `${opLabel(m.op)} #${m.seq}`;
            finish(this.error(name, seq, `rank ${this.ranks[r]} sent ${what} while this rank is in ${p2p ? `receive #${seq}` : `${name} #${seq}`}: ` +
              'every rank must call the same collectives in the same order'));
            return;
          }
          got.set(r, m.payload);
          if (got.size === from.length) finish(null);
        }, (e: Error) => finish(this.error(name, seq, e.message, [this.ranks[r]!])));
      }
    });
  }

  private channel(p2p: boolean): number {
    return this.id * 2 + (p2p ? 1 : 0);
  }

  private peer(groupRank: number): Peer {
    const p = this.mesh.peers[this.ranks[groupRank]!];
    if (!p) throw new Error(`internal: no connection to rank ${this.ranks[groupRank]}`);
    return p;
  }

  private others(): number[] {
    return Array.from({ length: this.size }, (_, r) => r).filter((r) => r !== this.rank);
  }

  private checkRank(r: number, op: string, seq: number): void {
    if (!Number.isInteger(r) || r < 0 || r >= this.size || r === this.rank && op !== 'broadcast') {
      throw this.error(op, seq, `peer ${r} is not another rank of this group of ${this.size}`);
    }
  }

  private error(op: string, seq: number, detail: string, missing: number[] = []): CollectiveError {
    const where = this.size === this.mesh.size ? '' : ` (group of ranks ${this.ranks.join(',')})`;
    return new CollectiveError(`${op} #${seq}${where}`, this.mesh.rank, detail, missing);
  }
}

/** The world group over TCP; every rank calls it with the same store. */
export async function createCpuGroup(init: GroupInit): Promise<CpuProcessGroup> {
  const mesh = await Mesh.connect(init.store, init.rank, init.size, init.timeoutMs);
  return new CpuProcessGroup(mesh, Array.from({ length: init.size }, (_, r) => r), 0, init.timeoutMs, true);
}

registerProcessGroupBackend('cpu', createCpuGroup);
