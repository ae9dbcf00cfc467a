// Tests for src/checkpoint/: safetensors bytes and validation, shards, checkpoints, inspect.
//
// Byte-level expectations come from two independent places: the upstream Rust test vectors
// (huggingface/safetensors safetensors/src/tensor.rs: test_serialization, test_empty,
// test_serialization_forced_alignement, test_deserialization) and one header derived by hand here.
// A fixture written by the Python library goes in tests/fixtures/safetensors/ (see PYTHON FIXTURE).

import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync,
  truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import {
  CheckpointError, CheckpointWriter, SafetensorsError, SafetensorsFile, ShardedSafetensors,
  fromSTDType, hostArrayOf, hostTensor, inspectCheckpoint, listCheckpoints, loadCheckpoint,
  planShards, pythonJsonDumps, readLatest, readShardedIndex, saveCheckpoint, serializeSafetensors,
  summarizeLayers, toSTDType, verifyCheckpoint, writeSafetensors, writeSafetensorsFrom,
  writeSharded, type HostTensor,
} from '../src/checkpoint/index.js';

const root = mkdtempSync(join(tmpdir(), 'neox-checkpoint-test-'));
after(() => rmSync(root, { recursive: true, force: true }));
let counter = 0;
function fresh(name: string): string {
  const d = join(root, `${name}-${counter++}`);
  mkdirSync(d, { recursive: true });
  return d;
}

function bytes(...xs: number[]): Uint8Array {
  return new Uint8Array(xs);
}
function raw(dtype: HostTensor['dtype'], shape: number[], data: Uint8Array): HostTensor {
  return { dtype, shape, data };
}
function f32(shape: number[], values: number[]): HostTensor {
  return hostTensor('f32', shape, new Float32Array(values));
}
function ascii(s: string): number[] {
  return [...Buffer.from(s, 'utf8')];
}
/** A safetensors file from a literal header string and data bytes (for malformed cases). */
function craft(path: string, header: string, data: Uint8Array, declaredLength?: bigint): void {
  const h = Buffer.from(header, 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(declaredLength ?? BigInt(h.length));
  writeFileSync(path, Buffer.concat([len, h, data]));
}

describe('safetensors dtypes', () => {
  test('engine dtypes map to safetensors names and back', () => {
    for (const d of ['f32', 'f64', 'bf16', 'f16', 'i32', 'u16', 'u8'] as const) {
      assert.equal(fromSTDType(toSTDType(d)), d);
    }
    assert.equal(toSTDType('bf16'), 'BF16');
    assert.equal(fromSTDType('I64'), undefined);
    assert.equal(fromSTDType('F8_E4M3'), undefined);
  });

  test('hostArrayOf returns the values written by hostTensor', () => {
    const t = hostTensor('i32', [2, 2], new Int32Array([1, -2, 3, -4]));
    const { dtype, data } = hostArrayOf(t);
    assert.equal(dtype, 'i32');
    assert.deepEqual([...data], [1, -2, 3, -4]);
    assert.throws(() => hostTensor('f32', [3], new Float32Array(2)), SafetensorsError);
    assert.throws(() => hostTensor('f32', [2], new Float64Array(2) as never), SafetensorsError);
  });
});

describe('safetensors bytes match the reference implementation', () => {
  const f0to5 = new Float32Array([0, 1, 2, 3, 4, 5]);

  test('upstream test_serialization: one F32 [1,2,3] tensor, no metadata', () => {
    const out = serializeSafetensors({ 'attn.0': hostTensor('f32', [1, 2, 3], f0to5) }, null);
    assert.deepEqual([...out], [
      64, 0, 0, 0, 0, 0, 0, 0, 123, 34, 97, 116, 116, 110, 46, 48, 34, 58, 123, 34, 100,
      116, 121, 112, 101, 34, 58, 34, 70, 51, 50, 34, 44, 34, 115, 104, 97, 112, 101, 34,
      58, 91, 49, 44, 50, 44, 51, 93, 44, 34, 100, 97, 116, 97, 95, 111, 102, 102, 115,
      101, 116, 115, 34, 58, 91, 48, 44, 50, 52, 93, 125, 125, 0, 0, 0, 0, 0, 0, 128, 63,
      0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64, 0, 0, 160, 64,
    ]);
  });

  test('upstream test_serialization_forced_alignement: header padded with spaces', () => {
    const out = serializeSafetensors({ attn0: hostTensor('f32', [1, 1, 2, 3], f0to5) }, null);
    assert.deepEqual([...out], [
      72, 0, 0, 0, 0, 0, 0, 0, 123, 34, 97, 116, 116, 110, 48, 34, 58, 123, 34, 100, 116,
      121, 112, 101, 34, 58, 34, 70, 51, 50, 34, 44, 34, 115, 104, 97, 112, 101, 34, 58,
      91, 49, 44, 49, 44, 50, 44, 51, 93, 44, 34, 100, 97, 116, 97, 95, 111, 102, 102,
      115, 101, 116, 115, 34, 58, 91, 48, 44, 50, 52, 93, 125, 125, 32, 32, 32, 32, 32,
      32, 32, 0, 0, 0, 0, 0, 0, 128, 63, 0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64, 0, 0,
      160, 64,
    ]);
  });

  test('upstream test_empty: no tensors, with and without metadata', () => {
    assert.deepEqual([...serializeSafetensors({}, null)],
      [8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32]);
    assert.deepEqual([...serializeSafetensors({}, { framework: 'pt' })], [
      40, 0, 0, 0, 0, 0, 0, 0, 123, 34, 95, 95, 109, 101, 116, 97, 100, 97, 116, 97, 95,
      95, 34, 58, 123, 34, 102, 114, 97, 109, 101, 119, 111, 114, 107, 34, 58, 34, 112,
      116, 34, 125, 125, 32, 32, 32, 32, 32,
    ]);
  });

  test('hand-derived header: dtype order, name order, scalar, empty tensor, default metadata', () => {
    // Order: Rust Dtype enum descending (I64 > F32 > BF16), ties by name (b < d):
    //   c I64 []   8 bytes  [0, 8]
    //   b F32 [2]  8 bytes  [8, 16]
    //   d F32 [0]  0 bytes  [16, 16]
    //   a BF16 [2,1] 4 bytes [16, 20]
    // JSON length by hand: 32 (`{"__metadata__":{"format":"pt"},`) + 52 (c) + 54 (b) + 55 (d)
    // + 58 (a and the closing brace) = 251, padded with 5 spaces to 256 = 0x100.
    const json = '{"__metadata__":{"format":"pt"},' +
      '"c":{"dtype":"I64","shape":[],"data_offsets":[0,8]},' +
      '"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]},' +
      '"d":{"dtype":"F32","shape":[0],"data_offsets":[16,16]},' +
      '"a":{"dtype":"BF16","shape":[2,1],"data_offsets":[16,20]}}';
    assert.equal(json.length, 251);
    const expected = [
      0x00, 0x01, 0, 0, 0, 0, 0, 0, ...ascii(json), 32, 32, 32, 32, 32,
      7, 0, 0, 0, 0, 0, 0, 0, // c = 7 as i64
      0, 0, 0x80, 0x3f, 0, 0, 0, 0x40, // b = [1, 2] as f32
      0x80, 0x3f, 0x00, 0x40, // a = [1, 2] as bf16
    ];
    const tensors = {
      b: f32([2], [1, 2]),
      a: raw('BF16', [2, 1], bytes(0x80, 0x3f, 0x00, 0x40)),
      c: raw('I64', [], bytes(7, 0, 0, 0, 0, 0, 0, 0)),
      d: f32([0], []),
    };
    assert.deepEqual([...serializeSafetensors(tensors)], expected);
    const path = join(fresh('hand'), 'hand.safetensors');
    writeSafetensors(path, tensors);
    assert.deepEqual([...readFileSync(path)], expected);
  });

  // ── PYTHON FIXTURE ────────────────────────────────────────────────────────────────────────
  // Generated once on the GPU host (torch 2.11, safetensors 0.8.0) and committed:
  //
  //   import torch; from safetensors.torch import save_file
  //   save_file({"b": torch.tensor([1.0, 2.0]),
  //              "a": torch.tensor([[1.0], [2.0]], dtype=torch.bfloat16),
  //              "c": torch.tensor(7, dtype=torch.int64),
  //              "d": torch.zeros(0)},
  //             "tests/fixtures/safetensors/python_save_file.safetensors",
  //             metadata={"format": "pt"})
  //
  // The bytes must equal ours for the same tensors.
  const fixture = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'tests', 'fixtures',
    'safetensors', 'python_save_file.safetensors');
  test('matches a file written by Python safetensors.save_file', () => {
    assert.ok(existsSync(fixture), `missing fixture ${fixture}`);
    const ours = serializeSafetensors({
      b: f32([2], [1, 2]),
      a: raw('BF16', [2, 1], bytes(0x80, 0x3f, 0x00, 0x40)),
      c: raw('I64', [], bytes(7, 0, 0, 0, 0, 0, 0, 0)),
      d: f32([0], []),
    });
    assert.deepEqual([...readFileSync(fixture)], [...ours]);
  });

  test('non-ASCII names are written as raw UTF-8 (serde_json does not escape them)', () => {
    const out = serializeSafetensors({ 'é': raw('U8', [1], bytes(1)) }, null);
    const header = Buffer.from(out.subarray(8, 8 + Number(Buffer.from(out).readBigUInt64LE(0))));
    assert.ok(header.toString('utf8').startsWith('{"é":'));
  });
});

describe('safetensors round trip', () => {
  test('several dtypes and shapes, a 0-d scalar and an empty tensor', () => {
    const tensors = new Map<string, HostTensor>([
      ['w.f32', f32([2, 3], [1, -2, 3.5, 0, 1e-30, -7])],
      ['w.f64', hostTensor('f64', [3], new Float64Array([Math.PI, -1, 2 ** 60]))],
      ['w.bf16', hostTensor('bf16', [4], new Uint16Array([0x3f80, 0x4000, 0xbf80, 0x7fc0]))],
      ['w.f16', hostTensor('f16', [2, 2], new Uint16Array([0x3c00, 0x4000, 0xbc00, 0]))],
      ['ids', hostTensor('i32', [5], new Int32Array([0, 1, -1, 2 ** 31 - 1, -(2 ** 31)]))],
      ['u16', hostTensor('u16', [3], new Uint16Array([0, 1, 65535]))],
      ['mask', hostTensor('u8', [7], new Uint8Array([0, 1, 2, 3, 4, 5, 255]))],
      ['big', raw('I64', [2], bytes(1, 0, 0, 0, 0, 0, 0, 0, 255, 255, 255, 255, 255, 255, 255, 255))],
      ['flags', raw('BOOL', [3], bytes(1, 0, 1))],
      ['fp8', raw('F8_E4M3', [3], bytes(0x38, 0x40, 0xb8))],
      ['scalar', f32([], [42])],
      ['empty', f32([0, 4], [])],
    ]);
    const path = join(fresh('rt'), 'rt.safetensors');
    const res = writeSafetensors(path, tensors, { format: 'pt', note: 'hi' });
    assert.equal(res.bytes, readFileSync(path).length);
    assert.match(res.sha256, /^[0-9a-f]{64}$/);
    const f = new SafetensorsFile(path);
    assert.deepEqual(f.metadata, { format: 'pt', note: 'hi' });
    assert.deepEqual(new Set(f.names()), new Set(tensors.keys()));
    for (const [name, t] of tensors) {
      const got = f.read(name);
      assert.equal(got.dtype, t.dtype, name);
      assert.deepEqual(got.shape, t.shape, name);
      assert.deepEqual([...got.data], [...t.data], name);
    }
    assert.deepEqual(f.info('scalar'), { dtype: 'F32', shape: [], dataOffsets: f.info('scalar').dataOffsets });
    assert.deepEqual([...hostArrayOf(f.read('scalar')).data], [42]);
    assert.deepEqual([...hostArrayOf(f.read('w.f64')).data], [Math.PI, -1, 2 ** 60]);
    assert.equal(f.read('empty').data.length, 0);
    const all = f.readAll();
    assert.equal(all.size, tensors.size);
    assert.throws(() => f.read('nope'), /no tensor named "nope"/);
  });

  test('streaming writer: producer bytes, whole or chunked, give the same file', async () => {
    const dir = fresh('stream');
    const tensors = { x: f32([4], [1, 2, 3, 4]), y: hostTensor('u8', [3], new Uint8Array([9, 8, 7])) };
    writeSafetensors(join(dir, 'a.safetensors'), tensors);
    const asked: string[] = [];
    await writeSafetensorsFrom(join(dir, 'b.safetensors'),
      { x: { dtype: 'F32', shape: [4] }, y: { dtype: 'U8', shape: [3] } },
      async (name) => {
        asked.push(name);
        const d = tensors[name as 'x' | 'y'].data;
        return name === 'x' ? [d.subarray(0, 5), d.subarray(5)] : d;
      });
    assert.deepEqual(asked, ['x', 'y']); // file order: F32 before U8
    assert.deepEqual(readFileSync(join(dir, 'b.safetensors')), readFileSync(join(dir, 'a.safetensors')));
  });

  test('streaming writer: a producer with the wrong size fails and leaves no file', async () => {
    const dir = fresh('stream-bad');
    const path = join(dir, 'bad.safetensors');
    await assert.rejects(writeSafetensorsFrom(path, { x: { dtype: 'F32', shape: [4] } },
      () => new Uint8Array(3)), /producer gave 3 bytes/);
    assert.deepEqual(readdirSync(dir), []);
  });

  test('writer rejects data whose size does not match dtype and shape', () => {
    const path = join(fresh('w'), 'x.safetensors');
    assert.throws(() => writeSafetensors(path, { x: raw('F32', [2], bytes(1, 2, 3)) }),
      /needs 8 bytes, data has 3/);
    assert.equal(existsSync(path), false);
  });

  test('reads an unpadded header written by an older writer (upstream test_deserialization)', () => {
    const path = join(fresh('old'), 'old.safetensors');
    craft(path, '{"test":{"dtype":"I32","shape":[2,2],"data_offsets":[0,16]}}', new Uint8Array(16));
    const f = new SafetensorsFile(path);
    assert.equal(f.headerSize, 60);
    assert.equal(f.metadata, null);
    const t = f.read('test');
    assert.deepEqual(t.shape, [2, 2]);
    assert.deepEqual([...hostArrayOf(t).data], [0, 0, 0, 0]);
  });
});

describe('safetensors reader rejects malformed files', () => {
  const dir = fresh('bad');
  const t4 = '"dtype":"F32","shape":[1]';
  function rejects(name: string, make: (p: string) => void, pattern: RegExp): void {
    const path = join(dir, `${name}.safetensors`);
    make(path);
    assert.throws(() => new SafetensorsFile(path), (e: unknown) => {
      assert.ok(e instanceof SafetensorsError);
      assert.equal(e.name, 'NeoxError');
      assert.ok(e.message.includes(path), `message names the file: ${e.message}`);
      assert.match(e.message, pattern);
      return true;
    });
  }

  test('header length above 100,000,000', () => {
    rejects('huge', (p) => craft(p, '{}', new Uint8Array(0), 100_000_001n), /exceeds the 100000000-byte limit/);
  });
  test('header length past the end of the file', () => {
    rejects('short', (p) => craft(p, '{}', new Uint8Array(0), 64n), /runs past the end/);
  });
  test('file shorter than the length prefix', () => {
    rejects('tiny', (p) => writeFileSync(p, bytes(1, 2, 3)), /too short/);
  });
  test('overlapping offsets', () => {
    rejects('overlap', (p) => craft(p, `{"a":{${t4},"data_offsets":[0,4]},"b":{${t4},"data_offsets":[2,6]}}`,
      new Uint8Array(6)), /tensor "b".*overlap tensor "a"/);
  });
  test('a gap between tensors', () => {
    rejects('gap', (p) => craft(p, `{"a":{${t4},"data_offsets":[0,4]},"b":{${t4},"data_offsets":[6,10]}}`,
      new Uint8Array(10)), /gap of 2 bytes after tensor "a"/);
  });
  test('offsets not matching numel times item size', () => {
    rejects('size', (p) => craft(p, `{"a":{${t4},"data_offsets":[0,8]}}`, new Uint8Array(8)),
      /span 8 bytes, but F32 \[1\] needs 4/);
  });
  test('truncated file', () => {
    rejects('trunc', (p) => {
      writeSafetensors(p, { a: f32([4], [1, 2, 3, 4]) });
      truncateSync(p, readFileSync(p).length - 3);
    }, /truncated: the header describes \d+ bytes, the file has \d+/);
  });
  test('bytes after the last tensor', () => {
    rejects('trailing', (p) => craft(p, `{"a":{${t4},"data_offsets":[0,4]}}`, new Uint8Array(7)),
      /3 bytes after the last tensor/);
  });
  test('invalid JSON, unknown dtype, bad metadata', () => {
    rejects('json', (p) => craft(p, '{"a":', new Uint8Array(0)), /not valid JSON/);
    rejects('dtype', (p) => craft(p, '{"a":{"dtype":"Q4","shape":[1],"data_offsets":[0,1]}}',
      new Uint8Array(1)), /unknown dtype "Q4"/);
    rejects('meta', (p) => craft(p, '{"__metadata__":{"n":1}}', new Uint8Array(0)), /"n" is not a string/);
  });
});

describe('sharded safetensors', () => {
  test('planShards follows huggingface_hub: [6,6,2,6,2,2] under 10 → [6] [6,2] [6,2,2]', () => {
    const sizes = [6, 6, 2, 6, 2, 2];
    const descs = sizes.map((s, i) => [`t${i}`, { dtype: 'U8' as const, shape: [s] }] as const);
    const plan = planShards(descs, 10);
    assert.deepEqual(plan.shards.map((s) => s.names), [['t0'], ['t1', 't2'], ['t3', 't4', 't5']]);
    assert.deepEqual(plan.shards.map((s) => s.file), [
      'model-00001-of-00003.safetensors', 'model-00002-of-00003.safetensors',
      'model-00003-of-00003.safetensors']);
    assert.equal(plan.totalSize, 24);
    // A tensor over the limit gets its own shard at once, ahead of the shard being filled.
    const big = planShards([['a', { dtype: 'U8', shape: [3] }], ['b', { dtype: 'U8', shape: [20] }],
      ['c', { dtype: 'U8', shape: [3] }]], 10);
    assert.deepEqual(big.shards.map((s) => s.names), [['b'], ['a', 'c']]);
  });

  test('index json is json.dumps(indent=2, sort_keys=True) + newline', () => {
    assert.equal(pythonJsonDumps({ b: 1, a: { 'z é': 'x', y: [] }, c: {} }),
      '{\n  "a": {\n    "y": [],\n    "z \\u00e9": "x"\n  },\n  "b": 1,\n  "c": {}\n}');
  });

  test('writeSharded writes shards and the index; ShardedSafetensors reads them back', () => {
    const dir = fresh('sharded');
    const tensors = new Map<string, HostTensor>([
      ['embed.weight', f32([4, 2], [1, 2, 3, 4, 5, 6, 7, 8])],
      ['layers.0.w', f32([2, 2], [1, 0, 0, 1])],
      ['layers.1.w', f32([2, 2], [0, 1, 1, 0])],
      ['head.bias', hostTensor('bf16', [2], new Uint16Array([0x3f80, 0x4000]))],
    ]);
    const res = writeSharded(dir, tensors, 20);
    // 32 bytes > 20: own shard; then 16; 16 + 16 > 20 → new shard; 16 + 4 = 20 fits.
    assert.deepEqual(res.files.map((f) => f.path.slice(dir.length + 1)), [
      'model-00001-of-00003.safetensors', 'model-00002-of-00003.safetensors',
      'model-00003-of-00003.safetensors']);
    assert.equal(readFileSync(join(dir, 'model.safetensors.index.json'), 'utf8'), [
      '{',
      '  "metadata": {',
      '    "total_size": 68',
      '  },',
      '  "weight_map": {',
      '    "embed.weight": "model-00001-of-00003.safetensors",',
      '    "head.bias": "model-00003-of-00003.safetensors",',
      '    "layers.0.w": "model-00002-of-00003.safetensors",',
      '    "layers.1.w": "model-00003-of-00003.safetensors"',
      '  }',
      '}',
      ''].join('\n'));
    // Recent transformers also record total_parameters; sort_keys puts it before total_size.
    writeSharded(dir, tensors, 20, { totalParameters: 17 });
    assert.match(readFileSync(join(dir, 'model.safetensors.index.json'), 'utf8'),
      /^{\n  "metadata": {\n    "total_parameters": 17,\n    "total_size": 68\n  },\n/);
    const idx = readShardedIndex(dir);
    assert.equal(idx.weightMap.get('head.bias'), 'model-00003-of-00003.safetensors');
    assert.deepEqual(idx.metadata, { total_parameters: 17, total_size: 68 });
    const st = new ShardedSafetensors(dir);
    assert.deepEqual(new Set(st.names()), new Set(tensors.keys()));
    for (const [name, t] of tensors) assert.deepEqual([...st.read(name).data], [...t.data]);
    assert.equal(new SafetensorsFile(res.files[0]!.path).metadata?.['format'], 'pt');

    // Saving again into one file removes the stale shards and index, as save_pretrained does.
    const one = writeSharded(dir, tensors, 1 << 20);
    assert.equal(one.indexPath, null);
    assert.deepEqual(readdirSync(dir), ['model.safetensors']);
    assert.deepEqual(new Set(new ShardedSafetensors(dir).names()), new Set(tensors.keys()));
  });

  test('an index naming a missing shard is rejected', () => {
    const dir = fresh('sharded-bad');
    writeSharded(dir, { a: f32([4], [1, 2, 3, 4]), b: f32([4], [1, 2, 3, 4]) }, 16);
    rmSync(join(dir, 'model-00002-of-00002.safetensors'));
    assert.throws(() => readShardedIndex(dir), /shard "model-00002-of-00002.safetensors" is listed but missing/);
  });
});

// ─── checkpoints ─────────────────────────────────────────────────────────────────────────────────

function tinyModel(seed: number): Map<string, HostTensor> {
  const v = (n: number, k: number): number[] => Array.from({ length: n }, (_, i) => seed + k + i / 8);
  const m = new Map<string, HostTensor>([['gpt_neox.embed_in.weight', f32([8, 4], v(32, 0))]]);
  for (let l = 0; l < 2; l++) {
    m.set(`gpt_neox.layers.${l}.attention.query_key_value.weight`, f32([12, 4], v(48, l)));
    m.set(`gpt_neox.layers.${l}.attention.query_key_value.bias`, f32([12], v(12, l)));
    m.set(`gpt_neox.layers.${l}.input_layernorm.weight`, f32([4], v(4, l)));
  }
  m.set('gpt_neox.final_layer_norm.weight', f32([4], v(4, 9)));
  m.set('embed_out.weight', hostTensor('bf16', [8, 4], new Uint16Array(32).fill(0x3f80 + seed)));
  return m;
}

function tinyOptimizer(seed: number): Map<string, HostTensor> {
  return new Map([
    ['exp_avg.gpt_neox.embed_in.weight', f32([8, 4], Array(32).fill(seed * 0.5))],
    ['exp_avg_sq.gpt_neox.embed_in.weight', f32([8, 4], Array(32).fill(seed * 0.25))],
  ]);
}

function save(dir: string, step: number, keepLastN?: number): void {
  saveCheckpoint(dir, step, {
    model: tinyModel(step),
    optimizer: tinyOptimizer(step),
    state: { iteration: step, rng: { seed: 1234, offset: step * 10 }, data: { consumed: step * 8 },
      lr_scheduler: { last: 0.001 }, loss_scale: 65536 },
    config: { num_layers: 2, hidden_size: 4, train_iters: 100 },
  }, keepLastN === undefined ? {} : { keepLastN });
}

function assertCorrupt(fn: () => unknown, file: string): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof CheckpointError, String(e));
    assert.equal(e.name, 'NeoxError');
    assert.match(e.message, /is corrupt/);
    assert.ok(e.message.includes(file), `names ${file}: ${e.message}`);
    return true;
  });
}

describe('checkpoints', () => {
  test('save/load round trip with optimizer, state and config', () => {
    const dir = fresh('ckpt');
    save(dir, 10);
    assert.deepEqual(readdirSync(join(dir, 'global_step10')).sort(),
      ['config.json', 'manifest.json', 'model.safetensors', 'optimizer.safetensors', 'state.json']);
    assert.equal(readFileSync(join(dir, 'latest'), 'utf8'), 'global_step10');
    const ck = loadCheckpoint(dir);
    assert.equal(ck.step, 10);
    assert.equal(ck.dir, join(dir, 'global_step10'));
    const want = tinyModel(10);
    assert.deepEqual([...ck.model.keys()].sort(), [...want.keys()].sort());
    for (const [k, t] of want) {
      assert.equal(ck.model.get(k)!.dtype, t.dtype);
      assert.deepEqual(ck.model.get(k)!.shape, t.shape);
      assert.deepEqual([...ck.model.get(k)!.data], [...t.data], k);
    }
    assert.deepEqual([...hostArrayOf(ck.optimizer!.get('exp_avg.gpt_neox.embed_in.weight')!).data],
      Array(32).fill(5));
    assert.deepEqual(ck.state, { iteration: 10, rng: { seed: 1234, offset: 100 }, data: { consumed: 80 },
      lr_scheduler: { last: 0.001 }, loss_scale: 65536 });
    assert.deepEqual(ck.config, { num_layers: 2, hidden_size: 4, train_iters: 100 });
    assert.equal(ck.manifest.version, 1);
    assert.deepEqual(ck.manifest.files.map((f) => f.kind), ['model', 'optimizer', 'state', 'config']);

    const w = loadCheckpoint(dir, { weightsOnly: true });
    assert.equal(w.optimizer, undefined);
    assert.equal(w.model.size, want.size);
    // Loading the step folder itself, or by step number, finds the same checkpoint.
    assert.equal(loadCheckpoint(join(dir, 'global_step10')).step, 10);
    assert.equal(loadCheckpoint(dir, { step: 10 }).step, 10);
    assert.ok(verifyCheckpoint(join(dir, 'global_step10')).ok);
  });

  test('latest points to the newest save; keepLastN prunes the rest', () => {
    const dir = fresh('prune');
    for (const s of [1, 2, 3, 4, 5]) save(dir, s, 2);
    assert.deepEqual(listCheckpoints(dir).map((c) => c.step), [4, 5]);
    assert.equal(readLatest(dir), 'global_step5');
    assert.equal(loadCheckpoint(dir).step, 5);
    // Saving an older step (a resumed branch): it becomes latest and is never the one pruned.
    save(dir, 3, 2);
    assert.equal(readLatest(dir), 'global_step3');
    assert.deepEqual(listCheckpoints(dir).map((c) => c.step), [3, 5]);
    assert.equal(loadCheckpoint(dir).state['iteration'], 3);
    // Saving the same step again replaces it in place.
    save(dir, 3, 2);
    assert.deepEqual(listCheckpoints(dir).map((c) => c.step), [3, 5]);
    assert.equal(readdirSync(dir).filter((f) => f.startsWith('.')).length, 0);
  });

  test('keepLastN absent keeps everything', () => {
    const dir = fresh('keep');
    for (const s of [100, 200, 300]) save(dir, s);
    assert.deepEqual(listCheckpoints(dir).map((c) => c.name), ['global_step100', 'global_step200', 'global_step300']);
  });

  test('a flipped byte in the model is reported corrupt and not loaded', () => {
    const dir = fresh('flip');
    save(dir, 7);
    const p = join(dir, 'global_step7', 'model.safetensors');
    const b = readFileSync(p);
    b[b.length - 5]! ^= 0x01;
    writeFileSync(p, b);
    assertCorrupt(() => loadCheckpoint(dir), 'model.safetensors');
    assert.match(verifyCheckpoint(join(dir, 'global_step7')).problems.join(), /model.safetensors: sha256 mismatch/);
  });

  test('a flipped byte in the safetensors header or state.json is reported corrupt', () => {
    const dir = fresh('flip2');
    save(dir, 7);
    const p = join(dir, 'global_step7', 'model.safetensors');
    const b = readFileSync(p);
    b[12] = 0x7b; // inside the JSON header: now unparsable or mismatching
    writeFileSync(p, b);
    assertCorrupt(() => loadCheckpoint(dir), 'model.safetensors');

    const dir2 = fresh('flip3');
    save(dir2, 7);
    const s = join(dir2, 'global_step7', 'state.json');
    writeFileSync(s, readFileSync(s, 'utf8').replace('"iteration": 7', '"iteration": 8'));
    assertCorrupt(() => loadCheckpoint(dir2), 'state.json');
  });

  test('a truncated or missing file is reported corrupt; weightsOnly skips the optimizer', () => {
    const dir = fresh('trunc');
    save(dir, 3);
    const opt = join(dir, 'global_step3', 'optimizer.safetensors');
    truncateSync(opt, 100);
    assertCorrupt(() => loadCheckpoint(dir), 'optimizer.safetensors');
    assert.throws(() => loadCheckpoint(dir), /truncated/);
    assert.equal(loadCheckpoint(dir, { weightsOnly: true }).model.size, tinyModel(3).size);
    rmSync(join(dir, 'global_step3', 'config.json'));
    assertCorrupt(() => loadCheckpoint(dir, { weightsOnly: true }), 'config.json');
  });

  test('a crash leaving a .tmp-* folder does not affect loading the previous latest', () => {
    const dir = fresh('crash');
    save(dir, 5);
    // A save of step 6 that died half-way: partial files, no manifest, never renamed.
    const tmp = join(dir, '.tmp-global_step6-99999');
    mkdirSync(tmp);
    writeFileSync(join(tmp, 'model.safetensors'), bytes(1, 2, 3));
    // And one that died after its manifest but before the rename.
    const w = new CheckpointWriter(dir, 8);
    w.addSafetensors('model.safetensors', 'model', tinyModel(8));
    assert.ok(existsSync(w.tmpDir));
    assert.deepEqual(listCheckpoints(dir).map((c) => c.step), [5]);
    assert.equal(readLatest(dir), 'global_step5');
    const ck = loadCheckpoint(dir);
    assert.equal(ck.step, 5);
    assert.equal(ck.state['iteration'], 5);
    w.abort();
    assert.equal(existsSync(w.tmpDir), false);
  });

  test('a crash while replacing a step leaves the old copy loadable', () => {
    const dir = fresh('aside');
    save(dir, 4);
    renameSync(join(dir, 'global_step4'), join(dir, '.old-global_step4-4242'));
    assert.equal(loadCheckpoint(dir).step, 4);
  });

  test('errors: no latest, bad latest, missing step, manifest step mismatch', () => {
    const dir = fresh('errs');
    assert.throws(() => loadCheckpoint(dir), /no "latest" file .* holds no checkpoints/);
    save(dir, 2);
    assert.throws(() => loadCheckpoint(dir, { step: 9 }), /global_step9 does not exist/);
    writeFileSync(join(dir, 'latest'), 'banana');
    assert.throws(() => loadCheckpoint(dir), /holds "banana"/);
    rmSync(join(dir, 'latest'));
    assert.throws(() => loadCheckpoint(dir), /it holds global_step2: choose one with a step/);
    renameSync(join(dir, 'global_step2'), join(dir, 'global_step3'));
    assertCorrupt(() => loadCheckpoint(dir, { step: 3 }), 'manifest.json');
  });

  test('the writer lists extra files generically and verifies them on load', () => {
    const dir = fresh('extra');
    const w = new CheckpointWriter(dir, 1);
    w.addSafetensors('model.safetensors', 'model', tinyModel(1));
    w.addSafetensors('zero/optimizer-rank00000.safetensors', 'optimizer-shard', tinyOptimizer(1));
    w.addJson('state.json', 'state', { iteration: 1 });
    w.addJson('config.json', 'config', {});
    w.commit();
    assert.equal(loadCheckpoint(dir).manifest.files[1]!.kind, 'optimizer-shard');
    const p = join(dir, 'global_step1', 'zero', 'optimizer-rank00000.safetensors');
    const b = readFileSync(p);
    b[b.length - 1]! ^= 0xff;
    writeFileSync(p, b);
    assertCorrupt(() => loadCheckpoint(dir), 'optimizer-rank00000.safetensors');
    assert.equal(loadCheckpoint(dir, { weightsOnly: true }).step, 1);
  });
});

describe('inspect', () => {
  test('reports step, parameters, layers, tensors, bytes and verification', () => {
    const dir = fresh('inspect');
    save(dir, 12);
    const text = inspectCheckpoint(dir);
    assert.match(text, /^step {8}12$/m);
    // 32 + 2 * (48 + 12 + 4) + 4 + 32 = 196 parameters.
    assert.match(text, /parameters {2}196 in 9 tensors/);
    assert.match(text, /model {7}2 layers \(gpt_neox\.layers\.0 … gpt_neox\.layers\.1\), 64 parameters and 3 tensors each/);
    assert.match(text, /manifest {4}verified: 4 files/);
    assert.match(text, /gpt_neox\.layers\.1\.attention\.query_key_value\.weight +F32 +\[12, 4\] +192 B/);
    assert.match(text, /optimizer {3}2 tensors/);
    assert.match(text, /state {7}iteration=12 loss_scale=65536 rng=\{…\}/);
    assert.match(text, /^total {7}[\d,]+ bytes/m);

    const p = join(dir, 'global_step12', 'model.safetensors');
    const b = readFileSync(p);
    b[b.length - 1]! ^= 1;
    writeFileSync(p, b);
    assert.match(inspectCheckpoint(dir), /manifest {4}FAILED: model\.safetensors: sha256 mismatch/);
  });

  test('inspects a bare .safetensors file and a Hugging Face folder', () => {
    const dir = fresh('inspect-hf');
    const res = writeSharded(dir, tinyModel(1), 200);
    assert.ok(res.files.length > 1);
    const text = inspectCheckpoint(dir);
    assert.match(text, new RegExp(`\\(${res.files.length} files, no checkpoint manifest\\)`));
    assert.match(text, /parameters {2}196 in 9 tensors/);
    assert.match(inspectCheckpoint(res.files[0]!.path), /weights .*\(1 file, no checkpoint manifest\)/);
  });

  test('summarizeLayers groups numbered layers and leaves the rest outside', () => {
    const rows = [...tinyModel(0)].map(([name, t]) => ({ name,
      info: { dtype: t.dtype, shape: t.shape, dataOffsets: [0, 0] as [number, number] } }));
    const s = summarizeLayers(rows)!;
    assert.equal(s.container, 'gpt_neox.layers');
    assert.deepEqual(s.indices, [0, 1]);
    assert.deepEqual(s.otherNames, ['gpt_neox.embed_in.weight', 'gpt_neox.final_layer_norm.weight', 'embed_out.weight']);
  });
});
