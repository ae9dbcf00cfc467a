// The engine: backend and kernel registries, runKernel, the autograd tape, and memory scopes.
//
//   registerBackend / getBackend      backends by name ('cpu', 'cuda')
//   registerKernel / registerGradient one implementation per (kernel, backend); one gradient per kernel
//   runKernel(name, inputs, attrs)    dispatches to the inputs' backend and records a tape node
//   backward(loss, seed?, opts)       walks the tape in reverse, accumulating leaf gradients; each
//                                     leaf's .grad is final right after its last use, and
//                                     opts.onGradReady(leaf) says so then (also from inside
//                                     `checkpoint`'s recomputation): data parallelism and ZeRO
//                                     overlap their gradient reduction with the rest of backward;
//                                     .grad alone holds a leaf gradient's memory, so freeing it
//                                     there (ZeRO-2) frees it during backward
//   scope(fn)                         disposes every tensor created inside fn that was not returned or kept,
//                                     nor saved for backward (what each gradient reads: registerGradient's `saves`)
//   noGrad(fn)                        runs fn without recording
//
// Gradients are written once, in terms of ops, so they run on every backend.

import type { Backend } from './backend.js';
import { type DType, type HostArray, fromNumbers, hostArray } from './dtype.js';
import type { KernelAttrs, KernelName } from './kernels.js';
import { SharedStorage, Tensor } from './tensor.js';

// ---------------------------------------------------------------------------------------------
// Backends

const backends = new Map<string, Backend>();
let defaultBackendName = 'cpu';

export function registerBackend(backend: Backend): void {
  backends.set(backend.name, backend);
}

export function getBackend(name?: string): Backend {
  const b = backends.get(name ?? defaultBackendName);
  if (!b) {
    throw new Error(`backend '${name ?? defaultBackendName}' is not registered (have: ${[...backends.keys()].join(', ') || 'none'})`);
  }
  return b;
}

export function setDefaultBackend(name: string): void {
  getBackend(name);
  defaultBackendName = name;
}

// ---------------------------------------------------------------------------------------------
// Kernels and gradients

export type KernelImpl<A = unknown> = (inputs: Tensor[], attrs: A, backend: Backend) => Tensor[];

/** A tape node: the kernel that ran, its inputs and outputs, and its attributes. */
export interface TapeNode {
  readonly kernel: string;
  readonly inputs: readonly Tensor[];
  readonly outputs: readonly Tensor[];
  readonly attrs: unknown;
}

/** Gradient of a kernel: output gradients (null where an output got none) → input gradients. */
export type GradFn<A = unknown> = (dys: (Tensor | null)[], inputs: readonly Tensor[], outputs: readonly Tensor[], attrs: A) => (Tensor | null)[];

const kernels = new Map<string, Map<string, KernelImpl<any>>>();
const gradients = new Map<string, GradFn<any>>();

/** Registers `impl` for `kernel` on `backendName` ('*' for a backend-independent implementation). */
export function registerKernel<K extends KernelName>(kernel: K, backendName: string, impl: KernelImpl<KernelAttrs[K]>): void {
  let byBackend = kernels.get(kernel);
  if (!byBackend) kernels.set(kernel, (byBackend = new Map()));
  byBackend.set(backendName, impl);
}

/**
 * What a gradient function reads the *values* of (indices into its node's inputs and outputs);
 * shapes and dtypes are always available. Unlisted tensors are not saved for backward: a scope
 * ending during the forward pass frees them at once (PyTorch's saved tensors). Omitted: everything.
 */
export interface Saves {
  inputs?: readonly number[];
  outputs?: readonly number[];
}

const saves = new Map<string, Saves>();

export function registerGradient<K extends KernelName>(kernel: K, grad: GradFn<KernelAttrs[K]>, saved?: Saves): void {
  gradients.set(kernel, grad);
  if (saved) saves.set(kernel, saved);
  else saves.delete(kernel);
}

export function hasKernel(kernel: string, backendName: string): boolean {
  const m = kernels.get(kernel);
  return !!m && (m.has(backendName) || m.has('*'));
}

export function hasGradient(kernel: string): boolean {
  return gradients.has(kernel);
}

let gradEnabled = true;

/** Runs `fn` without recording any tape nodes (inference, optimizer updates). */
export function noGrad<T>(fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = false;
  try {
    return fn();
  } finally {
    gradEnabled = prev;
  }
}

export function isGradEnabled(): boolean {
  return gradEnabled;
}

/**
 * Runs a kernel on the backend of its first input (or `backend` when it has no inputs), and
 * records a tape node when gradients are on and an input requires them.
 */
export function runKernel<K extends KernelName>(kernel: K, inputs: Tensor[], attrs: KernelAttrs[K], backend?: Backend): Tensor[] {
  const be = backend ?? inputs[0]?.backend ?? getBackend();
  for (const t of inputs) {
    if (t.backend !== be) throw new Error(`${kernel}: inputs on different devices (${be.name} and ${t.backend.name})`);
  }
  const impl = kernels.get(kernel)?.get(be.name) ?? kernels.get(kernel)?.get('*');
  if (!impl) throw new Error(`kernel '${kernel}' has no implementation on backend '${be.name}'`);
  let outputs: Tensor[];
  if (profile) {
    const key = `${kernel} ${profileDtypes(inputs)}`;
    if (be.timing) {
      // Device time between two queue marks: the queue keeps running ahead (no host waits).
      const a = be.timing.mark();
      outputs = impl(inputs, attrs, be);
      pendingTimes.push({ key, timing: be.timing, a, b: be.timing.mark() });
      if (pendingTimes.length >= 4096) settleTimes();
    } else {
      be.synchronize();
      const t0 = performance.now();
      outputs = impl(inputs, attrs, be);
      be.synchronize();
      addTime(key, performance.now() - t0);
    }
  } else {
    outputs = impl(inputs, attrs, be);
  }
  for (const o of outputs) track(o);
  if (gradEnabled && inputs.some((t) => t.requiresGrad) && gradients.has(kernel)) {
    const node: TapeNode = { kernel, inputs, outputs, attrs };
    for (const o of outputs) {
      o.requiresGrad = true;
      o.creator = node;
    }
    const s = saves.get(kernel);
    if (s) {
      for (const i of s.inputs ?? []) inputs[i]!.saved = true;
      for (const i of s.outputs ?? []) outputs[i]!.saved = true;
    } else {
      for (const t of inputs) t.saved = true;
      for (const t of outputs) t.saved = true;
    }
  }
  return outputs;
}

// ---------------------------------------------------------------------------------------------
// Kernel profiling (NEOX_PROFILE_KERNELS=1): each kernel's time by name and input dtypes. On a
// backend with `timing` (CUDA), the device time between events recorded around its launches; the
// host does not wait except every 4096 kernels, to read them. Elsewhere (CPU) each kernel is
// synchronized and timed on the host. A kernel that runs other kernels counts their time too.

let profile: Map<string, { calls: number; ms: number }> | null = process.env.NEOX_PROFILE_KERNELS === '1' ? new Map() : null;
let pendingTimes: { key: string; timing: NonNullable<Backend['timing']>; a: unknown; b: unknown }[] = [];

function addTime(key: string, ms: number): void {
  const rec = profile?.get(key) ?? { calls: 0, ms: 0 };
  rec.calls++;
  rec.ms += ms;
  profile?.set(key, rec);
}

/** Reads the device times recorded so far into the profile. */
function settleTimes(): void {
  const done = pendingTimes;
  pendingTimes = [];
  for (const p of done) addTime(p.key, p.timing.elapsedMs(p.a, p.b));
}

/** The profile key's input dtypes: listed, or counted for a kernel over many tensors (adamwMulti). */
function profileDtypes(inputs: readonly Tensor[]): string {
  if (inputs.length <= 6) return inputs.map((t) => t.dtype).join(',');
  const counts = new Map<string, number>();
  for (const t of inputs) counts.set(t.dtype, (counts.get(t.dtype) ?? 0) + 1);
  return [...counts].map(([d, n]) => `${n}×${d}`).join(',');
}

/** Turns kernel profiling on (a fresh table) or off. */
export function profileKernels(on: boolean): void {
  settleTimes();
  profile = on ? new Map() : null;
}

/** The profile so far, slowest first, as printable lines (empty when profiling is off). */
export function kernelProfileReport(): string[] {
  if (!profile) return [];
  settleTimes();
  const rows = [...profile.entries()].sort((a, b) => b[1].ms - a[1].ms);
  const total = rows.reduce((n, [, r]) => n + r.ms, 0);
  return rows.map(([k, r]) => `${(100 * r.ms / total).toFixed(1).padStart(5)}%  ${r.ms.toFixed(1).padStart(9)} ms  ${String(r.calls).padStart(6)} calls  ${k}`);
}

// ---------------------------------------------------------------------------------------------
// Scopes: tensors created inside `scope(fn)` are disposed when it returns, unless returned or kept.

const scopes: Set<Tensor>[] = [];

function track(t: Tensor): void {
  scopes[scopes.length - 1]?.add(t);
}

function collect(value: unknown, into: Set<Tensor>): void {
  if (value instanceof Tensor) into.add(value);
  else if (Array.isArray(value)) for (const v of value) collect(v, into);
  else if (value && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    for (const v of Object.values(value)) collect(v, into);
  }
}

export function scope<T>(fn: () => T): T {
  const mine = new Set<Tensor>();
  scopes.push(mine);
  let result: T;
  try {
    result = fn();
  } finally {
    scopes.pop();
  }
  const survivors = new Set<Tensor>();
  collect(result, survivors);
  const outer = scopes.length > 0;
  for (const t of mine) {
    // Returned, or saved for a backward pass still to come: the enclosing scope takes it (backward
    // frees saved tensors after their last use; the enclosing scope frees whatever is left).
    if (survivors.has(t) || (t.saved && outer)) track(t);
    else if (t.kept) continue;
    else if (t.creator !== null && outer) t.releaseStorage('freed when the scope that made it ended, as no gradient reads it'); // backward still walks through it
    else t.dispose();
  }
  return result;
}

// ---------------------------------------------------------------------------------------------
// Creation

/** A tensor from host values. Numbers are converted to `dtype` (bf16/f16 rounded). */
export function tensor(values: HostArray | ArrayLike<number>, shape: readonly number[], dtype: DType = 'f32', backend?: Backend): Tensor {
  const be = backend ?? getBackend();
  const numel = shape.reduce((a, b) => a * b, 1);
  if (values.length !== numel) throw new Error(`tensor: ${values.length} values for shape [${shape.join(', ')}] (${numel} elements)`);
  const host = isHostArrayOf(values, dtype) ? values : fromNumbers(dtype, values);
  const t = new Tensor(shape, dtype, be, new SharedStorage(be, be.upload(host, dtype)));
  track(t);
  return t;
}

function isHostArrayOf(values: unknown, dtype: DType): values is HostArray {
  if (dtype === 'bf16' || dtype === 'f16') return false; // numbers given; stored as 16-bit words
  const proto = Object.getPrototypeOf(hostArray(dtype, 0));
  return Object.getPrototypeOf(values) === proto;
}

export function zeros(shape: readonly number[], dtype: DType = 'f32', backend?: Backend): Tensor {
  const be = backend ?? getBackend();
  const numel = shape.reduce((a, b) => a * b, 1);
  const t = new Tensor(shape, dtype, be, new SharedStorage(be, be.zeros(dtype, numel)));
  track(t);
  return t;
}

/** An uninitialised tensor, for kernels to write their outputs into. */
export function empty(shape: readonly number[], dtype: DType, backend: Backend): Tensor {
  const numel = shape.reduce((a, b) => a * b, 1);
  return new Tensor(shape, dtype, backend, new SharedStorage(backend, backend.alloc(dtype, numel)));
}

/** A view of `t` with another shape, sharing its storage (recorded on the tape like an op). */
export function view(t: Tensor, shape: readonly number[]): Tensor {
  const shared = t.sharedStorage;
  shared.refs++;
  const v = new Tensor(shape, t.dtype, t.backend, shared);
  track(v);
  return v;
}

// ---------------------------------------------------------------------------------------------
// Activation checkpointing

/**
 * `fn(inputs)` without keeping its intermediates: the forward runs unrecorded (its temporaries
 * are freed at once), and backward re-runs it with recording to get the gradients of `inputs`
 * and of every parameter `fn` uses. `fn` must compute the same thing both times (dropout must
 * reuse its random stream; the model restores its dropout offset for that).
 */
export function checkpoint(fn: (inputs: Tensor[]) => Tensor, inputs: Tensor[]): Tensor {
  if (!gradEnabled || !inputs.some((t) => t.requiresGrad)) return fn(inputs);
  return runKernel('checkpoint', inputs, { fn })[0]!;
}

registerKernel('checkpoint', '*', (inputs, { fn }) => [noGrad(() => scope(() => fn(inputs)))]);

registerGradient('checkpoint', ([dy], inputs, _outputs, { fn }) => {
  if (!dy) return inputs.map(() => null);
  // Fresh leaves over the same memory stand in for the inputs, so the recomputed graph ends at them.
  const leaves = inputs.map((t) => {
    const v = view(t, t.shape);
    v.requiresGrad = t.requiresGrad;
    return v;
  });
  // The segment's parameters are leaves of the recomputed graph only: report them to the outer
  // backward's hook (not the stand-ins, which are this gradient's own business).
  const outer = gradReadyHook;
  const standIns = new Set(leaves);
  const onGradReady = outer ? (t: Tensor) => { if (!standIns.has(t)) outer(t); } : undefined;
  const prev = gradEnabled;
  gradEnabled = true;
  try {
    scope(() => backward(fn(leaves), dy, { onGradReady })); // dy is wrapped in a view there, so it stays the caller's
  } finally {
    gradEnabled = prev;
  }
  return leaves.map((l) => {
    const g = l.grad;
    l.grad = null;
    if (g) g.kept = false; // handed to the outer backward, which frees it when consumed
    return g;
  });
}); // saves everything: its inputs (the segment's input) are what the recomputation starts from

// ---------------------------------------------------------------------------------------------
// Backward

export interface BackwardOptions {
  /** Keep the forward graph's tensors alive (by default each is freed once its last backward use has run). */
  retainGraph?: boolean;
  /**
   * Called once per leaf that gets a gradient in this backward, as soon as that gradient is final:
   * right after the last node (in backward order) that uses the leaf, with `.grad` written (set,
   * or accumulated into the existing one). Leaves of the graphs `checkpoint` recomputes (the
   * segment's parameters) are reported too, from its nested backward. `.grad` then owns its
   * memory (shares it with no pending gradient, and backward keeps no other reference to it), so
   * the callback may reduce it in place, or copy it out and dispose it to free it at once.
   */
  onGradReady?: (leaf: Tensor) => void;
}

/** The hook of the backward walk in progress (checkpoint's gradient hands it to its nested backward). */
let gradReadyHook: ((leaf: Tensor) => void) | null = null;

/**
 * Backpropagates from `root` (a one-element loss unless `seed` is given): accumulates into `.grad`
 * of every leaf tensor that requires gradients, then releases the tape and intermediate gradients.
 * A leaf's `.grad` is written right after the last node that uses it has been differentiated
 * (then `opts.onGradReady` fires), not at the end.
 *
 * As PyTorch frees saved tensors during backward, every tensor the tape produced (other than
 * `root` and kept tensors) is disposed as soon as the last node that uses it has been
 * differentiated, so activations and gradients are never all alive at once. Read what you need
 * from intermediates before calling backward, or `keep()` them, or pass `retainGraph`.
 */
export function backward(root: Tensor, seed?: Tensor, opts: BackwardOptions = {}): void {
  if (!root.requiresGrad) throw new Error('backward: the tensor does not depend on any parameter that requires gradients');
  const order: TapeNode[] = [];
  const seen = new Set<TapeNode>();
  // Iterative DFS for a topological order (deep models would overflow a recursive one).
  const stack: [TapeNode, number][] = root.creator ? [[root.creator, 0]] : [];
  if (root.creator) seen.add(root.creator);
  while (stack.length) {
    const top = stack[stack.length - 1]!;
    const [node, i] = top;
    if (i < node.inputs.length) {
      top[1]++;
      const c = node.inputs[i]!.creator;
      if (c && !seen.has(c)) {
        seen.add(c);
        stack.push([c, 0]);
      }
    } else {
      order.push(node);
      stack.pop();
    }
  }

  // Gradients of every tensor reached so far, leaves included. A tensor object is stored once:
  // when a gradient function hands the same tensor to two inputs, the second gets a view (own
  // object, shared memory), so disposing one never frees the other.
  const grads = new Map<Tensor, Tensor>();
  const stored = new Set<Tensor>();
  const accumulate = (t: Tensor, dx: Tensor): void => {
    if (stored.has(dx)) dx = view(dx, dx.shape);
    const prev = grads.get(t);
    const g = prev ? runKernel('add', [prev, dx], {})[0]! : dx;
    if (prev) {
      prev.dispose();
      dx.dispose();
    }
    grads.set(t, g);
    stored.add(g);
  };
  // The caller's seed is wrapped in a view, so freeing the root's gradient never frees the caller's tensor.
  accumulate(root, seed ? view(seed, seed.shape) : runKernel('fill', [], { shape: [...root.shape], dtype: root.dtype, value: 1 }, root.backend)[0]!);

  // How many nodes still need each tensor; at zero, a tape-produced tensor can go.
  const uses = new Map<Tensor, number>();
  if (!opts.retainGraph) {
    for (const node of order) for (const t of [...node.inputs, ...node.outputs]) uses.set(t, (uses.get(t) ?? 0) + 1);
  }
  const release = (node: TapeNode): void => {
    if (opts.retainGraph) return;
    for (const t of [...node.inputs, ...node.outputs]) {
      const left = uses.get(t)! - 1;
      uses.set(t, left);
      if (left === 0 && t.creator !== null && t !== root && !t.kept) t.dispose();
    }
  };

  // Each leaf's last use: the lowest tape index among the nodes it feeds (the walk runs downwards).
  const finalAfter = new Map<number, Tensor[]>(); // node index → leaves whose gradient is final after it
  const placed = new Set<Tensor>();
  order.forEach((node, n) => {
    for (const t of node.inputs) {
      if (t.creator !== null || !t.requiresGrad || placed.has(t)) continue;
      placed.add(t);
      const list = finalAfter.get(n);
      if (list) list.push(t);
      else finalAfter.set(n, [t]);
    }
  });
  const hook = opts.onGradReady ?? null;
  // A leaf's final gradient into .grad: accumulated in place, or set. It is copied when its memory
  // is shared (a gradient function handed one tensor to two inputs), so that .grad never aliases
  // another gradient: neither a pending one nor another leaf's (which an in-place update, a later
  // accumulation or the hook's in-place reduction would also change). Mixed precision: cast to
  // the leaf's dtype (bf16 gradient → f32 parameter). Then g is released: .grad alone holds the
  // memory, so disposing .grad (ZeRO-2 frees each bucket's gradients from the hook) frees it
  // during backward instead of when the enclosing scope ends.
  const finalize = (t: Tensor): void => {
    const g = grads.get(t);
    if (!g) return;
    grads.delete(t);
    const copy = g.dtype !== t.dtype || (!t.grad && g.sharedStorage.refs > 1);
    const dx = copy ? runKernel('cast', [g], { dtype: t.dtype })[0]! : g;
    if (t.grad) {
      runKernel('addInPlace', [t.grad, dx], { alpha: 1 });
      if (dx !== g) dx.dispose();
    } else {
      t.grad = (copy ? dx : view(g, g.shape)).keep();
    }
    g.dispose(); // the reference of this walk (the view above keeps the memory for .grad)
    hook?.(t);
  };

  const outerHook = gradReadyHook;
  gradReadyHook = hook;
  try {
    noGrad(() => {
      for (let n = order.length - 1; n >= 0; n--) {
        const node = order[n]!;
        const dys = node.outputs.map((o) => grads.get(o) ?? null);
        if (dys.some((d) => d !== null)) {
          const dxs = gradients.get(node.kernel)!(dys, node.inputs, node.outputs, node.attrs);
          release(node);
          node.inputs.forEach((input, i) => {
            const dx = dxs[i];
            if (dx && input.requiresGrad) accumulate(input, dx);
          });
          // Output gradients not handed on are no longer needed: free them now, not at scope end.
          for (const o of node.outputs) {
            const g = grads.get(o);
            grads.delete(o);
            if (g && !dxs.includes(g)) g.dispose();
          }
        } else {
          release(node);
        }
        for (const t of finalAfter.get(n) ?? []) finalize(t);
      }
      // A leaf fed by no node: the root itself, when it is a leaf.
      for (const t of [...grads.keys()]) if (t.creator === null && t.requiresGrad) finalize(t);
    });
  } finally {
    gradReadyHook = outerHook;
  }
  // Everything else made here (seed, intermediate gradients) is released by the enclosing scope.
  for (const node of order) for (const o of node.outputs) o.creator = null;
}
