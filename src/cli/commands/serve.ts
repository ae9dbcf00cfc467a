// `neox serve CKPT [options]`: the completions server lm-evaluation-harness's local-completions talks to.
import { parseArgs } from 'node:util';
import { loadModel, startServer } from '../../infer/index.js';

const USAGE = `usage: neox serve CKPT [options]

  --host H              interface to bind (default 127.0.0.1; 0.0.0.0 exposes it to the network)
  --port N              default 8000 (0: any free port)
  --model-name NAME     the model name in responses (default: neox)
  --max-body-bytes N    larger request bodies get 413 (default 16777216)
  --max-tokens N        largest max_tokens (default 2048)
  --max-concurrent N    requests admitted at once, waiting or running; more get 429 (default 8)
  --batch-size N        sequences per forward (default 8)
  --context-length N    most tokens the model reads (default the checkpoint's seq_length)
  --device auto|cpu|cuda   --step N

Then, e.g.:
  lm_eval --model local-completions --tasks lambada_openai \\
    --model_args base_url=http://127.0.0.1:8000/v1/completions,model=neox,max_length=SEQ_LENGTH,tokenized_requests=True`;

export async function run(argv: string[]): Promise<number> {
  const { values: v, positionals } = parseArgs({
    args: argv, allowPositionals: true,
    options: {
      host: { type: 'string' }, port: { type: 'string' }, 'model-name': { type: 'string' }, 'max-body-bytes': { type: 'string' },
      'max-tokens': { type: 'string' }, 'max-concurrent': { type: 'string' }, 'batch-size': { type: 'string' },
      'context-length': { type: 'string' }, device: { type: 'string' }, step: { type: 'string' }, help: { type: 'boolean', short: 'h' },
    },
  });
  if (v.help || positionals.length !== 1) {
    console.log(USAGE);
    return v.help ? 0 : 2;
  }
  const int = (t: string | undefined, name: string): number | undefined => {
    if (t === undefined) return undefined;
    const x = Number(t);
    if (!Number.isInteger(x) || x < 0) throw new Error(`--${name} must be a non-negative integer, got '${t}'`);
    return x;
  };
  const loaded = await loadModel(positionals[0]!, { device: v.device, step: int(v.step, 'step') });
  const contextLength = int(v['context-length'], 'context-length') ?? loaded.contextLength;
  const srv = await startServer(loaded.model, loaded.tokenizer, {
    host: v.host, port: int(v.port, 'port'), modelName: v['model-name'], contextLength,
    maxBodyBytes: int(v['max-body-bytes'], 'max-body-bytes'), maxTokens: int(v['max-tokens'], 'max-tokens'),
    maxConcurrent: int(v['max-concurrent'], 'max-concurrent'), batchSize: int(v['batch-size'], 'batch-size'),
    log: (line) => console.error(line),
  });
  console.log(`serving ${loaded.dir} (step ${loaded.step}, ${loaded.model.backend.name}, context ${contextLength}) at ${srv.url}/v1/completions`);
  if (srv.host !== '127.0.0.1' && srv.host !== 'localhost' && srv.host !== '::1') {
    console.log(`warning: bound to ${srv.host}: anyone who can reach this machine can use the model`);
  }
  await new Promise<void>((resolve) => {
    const stop = () => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      void srv.close().then(resolve);
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
  return 0;
}
