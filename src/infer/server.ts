// `neox serve`: an OpenAI-style completions server over node:http, shaped for lm-evaluation-
// harness's `local-completions` model (see REFERENCE.md, "lm-evaluation-harness over HTTP").
//
// defines: startServer (→ RunningServer), ServerOptions, handleCompletion (request body → response
//          object, for tests and other front ends), HttpError
//
// Endpoints:
//   POST /v1/completions  {prompt: string | string[] | int[] | int[][], max_tokens (16), temperature
//                         (1), top_p (1), top_k, logprobs (null | 0…20), echo, stop, seed, n}
//                         → {id, object, created, model, choices[{index, text, logprobs, finish_reason}], usage}
//   GET  /tokenizer_info  {eos_token, bos_token, pad_token, …}
//   POST /tokenize        {prompt} → {tokens, count, max_model_len}
//   POST /detokenize      {tokens} → {prompt}
//   GET  /v1/models, GET /health
//
// Log-likelihood requests (echo + logprobs + max_tokens 1, the harness's scoring call) run as one
// right-padded forward per batch of prompts: the prompt's token_logprobs (entry 0 is null), and
// the next token chosen from the same last-position row. Each position's token logprob and its
// top_logprobs are read from one f64 log-softmax buffer, so a greedy token's logprob equals the
// max of its top_logprobs exactly, as the harness's is_greedy test requires. Generated tokens
// (eos included) always appear in logprobs; the text leaves out eos and is cut before a stop
// string.
//
// Limits: request body bytes (413), prompt tokens and max_tokens (400), prompts per request
// (400), requests admitted at once (429). Requests compute one at a time; the decode loop yields
// to the event loop between steps, so the server keeps answering (and refusing) meanwhile. Every
// failure is a JSON {error: {message, type, param, code}} and the server keeps serving.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Tokenizer } from '../data/tokenizer.js';
import type { GPTNeoX } from '../models/gpt_neox/model.js';
import { pick } from '../train/sample.js';
import { decodeSteps, samplingOf } from './generate.js';
import { logitsRows, logSoftmax, topLogprobs } from './logprobs.js';

export interface ServerOptions {
  /** Interface to bind (default 127.0.0.1: local only). */
  host?: string;
  /** Port (default 8000; 0 picks a free one). */
  port?: number;
  /** The `model` name in responses (default "neox"). */
  modelName?: string;
  /** Most tokens the model reads (prompt tokens, and prompt + max_tokens − 1). */
  contextLength: number;
  /** Largest request body in bytes (default 16 MiB). */
  maxBodyBytes?: number;
  /** Largest max_tokens (default 2048). */
  maxTokens?: number;
  /** Most prompts × n per request (default 1024). */
  maxPrompts?: number;
  /** Requests admitted at once, waiting or running (default 8); more get 429. */
  maxConcurrent?: number;
  /** Sequences per forward (default 8). */
  batchSize?: number;
  /** One line per request. */
  log?: (line: string) => void;
}

export interface RunningServer {
  server: Server;
  host: string;
  port: number;
  /** http://host:port */
  url: string;
  close(): Promise<void>;
}

export class HttpError extends Error {
  constructor(readonly status: number, message: string, readonly param: string | null = null, readonly type = 'invalid_request_error') {
    super(message);
  }
}

export interface CompletionLimits {
  contextLength: number;
  maxTokens: number;
  maxPrompts: number;
  batchSize: number;
  modelName: string;
}

// ---------------------------------------------------------------------------------------------
// The server

export async function startServer(model: GPTNeoX, tokenizer: Tokenizer, opts: ServerOptions): Promise<RunningServer> {
  const host = opts.host ?? '127.0.0.1';
  const maxBody = opts.maxBodyBytes ?? 16 * 1024 * 1024;
  const maxConcurrent = opts.maxConcurrent ?? 8;
  const limits: CompletionLimits = {
    contextLength: opts.contextLength, maxTokens: opts.maxTokens ?? 2048, maxPrompts: opts.maxPrompts ?? 1024,
    batchSize: Math.max(1, opts.batchSize ?? 8), modelName: opts.modelName ?? 'neox',
  };
  let active = 0;
  let queue: Promise<void> = Promise.resolve(); // compute runs one request at a time

  const server = createServer({ requestTimeout: 120_000, headersTimeout: 30_000 }, (req, res) => {
    const t0 = performance.now();
    res.on('finish', () => opts.log?.(`${req.method} ${req.url} ${res.statusCode} ${(performance.now() - t0).toFixed(0)} ms`));
    route(req, res).catch((e: unknown) => sendError(res, e));
  });

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0]!.replace(/\/+$/, '') || '/';
    const method = req.method ?? 'GET';
    const endpoints: Record<string, string> = {
      '/v1/completions': 'POST', '/tokenize': 'POST', '/detokenize': 'POST', '/tokenizer_info': 'GET', '/v1/models': 'GET', '/health': 'GET',
    };
    const allowed = endpoints[path];
    if (!allowed) throw new HttpError(404, `no endpoint ${path}; try POST /v1/completions`, null, 'not_found_error');
    if (method !== allowed) {
      res.setHeader('Allow', allowed);
      throw new HttpError(405, `${path} takes ${allowed}, not ${method}`);
    }
    if (method === 'GET') {
      if (path === '/health') return sendJson(res, 200, { status: 'ok' });
      if (path === '/v1/models') {
        return sendJson(res, 200, { object: 'list', data: [{ id: limits.modelName, object: 'model', owned_by: 'neox-ts', max_model_len: limits.contextLength }] });
      }
      return sendJson(res, 200, tokenizerInfo(tokenizer, limits));
    }
    const body = await readJson(req, maxBody);
    if (path === '/tokenize') return sendJson(res, 200, tokenize(tokenizer, body, limits));
    if (path === '/detokenize') return sendJson(res, 200, detokenize(tokenizer, model, body));

    if (active >= maxConcurrent) throw new HttpError(429, `the server is busy (${active} requests in progress, limit ${maxConcurrent}); retry later`, null, 'rate_limit_error');
    active++;
    try {
      const turn = queue.then(() => handleCompletion(model, tokenizer, body, limits, () => res.destroyed));
      queue = turn.then(() => undefined, () => undefined);
      sendJson(res, 200, await turn);
    } finally {
      active--;
    }
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 8000, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  return {
    server, host, port, url: `http://${host.includes(':') ? `[${host}]` : host}:${port}`,
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };
}

function sendJson(res: ServerResponse, status: number, value: unknown): void {
  if (res.headersSent || res.destroyed) return;
  const text = JSON.stringify(value);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

function sendError(res: ServerResponse, e: unknown): void {
  const err = e instanceof HttpError ? e : new HttpError(500, `internal error: ${(e as Error)?.message ?? String(e)}`, null, 'server_error');
  if (err.status === 413) res.setHeader('Connection', 'close');
  sendJson(res, err.status, { error: { message: err.message, type: err.type, param: err.param, code: err.status } });
}

/**
 * The body as JSON. Over `limit` bytes: 413 once the client has finished sending (so it reads
 * the answer), or at once past 4 × limit (then the connection closes).
 */
function readJson(req: IncomingMessage, limit: number): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? NaN);
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = declared > limit;
    const fail413 = () => new HttpError(413, `request body larger than ${limit} bytes`, null, 'invalid_request_error');
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) tooLarge = true;
      if (!tooLarge) chunks.push(chunk);
      else if (size > 4 * limit) {
        req.pause(); // stop reading; the 413 goes out with Connection: close
        reject(fail413());
      }
    });
    req.on('error', reject);
    req.on('end', () => {
      if (tooLarge) return reject(fail413());
      const text = Buffer.concat(chunks).toString('utf8');
      let value: unknown;
      try {
        value = JSON.parse(text);
      } catch (e) {
        return reject(new HttpError(400, `malformed JSON body: ${(e as Error).message}`));
      }
      if (!value || typeof value !== 'object' || Array.isArray(value)) return reject(new HttpError(400, 'the body must be a JSON object'));
      resolve(value as Record<string, unknown>);
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Tokenizer endpoints

function tokenizerInfo(tokenizer: Tokenizer, limits: CompletionLimits): Record<string, unknown> {
  const eos = tokenizer.decode([tokenizer.eodId]);
  return {
    // GPT-NeoX models use the end-of-document token as BOS too (Pythia's <|endoftext|>).
    eos_token: eos, bos_token: eos, pad_token: tokenizer.decode([tokenizer.padId]),
    eos_token_id: tokenizer.eodId, bos_token_id: tokenizer.eodId, pad_token_id: tokenizer.padId,
    model_max_length: limits.contextLength, tokenizer_class: tokenizer.name, vocab_size: tokenizer.vocabSize,
  };
}

function tokenize(tokenizer: Tokenizer, body: Record<string, unknown>, limits: CompletionLimits): Record<string, unknown> {
  if (typeof body.prompt !== 'string') throw new HttpError(400, '`prompt` must be a string', 'prompt');
  const tokens = tokenizer.encode(body.prompt);
  return { tokens, count: tokens.length, max_model_len: limits.contextLength };
}

function detokenize(tokenizer: Tokenizer, model: GPTNeoX, body: Record<string, unknown>): Record<string, unknown> {
  return { prompt: tokenizer.decode(tokenIds(body.tokens, model.cfg.vocabSize, 'tokens')) };
}

function tokenIds(v: unknown, vocab: number, param: string): number[] {
  if (!Array.isArray(v) || !v.every((t) => Number.isInteger(t))) throw new HttpError(400, `\`${param}\` must be a list of token ids`, param);
  const bad = (v as number[]).find((t) => t < 0 || t >= vocab);
  if (bad !== undefined) throw new HttpError(400, `token id ${bad} is outside the vocabulary (0 … ${vocab - 1})`, param);
  return v as number[];
}

// ---------------------------------------------------------------------------------------------
// Completions

interface CompletionRequest {
  prompts: number[][];
  maxTokens: number;
  temperature: number;
  topP: number;
  topK: number;
  logprobs: number | null;
  echo: boolean;
  stop: string[];
  seed: number;
  n: number;
}

function parseCompletion(body: Record<string, unknown>, tokenizer: Tokenizer, vocab: number, limits: CompletionLimits): CompletionRequest {
  const num = (key: string, def: number, ok: (x: number) => boolean, want: string, integer = false): number => {
    const v = body[key];
    if (v === undefined || v === null) return def;
    if (typeof v !== 'number' || !Number.isFinite(v) || (integer && !Number.isInteger(v)) || !ok(v)) {
      throw new HttpError(400, `\`${key}\` must be ${want}, got ${JSON.stringify(v)}`, key);
    }
    return v;
  };
  if (body.stream === true) throw new HttpError(400, 'streaming responses are not supported; leave `stream` unset', 'stream');
  const p = body.prompt;
  let prompts: number[][];
  const isIds = (x: unknown): x is number[] => Array.isArray(x) && x.length > 0 && x.every((t) => typeof t === 'number');
  const encode = (text: string): number[] => (text === '' ? [tokenizer.eodId] : tokenizer.encode(text));
  if (typeof p === 'string') prompts = [encode(p)];
  else if (isIds(p)) prompts = [tokenIds(p, vocab, 'prompt')];
  else if (Array.isArray(p) && p.length > 0 && p.every((x) => typeof x === 'string')) prompts = (p as string[]).map(encode);
  else if (Array.isArray(p) && p.length > 0 && p.every(isIds)) prompts = (p as number[][]).map((x) => tokenIds(x, vocab, 'prompt'));
  else throw new HttpError(400, '`prompt` must be a string, a list of strings, a list of token ids, or a list of lists of token ids (none empty)', 'prompt');

  const maxTokens = num('max_tokens', 16, (x) => x >= 0 && x <= limits.maxTokens, `an integer in 0 … ${limits.maxTokens}`, true);
  const n = num('n', 1, (x) => x >= 1 && x <= 16, 'an integer in 1 … 16', true);
  if (prompts.length * n > limits.maxPrompts) throw new HttpError(400, `${prompts.length * n} prompts × n in one request; the limit is ${limits.maxPrompts}`, 'prompt');
  prompts.forEach((ids, i) => {
    if (ids.length > limits.contextLength || ids.length + maxTokens > limits.contextLength + 1) {
      throw new HttpError(400, `prompt ${i} has ${ids.length} tokens and max_tokens is ${maxTokens}; this model reads at most ${limits.contextLength} tokens (prompt + max_tokens − 1)`, 'prompt');
    }
  });
  const logprobs = body.logprobs === undefined || body.logprobs === null || body.logprobs === false ? null
    : body.logprobs === true ? 1 : num('logprobs', 0, (x) => x >= 0 && x <= 20, 'null or an integer in 0 … 20', true);
  const echo = body.echo ?? false;
  if (typeof echo !== 'boolean') throw new HttpError(400, '`echo` must be true or false', 'echo');
  let stop: string[] = [];
  if (typeof body.stop === 'string') stop = [body.stop];
  else if (Array.isArray(body.stop) && body.stop.every((s) => typeof s === 'string')) stop = body.stop as string[];
  else if (body.stop !== undefined && body.stop !== null) throw new HttpError(400, '`stop` must be a string or a list of strings', 'stop');
  if (stop.length > 16) throw new HttpError(400, `at most 16 stop strings, got ${stop.length}`, 'stop');
  stop = stop.filter((s) => s !== '');
  const topK = num('top_k', 0, (x) => x >= -1, 'an integer ≥ −1 (−1 or 0: off)', true);
  const topP = num('top_p', 1, (x) => x > 0 && x <= 1, 'a number in (0, 1]');
  return {
    prompts: prompts.flatMap((x) => Array.from({ length: n }, () => x)),
    maxTokens, n, logprobs, echo, stop,
    temperature: num('temperature', 1, (x) => x >= 0, 'a number ≥ 0'),
    topP: topP >= 1 ? 0 : topP,
    topK: Math.max(0, topK),
    seed: num('seed', Math.floor(Math.random() * 2 ** 31), (x) => x >= 0 && Number.isSafeInteger(x), 'a non-negative integer', true),
  };
}

interface ChoiceTokens {
  /** Generated token ids (eos included when it ended the choice). */
  tokens: number[];
  /** Log-softmax rows they were chosen from (null when logprobs were not asked for). */
  rows: (Float64Array | null)[];
  endedByEos: boolean;
}

const yieldToEventLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * Answers one /v1/completions body (already parsed JSON). `cancelled` is polled between model
 * steps (a client that went away stops its work). Throws HttpError for invalid requests.
 */
export async function handleCompletion(model: GPTNeoX, tokenizer: Tokenizer, body: Record<string, unknown>, limits: CompletionLimits, cancelled: () => boolean = () => false): Promise<Record<string, unknown>> {
  const rq = parseCompletion(body, tokenizer, model.cfg.vocabSize, limits);
  const sampling = samplingOf({ temperature: rq.temperature, topK: rq.topK, topP: rq.topP });
  const wantLp = rq.logprobs !== null;
  const choices: Record<string, unknown>[] = [];
  let completionTokens = 0;
  for (let start = 0; start < rq.prompts.length; start += limits.batchSize) {
    const prompts = rq.prompts.slice(start, start + limits.batchSize);
    const seeds = prompts.map((_, i) => rq.seed + start + i);
    // Echoed prompt logprobs (and, for max_tokens 1, the next token) from one forward.
    let promptRows: Float64Array[][] | null = null;
    let generated: ChoiceTokens[];
    if (rq.echo && wantLp) {
      const last = rq.maxTokens === 1;
      const raw = logitsRows(model, prompts, prompts.map((p) => Array.from({ length: last ? p.length : p.length - 1 }, (_, j) => j)), tokenizer.padId);
      promptRows = raw.map((rows) => rows.map((r) => logSoftmax(r)));
      await yieldToEventLoop();
      if (last) {
        generated = raw.map((rows, b) => {
          const logits = rows[rows.length - 1]!;
          const token = pick(logits, { ...sampling, seed: seeds[b]! }, 0);
          return { tokens: [token], rows: [promptRows![b]![rows.length - 1]!], endedByEos: token === tokenizer.eodId };
        });
        promptRows = promptRows.map((rows) => rows.slice(0, -1));
      } else {
        generated = await decode(prompts, seeds);
      }
    } else {
      generated = await decode(prompts, seeds);
    }
    prompts.forEach((prompt, b) => {
      const g = generated[b]!;
      completionTokens += g.tokens.length;
      choices.push(choice(start + b, prompt, promptRows?.[b] ?? null, g));
    });
  }
  const promptTokens = rq.prompts.reduce((a, p) => a + p.length, 0);
  return {
    id: `cmpl-${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`,
    object: 'text_completion',
    created: Math.floor(Date.now() / 1000),
    model: typeof body.model === 'string' ? body.model : limits.modelName,
    choices,
    usage: { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens },
  };

  async function decode(prompts: number[][], seeds: number[]): Promise<ChoiceTokens[]> {
    const out: ChoiceTokens[] = prompts.map(() => ({ tokens: [], rows: [], endedByEos: false }));
    if (rq.maxTokens === 0) return out;
    const it = decodeSteps(model, prompts, {
      maxNewTokens: rq.maxTokens, ...sampling, seeds, eosId: tokenizer.eodId, contextLength: limits.contextLength,
      shouldStop: rq.stop.length ? (_, toks) => cutAtStop(tokenizer.decode(toks), rq.stop) !== null : undefined,
    });
    try {
      for (let step = it.next(); !step.done; step = it.next()) {
        for (const { row, token, logits } of step.value.produced) {
          out[row]!.tokens.push(token);
          out[row]!.rows.push(wantLp ? logSoftmax(logits) : null);
          if (token === tokenizer.eodId) out[row]!.endedByEos = true;
        }
        await yieldToEventLoop();
        if (cancelled()) throw new HttpError(499, 'the client closed the request', null, 'cancelled');
      }
    } finally {
      it.return([]);
    }
    return out;
  }

  function choice(index: number, prompt: number[], promptRows: Float64Array[] | null, g: ChoiceTokens): Record<string, unknown> {
    const textTokens = g.endedByEos ? g.tokens.slice(0, -1) : g.tokens;
    let text = tokenizer.decode(textTokens);
    const cut = cutAtStop(text, rq.stop);
    if (cut !== null) text = text.slice(0, cut);
    const finish = g.endedByEos || cut !== null ? 'stop' : 'length';
    const promptText = rq.echo ? tokenizer.decode(prompt) : '';
    let logprobs: Record<string, unknown> | null = null;
    if (wantLp) {
      const ids: number[] = [];
      const tokenLps: (number | null)[] = [];
      const tops: (Record<string, number> | null)[] = [];
      const add = (id: number, row: Float64Array | null): void => {
        ids.push(id);
        tokenLps.push(row ? row[id]! : null);
        tops.push(row ? topDict(row) : null);
      };
      if (rq.echo) prompt.forEach((id, j) => add(id, j === 0 ? null : promptRows![j - 1]!));
      g.tokens.forEach((id, j) => add(id, g.rows[j]!));
      const strings = ids.map((id) => tokenizer.decode([id]));
      const offsets: number[] = [];
      let at = 0;
      for (const s of strings) {
        offsets.push(at);
        at += s.length;
      }
      logprobs = { tokens: strings, token_logprobs: tokenLps, top_logprobs: tops, text_offset: offsets };
    }
    return { index, text: promptText + text, logprobs, finish_reason: finish };
  }

  /** The n most likely tokens as {text: logprob}; when two ids share a text, the likelier one's value stays. */
  function topDict(row: Float64Array): Record<string, number> {
    const d = new Map<string, number>();
    for (const { id, logprob } of topLogprobs(row, rq.logprobs ?? 0)) {
      const key = tokenizer.decode([id]);
      if (!d.has(key)) d.set(key, logprob);
    }
    return Object.fromEntries(d);
  }
}

/** Index where the first stop string starts in `text`, or null. */
function cutAtStop(text: string, stop: readonly string[]): number | null {
  let best: number | null = null;
  for (const s of stop) {
    const i = text.indexOf(s);
    if (i >= 0 && (best === null || i < best)) best = i;
  }
  return best;
}
