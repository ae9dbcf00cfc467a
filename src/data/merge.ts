// `neox data merge`: concatenate .bin/.idx datasets into one (GPT-NeoX's tools/datasets/merge_datasets.py).
//
// defines: mergeInputs, mergeDatasets, MergeResult
//
// As GPT-NeoX: a directory input means every .bin/.idx pair in it, sorted by name; all inputs must
// share one dtype; the .bin files are copied byte for byte and the sizes concatenated. Deliberate
// fix: GPT-NeoX's mmap merge leaves doc_idx = [0] in the output; here doc_idx is each input's,
// shifted by the items before it, so the output is what preprocessing all inputs at once would write.
// Both files are written under temporary names and renamed at the end.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { encodeIndexHeader, IndexedDataset, indexPaths, int64Bytes, type TokenDType } from './indexed_dataset.js';

const ITEM_BYTES: Readonly<Record<TokenDType, number>> = { u8: 1, i8: 1, i16: 2, i32: 4, i64: 8, f32: 4, f64: 8, u16: 2 };

/** Inputs (prefixes, .bin/.idx paths, or directories) → dataset prefixes in merge order. */
export function mergeInputs(inputs: string[]): string[] {
  const out: string[] = [];
  for (const input of inputs) {
    if (fs.existsSync(input) && fs.statSync(input).isDirectory()) {
      const names = fs.readdirSync(input).filter((f) => /\.(bin|idx)$/.test(f) && fs.statSync(path.join(input, f)).isFile());
      const prefixes = [...new Set(names.map((f) => f.slice(0, -4)))].sort();
      for (const p of prefixes) {
        for (const ext of ['.bin', '.idx']) {
          if (!names.includes(p + ext)) throw new Error(`${path.join(input, p)}: ${ext} file missing (a dataset is a .bin/.idx pair)`);
        }
      }
      if (prefixes.length === 0) throw new Error(`${input}: no .bin/.idx datasets in this directory`);
      out.push(...prefixes.map((p) => path.join(input, p)));
    } else {
      out.push(indexPaths(input).prefix);
    }
  }
  return out;
}

export interface MergeResult {
  prefix: string;
  inputs: string[];
  dtype: TokenDType;
  documents: number;
  tokens: number;
}

/** Merge `inputs` (see mergeInputs) into `{output}.bin/.idx`. */
export function mergeDatasets(output: string, inputs: string[], log: (line: string) => void = () => {}): MergeResult {
  const prefixes = mergeInputs(inputs);
  if (prefixes.length === 0) throw new Error('nothing to merge');
  const out = indexPaths(output);
  const resolvedOut = path.resolve(out.prefix);
  if (prefixes.some((p) => path.resolve(p) === resolvedOut)) throw new Error(`${out.prefix} is one of the inputs; choose another output`);
  const datasets = prefixes.map((p) => new IndexedDataset(p));
  try {
    const dtype = datasets[0]!.dtype;
    for (const d of datasets) {
      if (d.dtype !== dtype) throw new Error(`${d.prefix} holds ${d.dtype} tokens but ${datasets[0]!.prefix} holds ${dtype}; all inputs must share one dtype`);
      checkContiguous(d);
    }
    const items = datasets.reduce((a, d) => a + d.length, 0);
    const sizes = new Int32Array(items); // (items,)
    const docIdx: number[] = [0];
    let at = 0;
    for (const d of datasets) {
      sizes.set(d.sizes, at);
      for (let j = 1; j < d.docIdx.length; j++) docIdx.push(at + d.docIdx[j]!);
      at += d.length;
    }
    const itemBytes = ITEM_BYTES[dtype];
    const pointers = new Float64Array(items);
    for (let i = 1, acc = 0; i < items; i++) { acc += sizes[i - 1]! * itemBytes; pointers[i] = acc; }

    fs.mkdirSync(path.dirname(path.resolve(out.binPath)), { recursive: true });
    const tag = `.tmp-${process.pid}-${Date.now().toString(36)}`;
    const tmpBin = out.binPath + tag;
    const tmpIdx = out.idxPath + tag;
    try {
      const fd = fs.openSync(tmpBin, 'w');
      try {
        for (const d of datasets) {
          log(`  ${d.prefix}: ${d.length} documents`);
          copyBytes(d.binPath, fd);
        }
        fs.fsyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
      const ifd = fs.openSync(tmpIdx, 'w');
      try {
        for (const part of [encodeIndexHeader(dtype, items, docIdx.length), new Uint8Array(sizes.buffer), int64Bytes(pointers), int64Bytes(Float64Array.from(docIdx))]) {
          writeAll(ifd, part);
        }
        fs.fsyncSync(ifd);
      } finally {
        fs.closeSync(ifd);
      }
      fs.renameSync(tmpBin, out.binPath);
      fs.renameSync(tmpIdx, out.idxPath);
    } catch (err) {
      fs.rmSync(tmpBin, { force: true });
      fs.rmSync(tmpIdx, { force: true });
      throw err;
    }
    const tokens = datasets.reduce((a, d) => a + d.totalTokens, 0);
    return { prefix: out.prefix, inputs: prefixes, dtype, documents: items, tokens };
  } finally {
    for (const d of datasets) d.close();
  }
}

/** Byte copy is only right when items are packed back to back from byte 0, as writers do. */
function checkContiguous(d: IndexedDataset): void {
  const itemBytes = ITEM_BYTES[d.dtype];
  let expect = 0;
  for (let i = 0; i < d.length; i++) {
    if (d.pointers[i] !== expect) throw new Error(`${d.idxPath}: item ${i} starts at byte ${d.pointers[i]}, not ${expect}; items are not stored back to back, cannot merge by copying`);
    expect += d.sizes[i]! * itemBytes;
  }
  const binBytes = fs.statSync(d.binPath).size;
  if (binBytes !== expect) throw new Error(`${d.binPath}: ${binBytes} bytes but its items take ${expect}; cannot merge by copying`);
}

function copyBytes(from: string, toFd: number): void {
  const src = fs.openSync(from, 'r');
  try {
    const buf = Buffer.allocUnsafe(8 << 20);
    for (;;) {
      const n = fs.readSync(src, buf, 0, buf.length, null);
      if (n === 0) break;
      writeAll(toFd, buf.subarray(0, n));
    }
  } finally {
    fs.closeSync(src);
  }
}

function writeAll(fd: number, data: Uint8Array): void {
  let done = 0;
  while (done < data.length) done += fs.writeSync(fd, data, done, Math.min(1 << 30, data.length - done));
}
