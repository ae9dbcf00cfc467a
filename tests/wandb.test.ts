// Weights & Biases against a fake server on 127.0.0.1: the run is created through GraphQL
// (viewer → default entity, upsertBucket with project/entity/group/name/config) with basic auth
// "api:<key>"; history lines arrive in order with contiguous offsets over several file_stream
// posts, steps merged, NaN as the bare token; finish sends complete/exitcode; a server error is one
// warning and a retry from the same offset; no key, WANDB_MODE=disabled/offline → no run; the API
// key from a netrc file; TrainLogger sends `{kind}/{key}`; a tiny CPU training run with use_wandb.
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';

import { loadConfig } from '../src/config/index.js';
import { TrainLogger } from '../src/train/logger.js';
import { train } from '../src/train/trainer.js';
import { tinyRun } from './helpers/tiny_run.js';
import { WandbRun, encodeWandbJson, resolveWandbApiKey, wandbAppUrl, wandbGroupName, wandbMode } from '../src/train/wandb.js';

interface Req { path: string; auth: string | undefined; body: any }

class FakeWandb {
  readonly requests: Req[] = [];
  /** file_stream posts to answer with HTTP 500 (counted down). */
  failStreams = 0;
  private server!: Server;
  host = '';

  async listen(): Promise<this> {
    this.server = createServer((req, res) => this.handle(req, res));
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.host = `http://127.0.0.1:${(this.server.address() as { port: number }).port}`;
    return this;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      const body = JSON.parse(text);
      this.requests.push({ path: req.url ?? '', auth: req.headers.authorization, body });
      const reply = (status: number, obj: unknown) => {
        res.writeHead(status, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify(obj));
      };
      if (req.url === '/graphql') {
        if (String(body.query).includes('viewer')) return reply(200, { data: { viewer: { id: 'u1', entity: 'default-ent', username: 'me' } } });
        if (String(body.query).includes('upsertBucket')) {
          const v = body.variables;
          return reply(200, { data: { upsertBucket: { inserted: true, bucket: {
            id: 'b1', name: v.name, displayName: v.displayName ?? v.name, historyLineCount: 0,
            project: { id: 'p1', name: v.project, entity: { id: 'e1', name: v.entity } },
          } } } });
        }
        return reply(400, { errors: [{ message: 'unknown query' }] });
      }
      if (req.url?.endsWith('/file_stream')) {
        if (this.failStreams > 0) {
          this.failStreams--;
          return reply(500, { error: 'boom' });
        }
        return reply(200, { exitcode: null, limits: {} });
      }
      reply(404, {});
    });
  }

  get graphql(): Req[] {
    return this.requests.filter((r) => r.path === '/graphql');
  }
  get streams(): Req[] {
    return this.requests.filter((r) => r.path.endsWith('/file_stream'));
  }

  /** The history file as the server would assemble it, checking that offsets are contiguous. */
  history(): string[] {
    const lines: string[] = [];
    for (const r of this.streams) {
      const h = r.body.files?.['wandb-history.jsonl'];
      if (!h) continue;
      assert.ok(h.offset <= lines.length, `offset ${h.offset} leaves a gap after ${lines.length} lines`);
      lines.splice(h.offset, h.content.length, ...h.content);
    }
    return lines;
  }

  async close(): Promise<void> {
    if (!this.server.listening) return;
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

/** A fake server closed when the test ends, passed or not. */
async function served(t: TestContext): Promise<FakeWandb> {
  const srv = await new FakeWandb().listen();
  t.after(() => srv.close());
  return srv;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const basic = (key: string) => `Basic ${Buffer.from(`api:${key}`).toString('base64')}`;
const parseLine = (l: string) => JSON.parse(l.replace(/:(-?Infinity|NaN)([,}])/g, ':"$1"$2'));
const emptyHome = () => mkdtempSync(join(tmpdir(), 'neox-wandb-home-'));

test('run created via GraphQL with auth; history in order over several flushes; summary; finish', async (t) => {
  const srv = await served(t);
  const warnings: string[] = [];
  const notes: string[] = [];
  const run = await WandbRun.start({
    project: 'proj', group: 'grp_abc', name: 'my run', host: srv.host, config: { lr: 0.1, layers: [1, 2] },
    env: { WANDB_API_KEY: 'key123', HOME: emptyHome() }, warn: (m) => warnings.push(m), info: (m) => notes.push(m),
    flushIntervalMs: 40,
  });
  assert.ok(run);
  // viewer (no entity given) then upsertBucket, both with basic auth api:<key>
  assert.equal(srv.graphql.length, 2);
  assert.match(srv.graphql[0]!.body.query, /viewer\s*{[^}]*entity/);
  assert.match(srv.graphql[1]!.body.query, /mutation UpsertBucket/);
  for (const r of srv.graphql) assert.equal(r.auth, basic('key123'));
  const v = srv.graphql[1]!.body.variables;
  assert.equal(v.project, 'proj');
  assert.equal(v.entity, 'default-ent');
  assert.equal(v.groupName, 'grp_abc');
  assert.equal(v.displayName, 'my run');
  assert.match(v.name, /^[a-z0-9]{8}$/);
  assert.deepEqual(JSON.parse(v.config), { lr: { desc: null, value: 0.1 }, layers: { desc: null, value: [1, 2] } });
  assert.equal(run.id, v.name);
  assert.equal(run.entity, 'default-ent');
  assert.equal(run.url, `${srv.host}/default-ent/proj/runs/${run.id}`);
  assert.ok(notes.some((n) => n.includes(run.url)));

  for (let step = 1; step <= 9; step++) {
    run.log(step, { 'train/loss': 10 - step, 'train/lr': 0.001 });
    if (step % 3 === 0) run.log(step, { 'valid/loss': 20 - step }); // same step: merged into one line
    await sleep(30);
  }
  run.log(10, { 'train/loss': NaN });
  await run.finish(0);
  await run.finish(0); // idempotent

  const streams = srv.streams;
  for (const r of streams) {
    assert.equal(r.auth, basic('key123'));
    assert.equal(r.path, `/files/default-ent/proj/${run.id}/file_stream`);
  }
  const historyPosts = streams.filter((r) => r.body.files?.['wandb-history.jsonl']);
  assert.ok(historyPosts.length >= 2, `expected several flushes, got ${historyPosts.length}`);
  let expectOffset = 0;
  for (const r of historyPosts) {
    const h = r.body.files['wandb-history.jsonl'];
    assert.equal(h.offset, expectOffset);
    expectOffset += h.content.length;
  }
  const raw = srv.history();
  assert.equal(raw.length, 10);
  assert.match(raw[9]!, /"train\/loss":NaN/);
  const lines = raw.map(parseLine);
  assert.deepEqual(lines.map((l) => l._step), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  for (const l of lines.slice(0, 9)) {
    assert.equal(l['train/loss'], 10 - l._step);
    assert.equal(l['train/lr'], 0.001);
    assert.equal(typeof l._runtime, 'number');
    assert.ok(Math.abs(l._timestamp - Date.now() / 1000) < 60);
  }
  assert.deepEqual(lines.filter((l) => 'valid/loss' in l).map((l) => [l._step, l['valid/loss']]), [[3, 17], [6, 14], [9, 11]]);
  assert.ok(lines[9]._runtime >= lines[0]._runtime);
  // the summary: latest value of every key
  const summaries = streams.filter((r) => r.body.files?.['wandb-summary.json']).map((r) => r.body.files['wandb-summary.json']);
  assert.ok(summaries.length > 0);
  assert.equal(summaries.at(-1).offset, 0);
  const summary = parseLine(summaries.at(-1).content[0]);
  assert.equal(summary._step, 10);
  assert.equal(summary['valid/loss'], 11);
  assert.equal(summary['train/loss'], 'NaN');
  // the last post: complete with the exit code, after all the history
  const last = streams.at(-1)!.body;
  assert.equal(last.complete, true);
  assert.equal(last.exitcode, 0);
  assert.deepEqual(warnings, []);
  await srv.close();
});

test('a server error is one warning, never a throw; the lines are re-sent from the same offset', async (t) => {
  const srv = await served(t);
  const warnings: string[] = [];
  const run = await WandbRun.start({
    project: 'p', entity: 'team', host: srv.host, env: { WANDB_API_KEY: 'k', HOME: emptyHome() },
    warn: (m) => warnings.push(m), info: () => {}, flushIntervalMs: 20,
  });
  assert.ok(run);
  assert.equal(srv.graphql.length, 1, 'entity given: no viewer query');
  assert.equal(srv.graphql[0]!.body.variables.entity, 'team');
  srv.failStreams = 3;
  for (let step = 1; step <= 12; step++) {
    run.log(step, { 'train/loss': step });
    await sleep(15);
  }
  await sleep(300);
  await run.finish(1);
  assert.equal(warnings.length, 1, warnings.join('\n'));
  assert.match(warnings[0]!, /W&B: sending metrics .* failed \(HTTP 500.*training continues/);
  assert.deepEqual(srv.history().map((l) => parseLine(l)._step), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
  assert.equal(srv.streams.filter((r) => r.body.files?.['wandb-history.jsonl']?.offset === 0).length >= 2, true, 're-sent from offset 0');
  assert.deepEqual({ complete: srv.streams.at(-1)!.body.complete, exitcode: srv.streams.at(-1)!.body.exitcode }, { complete: true, exitcode: 1 });

  // A server gone for good: logging and finishing neither throw nor hang.
  const run2 = await WandbRun.start({
    project: 'p', entity: 'team', host: srv.host, env: { WANDB_API_KEY: 'k', HOME: emptyHome() },
    warn: (m) => warnings.push(m), info: () => {}, flushIntervalMs: 20, requestTimeoutMs: 500, finishTimeoutMs: 1500,
  });
  assert.ok(run2);
  await srv.close();
  warnings.length = 0;
  for (let step = 1; step <= 3; step++) run2.log(step, { 'train/loss': step });
  await sleep(100);
  await run2.finish(0);
  assert.ok(warnings.length >= 1 && warnings.length <= 2, warnings.join('\n'));
  assert.match(warnings.at(-1)!, /could not be sent/);

  // Creating the run against a dead server: null and a warning.
  warnings.length = 0;
  const none = await WandbRun.start({ project: 'p', host: srv.host, env: { WANDB_API_KEY: 'k', HOME: emptyHome() }, warn: (m) => warnings.push(m), info: () => {} });
  assert.equal(none, null);
  assert.match(warnings[0]!, /could not create the run .* training continues without W&B/);
});

test('no API key, WANDB_MODE=disabled/offline: no run, no request; the key from a netrc file', async (t) => {
  const srv = await served(t);
  const home = emptyHome();
  const warnings: string[] = [];
  const notes: string[] = [];
  const base = { project: 'p', host: srv.host, warn: (m: string) => warnings.push(m), info: (m: string) => notes.push(m) };

  assert.equal(await WandbRun.start({ ...base, env: { HOME: home } }), null);
  assert.equal(warnings.length, 1);
  assert.match(warnings[0]!, /no API key was found; training continues without W&B/);
  assert.match(warnings[0]!, /Set WANDB_API_KEY=<your key>/);
  assert.ok(warnings[0]!.includes(`"machine ${srv.host.replace('http://', '')} login user password <your key>" to ~/.netrc`), warnings[0]);

  assert.equal(await WandbRun.start({ ...base, env: { WANDB_API_KEY: 'k', WANDB_MODE: 'disabled' } }), null);
  assert.match(notes.at(-1)!, /disabled/);
  assert.equal(await WandbRun.start({ ...base, env: { WANDB_API_KEY: 'k', WANDB_MODE: 'offline' } }), null);
  assert.match(warnings.at(-1)!, /WANDB_MODE=offline .* not supported/);
  assert.equal(srv.requests.length, 0);
  assert.equal(wandbMode({ WANDB_DISABLED: 'true' }), 'disabled');
  assert.equal(wandbMode({ WANDB_MODE: 'dryrun' }), 'offline');
  assert.equal(wandbMode({ WANDB_MODE: 'online' }), 'online');

  // netrc: the host with its port, else the bare hostname, else `default`; WANDB_API_KEY wins.
  const netrc = join(home, 'netrc');
  const hostPort = srv.host.replace('http://', '');
  writeFileSync(netrc, `machine api.wandb.ai\n  login user\n  password cloudkey\nmachine ${hostPort} login user password localkey\ndefault login x password dflt\n`);
  assert.equal(resolveWandbApiKey(srv.host, { NETRC: netrc }), 'localkey');
  assert.equal(resolveWandbApiKey('https://api.wandb.ai', { NETRC: netrc }), 'cloudkey');
  assert.equal(resolveWandbApiKey('https://other.example', { NETRC: netrc }), 'dflt');
  assert.equal(resolveWandbApiKey(srv.host, { NETRC: netrc, WANDB_API_KEY: 'env' }), 'env');
  writeFileSync(join(home, '.netrc'), `machine ${hostPort} login user password homekey\n`);
  assert.equal(resolveWandbApiKey(srv.host, { HOME: home }), 'homekey');
  const run = await WandbRun.start({ ...base, entity: 'e', env: { HOME: home } });
  assert.ok(run);
  assert.equal(srv.graphql[0]!.auth, basic('homekey'));
  await run.finish();
  await srv.close();

  // helpers
  assert.match(wandbGroupName('exp'), /^exp_[a-z0-9]{8}$/);
  assert.match(wandbGroupName(null), /^[a-z0-9]{8}$/);
  assert.equal(wandbAppUrl('https://api.wandb.ai', {}), 'https://wandb.ai');
  assert.equal(wandbAppUrl('https://api.example.com/', {}), 'https://app.example.com');
  assert.equal(wandbAppUrl('http://localhost:8080', {}), 'http://localhost:8080');
  assert.equal(encodeWandbJson({ a: 1, b: Infinity, c: -Infinity, d: NaN, e: 'x' }), '{"a":1,"b":Infinity,"c":-Infinity,"d":NaN,"e":"x"}');
});

test('TrainLogger sends every numeric metric as {kind}/{key} at the iteration; close() finishes the run', async (t) => {
  const srv = await served(t);
  const lines: string[] = [];
  const log = new TrainLogger(null, (l) => lines.push(l));
  const run = await log.startWandb({ project: 'p', entity: 'e', host: srv.host, env: { WANDB_API_KEY: 'k', HOME: emptyHome() }, flushIntervalMs: 10 });
  assert.ok(run && log.wandbRun === run);
  assert.ok(lines.some((l) => l.includes(run.url)));
  log.record('data', { message: 'no numbers' });
  for (const iteration of [1, 2]) log.record('train', { iteration, loss: 5 - iteration, lr: 0.5 });
  log.record('speed', { iteration: 2, tokens_per_sec: 1000 });
  log.record('valid', { iteration: 2, loss: 4.5, ppl: Math.exp(4.5) });
  log.record('eval_tasks', { 'lambada/acc': 0.25 }); // no iteration: the last step seen
  await log.close();
  await log.close();
  assert.equal(log.wandbRun, null);
  const hist = srv.history().map(parseLine);
  assert.deepEqual(hist.map((h) => h._step), [1, 2]);
  const { _runtime, _timestamp, ...row2 } = hist[1];
  assert.ok(_runtime >= 0 && _timestamp > 0);
  assert.deepEqual(row2, {
    'train/loss': 3, 'train/lr': 0.5, 'speed/tokens_per_sec': 1000, 'valid/loss': 4.5, 'valid/ppl': Math.exp(4.5),
    'eval_tasks/lambada/acc': 0.25, _step: 2,
  });
  assert.equal(srv.streams.at(-1)!.body.complete, true);
  await srv.close();
});

/** A tiny CPU train() with use_wandb pointed at the fake host; `over` changes config keys. Its output lines and error, if any. */
async function trainTiny(srv: FakeWandb, over: Record<string, unknown> = {}): Promise<{ out: string[]; error: unknown }> {
  const { file } = tinyRun('neox-wandb-train-', (dir) => ({
    num_layers: 1, hidden_size: 16, num_attention_heads: 2, seq_length: 16, max_position_embeddings: 16,
    optimizer: { type: 'Adam', params: { lr: 0.003 } }, train_micro_batch_size_per_gpu: 2, train_iters: 4,
    eval_interval: 2, eval_iters: 1, log_interval: 2, seed: 1, device: 'cpu', log_dir: join(dir, 'logs'),
    use_wandb: true, wandb_host: srv.host, wandb_project: 'neox-test', wandb_group: 'grp', wandb_run_name: 'tiny', wandb_team: 'team',
    ...over,
  }));
  const saved = { key: process.env.WANDB_API_KEY, mode: process.env.WANDB_MODE, disabled: process.env.WANDB_DISABLED };
  process.env.WANDB_API_KEY = 'trainkey';
  delete process.env.WANDB_MODE;
  delete process.env.WANDB_DISABLED;
  const out: string[] = [];
  let error: unknown = null;
  try {
    await train(loadConfig([file]), { print: (l) => out.push(l) });
  } catch (e) {
    error = e;
  } finally {
    if (saved.key === undefined) delete process.env.WANDB_API_KEY; else process.env.WANDB_API_KEY = saved.key;
    if (saved.mode !== undefined) process.env.WANDB_MODE = saved.mode;
    if (saved.disabled !== undefined) process.env.WANDB_DISABLED = saved.disabled;
  }
  return { out, error };
}

test('train() with use_wandb logs a tiny CPU run to the fake host (group suffix, run name, config)', async (t) => {
  const srv = await served(t);
  const { out, error } = await trainTiny(srv);
  assert.equal(error, null);
  assert.ok(out.some((l) => l.startsWith('W&B: logging run tiny to ')), out.join('\n'));
  const up = srv.graphql.find((r) => String(r.body.query).includes('upsertBucket'))!;
  assert.equal(up.auth, basic('trainkey'));
  assert.equal(up.body.variables.project, 'neox-test');
  assert.equal(up.body.variables.entity, 'team');
  assert.equal(up.body.variables.displayName, 'tiny');
  assert.match(up.body.variables.groupName, /^grp_[a-z0-9]{8}$/);
  const config = JSON.parse(up.body.variables.config);
  assert.deepEqual(config.seq_length, { desc: null, value: 16 });
  assert.equal(config.use_wandb.value, true);
  const hist = srv.history().map(parseLine);
  assert.deepEqual(hist.map((h) => h._step), [1, 2, 3, 4]);
  for (const h of hist) assert.equal(typeof h['train/loss'], 'number');
  assert.equal(typeof hist[1]['valid/loss'], 'number', JSON.stringify(hist));
  assert.equal(typeof hist[3]['speed/tokens_per_sec'], 'number');
  const last = srv.streams.at(-1)!.body;
  assert.equal(last.complete, true);
  assert.equal(last.exitcode, 0);
  await srv.close();
});

test('a training run that fails (a non-finite loss) finishes its W&B run with exit code 1', async (t) => {
  const srv = await served(t);
  const { error } = await trainTiny(srv, { optimizer: { type: 'Adam', params: { lr: 1e38 } }, gradient_clipping: 0, min_lr: 0, warmup: 0 });
  assert.match(String(error), /is (NaN|Infinity|-Infinity) at iteration \d+; stopping/);
  const last = srv.streams.at(-1)!.body;
  assert.deepEqual({ complete: last.complete, exitcode: last.exitcode }, { complete: true, exitcode: 1 });
  await srv.close();
});
