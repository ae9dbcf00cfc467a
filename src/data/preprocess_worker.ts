// Tokenization for `neox preprocess`, in a worker thread or in the calling thread.
//
// defines: EncodedBatch, encodeTexts, WorkerInit, WorkerRequest, WorkerReply; and, when loaded as a
//          worker_threads Worker with workerData.kind === 'neox-preprocess', the worker's loop
//
// The pool (preprocess.ts) sends batches of texts with a sequence number; a worker builds its own
// tokenizer once from the same TokenizerConfig, encodes, and answers with all ids of the batch packed
// into one Int32Array plus per-text lengths, both transferred (no copy, no boxed numbers).

import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { buildTokenizer, type Tokenizer, type TokenizerConfig } from './tokenizer.js';

/** Ids of a batch of texts: text i is ids[offset_i, offset_i + lengths[i]). */
export interface EncodedBatch {
  /** (n,) tokens per text. */
  lengths: Int32Array;
  /** (Σ lengths,) all ids, text after text. */
  ids: Int32Array;
}

export interface WorkerInit {
  kind: 'neox-preprocess';
  tokenizer: TokenizerConfig;
  appendEod: boolean;
}

export interface WorkerRequest { seq: number; texts: string[] }
export type WorkerReply = { seq: number; lengths: Int32Array; ids: Int32Array } | { seq: number; error: string };

/** Encode texts ('' gives no tokens), each followed by EOD when appendEod. */
export function encodeTexts(tokenizer: Tokenizer, texts: string[], appendEod: boolean): EncodedBatch {
  const lengths = new Int32Array(texts.length);
  const parts: number[][] = [];
  let total = 0;
  for (let i = 0; i < texts.length; i++) {
    const t = texts[i]!;
    const ids = t === '' ? [] : tokenizer.encode(t);
    if (appendEod) ids.push(tokenizer.eodId);
    parts.push(ids);
    lengths[i] = ids.length;
    total += ids.length;
  }
  const ids = new Int32Array(total);
  let at = 0;
  for (const p of parts) { ids.set(p, at); at += p.length; }
  return { lengths, ids };
}

function runWorker(init: WorkerInit): void {
  const port = parentPort!;
  let tokenizer: Tokenizer;
  try {
    tokenizer = buildTokenizer(init.tokenizer);
  } catch (err) {
    port.postMessage({ seq: -1, error: (err as Error).message } satisfies WorkerReply);
    return;
  }
  port.on('message', (req: WorkerRequest) => {
    try {
      const { lengths, ids } = encodeTexts(tokenizer, req.texts, init.appendEod);
      port.postMessage({ seq: req.seq, lengths, ids } satisfies WorkerReply, [lengths.buffer as ArrayBuffer, ids.buffer as ArrayBuffer]);
    } catch (err) {
      port.postMessage({ seq: req.seq, error: (err as Error).stack ?? String(err) } satisfies WorkerReply);
    }
  });
}

if (!isMainThread && parentPort && (workerData as WorkerInit | undefined)?.kind === 'neox-preprocess') {
  runWorker(workerData as WorkerInit);
}
