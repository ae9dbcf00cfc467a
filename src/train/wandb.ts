// Weights & Biases logging over HTTPS with Node's fetch, speaking the protocol of the official SDK
// (wandb/sdk/internal/internal_api.py, wandb/sdk/internal/file_stream.py, wandb/sdk/internal/sender.py).
//   WandbRun.start(opts)  resolves WANDB_MODE, the API key (WANDB_API_KEY, else ~/.netrc or $NETRC for
//                         the host) and the entity (wandb_team, WANDB_ENTITY, else the key's default),
//                         creates the run; null (with a warning) when W&B is off or unreachable
//   run.log(step, m)      merges metrics logged at one step into one history row; never blocks
//   run.finish(exitCode)  sends what is left and marks the run finished
//   resolveWandbApiKey / wandbGroupName / wandbMode  helpers (exported for tests and the trainer)
// Protocol:
//   POST {host}/graphql, HTTP basic auth "api:<key>", JSON {query, variables}:
//     `viewer { entity }` (the key's default entity) and the `upsertBucket` mutation (name = run id,
//     modelName = project, entityName, groupName, displayName, host, config = JSON string of
//     {key: {desc: null, value}}); the reply names the project and entity the run was filed under.
//   POST {host}/files/{entity}/{project}/{run id}/file_stream, same auth, JSON
//     {"files": {"wandb-history.jsonl": {"offset": <index of its first line>, "content": [lines]},
//                "wandb-summary.json": {"offset": 0, "content": [<latest value of every key>]}}}
//     each history line a JSON object with the metrics, _step, _runtime (s since start) and
//     _timestamp (unix s); NaN / ±Infinity written as the bare tokens NaN / Infinity as the SDK does.
//     Re-sending from an offset replaces, so a failed post is retried from the same offset.
//     A heartbeat {"complete": false, "failed": false} when nothing was posted for 30 s; at the end
//     {"complete": true, "exitcode": N}.
// The file stream runs in a worker thread: the training loop is synchronous between steps, so posts
// made from the main thread would wait for the end of training; the worker sends them meanwhile.

import { existsSync, readFileSync } from 'node:fs';
import { homedir, hostname } from 'node:os';
import { join } from 'node:path';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { randomInt } from 'node:crypto';

export const DEFAULT_WANDB_HOST = 'https://api.wandb.ai';

export interface WandbStartOptions {
  project: string;
  /** wandb_team; else WANDB_ENTITY; else the default entity of the API key (asked from the server). */
  entity?: string | null;
  group?: string | null;
  /** Display name (wandb_run_name); the run id is random. */
  name?: string | null;
  /** Server (wandb_host); WANDB_BASE_URL replaces the default https://api.wandb.ai. */
  host?: string | null;
  /** The run config (all keys), shown as the run's config on W&B. */
  config?: Record<string, unknown> | null;
  /** Overrides WANDB_API_KEY / ~/.netrc (tests). */
  apiKey?: string | null;
  /** Environment to read WANDB_* from (default process.env). */
  env?: NodeJS.ProcessEnv;
  /** Warnings (default console.warn) and notes such as the run URL (default console.log). */
  warn?: (message: string) => void;
  info?: (message: string) => void;
  /** History is posted at most this often (ms, default 5000). */
  flushIntervalMs?: number;
  /** A heartbeat is posted when nothing was for this long (ms, default 30000). */
  heartbeatMs?: number;
  /** Timeout of one request (ms, default 30000). */
  requestTimeoutMs?: number;
  /** finish() gives up sending after this long (ms, default 60000). */
  finishTimeoutMs?: number;
  /** Unix ms the run started (default now): _runtime counts from here. */
  startTime?: number;
}

/** What the WANDB_MODE / WANDB_DISABLED environment asks for. */
export function wandbMode(env: NodeJS.ProcessEnv = process.env): 'online' | 'offline' | 'disabled' {
  const disabled = (env.WANDB_DISABLED ?? '').toLowerCase();
  if (disabled === 'true' || disabled === '1' || disabled === 'yes') return 'disabled';
  const mode = (env.WANDB_MODE ?? '').toLowerCase();
  if (mode === 'disabled') return 'disabled';
  if (mode === 'offline' || mode === 'dryrun') return 'offline';
  return 'online';
}

/** The API key for `host`: WANDB_API_KEY, else the password of the host's machine in $NETRC or ~/.netrc. */
export function resolveWandbApiKey(host: string, env: NodeJS.ProcessEnv = process.env): string | null {
  if (env.WANDB_API_KEY) return env.WANDB_API_KEY;
  const file = env.NETRC ? env.NETRC : join(env.HOME || homedir(), '.netrc');
  if (!existsSync(file)) return null;
  let url: URL;
  try {
    url = new URL(host);
  } catch {
    return null;
  }
  const tokens = readFileSync(file, 'utf8').split(/\s+/).filter((t) => t.length > 0);
  const entries = new Map<string, string>(); // machine → password ('' key: default)
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!;
    if (t !== 'machine' && t !== 'default') continue;
    const machine = t === 'default' ? '' : tokens[++i] ?? '';
    let password: string | null = null;
    for (let j = i + 1; j < tokens.length && tokens[j] !== 'machine' && tokens[j] !== 'default'; j++) {
      if (tokens[j] === 'password') password = tokens[j + 1] ?? null;
    }
    if (password !== null && !entries.has(machine)) entries.set(machine, password);
  }
  return entries.get(url.host) ?? entries.get(url.hostname) ?? entries.get('') ?? null;
}

/** A random run id like the SDK's: 8 characters of [a-z0-9]. */
export function wandbRunId(length = 8): string {
  const chars = 'abcdefghijklmnopqrstuvwxyz0123456789';
  let s = '';
  for (let i = 0; i < length; i++) s += chars[randomInt(chars.length)];
  return s;
}

/** GPT-NeoX's group naming: the configured group plus a random suffix per launch, or the suffix alone. */
export function wandbGroupName(group: string | null | undefined): string {
  return group ? `${group}_${wandbRunId()}` : wandbRunId();
}

/** The web UI's address for an API host (the SDK's api_to_app_url). */
export function wandbAppUrl(host: string, env: NodeJS.ProcessEnv = process.env): string {
  if (env.WANDB_APP_URL) return env.WANDB_APP_URL.replace(/\/+$/, '');
  const h = host.replace(/\/+$/, '');
  if (h.includes('://api.wandb.') && !h.includes('://api.wandb.test')) return h.replace('://api.', '://');
  if (h.includes('://api.')) return h.replace('://api.', '://app.');
  return h;
}

/** JSON with NaN / Infinity / -Infinity as bare tokens (the SDK's history and summary encoding). */
export function encodeWandbJson(obj: Record<string, number | string | boolean | null>): string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(obj)) {
    let s: string;
    if (typeof v === 'number' && !Number.isFinite(v)) s = Number.isNaN(v) ? 'NaN' : v > 0 ? 'Infinity' : '-Infinity';
    else s = JSON.stringify(v);
    parts.push(`${JSON.stringify(k)}:${s}`);
  }
  return `{${parts.join(',')}}`;
}

function basicAuth(key: string): string {
  return `Basic ${Buffer.from(`api:${key}`).toString('base64')}`;
}

const USER_AGENT = 'neox-ts (W&B client)';

function describeError(e: unknown): string {
  if (e instanceof Error) {
    const cause = (e as { cause?: unknown }).cause;
    return cause instanceof Error ? `${e.message}: ${cause.message}` : e.message;
  }
  return String(e);
}

async function graphql(host: string, key: string, query: string, variables: Record<string, unknown>, timeoutMs: number): Promise<any> {
  const res = await fetch(`${host}/graphql`, {
    method: 'POST',
    headers: { Authorization: basicAuth(key), 'Content-Type': 'application/json', 'User-Agent': USER_AGENT },
    body: JSON.stringify({ query, variables }),
    signal: AbortSignal.timeout(timeoutMs),
  });
  const text = await res.text();
  if (res.status === 401 || res.status === 403) {
    throw new Error(`HTTP ${res.status}: the server did not accept the API key (check WANDB_API_KEY or ~/.netrc)`);
  }
  if (!res.ok) throw new Error(`HTTP ${res.status} ${text.slice(0, 200)}`.trim());
  let body: any;
  try {
    body = JSON.parse(text);
  } catch {
    throw new Error(`not a GraphQL reply: ${text.slice(0, 200)}`);
  }
  if (Array.isArray(body?.errors) && body.errors.length > 0) {
    throw new Error(body.errors.map((e: any) => String(e?.message ?? e)).join('; '));
  }
  return body?.data ?? {};
}

const VIEWER_QUERY = `query Viewer {
  viewer {
    id
    entity
    username
  }
}`;

const UPSERT_BUCKET = `mutation UpsertBucket(
  $id: String, $name: String, $project: String, $entity: String, $groupName: String,
  $description: String, $displayName: String, $notes: String, $commit: String, $config: JSONString,
  $host: String, $debug: Boolean, $program: String, $repo: String, $jobType: String, $state: String,
  $sweep: String, $tags: [String!], $summaryMetrics: JSONString
) {
  upsertBucket(input: {
    id: $id, name: $name, groupName: $groupName, modelName: $project, entityName: $entity,
    description: $description, displayName: $displayName, notes: $notes, config: $config,
    commit: $commit, host: $host, debug: $debug, jobProgram: $program, jobRepo: $repo,
    jobType: $jobType, state: $state, sweep: $sweep, tags: $tags, summaryMetrics: $summaryMetrics
  }) {
    bucket {
      id
      name
      displayName
      project {
        id
        name
        entity {
          id
          name
        }
      }
      historyLineCount
    }
    inserted
  }
}`;

/** The config as the SDK sends it: every key as {desc: null, value}, values made JSON-safe. */
function configJson(config: Record<string, unknown>): string {
  const wrapped: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(config)) wrapped[k] = { desc: null, value: v === undefined ? null : v };
  return JSON.stringify(wrapped, (_k, v) => (typeof v === 'bigint' ? Number(v) : typeof v === 'function' ? undefined : v));
}

// ---------------------------------------------------------------- the run (main thread)

interface StreamInit {
  kind: 'neox-wandb-stream';
  url: string;
  auth: string;
  flushIntervalMs: number;
  heartbeatMs: number;
  requestTimeoutMs: number;
  finishTimeoutMs: number;
}

type ToWorker = { t: 'lines'; lines: string[]; summary: string } | { t: 'finish'; exitCode: number };
type FromWorker = { t: 'warn'; message: string } | { t: 'done'; sent: number; unsent: number };

export class WandbRun {
  /** Run id (the `name` of the upsertBucket mutation). */
  readonly id: string;
  readonly entity: string;
  readonly project: string;
  /** The run's page in the W&B web UI. */
  readonly url: string;

  private readonly worker: Worker;
  private readonly warn: (message: string) => void;
  private readonly startTime: number;
  private row: { step: number; values: Record<string, number>; time: number } | null = null;
  private readonly summary: Record<string, number> = {};
  private finished: Promise<void> | null = null;
  private droppedStepWarned = false;
  private exited = false;
  private done: ((r: { sent: number; unsent: number }) => void) | null = null;

  private constructor(id: string, entity: string, project: string, url: string, init: StreamInit,
    warn: (message: string) => void, startTime: number) {
    this.id = id;
    this.entity = entity;
    this.project = project;
    this.url = url;
    this.warn = warn;
    this.startTime = startTime;
    // execArgv: not the parent's flags (`--input-type`, `--test`, ...), which a worker may refuse.
    this.worker = new Worker(new URL(import.meta.url), { workerData: init, execArgv: [] });
    this.worker.unref(); // a run that never finishes (training threw) does not keep the process alive
    this.worker.on('message', (m: FromWorker) => {
      if (m.t === 'warn') this.warn(m.message);
      else if (m.t === 'done') this.done?.({ sent: m.sent, unsent: m.unsent });
    });
    this.worker.on('error', (e) => {
      this.warn(`W&B: the upload thread failed (${describeError(e)}); continuing without W&B`);
      this.done?.({ sent: 0, unsent: -1 });
    });
    this.worker.on('exit', () => {
      this.exited = true;
      this.done?.({ sent: 0, unsent: -1 });
    });
  }

  /**
   * Creates the run on the server. Returns null, after a warning or a note, when W&B is disabled
   * (WANDB_MODE=disabled), offline (not supported), has no API key, or the server cannot be reached
   * or refuses: training then continues without W&B. Never throws for those.
   */
  static async start(opts: WandbStartOptions): Promise<WandbRun | null> {
    const env = opts.env ?? process.env;
    const warn = opts.warn ?? ((m: string) => console.warn(m));
    const info = opts.info ?? ((m: string) => console.log(m));
    const startTime = opts.startTime ?? Date.now();
    const timeoutMs = opts.requestTimeoutMs ?? 30000;
    const mode = wandbMode(env);
    if (mode === 'disabled') {
      info('W&B: disabled by the environment (WANDB_MODE=disabled or WANDB_DISABLED); not logging to W&B');
      return null;
    }
    if (mode === 'offline') {
      warn(`W&B: WANDB_MODE=${env.WANDB_MODE} (offline runs for \`wandb sync\`) is not supported by NeoX.ts; ` +
        'not logging to W&B (metrics are still in metrics.jsonl, and in TensorBoard with tensorboard_dir). ' +
        'Unset WANDB_MODE (or set it to online) to log to the server.');
      return null;
    }
    let host = (opts.host ?? DEFAULT_WANDB_HOST).replace(/\/+$/, '');
    if (host === DEFAULT_WANDB_HOST && env.WANDB_BASE_URL) host = env.WANDB_BASE_URL.replace(/\/+$/, '');
    const key = opts.apiKey ?? resolveWandbApiKey(host, env);
    if (!key) {
      let machine = host;
      try { machine = new URL(host).host; } catch { /* keep it */ }
      warn('W&B: use_wandb is true but no API key was found; training continues without W&B. ' +
        `Set WANDB_API_KEY=<your key> (from ${wandbAppUrl(host, env)}/authorize), or add ` +
        `"machine ${machine} login user password <your key>" to ~/.netrc (or the file named by NETRC).`);
      return null;
    }
    try {
      let entity = opts.entity || env.WANDB_ENTITY || null;
      if (!entity) {
        const data = await graphql(host, key, VIEWER_QUERY, {}, timeoutMs);
        entity = data?.viewer?.entity ?? null;
        if (!entity) throw new Error('the server returned no default entity for this API key (is the key valid? set wandb_team to choose one)');
      }
      const id = wandbRunId();
      const data = await graphql(host, key, UPSERT_BUCKET, {
        id: null,
        name: id,
        project: opts.project,
        entity,
        groupName: opts.group || null,
        displayName: opts.name || null,
        config: opts.config ? configJson(opts.config) : null,
        host: hostname(),
      }, timeoutMs);
      const bucket = data?.upsertBucket?.bucket;
      if (!bucket) throw new Error('upsertBucket returned no run');
      const runId: string = bucket.name ?? id;
      const project: string = bucket.project?.name ?? opts.project;
      const ent: string = bucket.project?.entity?.name ?? entity;
      const url = `${wandbAppUrl(host, env)}/${ent}/${project}/runs/${runId}`;
      const init: StreamInit = {
        kind: 'neox-wandb-stream',
        url: `${host}/files/${encodeURIComponent(ent)}/${encodeURIComponent(project)}/${encodeURIComponent(runId)}/file_stream`,
        auth: basicAuth(key),
        flushIntervalMs: opts.flushIntervalMs ?? 5000,
        heartbeatMs: opts.heartbeatMs ?? 30000,
        requestTimeoutMs: timeoutMs,
        finishTimeoutMs: opts.finishTimeoutMs ?? 60000,
      };
      const run = new WandbRun(runId, ent, project, url, init, warn, startTime);
      info(`W&B: logging run ${bucket.displayName ?? opts.name ?? runId} to ${url}`);
      return run;
    } catch (e) {
      warn(`W&B: could not create the run at ${host} (${describeError(e)}); training continues without W&B`);
      return null;
    }
  }

  /**
   * Logs numeric metrics at `step` (the iteration). Metrics of one step are merged into one history
   * row, sent once a later step is logged (or at finish); a step below the current one is dropped
   * with a warning, as the SDK does. Returns at once; sending happens in the background.
   */
  log(step: number, metrics: Record<string, number>, time: number = Date.now()): void {
    if (this.finished) return;
    if (this.row && step < this.row.step) {
      if (!this.droppedStepWarned) {
        this.droppedStepWarned = true;
        this.warn(`W&B: step ${step} is below the current step ${this.row.step}; such metrics are dropped (W&B steps only increase)`);
      }
      return;
    }
    if (this.row && step > this.row.step) this.commit();
    if (!this.row) this.row = { step, values: {}, time };
    Object.assign(this.row.values, metrics);
    this.row.time = time;
  }

  private commit(): void {
    const row = this.row;
    if (!row) return;
    this.row = null;
    const meta = { _step: row.step, _runtime: Math.max(0, (row.time - this.startTime) / 1000), _timestamp: row.time / 1000 };
    Object.assign(this.summary, row.values, meta);
    const msg: ToWorker = { t: 'lines', lines: [encodeWandbJson({ ...row.values, ...meta })], summary: encodeWandbJson(this.summary) };
    this.worker.postMessage(msg);
  }

  /** Sends what is left, then {"complete": true, "exitcode": exitCode}; safe to call more than once. */
  finish(exitCode = 0): Promise<void> {
    this.finished ??= (async () => {
      this.commit();
      if (this.exited) return; // the upload thread failed (already reported)
      this.worker.ref();
      const result = await new Promise<{ sent: number; unsent: number }>((resolve) => {
        this.done = resolve;
        this.worker.postMessage({ t: 'finish', exitCode } satisfies ToWorker);
      });
      if (result.unsent > 0) this.warn(`W&B: ${result.unsent} history line(s) could not be sent; the run on W&B is incomplete (all metrics are in metrics.jsonl)`);
      await this.worker.terminate();
    })();
    return this.finished;
  }
}

// ---------------------------------------------------------------- the file stream (worker thread)

function streamWorker(init: StreamInit): void {
  const port = parentPort!;
  const pending: string[] = []; // history lines not yet accepted by the server
  let offset = 0; // index in wandb-history.jsonl of pending[0]
  let summary: string | null = null; // latest summary not yet sent
  let lastPost = Date.now();
  let lastFlush = 0;
  let failures = 0;
  let warned = false;
  let timer: NodeJS.Timeout | null = null;
  let chain: Promise<unknown> = Promise.resolve();
  let finishing = false;
  const MAX_LINES = 1000;

  const post = async (body: unknown, timeoutMs = init.requestTimeoutMs): Promise<void> => {
    lastPost = Date.now();
    const res = await fetch(init.url, {
      method: 'POST',
      headers: { Authorization: init.auth, 'Content-Type': 'application/json', 'User-Agent': USER_AGENT },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(Math.max(1, timeoutMs)),
    });
    const text = await res.text().catch(() => '');
    if (!res.ok) throw new Error(`HTTP ${res.status}${text ? ` ${text.slice(0, 200)}` : ''}`);
  };

  const reportFailure = (e: unknown): void => {
    failures++;
    if (warned) return;
    warned = true;
    port.postMessage({
      t: 'warn',
      message: `W&B: sending metrics to ${init.url} failed (${describeError(e)}); training continues and sending is retried ` +
        '(this warning is shown once; all metrics are also in metrics.jsonl)',
    } satisfies FromWorker);
  };

  /** Posts pending history (in chunks) and the summary; false when a post failed. */
  const flushNow = async (timeoutMs?: number): Promise<boolean> => {
    lastFlush = Date.now();
    while (pending.length > 0 || summary !== null) {
      const n = Math.min(pending.length, MAX_LINES);
      const files: Record<string, { offset: number; content: string[] }> = {};
      if (n > 0) files['wandb-history.jsonl'] = { offset, content: pending.slice(0, n) };
      const sum = summary;
      if (sum !== null && n === pending.length) files['wandb-summary.json'] = { offset: 0, content: [sum] };
      try {
        await post({ files, dropped: 0 }, timeoutMs);
      } catch (e) {
        reportFailure(e);
        return false;
      }
      failures = 0;
      pending.splice(0, n);
      offset += n;
      if (files['wandb-summary.json'] && summary === sum) summary = null;
    }
    return true;
  };

  const schedule = (): void => {
    if (timer || finishing || (pending.length === 0 && summary === null)) return;
    const interval = failures > 0 ? Math.min(60000, init.flushIntervalMs * 2 ** Math.min(failures, 6)) : init.flushIntervalMs;
    const delay = Math.max(0, lastFlush + interval - Date.now());
    timer = setTimeout(() => {
      timer = null;
      chain = chain.then(() => flushNow()).then(schedule);
    }, delay);
  };

  const heartbeat = setInterval(() => {
    if (finishing || Date.now() - lastPost < init.heartbeatMs) return;
    chain = chain.then(() => post({ complete: false, failed: false, dropped: 0, uploaded: [] }).catch(reportFailure));
  }, Math.max(100, Math.min(init.heartbeatMs, 10000)));

  port.on('message', (m: ToWorker) => {
    if (m.t === 'lines') {
      pending.push(...m.lines);
      summary = m.summary;
      schedule();
    } else if (m.t === 'finish') {
      finishing = true;
      if (timer) clearTimeout(timer);
      timer = null;
      clearInterval(heartbeat);
      const deadline = Date.now() + init.finishTimeoutMs;
      chain = chain.then(async () => {
        // A few attempts within the deadline, then the completion message.
        for (let attempt = 0; attempt < 3 && Date.now() < deadline; attempt++) {
          if (await flushNow(Math.min(init.requestTimeoutMs, deadline - Date.now()))) break;
          await new Promise((r) => setTimeout(r, Math.min(1000 * (attempt + 1), Math.max(0, deadline - Date.now()))));
        }
        try {
          await post({ complete: true, exitcode: m.exitCode, dropped: 0, uploaded: [] }, Math.min(init.requestTimeoutMs, Math.max(1, deadline - Date.now())));
        } catch (e) {
          reportFailure(e);
        }
        port.postMessage({ t: 'done', sent: offset, unsent: pending.length } satisfies FromWorker);
      });
    }
  });
}

if (!isMainThread && (workerData as StreamInit | undefined)?.kind === 'neox-wandb-stream') streamWorker(workerData as StreamInit);
