// KVCache: the keys and values of every layer for the positions decoded so far, so that each new
// token costs one position's work instead of the whole prefix (GPTNeoX.forward(ids, { cache })).
//
// defines: KVCache, KVCacheOptions
//
// Layout per layer: k, v (B, Hkv, S, D), rotary already applied (at absolute positions), so
// cached keys never change. append() concatenates the new positions (one copy per step; the
// tensor ops keep this device-agnostic) and returns the whole run to attend over.
//
// Sliding window: with `window` w > 0 a query at position p sees keys p − w + 1 … p, so after a
// step only the last w − 1 keys can matter to later queries; the cache keeps just those. The
// attention kernel places query t at S − T + t relative to the keys it gets, and window, causal
// mask and ALiBi only use differences of positions, so the trimmed cache gives the same result.
//
// Rows of a batch share positions (see generate.ts for how prompts of different lengths are fed).

import type { AttentionCache } from '../models/gpt_neox/model.js';
import * as ops from '../ops/index.js';
import type { Tensor } from '../tensor/tensor.js';

export interface KVCacheOptions {
  /** Keys per query (the model's `slidingWindow`); 0 keeps every position. */
  window?: number;
}

interface LayerEntry {
  k: Tensor | null; // (B, Hkv, S', D), S' ≤ length; null when no held key can be seen again
  v: Tensor | null; // (B, Hkv, S', D)
  length: number; // positions appended so far
}

export class KVCache implements AttentionCache {
  private readonly layers: (LayerEntry | null)[];
  private readonly window: number;

  constructor(numLayers: number, opts: KVCacheOptions = {}) {
    this.layers = Array.from({ length: numLayers }, () => null);
    this.window = opts.window ?? 0;
  }

  /** Positions cached so far (layer 0's count; every layer agrees after a complete forward). */
  get length(): number {
    return this.layers[0]?.length ?? 0;
  }

  /** Key positions held for one layer (fewer than `length` under a sliding window). */
  heldPositions(layer = 0): number {
    return this.layers[layer]?.k?.dim(2) ?? 0;
  }

  append(layer: number, offset: number, k: Tensor /* (B, Hkv, T, D) */, v: Tensor /* (B, Hkv, T, D) */): [Tensor, Tensor] {
    if (layer < 0 || layer >= this.layers.length) throw new Error(`KVCache: layer ${layer} out of range (${this.layers.length} layers)`);
    const prev = this.layers[layer];
    const length = prev?.length ?? 0;
    if (offset !== length) throw new Error(`KVCache: layer ${layer} holds ${length} positions, but new keys start at ${offset}`);
    const held = prev?.k ?? null;
    if (held && (held.dim(0) !== k.dim(0) || held.dim(1) !== k.dim(1) || held.dim(3) !== k.dim(3))) {
      throw new Error(`KVCache: layer ${layer} holds keys [${held.shape}], new keys are [${k.shape}]`);
    }
    const kAll = held ? ops.concat([held, k], 2) : k; // (B, Hkv, S, D)
    const vAll = held ? ops.concat([prev!.v!, v], 2) : v; // (B, Hkv, S, D)
    const S = kAll.dim(2);
    const keep = this.window > 0 ? Math.min(S, this.window - 1) : S;
    let kKeep: Tensor | null = kAll;
    let vKeep: Tensor | null = vAll;
    if (keep === 0) {
      kKeep = vKeep = null; // window 1: a query sees only itself
    } else if (keep < S) {
      kKeep = ops.split(kAll, [S - keep, keep], 2)[1]!; // (B, Hkv, keep, D)
      vKeep = ops.split(vAll, [S - keep, keep], 2)[1]!;
    }
    // The held tensors outlive the forward's scope; the previous ones are no longer needed.
    kKeep?.keep();
    vKeep?.keep();
    held?.dispose();
    prev?.v?.dispose();
    this.layers[layer] = { k: kKeep, v: vKeep, length: length + k.dim(2) };
    return [kAll, vAll];
  }

  /** Frees every cached tensor; the cache is empty afterwards. */
  dispose(): void {
    for (let i = 0; i < this.layers.length; i++) {
      const e = this.layers[i];
      e?.k?.dispose();
      e?.v?.dispose();
      this.layers[i] = null;
    }
  }
}
