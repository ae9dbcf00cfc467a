// `neox serve`: lm-evaluation-harness's local-completions payloads, every field it reads, the
// tokenizer endpoints, and the limits (400 / 404 / 405 / 413 / 429), on 127.0.0.1 port 0.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { CharLevelTokenizer } from '../src/data/tokenizer.js';
import { argmax, generateTokens, logSoftmax, startServer, type RunningServer } from '../src/infer/index.js';
import { GPTNeoX, resolveModelConfig, type NeoXModelKeys } from '../src/models/gpt_neox/index.js';
import { noGrad, scope, tensor } from '../src/tensor/index.js';
import { cpu } from './helpers/check.js';

const keys: NeoXModelKeys = {
  hidden_size: 32, num_layers: 2, num_attention_heads: 4, num_kv_heads: null, intermediate_size: null,
  max_position_embeddings: 64, seq_length: 64, pos_emb: 'rotary', rotary_pct: 0.5, rotary_emb_base: 10000,
  norm: 'layernorm', layernorm_epsilon: 1e-5, rms_norm_epsilon: 1e-6, scalenorm_epsilon: 1e-5,
  activation: 'gelu', bias_gelu_fusion: false, gpt_j_residual: true, gpt_j_tied: false, no_weight_tying: true,
  use_bias_in_attn_linear: true, use_bias_in_mlp: true, hidden_dropout: 0, attention_dropout: 0,
  sliding_window_width: null, init_method: 'normal', output_layer_init_method: 'scaled_normal', init_method_std: 0.25, seed: 5,
};
const CONTEXT = 64;
const tok = new CharLevelTokenizer();
const model = new GPTNeoX(resolveModelConfig(keys, 512), cpu());
let srv: RunningServer;
let small: RunningServer; // tight limits

before(async () => {
  srv = await startServer(model, tok, { port: 0, contextLength: CONTEXT, batchSize: 3 });
  small = await startServer(model, tok, { port: 0, contextLength: CONTEXT, maxBodyBytes: 1024, maxConcurrent: 1, maxTokens: 200 });
});
after(async () => {
  await srv.close();
  await small.close();
});

interface Reply { status: number; body: any }

async function call(base: RunningServer, path: string, body?: unknown, raw?: string, method?: string): Promise<Reply> {
  const res = await fetch(`${base.url}${path}`, {
    method: method ?? (body === undefined && raw === undefined ? 'GET' : 'POST'),
    headers: { 'Content-Type': 'application/json' },
    body: raw ?? (body === undefined ? undefined : JSON.stringify(body)),
    signal: AbortSignal.timeout(15_000),
  });
  const text = await res.text();
  return { status: res.status, body: JSON.parse(text) };
}

/** log p(ids[t] | ids[< t]) for t ≥ 1, from a plain forward of the sequence alone. */
function referenceLogprobs(ids: number[]): { lp: number[]; greedy: boolean[] } {
  const logits = noGrad(() => scope(() => model.forward(tensor(Int32Array.from(ids), [1, ids.length], 'i32')).toFloat32()));
  const lp: number[] = [];
  const greedy: boolean[] = [];
  for (let t = 1; t < ids.length; t++) {
    const row = logits.subarray((t - 1) * 512, t * 512);
    lp.push(logSoftmax(row)[ids[t]!]!);
    greedy.push(argmax(row) === ids[t]);
  }
  return { lp, greedy };
}

/** The harness's LocalCompletionsAPI.parse_logprobs, line for line. */
function parseLogprobs(out: any, ctxlens: number[]): [number, boolean][] {
  const res: [number, boolean][] = [];
  const choices = [...out.choices].sort((a: any, b: any) => a.index - b.index);
  choices.forEach((choice: any, i: number) => {
    const ctxlen = ctxlens[i]!;
    const lps: number[] = choice.logprobs.token_logprobs.slice(ctxlen, -1);
    const tops: Record<string, number>[] = choice.logprobs.top_logprobs.slice(ctxlen, -1);
    let isGreedy = true;
    lps.forEach((lp, j) => {
      if (lp !== Math.max(...Object.values(tops[j]!))) isGreedy = false;
    });
    res.push([lps.reduce((a, b) => a + b, 0), isGreedy]);
  });
  return res;
}

test('harness log-likelihood request (token ids, echo, logprobs 1, max_tokens 1): every field it reads', { timeout: 30_000 }, async () => {
  const context = tok.encode('The cat sat on');
  const greedyCont = generateTokens(model, [context], { maxNewTokens: 4 })[0]!.tokens;
  const otherCont = tok.encode(' mat');
  const shortCtx = tok.encode('Hi');
  const reqs = [[...context, ...greedyCont], [...context, ...otherCont], [...shortCtx, ...otherCont], [0, ...tok.encode('x')]];
  const ctxlens = [context.length, context.length, shortCtx.length, 1];
  const payload = { model: 'neox', prompt: reqs, temperature: 0, max_tokens: 1, logprobs: 1, seed: 1234, echo: true };
  const { status, body } = await call(srv, '/v1/completions', payload);
  assert.equal(status, 200);
  assert.equal(body.object, 'text_completion');
  assert.equal(body.choices.length, 4);
  body.choices.forEach((c: any, i: number) => {
    assert.equal(c.index, i);
    const n = reqs[i]!.length + 1; // the echoed prompt and exactly one generated token
    assert.equal(c.logprobs.token_logprobs.length, n);
    assert.equal(c.logprobs.top_logprobs.length, n);
    assert.equal(c.logprobs.tokens.length, n);
    assert.equal(c.logprobs.text_offset.length, n);
    assert.equal(c.logprobs.token_logprobs[0], null);
    assert.equal(c.logprobs.top_logprobs[0], null);
    // The prompt's logprobs match a plain forward of that prompt alone (the batch is right-padded).
    const ref = referenceLogprobs(reqs[i]!);
    c.logprobs.token_logprobs.slice(1, -1).forEach((lp: number, j: number) => assert.ok(Math.abs(lp - ref.lp[j]!) < 1e-5, `${i}:${j} ${lp} vs ${ref.lp[j]}`));
    // The generated token is greedy at temperature 0: its logprob is the max of its top_logprobs, as the same float.
    const last = c.logprobs.token_logprobs.at(-1);
    const lastTop = c.logprobs.top_logprobs.at(-1);
    assert.equal(Object.keys(lastTop).length, 1);
    assert.ok(Object.is(last, Math.max(...(Object.values(lastTop) as number[]))));
    assert.ok(c.text.startsWith(tok.decode(reqs[i]!)));
    assert.ok(['length', 'stop'].includes(c.finish_reason));
  });
  const parsed = parseLogprobs(body, ctxlens);
  assert.equal(parsed[0]![1], true, 'the greedy continuation is greedy');
  // The others as the reference computes them (sum and greediness).
  parsed.forEach(([ll, greedy], i) => {
    const ref = referenceLogprobs(reqs[i]!);
    const want = ref.lp.slice(ctxlens[i]! - 1).reduce((a, b) => a + b, 0);
    assert.ok(Math.abs(ll - want) < 1e-4, `request ${i}: ${ll} vs ${want}`);
    assert.equal(greedy, ref.greedy.slice(ctxlens[i]! - 1).every(Boolean), `request ${i} greediness`);
  });
  assert.equal(body.usage.prompt_tokens, reqs.reduce((a, r) => a + r.length, 0));
  assert.equal(body.usage.completion_tokens, 4);
});

test('string prompts work like their token ids; logprobs > 1 lists that many alternatives', { timeout: 30_000 }, async () => {
  const a = await call(srv, '/v1/completions', { model: 'neox', prompt: ['Hello world', 'ab'], temperature: 0, max_tokens: 1, logprobs: 3, echo: true });
  const b = await call(srv, '/v1/completions', { model: 'neox', prompt: [tok.encode('Hello world'), tok.encode('ab')], temperature: 0, max_tokens: 1, logprobs: 3, echo: true });
  assert.equal(a.status, 200);
  assert.deepEqual(a.body.choices.map((c: any) => c.logprobs.token_logprobs), b.body.choices.map((c: any) => c.logprobs.token_logprobs));
  const tops = a.body.choices[0].logprobs.top_logprobs[3];
  const values = Object.values(tops) as number[];
  assert.ok(values.length >= 1 && values.length <= 3);
  assert.deepEqual(values, [...values].sort((x, y) => y - x));
  // A single string prompt, no logprobs: logprobs is null.
  const c = await call(srv, '/v1/completions', { prompt: 'Hello', max_tokens: 3, temperature: 0 });
  assert.equal(c.body.choices.length, 1);
  assert.equal(c.body.choices[0].logprobs, null);
});

test('harness generation request: greedy text cut before the stop string, finish_reason stop', { timeout: 30_000 }, async () => {
  const prompts = ['Once upon a time', 'The end'];
  const free = await call(srv, '/v1/completions', { prompt: prompts, model: 'neox', max_tokens: 12, temperature: 0, stop: ['\u0000'], seed: 1234 });
  assert.equal(free.status, 200);
  const texts: string[] = free.body.choices.map((c: any) => c.text);
  // The same as decoding each prompt alone.
  prompts.forEach((p, i) => {
    const g = generateTokens(model, [tok.encode(p)], { maxNewTokens: 12, eosId: 0 })[0]!;
    assert.equal(texts[i], tok.decode(g.tokens));
  });
  // Stop at a character that occurs in the first continuation.
  const stopChar = [...texts[0]!].find((ch, j) => j >= 2 && ch !== '\uFFFD') ?? texts[0]![0]!;
  const cut = texts[0]!.indexOf(stopChar);
  const stopped = await call(srv, '/v1/completions', { prompt: prompts, model: 'neox', max_tokens: 12, temperature: 0, stop: [stopChar, '\u0000'], seed: 1234 });
  assert.equal(stopped.body.choices[0].text, texts[0]!.slice(0, cut));
  assert.equal(stopped.body.choices[0].finish_reason, 'stop');
  // Echo without logprobs returns prompt + completion.
  const echo = await call(srv, '/v1/completions', { prompt: prompts[1], max_tokens: 12, temperature: 0, echo: true });
  assert.equal(echo.body.choices[0].text, prompts[1] + texts[1]);
  // Sampling with a seed is reproducible.
  const s1 = await call(srv, '/v1/completions', { prompt: prompts, max_tokens: 8, temperature: 1, seed: 9 });
  const s2 = await call(srv, '/v1/completions', { prompt: prompts, max_tokens: 8, temperature: 1, seed: 9 });
  assert.deepEqual(s1.body.choices, s2.body.choices);
});

test('tokenizer endpoints as the harness\'s RemoteTokenizer uses them', { timeout: 30_000 }, async () => {
  const info = await call(srv, '/tokenizer_info');
  assert.equal(info.status, 200);
  assert.ok('eos_token' in info.body);
  assert.equal(typeof info.body.eos_token, 'string');
  const eos = await call(srv, '/tokenize', { prompt: info.body.eos_token, add_special_tokens: false });
  assert.equal(eos.body.tokens[0], tok.eodId); // the harness's eos_token_id = encode(eos_token)[0]
  const t = await call(srv, '/tokenize', { prompt: 'test', add_special_tokens: false });
  assert.deepEqual(t.body.tokens, tok.encode('test'));
  const d = await call(srv, '/detokenize', { tokens: t.body.tokens });
  assert.equal(d.body.prompt, 'test');
  const base = srv.url; // the harness strips /v1/completions from base_url to find these
  assert.equal(new URL('/tokenizer_info', `${base}/v1/completions`).href, `${base}/tokenizer_info`);
});

test('malformed requests get 4xx JSON errors and the server keeps serving', { timeout: 30_000 }, async () => {
  const bad = await call(srv, '/v1/completions', undefined, '{"prompt": [1, 2,');
  assert.equal(bad.status, 400);
  assert.match(bad.body.error.message, /malformed JSON/);
  assert.equal(bad.body.error.type, 'invalid_request_error');
  const ok = await call(srv, '/v1/completions', { prompt: 'still here', max_tokens: 2, temperature: 0 });
  assert.equal(ok.status, 200);
  const cases: [unknown, RegExp][] = [
    [[1, 2], /JSON object/],
    [{ prompt: [] }, /prompt/],
    [{ prompt: [[1, 2], []] }, /prompt/],
    [{ prompt: [1, 99999] }, /outside the vocabulary/],
    [{ prompt: 'x', max_tokens: -1 }, /max_tokens/],
    [{ prompt: 'x', max_tokens: 1.5 }, /max_tokens/],
    [{ prompt: 'x', temperature: 'hot' }, /temperature/],
    [{ prompt: 'x', logprobs: 99 }, /logprobs/],
    [{ prompt: 'x', stop: [1] }, /stop/],
    [{ prompt: 'x', stream: true }, /stream/],
    [{ prompt: 'y'.repeat(CONTEXT + 1), max_tokens: 0 }, /at most 64 tokens/],
    [{ prompt: 'y'.repeat(CONTEXT), max_tokens: 2 }, /at most 64 tokens/],
  ];
  for (const [body, msg] of cases) {
    const r = await call(srv, '/v1/completions', body);
    assert.equal(r.status, 400, JSON.stringify(body));
    assert.match(r.body.error.message, msg);
  }
  // A full-context prompt with max_tokens 1 is fine (the harness's longest scoring request).
  assert.equal((await call(srv, '/v1/completions', { prompt: 'y'.repeat(CONTEXT), max_tokens: 1, echo: true, logprobs: 1, temperature: 0 })).status, 200);
  assert.equal((await call(srv, '/nope')).status, 404);
  assert.equal((await call(srv, '/v1/completions', undefined, undefined, 'GET')).status, 405);
  assert.equal((await call(srv, '/tokenize', { prompt: 5 })).status, 400);
  assert.equal((await call(srv, '/health')).body.status, 'ok');
});

test('a body over the limit gets 413; the server keeps serving', { timeout: 30_000 }, async () => {
  const big = JSON.stringify({ prompt: 'z'.repeat(2000), max_tokens: 1 });
  const r = await call(small, '/v1/completions', undefined, big);
  assert.equal(r.status, 413);
  assert.match(r.body.error.message, /larger than 1024 bytes/);
  assert.equal((await call(small, '/v1/completions', { prompt: 'ok', max_tokens: 1 })).status, 200);
});

test('requests beyond max_concurrent get 429 while one runs', { timeout: 30_000 }, async () => {
  // 32 prompts × 60 tokens: hundreds of model steps, with the event loop free between them.
  const long = call(small, '/v1/completions', { prompt: Array.from({ length: 32 }, () => 'a'), max_tokens: 60, temperature: 0 });
  await new Promise((r) => setTimeout(r, 50));
  const second = await call(small, '/v1/completions', { prompt: 'b', max_tokens: 1 });
  assert.equal(second.status, 429);
  assert.equal(second.body.error.type, 'rate_limit_error');
  assert.equal((await long).status, 200);
  assert.equal((await call(small, '/v1/completions', { prompt: 'b', max_tokens: 1 })).status, 200);
});
