// TensorBoard event files: CRC-32C check values (standard + RFC 3720), the record framing and
// masking, writing scalars and reading them back (tags, steps, f32 values, wall times), a corrupted
// byte reported with its record index, and TrainLogger writing `{kind}/{key}` scalars.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { test } from 'node:test';

import { TrainLogger } from '../src/train/logger.js';
import {
  EventFileWriter, TfRecordError, crc32c, decodeEvent, encodeEvent, frameRecord, maskCrc, maskedCrc32c, readEvents,
} from '../src/train/tensorboard.js';

const tmp = () => mkdtempSync(join(tmpdir(), 'neox-tb-'));

test('crc32c: standard check value and RFC 3720 vectors', () => {
  assert.equal(crc32c(Buffer.from('123456789', 'ascii')), 0xe3069283);
  assert.equal(crc32c(new Uint8Array(32)), 0x8a9136aa);
  assert.equal(crc32c(new Uint8Array(32).fill(0xff)), 0x62a8ab43);
  const inc = Uint8Array.from({ length: 32 }, (_, i) => i);
  assert.equal(crc32c(inc), 0x46dd794e);
  const dec = Uint8Array.from({ length: 32 }, (_, i) => 31 - i);
  assert.equal(crc32c(dec), 0x113fdb5c);
  assert.equal(crc32c(new Uint8Array(0)), 0);
  // incremental == one shot
  const data = Buffer.from('The quick brown fox jumps over the lazy dog');
  assert.equal(crc32c(data.subarray(10), crc32c(data.subarray(0, 10))), crc32c(data));
});

test('masked CRC: rotate right 15 plus 0xa282ead8, uint32', () => {
  const crc = 0xe3069283;
  const expect = Number((((BigInt(crc) >> 15n) | ((BigInt(crc) << 17n) & 0xffffffffn)) + 0xa282ead8n) & 0xffffffffn);
  assert.equal(maskCrc(crc), expect);
  assert.equal(maskCrc(0), 0xa282ead8);
  assert.ok(maskCrc(0xffffffff) >= 0 && maskCrc(0xffffffff) <= 0xffffffff);
});

test('record framing: u64 LE length, masked CRCs of length and data', () => {
  const data = Buffer.from('hello');
  const rec = frameRecord(data);
  assert.equal(rec.length, 8 + 4 + 5 + 4);
  assert.equal(rec.readBigUInt64LE(0), 5n);
  assert.equal(rec.readUInt32LE(8), maskedCrc32c(rec.subarray(0, 8)));
  assert.deepEqual(rec.subarray(12, 17), data);
  assert.equal(rec.readUInt32LE(17), maskedCrc32c(data));
  // Files written by TensorFlow/TensorBoard begin with these 12 bytes: the 24-byte file_version
  // Event's length and its masked CRC (an independent check of CRC-32C + mask + framing).
  const w = new EventFileWriter(tmp(), { hostname: 'h' });
  w.close();
  assert.deepEqual(readFileSync(w.path).subarray(0, 12), Buffer.from([0x18, 0, 0, 0, 0, 0, 0, 0, 0xa3, 0x7f, 0x4b, 0x22]));
});

test('Event encoding: exact bytes of a scalar event, round trip incl. negative and large steps', () => {
  const bytes = encodeEvent({ wallTime: 1.5, step: 300, summary: [{ tag: 'a', simpleValue: 2 }] });
  const wt = Buffer.alloc(8);
  wt.writeDoubleLE(1.5);
  const f = Buffer.alloc(4);
  f.writeFloatLE(2);
  const value = Buffer.concat([Buffer.from([0x0a, 1, 0x61, 0x15]), f]); // tag "a", simple_value 2
  const summary = Buffer.concat([Buffer.from([0x0a, value.length]), value]);
  const expected = Buffer.concat([
    Buffer.from([0x09]), wt, // wall_time
    Buffer.from([0x10, 0xac, 0x02]), // step 300
    Buffer.from([0x2a, summary.length]), summary, // summary
  ]);
  assert.deepEqual(bytes, expected);

  const fv = encodeEvent({ wallTime: 7, step: 0, fileVersion: 'brain.Event:2' });
  assert.deepEqual(decodeEvent(fv), { wallTime: 7, step: 0, fileVersion: 'brain.Event:2' });
  for (const step of [-1, 2 ** 40 + 3, Number.MAX_SAFE_INTEGER]) {
    assert.equal(decodeEvent(encodeEvent({ wallTime: 0, step })).step, step);
  }
});

test('writer: file name, version record, scalars read back', () => {
  const dir = tmp();
  let clock = 1_700_000_000.25;
  const w = new EventFileWriter(dir, { hostname: 'node-7', now: () => clock });
  assert.equal(basename(w.path), 'events.out.tfevents.1700000000.node-7');
  const values = [2.302585, 0.1, 1e-7, 3.4e38, -0.0, NaN];
  values.forEach((v, i) => {
    clock += 1;
    w.addScalar('train/loss', v, i * 10);
  });
  w.addScalar('valid/loss', 1.25, 50, 123.5);
  w.close();
  w.close(); // idempotent
  assert.throws(() => w.addScalar('x', 1, 1), /closed/);

  const evs = readEvents(w.path);
  assert.equal(evs.length, 1 + values.length + 1);
  assert.deepEqual(evs[0], { wallTime: 1_700_000_000.25, step: 0, fileVersion: 'brain.Event:2' });
  values.forEach((v, i) => {
    const ev = evs[1 + i];
    assert.equal(ev.step, i * 10);
    assert.equal(ev.wallTime, 1_700_000_000.25 + i + 1);
    assert.equal(ev.summary?.length, 1);
    assert.equal(ev.summary![0].tag, 'train/loss');
    assert.ok(Object.is(ev.summary![0].simpleValue, Math.fround(v)), `value ${i}: ${ev.summary![0].simpleValue} vs ${v}`);
  });
  assert.deepEqual(evs.at(-1), { wallTime: 123.5, step: 50, summary: [{ tag: 'valid/loss', simpleValue: 1.25 }] });

  // a second writer in the same second gets its own file
  const w2 = new EventFileWriter(dir, { hostname: 'node-7', now: () => 1_700_000_000.9 });
  w2.addScalars({ a: 1, b: 2 }, 3);
  w2.close();
  assert.notEqual(w2.path, w.path);
  assert.deepEqual(readEvents(w2.path)[1].summary, [{ tag: 'a', simpleValue: 1 }, { tag: 'b', simpleValue: 2 }]);
});

test('reader: a corrupted byte or a truncated tail names the bad record', () => {
  const dir = tmp();
  const w = new EventFileWriter(dir, { hostname: 'h', now: () => 1000 });
  for (let i = 0; i < 5; i++) w.addScalar('train/loss', i, i);
  w.close();
  const good = readFileSync(w.path);
  assert.equal(readEvents(w.path).length, 6);

  // offsets of each record
  const offsets: number[] = [];
  for (let p = 0; p < good.length; p += 16 + Number(good.readBigUInt64LE(p))) offsets.push(p);
  assert.equal(offsets.length, 6);

  const expectBad = (mutate: (b: Buffer) => Buffer, record: number, reason: RegExp) => {
    const p = join(dir, 'bad.tfevents');
    writeFileSync(p, mutate(Buffer.from(good)));
    assert.throws(() => readEvents(p), (e: unknown) => {
      assert.ok(e instanceof TfRecordError, String(e));
      assert.equal(e.record, record);
      assert.equal(e.offset, offsets[record]);
      assert.match(e.reason, reason);
      assert.match(e.message, new RegExp(`record ${record} at byte ${offsets[record]}`));
      return true;
    });
  };
  // a byte of record 3's data (the float value)
  expectBad((b) => { b[offsets[4] - 6] ^= 0x01; return b; }, 3, /data CRC/);
  // a byte of record 2's length
  expectBad((b) => { b[offsets[2]] ^= 0x40; return b; }, 2, /length CRC/);
  // record 4's stored data CRC
  expectBad((b) => { b[offsets[5] - 1] ^= 0xff; return b; }, 4, /data CRC/);
  // a crash mid-write: the last record is cut short
  expectBad((b) => b.subarray(0, b.length - 3), 5, /truncated/);
  expectBad((b) => b.subarray(0, offsets[5] + 5), 5, /truncated header/);
});

test('TrainLogger: numeric metrics become {kind}/{key} scalars at step = iteration', () => {
  const runDir = tmp();
  const tbDir = join(runDir, 'tb');
  const lines: string[] = [];
  const log = new TrainLogger(runDir, (l) => lines.push(l), { tensorboardDir: tbDir });
  for (const iteration of [1, 2, 3]) log.record('train', { iteration, loss: 10 - iteration, lr: 1e-3 * iteration, grad_norm: 0.5 });
  log.record('data', { message: 'no numbers here' });
  log.record('valid', { iteration: 3, loss: 6.5, ppl: Math.exp(6.5) });
  log.record('eval_tasks', { 'lambada/acc': 0.25 }); // no iteration: last step seen
  log.info('hello');
  log.close();
  log.close();

  const files = readdirSync(tbDir);
  assert.equal(files.length, 1);
  assert.match(files[0], /^events\.out\.tfevents\.\d+\..+$/);
  assert.equal(log.tensorboardPath, null);
  const evs = readEvents(join(tbDir, files[0]));
  assert.equal(evs[0].fileVersion, 'brain.Event:2');
  const scalars = evs.slice(1).map((e) => ({ tag: e.summary![0].tag, step: e.step, value: e.summary![0].simpleValue }));
  assert.deepEqual(scalars.filter((s) => s.tag === 'train/loss'), [
    { tag: 'train/loss', step: 1, value: 9 }, { tag: 'train/loss', step: 2, value: 8 }, { tag: 'train/loss', step: 3, value: 7 },
  ]);
  assert.deepEqual(new Set(scalars.map((s) => s.tag)), new Set([
    'train/loss', 'train/lr', 'train/grad_norm', 'valid/loss', 'valid/ppl', 'eval_tasks/lambada/acc',
  ]));
  assert.equal(scalars.find((s) => s.tag === 'valid/ppl')?.value, Math.fround(Math.exp(6.5)));
  assert.deepEqual(scalars.find((s) => s.tag === 'eval_tasks/lambada/acc'), { tag: 'eval_tasks/lambada/acc', step: 3, value: 0.25 });
  for (const e of evs) assert.ok(Math.abs(e.wallTime - Date.now() / 1000) < 60);

  // JSONL behaviour unchanged
  const jsonl = readFileSync(join(runDir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(jsonl.length, 6);
  assert.equal(jsonl[0].kind, 'train');
  assert.equal(jsonl[0].loss, 9);
  assert.deepEqual(lines, ['hello']);

  // without a directory nothing is written and close() is harmless
  const plain = new TrainLogger(null, () => {});
  plain.record('train', { iteration: 1, loss: 1 });
  assert.equal(plain.tensorboardPath, null);
  plain.close();
});
