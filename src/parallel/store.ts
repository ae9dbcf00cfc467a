// The rendezvous store: a small TCP key-value server that rank 0 hosts on MASTER_ADDR:MASTER_PORT,
// and the client every rank (rank 0 included) talks to it with. Like torch.distributed's TCPStore:
// ranks exchange addresses and the NCCL unique id through it, count arrivals and wait at barriers.
//
// defines: StoreServer, Store, StoreError, StoreTimeoutError, StoreOptions, connectStore,
//          startStoreServer, isLoopback
//
// Wire format, both directions: u32 header length, u32 body length (big-endian), a JSON header,
// then the body bytes (values are bytes; the NCCL id has NUL bytes in it).
//   request  { id, op: set|get|wait|check|add|delete|barrier|arrived, key?, keys?, delta?, name?, rank?, size? }
//   response { id, ok: true, value?, exists?, ranks? } or { id, ok: false, error }
// get/wait/barrier block on the server until the keys exist or everyone arrived; the timeout is the
// client's: it gives up, asks which keys or ranks are missing, and names them in the error.
//
// The server runs on rank 0's event loop, so it answers while rank 0 awaits (collectives, barriers,
// rendezvous) and queues requests while rank 0 computes; a client waiting on the store measures
// its timeout on its own clock, so a busy rank 0 only delays, never fails, an operation that ends
// in time.

import { type AddressInfo, type Server, type Socket, connect, createServer } from 'node:net';
import { ByteQueue } from './wire.js';

export class StoreError extends Error {
  override name = 'NeoxError';
}

export class StoreTimeoutError extends StoreError {}

export interface StoreOptions {
  /** Default timeout of blocking operations, ms (torch's default is 30 min; ours 5 min). */
  timeoutMs?: number;
  /** This process's rank, used in error messages. */
  rank?: number;
}

const DEFAULT_TIMEOUT_MS = 5 * 60_000;

interface Header {
  id: number;
  op?: string;
  key?: string;
  keys?: string[];
  delta?: number;
  name?: string;
  rank?: number;
  size?: number;
  ok?: boolean;
  error?: string;
  exists?: boolean[];
  ranks?: number[];
  value?: number | boolean;
}

interface Frame {
  header: Header;
  body: Buffer;
}

function encodeFrame(header: Header, body: Uint8Array = EMPTY): Buffer {
  const h = Buffer.from(JSON.stringify(header), 'utf8');
  const prefix = Buffer.allocUnsafe(8);
  prefix.writeUInt32BE(h.length, 0);
  prefix.writeUInt32BE(body.byteLength, 4);
  return Buffer.concat([prefix, h, body]);
}

const EMPTY = new Uint8Array(0);

/** Splits a byte stream into frames. */
class FrameReader {
  private readonly queue = new ByteQueue();
  constructor(private readonly onFrame: (f: Frame) => void) {}

  push(chunk: Buffer): void {
    this.queue.push(chunk);
    while (this.queue.length >= 8) {
      const head = this.queue.peek(8);
      const hLen = head.readUInt32BE(0);
      const bLen = head.readUInt32BE(4);
      if (this.queue.length < 8 + hLen + bLen) return;
      this.queue.read(8);
      const header = JSON.parse(this.queue.read(hLen).toString('utf8')) as Header;
      this.onFrame({ header, body: this.queue.read(bLen) });
    }
  }
}

/** True for addresses only this machine can reach (127.x, ::1, localhost). */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}

// ---------------------------------------------------------------------------------------------
// Server

interface Waiter {
  keys: string[];
  reply: () => void;
}

export class StoreServer {
  private readonly data = new Map<string, Buffer>();
  private waiters: Waiter[] = [];
  /** Barrier name → ranks arrived, with their pending replies. */
  private readonly barriers = new Map<string, { size: number; arrived: Map<number, () => void> }>();
  private readonly sockets = new Set<Socket>();

  private constructor(private readonly server: Server, readonly host: string, readonly port: number) {
    server.on('connection', (s) => this.accept(s));
  }

  /**
   * Listens on host:port (port 0 picks a free one). A loopback host binds only loopback; any other
   * binds every interface, since a host name may resolve to an address other machines can't use.
   */
  static async listen(host: string, port: number): Promise<StoreServer> {
    const server = createServer({ noDelay: true });
    const bindHost = isLoopback(host) ? (host === 'localhost' ? '127.0.0.1' : host) : undefined;
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) => {
        reject(err.code === 'EADDRINUSE'
          ? new StoreError(`cannot host the rendezvous store: port ${port} is in use on ${bindHost ?? 'this machine'} ` +
            '(another job, or a rank of an earlier run still exiting?); choose another with --master-port or MASTER_PORT')
          : new StoreError(`cannot host the rendezvous store on ${host}:${port}: ${err.message}`));
      });
      server.listen({ host: bindHost, port, exclusive: true }, () => resolve());
    });
    server.unref(); // a rank that failed must be able to exit; pending requests hold timers instead
    const actual = (server.address() as AddressInfo).port;
    return new StoreServer(server, host, actual);
  }

  private accept(socket: Socket): void {
    this.sockets.add(socket);
    socket.setNoDelay(true);
    socket.unref();
    const reader = new FrameReader((f) => this.handle(socket, f));
    socket.on('data', (c) => reader.push(c));
    socket.on('error', () => socket.destroy());
    socket.on('close', () => this.sockets.delete(socket));
  }

  private handle(socket: Socket, { header: h, body }: Frame): void {
    const send = (r: Omit<Header, 'id'>, b?: Uint8Array) => {
      if (!socket.destroyed) socket.write(encodeFrame({ id: h.id, ...r }, b));
    };
    switch (h.op) {
      case 'set':
        this.data.set(h.key!, Buffer.from(body));
        send({ ok: true });
        this.wake();
        return;
      case 'get':
        this.whenPresent([h.key!], () => send({ ok: true }, this.data.get(h.key!)));
        return;
      case 'wait':
        this.whenPresent(h.keys!, () => send({ ok: true }));
        return;
      case 'check':
        send({ ok: true, exists: h.keys!.map((k) => this.data.has(k)) });
        return;
      case 'add': {
        const old = this.data.get(h.key!);
        const value = (old ? Number(old.toString('utf8')) : 0) + h.delta!;
        this.data.set(h.key!, Buffer.from(String(value), 'utf8'));
        send({ ok: true, value });
        this.wake();
        return;
      }
      case 'delete':
        send({ ok: true, value: this.data.delete(h.key!) });
        return;
      case 'barrier': {
        let b = this.barriers.get(h.name!);
        if (!b) {
          b = { size: h.size!, arrived: new Map() };
          this.barriers.set(h.name!, b);
        }
        if (b.size !== h.size) {
          send({ ok: false, error: `barrier '${h.name}': rank ${h.rank} expects ${h.size} ranks, an earlier rank said ${b.size}` });
          return;
        }
        if (b.arrived.has(h.rank!)) {
          send({ ok: false, error: `barrier '${h.name}': rank ${h.rank} arrived twice (two processes with the same RANK?)` });
          return;
        }
        b.arrived.set(h.rank!, () => send({ ok: true }));
        if (b.arrived.size === b.size) {
          this.barriers.delete(h.name!);
          for (const reply of b.arrived.values()) reply();
        }
        return;
      }
      case 'arrived':
        send({ ok: true, ranks: [...(this.barriers.get(h.name!)?.arrived.keys() ?? [])] });
        return;
      default:
        send({ ok: false, error: `unknown store operation '${h.op}'` });
    }
  }

  private whenPresent(keys: string[], reply: () => void): void {
    if (keys.every((k) => this.data.has(k))) reply();
    else this.waiters.push({ keys, reply });
  }

  private wake(): void {
    if (this.waiters.length === 0) return;
    const still: Waiter[] = [];
    const ready: Waiter[] = [];
    for (const w of this.waiters) (w.keys.every((k) => this.data.has(k)) ? ready : still).push(w);
    this.waiters = still;
    for (const w of ready) w.reply();
  }

  /** Stops listening and closes connections: gracefully (replies already written still arrive), forcibly after 1 s. */
  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      const force = setTimeout(() => { for (const s of this.sockets) s.destroy(); }, 1000);
      this.server.close(() => {
        clearTimeout(force);
        resolve();
      });
      for (const s of this.sockets) s.end();
    });
  }
}

/** Starts a store server (rank 0). */
export function startStoreServer(host: string, port: number): Promise<StoreServer> {
  return StoreServer.listen(host, port);
}

// ---------------------------------------------------------------------------------------------
// Client

interface Pending {
  resolve: (f: Frame) => void;
  reject: (e: Error) => void;
}

export class Store {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private broken: Error | null = null;
  private readonly barrierCounts = new Map<string, number>();
  readonly timeoutMs: number;
  readonly rank: number | undefined;

  private constructor(private readonly socket: Socket, readonly host: string, readonly port: number, opts: StoreOptions,
    /** The server, when this process hosts it. */
    readonly server: StoreServer | null) {
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.rank = opts.rank;
    socket.unref(); // each pending request holds a timer, which keeps the process alive while it waits
    const reader = new FrameReader((f) => {
      const p = this.pending.get(f.header.id);
      if (!p) return; // the client already gave up on it
      this.pending.delete(f.header.id);
      if (f.header.ok) p.resolve(f);
      else p.reject(new StoreError(`rendezvous store: ${f.header.error}`));
    });
    socket.on('data', (c) => reader.push(c));
    const fail = (why: string) => {
      this.broken ??= new StoreError(`${this.who()}lost the connection to the rendezvous store at ${host}:${port} (${why}); ` +
        'rank 0 hosts it: did rank 0 exit?');
      this.rejectPending(this.broken);
    };
    socket.on('error', (e) => fail(e.message));
    socket.on('close', () => fail('closed'));
  }

  /**
   * Connects to the store at host:port, retrying while nothing listens yet (rank 0 may start
   * later than the others) until the timeout. `server` is kept so close() stops it too.
   */
  static async connect(host: string, port: number, opts: StoreOptions = {}, server: StoreServer | null = null): Promise<Store> {
    const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const deadline = Date.now() + timeoutMs;
    let delay = 20;
    let lastError = '';
    for (;;) {
      try {
        const socket = await new Promise<Socket>((resolve, reject) => {
          const s = connect({ host, port, noDelay: true });
          s.once('connect', () => {
            s.removeListener('error', reject);
            resolve(s);
          });
          s.once('error', reject);
        });
        return new Store(socket, host, port, opts, server);
      } catch (e) {
        lastError = (e as Error).message;
        if (Date.now() + delay > deadline) break;
        await sleep(delay);
        delay = Math.min(delay * 2, 1000);
      }
    }
    const who = opts.rank !== undefined ? `rank ${opts.rank}: ` : '';
    throw new StoreTimeoutError(`${who}could not reach the rendezvous store at ${host}:${port} within ${seconds(timeoutMs)} ` +
      `(last error: ${lastError}); it is hosted by rank 0, which never arrived (is it running? are MASTER_ADDR/MASTER_PORT right?)`);
  }

  /** The local address of this connection: the interface other hosts can reach this one on. */
  get localAddress(): string {
    return this.socket.localAddress ?? '127.0.0.1';
  }

  async set(key: string, value: Uint8Array | string): Promise<void> {
    await this.request({ op: 'set', key }, typeof value === 'string' ? Buffer.from(value, 'utf8') : value);
  }

  /** The value of `key`, waiting until some rank sets it. */
  async get(key: string, timeoutMs = this.timeoutMs): Promise<Buffer> {
    try {
      return (await this.request({ op: 'get', key }, undefined, timeoutMs)).body;
    } catch (e) {
      if (e instanceof StoreTimeoutError) throw new StoreTimeoutError(`${this.who()}key '${key}' was not set within ${seconds(timeoutMs)}`);
      throw e;
    }
  }

  async getString(key: string, timeoutMs = this.timeoutMs): Promise<string> {
    return (await this.get(key, timeoutMs)).toString('utf8');
  }

  /** Waits until every key is set; the timeout error lists the keys still missing. */
  async wait(keys: string[], timeoutMs = this.timeoutMs): Promise<void> {
    try {
      await this.request({ op: 'wait', keys }, undefined, timeoutMs);
    } catch (e) {
      if (!(e instanceof StoreTimeoutError)) throw e;
      const exists = await this.check(keys).catch(() => keys.map(() => false));
      const missing = keys.filter((_, i) => !exists[i]);
      throw new StoreTimeoutError(`${this.who()}timed out after ${seconds(timeoutMs)} waiting for ${missing.map((k) => `'${k}'`).join(', ')}`);
    }
  }

  /** Which of the keys are set, without waiting. */
  async check(keys: string[]): Promise<boolean[]> {
    return (await this.request({ op: 'check', keys }, undefined, Math.min(this.timeoutMs, 10_000))).header.exists!;
  }

  /** Adds `delta` to the integer at `key` (0 when unset) and returns the new value. */
  async add(key: string, delta: number): Promise<number> {
    if (!Number.isInteger(delta)) throw new StoreError(`store add: delta ${delta} is not an integer`);
    return (await this.request({ op: 'add', key, delta })).header.value as number;
  }

  async delete(key: string): Promise<boolean> {
    return (await this.request({ op: 'delete', key })).header.value as boolean;
  }

  /**
   * Waits until all `size` ranks called barrier with the same name (successive barriers of one
   * name are told apart by count, so every rank must call them in the same order). A timeout
   * names the ranks that never arrived.
   */
  async barrier(name: string, rank: number, size: number, timeoutMs = this.timeoutMs): Promise<void> {
    const n = this.barrierCounts.get(name) ?? 0;
    this.barrierCounts.set(name, n + 1);
    const full = `${name}#${n}`;
    try {
      await this.request({ op: 'barrier', name: full, rank, size }, undefined, timeoutMs);
    } catch (e) {
      if (!(e instanceof StoreTimeoutError)) throw e;
      const arrived = await this.request({ op: 'arrived', name: full }, undefined, Math.min(this.timeoutMs, 10_000))
        .then((f) => new Set(f.header.ranks!)).catch(() => new Set<number>([rank]));
      const missing = Array.from({ length: size }, (_, r) => r).filter((r) => !arrived.has(r));
      throw new StoreTimeoutError(`rank ${rank}: barrier '${name}' timed out after ${seconds(timeoutMs)}: ` +
        `${missing.length === 1 ? 'rank' : 'ranks'} ${missing.join(', ')} never arrived (of ${size})`);
    }
  }

  /** Closes the connection, and the server when this process hosts it. */
  async close(): Promise<void> {
    this.broken ??= new StoreError(`${this.who()}the store connection was closed`);
    this.rejectPending(this.broken);
    this.socket.destroy();
    await this.server?.close();
  }

  private rejectPending(e: Error): void {
    const all = [...this.pending.values()];
    this.pending.clear();
    for (const p of all) p.reject(e);
  }

  private who(): string {
    return this.rank !== undefined ? `rank ${this.rank}: ` : '';
  }

  private request(h: Omit<Header, 'id'>, body?: Uint8Array, timeoutMs = this.timeoutMs): Promise<Frame> {
    if (this.broken) return Promise.reject(this.broken);
    const id = this.nextId++;
    return new Promise<Frame>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new StoreTimeoutError(`${this.who()}store ${h.op} timed out after ${seconds(timeoutMs)}`));
      }, timeoutMs);
      this.pending.set(id, {
        resolve: (f) => { clearTimeout(timer); resolve(f); },
        reject: (e) => { clearTimeout(timer); reject(e); },
      });
      this.socket.write(encodeFrame({ id, ...h }, body));
    });
  }
}

/**
 * The store for one rank: rank 0 starts the server on host:port and connects to it; the others
 * connect (retrying until rank 0 is up).
 */
export async function connectStore(host: string, port: number, rank: number, opts: StoreOptions = {}): Promise<Store> {
  const server = rank === 0 ? await startStoreServer(host, port) : null;
  return Store.connect(host, server ? server.port : port, { ...opts, rank }, server);
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function seconds(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(ms % 1000 === 0 ? 0 : 1)} s`;
}
