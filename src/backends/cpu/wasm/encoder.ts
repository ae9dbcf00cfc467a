// A tiny WebAssembly binary encoder: just enough to emit the CPU backend's generated kernels.
//
//   uleb / sleb            LEB128 integers
//   Code                   a function body builder: locals, control flow (block/loop/if/br_if),
//                          i32 add/sub/mul, f32 and v128 loads/stores, load32_splat, f32x4 add/mul
//   encodeModule(spec)     module bytes: type, function, memory, export and code sections
//
// Standard WebAssembly 1.0 plus the fixed-width SIMD proposal (Node >= 16.4); no relaxed-simd.
// Nothing here imports anything, so the worker threads can load it.

export const I32 = 0x7f;
export const F32 = 0x7d;
export const V128 = 0x7b;
export type ValType = typeof I32 | typeof F32 | typeof V128;

/** Unsigned LEB128. */
export function uleb(n: number, out: number[] = []): number[] {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new Error(`uleb: bad value ${n}`);
  do {
    let byte = n & 0x7f;
    n = Math.floor(n / 128);
    if (n !== 0) byte |= 0x80;
    out.push(byte);
  } while (n !== 0);
  return out;
}

/** Signed LEB128 (for i32.const: any value in [-2^31, 2^32)). */
export function sleb(n: number, out: number[] = []): number[] {
  if (!Number.isInteger(n)) throw new Error(`sleb: bad value ${n}`);
  n = n | 0; // i32.const takes the two's-complement value
  for (;;) {
    const byte = n & 0x7f;
    n >>= 7;
    const done = (n === 0 && (byte & 0x40) === 0) || (n === -1 && (byte & 0x40) !== 0);
    out.push(done ? byte : byte | 0x80);
    if (done) return out;
  }
}

function utf8(s: string): number[] {
  const b = new TextEncoder().encode(s);
  return [...uleb(b.length), ...b];
}

const SIMD = 0xfd;

/** Builds one function body. Locals are numbered after the parameters, in order of `local()`. */
export class Code {
  readonly bytes: number[] = [];
  private readonly locals: ValType[] = [];

  constructor(private readonly nParams: number) {}

  /** Declares a local of the given type and returns its index. */
  local(t: ValType): number {
    this.locals.push(t);
    return this.nParams + this.locals.length - 1;
  }

  private op(...b: number[]): this { this.bytes.push(...b); return this; }
  private simd(op: number, ...imm: number[]): this { this.bytes.push(SIMD, ...uleb(op), ...imm); return this; }
  private memarg(alignLog2: number, offset: number): number[] { return [...uleb(alignLog2), ...uleb(offset)]; }

  // control (block type: empty)
  block(): this { return this.op(0x02, 0x40); }
  loop(): this { return this.op(0x03, 0x40); }
  if_(): this { return this.op(0x04, 0x40); }
  else_(): this { return this.op(0x05); }
  end(): this { return this.op(0x0b); }
  brIf(depth: number): this { return this.op(0x0d, ...uleb(depth)); }

  // locals
  get(i: number): this { return this.op(0x20, ...uleb(i)); }
  set(i: number): this { return this.op(0x21, ...uleb(i)); }
  tee(i: number): this { return this.op(0x22, ...uleb(i)); }

  // i32
  i32Const(n: number): this { return this.op(0x41, ...sleb(n)); }
  i32Add(): this { return this.op(0x6a); }
  i32Sub(): this { return this.op(0x6b); }
  i32Mul(): this { return this.op(0x6c); }
  /** local[i] += n (n a constant). */
  addTo(i: number, n: number): this { return this.get(i).i32Const(n).i32Add().set(i); }
  /** local[i] += local[j]. */
  addLocal(i: number, j: number): this { return this.get(i).get(j).i32Add().set(i); }

  // memory
  f32Load(offset = 0): this { return this.op(0x2a, ...this.memarg(2, offset)); }
  f32Store(offset = 0): this { return this.op(0x38, ...this.memarg(2, offset)); }

  // v128 (SIMD opcodes, prefix 0xfd)
  v128Load(offset = 0, alignLog2 = 4): this { return this.simd(0x00, ...this.memarg(alignLog2, offset)); }
  v128Load32Splat(offset = 0): this { return this.simd(0x09, ...this.memarg(2, offset)); }
  v128Store(offset = 0, alignLog2 = 4): this { return this.simd(0x0b, ...this.memarg(alignLog2, offset)); }
  v128Const0(): this { return this.simd(0x0c, ...new Array<number>(16).fill(0)); }
  f32x4Add(): this { return this.simd(0xe4); }
  f32x4Mul(): this { return this.simd(0xe6); }

  /** The body as it goes in the code section: size, local declarations, instructions, end. */
  encode(): number[] {
    const decl: number[] = [];
    // Run-length groups of equal types.
    const groups: [number, ValType][] = [];
    for (const t of this.locals) {
      const last = groups[groups.length - 1];
      if (last && last[1] === t) last[0]++;
      else groups.push([1, t]);
    }
    uleb(groups.length, decl);
    for (const [n, t] of groups) { uleb(n, decl); decl.push(t); }
    const body = [...decl, ...this.bytes, 0x0b];
    return [...uleb(body.length), ...body];
  }
}

export interface FuncSpec {
  name: string;
  params: ValType[];
  results: ValType[];
  code: Code;
}

export interface ModuleSpec {
  funcs: FuncSpec[];
  /** Initial pages (64 KiB each) of the module's own memory, exported as "memory". */
  memoryPages: number;
}

function section(id: number, payload: number[]): number[] {
  return [id, ...uleb(payload.length), ...payload];
}

function vec(items: number[][]): number[] {
  const out = uleb(items.length);
  for (const it of items) for (const b of it) out.push(b);
  return out;
}

/** Encodes a module: one type per function, a memory (exported as "memory"), every function exported. */
export function encodeModule(spec: ModuleSpec): Uint8Array<ArrayBuffer> {
  const types = spec.funcs.map((f) => [0x60, ...uleb(f.params.length), ...f.params, ...uleb(f.results.length), ...f.results]);
  const funcs = spec.funcs.map((_, i) => uleb(i));
  const memory = [[0x00, ...uleb(spec.memoryPages)]];
  const exports = [
    [...utf8('memory'), 0x02, 0x00],
    ...spec.funcs.map((f, i) => [...utf8(f.name), 0x00, ...uleb(i)]),
  ];
  const codes = spec.funcs.map((f) => f.code.encode());
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, vec(types)),
    ...section(3, vec(funcs)),
    ...section(5, vec(memory)),
    ...section(7, vec(exports)),
    ...section(10, vec(codes)),
  ]);
}
