// The GPT-NeoX model: embeddings → L transformer layers → final norm → output head.
//
// Shapes: B batch, T time, C hidden, H heads, Hkv key/value heads, D = C / H head dim,
// F MLP width, V padded vocabulary, S cached + new positions. Single-device code: parallelism
// is applied from outside.
//
// Attention heads: training and scoring keep q, k, v in the (B, T, H, D) layout the fused QKV
// projection produces and run rotary and attention in their 'bshd' layout, so no head permutations
// are made (on CUDA cuDNN reads the strided heads directly); o (B, T, H, D) is already (B, T, C).
//
// Incremental decoding: `forward(ids, { cache })` treats ids (B, T) as the tokens at positions
// cache.length … cache.length + T − 1 and lets each Attention hand its new k/v to the cache
// (AttentionCache, implemented by src/infer/kv_cache.ts), attending over what it returns. The cache
// holds (B, Hkv, S, D), so that path permutes to the 'bhsd' layout (a few positions per step).
//
// Parameter gathering (ZeRO stage 3, src/parallel/zero.ts): with setParameterGather(hooks), every
// forward (training, evaluation, the KV-cache path, activation checkpointing's recompute in
// backward) calls hooks.before(unit) before a unit runs and hooks.after(unit) after it, for the
// units of gatherUnits(): 'embed' (input and position embeddings), 'layers.i', and 'head' (the
// final norm and output head, with the chunked loss's head too).

import { type InitContext, withInitWeight } from '../../nn/init.js';
import { type ComputePrecision, Embedding, Linear, Norm, type ParamFactory, atCompute } from '../../nn/layers.js';
import { Module, parameter } from '../../nn/module.js';
import * as ops from '../../ops/index.js';
import type { Backend } from '../../tensor/backend.js';
import type { DType } from '../../tensor/dtype.js';
import { checkpoint, scope, tensor } from '../../tensor/engine.js';
import type { Tensor } from '../../tensor/tensor.js';
import type { GPTNeoXConfig } from './config.js';

/** Per-forward dropout state: Philox seed for this step and a running counter offset. */
class DropoutStream {
  seed = 0;
  offset = 0;
  apply(x: Tensor, p: number, training: boolean): Tensor {
    if (!training || p === 0) return x;
    const y = ops.dropout(x, p, this.seed, this.offset);
    this.offset += Math.ceil(x.numel / 4) * 4; // Philox yields 4 words per counter
    return y;
  }
}

/**
 * What the model needs from a KV cache (src/infer/kv_cache.ts implements it). One cache per
 * sequence batch; rows share positions.
 */
export interface AttentionCache {
  /** Positions already cached: the absolute position of this forward's first token. */
  readonly length: number;
  /**
   * Appends layer `layer`'s k, v (B, Hkv, T, D) for positions `offset` … offset + T − 1 and returns
   * the keys and values to attend over, (B, Hkv, S, D), ending with the new ones (the attention
   * kernel puts query t at S − T + t, so a cache may drop keys no query can see).
   */
  append(layer: number, offset: number, k: Tensor, v: Tensor): [Tensor, Tensor];
}

export interface ForwardOptions {
  /** Incremental decoding: ids continue the cached positions, and the cache is extended. */
  cache?: AttentionCache;
  /** Stop after the final norm: the hidden states (B, T, C) instead of logits. */
  hiddenOnly?: boolean;
}

/** Called around each gather unit's forward (ZeRO stage 3 gathers and releases its parameters). */
export interface ParameterGatherHooks {
  before(unit: string): void;
  after(unit: string): void;
}

/** Where one layer's forward sits in an incremental decode. */
interface LayerStep {
  cache: AttentionCache;
  layer: number;
  offset: number;
}

export class Attention extends Module {
  readonly query_key_value: Linear; // (D·(H + 2·Hkv), C)
  readonly dense: Linear; // (C, C)
  private readonly headDim: number;
  private readonly rotaryDims: number;

  constructor(private readonly cfg: GPTNeoXConfig, f: ParamFactory) {
    super();
    const { hiddenSize: C, numHeads: H, numKvHeads: Hkv } = cfg;
    this.headDim = C / H;
    if ((this.headDim * Hkv) % H !== 0) throw new Error(`head_dim · num_kv_heads must be divisible by num_attention_heads`);
    this.query_key_value = new Linear(C, this.headDim * (H + 2 * Hkv), f, { bias: cfg.attnBias, init: 'input' });
    this.dense = new Linear(C, C, f, { bias: cfg.attnBias, init: 'output' });
    this.rotaryDims = cfg.posEmb === 'rotary' ? Math.floor(this.headDim * cfg.rotaryPct) : 0;
  }

  forward(x: Tensor /* (B, T, C) */, step?: LayerStep): Tensor {
    const [B, T] = x.shape as [number, number, number];
    const { numHeads: H, numKvHeads: Hkv, hiddenSize: C } = this.cfg;
    const offset = step?.offset ?? 0;
    const D = this.headDim;
    const kvWidth = (D * Hkv) / H;
    // GPT-NeoX's layout: per query head, [q (D) ‖ k (D·Hkv/H) ‖ v (D·Hkv/H)]; for MHA this is [q ‖ k ‖ v] per head.
    const qkv = ops.reshape(this.query_key_value.forward(x), [B, T, H, D + 2 * kvWidth]);
    const attn = { causal: true, window: this.cfg.slidingWindow, alibi: this.cfg.posEmb === 'alibi' };
    if (!step && Hkv === H) {
      // Training and scoring, multi-head: rotary and attention on the packed heads, no split or concat.
      const rotated = this.rotaryDims > 0 ? ops.rotaryQKV(qkv, this.rotaryDims, this.cfg.rotaryBase, offset) : qkv; // (B, T, H, 3D)
      const o = ops.attentionQKV(rotated, attn); // (B, T, H, D)
      return this.dense.forward(ops.reshape(o, [B, T, C]));
    }
    const [q0, k0, v0] = ops.split(qkv, [D, kvWidth, kvWidth], -1) as [Tensor, Tensor, Tensor]; // contiguous copies
    if (!step) {
      // Training and scoring with GQA: the heads stay where the projection put them (layout bshd), no permutes.
      let q = q0; // (B, T, H, D)
      let k = ops.reshape(k0, [B, T, Hkv, D]); // (B, T, Hkv, D): a view (for GQA, k0's H · kvW = Hkv · D per token)
      const v = ops.reshape(v0, [B, T, Hkv, D]);
      if (this.rotaryDims > 0) {
        q = ops.rotary(q, this.rotaryDims, this.cfg.rotaryBase, offset, { layout: 'bshd' });
        k = ops.rotary(k, this.rotaryDims, this.cfg.rotaryBase, offset, { layout: 'bshd' });
      }
      const o = ops.attention(q, k, v, { ...attn, layout: 'bshd' }); // (B, T, H, D)
      return this.dense.forward(ops.reshape(o, [B, T, C]));
    }
    // Incremental decoding: the cache holds (B, Hkv, S, D), so this path works in bhsd.
    let q = ops.permute(q0, [0, 2, 1, 3]); // (B, H, T, D)
    let k = ops.permute(ops.reshape(k0, [B, T, Hkv, D]), [0, 2, 1, 3]); // (B, Hkv, T, D)
    let v = ops.permute(ops.reshape(v0, [B, T, Hkv, D]), [0, 2, 1, 3]); // (B, Hkv, T, D)
    if (this.rotaryDims > 0) {
      q = ops.rotary(q, this.rotaryDims, this.cfg.rotaryBase, offset);
      k = ops.rotary(k, this.rotaryDims, this.cfg.rotaryBase, offset);
    }
    [k, v] = step.cache.append(step.layer, offset, k, v); // (B, Hkv, S, D)
    const o = ops.attention(q, k, v, attn); // (B, H, T, D)
    const merged = ops.reshape(ops.permute(o, [0, 2, 1, 3]), [B, T, C]); // (B, T, C)
    return this.dense.forward(merged);
  }
}

export class MLP extends Module {
  readonly dense_h_to_4h: Linear; // (F or 2F, C)
  readonly dense_4h_to_h: Linear; // (C, F)
  constructor(private readonly cfg: GPTNeoXConfig, f: ParamFactory) {
    super();
    const F = cfg.ffnSize;
    this.dense_h_to_4h = new Linear(cfg.hiddenSize, cfg.gated ? 2 * F : F, f, { bias: cfg.mlpBias, init: 'input' });
    this.dense_4h_to_h = new Linear(F, cfg.hiddenSize, f, { bias: cfg.mlpBias, init: 'output' });
  }
  forward(x: Tensor /* (B, T, C) */): Tensor {
    // bias_gelu_fusion (gelu_tanh, not gated): the up-projection and GELU are one cuBLASLt call.
    if (!this.cfg.gated && this.cfg.activation === 'gelu_tanh') return this.dense_4h_to_h.forward(this.dense_h_to_4h.forwardGelu(x));
    const h = this.dense_h_to_4h.forward(x); // (B, T, F) or (B, T, 2F)
    const a = this.cfg.gated ? ops.gatedActivation(h, this.cfg.activation) : ops.activation(h, this.cfg.activation);
    return this.dense_4h_to_h.forward(a); // (B, T, C)
  }
}

export class Layer extends Module {
  readonly input_layernorm: Norm;
  readonly post_attention_layernorm: Norm | null;
  readonly attention: Attention;
  readonly mlp: MLP;
  constructor(private readonly cfg: GPTNeoXConfig, f: ParamFactory, private readonly drop: DropoutStream) {
    super();
    this.input_layernorm = new Norm(cfg.norm, cfg.hiddenSize, cfg.normEps, f, cfg.normBias);
    this.post_attention_layernorm = cfg.parallelResidual && cfg.gptJTied ? null : new Norm(cfg.norm, cfg.hiddenSize, cfg.normEps, f, cfg.normBias);
    this.attention = new Attention(cfg, f);
    this.mlp = new MLP(cfg, f);
  }

  forward(x: Tensor /* (B, T, C) */, step?: LayerStep): Tensor {
    const p = this.cfg.hiddenDropout;
    const dropout = (t: Tensor) => this.drop.apply(t, p, this.training);
    if (this.cfg.parallelResidual) {
      // GPT-J style: x + attn(ln1(x)) + mlp(ln2(x)), both branches from the same input.
      const h1 = this.input_layernorm.forward(x);
      const h2 = this.post_attention_layernorm ? this.post_attention_layernorm.forward(x) : h1;
      const attn = dropout(this.attention.forward(h1, step));
      const mlp = dropout(this.mlp.forward(h2));
      return ops.add(ops.add(x, attn), mlp);
    }
    const x1 = ops.add(x, dropout(this.attention.forward(this.input_layernorm.forward(x), step)));
    return ops.add(x1, dropout(this.mlp.forward(this.post_attention_layernorm!.forward(x1))));
  }
}

export class GPTNeoX extends Module {
  readonly embed_in: Embedding; // (V, C)
  readonly embed_pos: Embedding | null; // (P, C), learned positions only
  readonly layers: Layer[];
  readonly final_layer_norm: Norm;
  readonly embed_out: Tensor | null; // (V, C); null when tied to embed_in
  private readonly drop = new DropoutStream();
  private sinusoid: Tensor | null = null;
  private checkpointEvery = 0;
  private lossChunk = 0;
  private gather: ParameterGatherHooks | null = null;
  /** The dtype every layer computes in (parameters stay in `dtype`); see setComputeDtype. */
  readonly precision: ComputePrecision;

  /** `dtype` is the parameters' (and so the computation's) type: f32, or f64 for gradient checks. */
  constructor(readonly cfg: GPTNeoXConfig, readonly backend: Backend, readonly dtype: 'f32' | 'f64' = 'f32') {
    super();
    this.precision = { compute: dtype };
    const ctx: InitContext = { seed: cfg.seed, std: cfg.initStd, numLayers: cfg.numLayers, hiddenSize: cfg.hiddenSize };
    let stream = 0;
    const f: ParamFactory = {
      backend,
      dtype,
      precision: this.precision,
      // The values go straight into the tensor (large ones are lent from a reused host buffer: one copy, or one upload).
      weight: (rows, cols, role) => withInitWeight(role === 'output' ? cfg.outputInitMethod : cfg.initMethod, rows, cols, ctx, stream++,
        (values) => tensor(values, [rows, cols], dtype, backend)),
    };
    this.embed_in = new Embedding(cfg.vocabSize, cfg.hiddenSize, f);
    this.embed_pos = cfg.posEmb === 'learned' ? new Embedding(cfg.maxPositions, cfg.hiddenSize, f) : null;
    this.layers = Array.from({ length: cfg.numLayers }, () => new Layer(cfg, f, this.drop));
    this.final_layer_norm = new Norm(cfg.norm, cfg.hiddenSize, cfg.normEps, f, cfg.normBias);
    this.embed_out = cfg.tiedEmbeddings
      ? null
      : parameter(f.weight(cfg.vocabSize, cfg.hiddenSize, 'input'));
  }

  /**
   * Mixed precision: compute in `dtype` (bf16/f16 on CUDA) while parameters, their gradients and
   * the optimizer stay in the parameters' dtype.
   */
  setComputeDtype(dtype: DType): void {
    this.precision.compute = dtype;
    this.sinusoid?.dispose();
    this.sinusoid = null;
  }

  /** Activation checkpointing every `layers` layers (0 turns it off): GPT-NeoX's checkpoint_activations / checkpoint_num_layers. */
  setActivationCheckpointing(layers: number): void {
    this.checkpointEvery = layers;
  }

  /**
   * Hooks called around each gather unit's forward (ZeRO stage 3: ZeroOptimizer.parameterGather());
   * null removes them. Every forward runs the units in the same order on every rank.
   */
  setParameterGather(hooks: ParameterGatherHooks | null): void {
    this.gather = hooks;
  }

  /** The gather units in forward order, each with every parameter it reads (the head's includes embed_in.weight when tied). */
  gatherUnits(): { name: string; params: Tensor[] }[] {
    return [
      { name: 'embed', params: [this.embed_in.weight, ...(this.embed_pos ? [this.embed_pos.weight] : [])] },
      ...this.layers.map((layer, i) => ({ name: `layers.${i}`, params: layer.parameters() })),
      { name: 'head', params: [...this.final_layer_norm.parameters(), this.embed_out ?? this.embed_in.weight] },
    ];
  }

  /** fn() between the gather hooks of `unit` (none installed: just fn()). */
  private unit<T>(name: string, fn: () => T): T {
    const g = this.gather;
    if (!g) return fn();
    g.before(name);
    try {
      return fn();
    } finally {
      g.after(name);
    }
  }

  /** Seeds this step's dropout masks (a function of the run seed and the micro-step). */
  setDropoutSeed(seed: number): void {
    this.drop.seed = seed;
    this.drop.offset = 0;
  }

  /**
   * ids (B, T) i32 → logits (B, T, V). With `opts.cache`, ids sit at positions cache.length …
   * cache.length + T − 1 and every layer extends the cache with its keys and values.
   */
  forward(ids: Tensor, opts: ForwardOptions = {}): Tensor {
    const x = this.trunk(ids, opts.cache);
    return this.unit('head', () => {
      const h = this.final_layer_norm.forward(x);
      if (opts.hiddenOnly) return h; // (B, T, C)
      return ops.linear(h, atCompute(this.embed_out ?? this.embed_in.weight, this.precision)); // (B, T, V)
    });
  }

  /** Embeddings and layers: (B, T, C) before the final norm. */
  private trunk(ids: Tensor, cache: AttentionCache | undefined): Tensor {
    const [, T] = ids.shape as [number, number];
    const offset = cache?.length ?? 0; // read once: layers extend the cache as they run
    if (offset + T > this.cfg.maxPositions && (this.cfg.posEmb === 'learned' || this.cfg.posEmb === 'sinusoidal')) {
      throw new Error(`sequence of ${offset + T} tokens is longer than max_position_embeddings (${this.cfg.maxPositions})`);
    }
    let x = this.unit('embed', () => {
      let e = this.embed_in.forward(ids); // (B, T, C)
      if (this.embed_pos) {
        const pos = tensor(Int32Array.from({ length: T }, (_, i) => offset + i), [T], 'i32', this.backend);
        e = ops.add(e, this.embed_pos.forward(pos)); // (T, C) broadcast over B
      } else if (this.cfg.posEmb === 'sinusoidal') {
        e = ops.add(e, offset === 0 ? this.sinusoidal(T) : this.sinusoidalAt(offset, T)); // (T, C)
      }
      return e;
    });
    x = this.drop.apply(x, this.cfg.hiddenDropout, this.training);
    const every = this.checkpointEvery;
    if (every > 0 && this.training && !cache) {
      // Activation checkpointing: keep only each group's input; backward recomputes the group.
      for (let i = 0; i < this.layers.length; i += every) {
        const group = this.layers.slice(i, i + every);
        const dropoutOffset = this.drop.offset; // the recompute must draw the same dropout masks
        x = checkpoint(([h]) => {
          this.drop.offset = dropoutOffset;
          return group.reduce((y, layer, j) => this.unit(`layers.${i + j}`, () => layer.forward(y)), h!);
        }, [x]);
      }
    } else if (cache) {
      for (const [i, layer] of this.layers.entries()) x = this.unit(`layers.${i}`, () => layer.forward(x, { cache, layer: i, offset }));
    } else {
      // Each layer in its own scope: what its backward does not read (the qkv projection, the
      // unrotated q and k, branch outputs, residual sums) is freed as soon as the layer's forward ends.
      for (const [i, layer] of this.layers.entries()) x = this.unit(`layers.${i}`, () => scope(() => layer.forward(x)));
    }
    return x;
  }

  /**
   * Mean cross-entropy over positions where mask = 1: ids, labels (B, T) i32, mask (B, T) f32.
   * `maskSum` (Σ mask, when the caller knows it) spares reading the mask back from the device.
   */
  loss(ids: Tensor, labels: Tensor, mask: Tensor, maskSum?: number): Tensor {
    const N = ids.numel;
    if (this.lossChunk <= 0 || N <= this.lossChunk) {
      const logits = this.forward(ids); // (B, T, V)
      const V = this.cfg.vocabSize;
      const { loss } = ops.crossEntropy(ops.reshape(logits, [logits.numel / V, V]), ops.reshape(labels, [N]));
      return ops.maskedMeanLoss(loss, ops.cast(ops.reshape(mask, [N]), loss.dtype), maskSum);
    }
    // Chunked output head: the (N, V) logits never exist at once. Each chunk of rows is projected,
    // scored and reduced to its masked loss sum under activation checkpointing, so backward
    // recomputes one chunk's logits at a time.
    const h = this.trunk(ids, undefined);
    return this.unit('head', () => this.chunkedLoss(this.final_layer_norm.forward(h), labels, mask, maskSum));
  }

  /** loss() with the output head over chunks of rows; x (B, T, C): the final norm's output. */
  private chunkedLoss(x: Tensor, labels: Tensor, mask: Tensor, maskSum?: number): Tensor {
    const N = labels.numel;
    const C = this.cfg.hiddenSize;
    const w = atCompute(this.embed_out ?? this.embed_in.weight, this.precision); // (V, C)
    const sizes = Array.from({ length: Math.ceil(N / this.lossChunk) }, (_, i) => Math.min(this.lossChunk, N - i * this.lossChunk));
    const xs = ops.split(ops.reshape(x, [N, C]), sizes, 0);
    const ls = ops.split(ops.reshape(labels, [N]), sizes, 0);
    const ms = ops.split(ops.reshape(mask, [N]), sizes, 0);
    let total: Tensor | null = null;
    xs.forEach((xc, i) => {
      const part = checkpoint(([xi, wi]) => {
        const { loss } = ops.crossEntropy(ops.linear(xi!, wi!), ls[i]!); // (n,)
        return ops.sum(ops.mul(loss, ops.cast(ms[i]!, loss.dtype)));
      }, [xc, w]);
      total = total ? ops.add(total, part) : part;
    });
    const count = maskSum ?? ops.hostSum(mask);
    return ops.scale(total!, count === 0 ? 0 : 1 / count);
  }

  /**
   * Computes the loss over chunks of this many tokens (0: all at once), so the output head's
   * logits (tokens × vocabulary) are never all in memory; costs one extra head projection.
   */
  setLossChunk(tokens: number): void {
    this.lossChunk = tokens;
  }

  private sinusoidal(T: number): Tensor {
    if (!this.sinusoid || this.sinusoid.dim(0) < T) {
      this.sinusoid?.dispose();
      const P = Math.max(T, this.cfg.maxPositions);
      this.sinusoid = tensor(ops.sinusoidalPositions(P, this.cfg.hiddenSize), [P, this.cfg.hiddenSize], this.precision.compute, this.backend).keep();
    }
    if (this.sinusoid.dim(0) === T) return this.sinusoid;
    return ops.split(this.sinusoid, [T, this.sinusoid.dim(0) - T], 0)[0]!;
  }

  /** Rows offset … offset + T − 1 of the sinusoidal table, (T, C) (the same values as sinusoidal()). */
  private sinusoidalAt(offset: number, T: number): Tensor {
    const table = this.sinusoidal(offset + T); // (≥ offset + T, C)
    return ops.embedding(tensor(Int32Array.from({ length: T }, (_, i) => offset + i), [T], 'i32', this.backend), table);
  }

  /** Parameters that get weight decay (matrices) and those that don't (norms, biases), as GPT-NeoX. */
  weightDecayGroups(): { decay: Tensor[]; noDecay: Tensor[] } {
    const decay: Tensor[] = [];
    const noDecay: Tensor[] = [];
    for (const [, p] of this.namedParameters()) (p.ndim >= 2 ? decay : noDecay).push(p);
    return { decay, noDecay };
  }

  /** Parameters outside the input (and position) embeddings; the output head counts, tied or not. */
  nonEmbeddingParameters(): number {
    const embed = this.embed_in.weight.numel + (this.embed_pos?.weight.numel ?? 0);
    return this.numParameters() - embed + (this.embed_out ? 0 : this.embed_in.weight.numel);
  }

  /** Model FLOPs per token for training (PaLM appendix B): 6·N + 12·L·C·T. */
  flopsPerToken(seqLength: number): number {
    return 6 * this.nonEmbeddingParameters() + 12 * this.cfg.numLayers * this.cfg.hiddenSize * seqLength;
  }
}
