// `neox data inspect` and `neox data count`: what a .bin/.idx dataset holds.
//
// defines: DatasetSummary, inspectDataset, formatSummary, TokenCount, countTokens
//
// count is GPT-NeoX's tools/datasets/dataset_token_count.py (Σ sizes per dataset); inspect adds the
// dtype, document-length statistics, whether a label file sits beside it, and the first tokens of a
// document, decoded when a tokenizer is given.

import * as fs from 'node:fs';
import { IndexedDataset } from './indexed_dataset.js';
import { labelPrefixFor } from './loader.js';
import type { Tokenizer } from './tokenizer.js';

export interface DatasetSummary {
  prefix: string;
  dtype: string;
  /** Items (one per document for datasets written by preprocess). */
  documents: number;
  /** doc_idx entries: documents + 1 for preprocess output. */
  docIdxEntries: number;
  tokens: number;
  binBytes: number;
  idxBytes: number;
  minLength: number;
  maxLength: number;
  meanLength: number;
  /** Documents of length 0. */
  emptyDocuments: number;
  /** `X_label_document` beside `X_text_document`, if present. */
  labelFile: string | null;
  /** Which document `firstTokens` come from. */
  document: number;
  firstTokens: number[];
  /** firstTokens decoded, when a tokenizer was given. */
  decoded: string | null;
}

export interface InspectOptions {
  /** Tokens to show (default 32). */
  count?: number;
  /** Document to show them from (default 0). */
  document?: number;
  tokenizer?: Tokenizer | null;
}

export function inspectDataset(prefix: string, opts: InspectOptions = {}): DatasetSummary {
  const ds = new IndexedDataset(prefix);
  try {
    const count = opts.count ?? 32;
    const doc = opts.document ?? 0;
    if (!Number.isInteger(count) || count < 0) throw new Error(`token count must be a non-negative integer, got ${count}`);
    if (ds.length > 0 && (!Number.isInteger(doc) || doc < 0 || doc >= ds.length)) {
      throw new Error(`${ds.prefix}: document ${doc} out of range [0, ${ds.length})`);
    }
    let min = Infinity;
    let max = 0;
    let empty = 0;
    for (let i = 0; i < ds.length; i++) {
      const n = ds.sizes[i]!;
      if (n < min) min = n;
      if (n > max) max = n;
      if (n === 0) empty++;
    }
    const first = ds.length > 0 ? Array.from(ds.get(doc, 0, Math.min(count, ds.sizes[doc]!))) : [];
    return {
      prefix: ds.prefix, dtype: ds.dtype, documents: ds.length, docIdxEntries: ds.docIdx.length, tokens: ds.totalTokens,
      binBytes: fs.statSync(ds.binPath).size, idxBytes: fs.statSync(ds.idxPath).size,
      minLength: ds.length ? min : 0, maxLength: max, meanLength: ds.length ? ds.totalTokens / ds.length : 0,
      emptyDocuments: empty, labelFile: labelPrefixFor(ds.prefix), document: doc, firstTokens: first,
      decoded: opts.tokenizer ? opts.tokenizer.decode(first) : null,
    };
  } finally {
    ds.close();
  }
}

/** Human-readable lines of a summary. */
export function formatSummary(s: DatasetSummary): string {
  const n = (x: number): string => x.toLocaleString('en-US');
  const lines = [
    `${s.prefix}`,
    `  dtype          ${s.dtype}`,
    `  documents      ${n(s.documents)} (doc_idx ${n(s.docIdxEntries)} entries)`,
    `  tokens         ${n(s.tokens)}`,
    `  doc length     min ${n(s.minLength)}, mean ${s.meanLength.toFixed(1)}, max ${n(s.maxLength)}${s.emptyDocuments ? `, ${n(s.emptyDocuments)} empty` : ''}`,
    `  files          .bin ${n(s.binBytes)} bytes, .idx ${n(s.idxBytes)} bytes`,
  ];
  if (s.labelFile) lines.push(`  label file     ${s.labelFile}`);
  if (s.documents > 0) {
    lines.push(`  document ${s.document}, first ${s.firstTokens.length} tokens: ${s.firstTokens.join(' ')}`);
    if (s.decoded !== null) lines.push(`  decoded: ${JSON.stringify(s.decoded)}`);
  }
  return lines.join('\n');
}

export interface TokenCount { prefix: string; documents: number; tokens: number }

/** Σ sizes of each dataset (GPT-NeoX's dataset_token_count.py). */
export function countTokens(prefixes: string[]): TokenCount[] {
  return prefixes.map((p) => {
    const ds = new IndexedDataset(p);
    ds.close();
    return { prefix: ds.prefix, documents: ds.length, tokens: ds.totalTokens };
  });
}
