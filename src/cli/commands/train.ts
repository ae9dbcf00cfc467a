// `neox train FILES... [--device auto|cpu|cuda]`
import { parseArgs } from 'node:util';
import { loadConfig } from '../../config/index.js';
import { readDistEnv } from '../../parallel/index.js';
import { train } from '../../train/trainer.js';

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv, allowPositionals: true,
    options: { device: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help || positionals.length === 0) {
    console.log('usage: neox train FILES... [--device auto|cpu|cuda]\n\nTrains (or resumes, when `load` names a checkpoint folder) the model the merged configs describe.');
    return values.help ? 0 : 2;
  }
  const { rank, worldSize } = readDistEnv();
  const loaded = loadConfig(positionals, { worldSize }); // train_batch_size = micro × accumulation × data-parallel size
  if (rank === 0 && loaded.ignored.length) {
    console.log(`ignoring ${loaded.ignored.length} key(s) that only steer DeepSpeed or unimplemented features: ${loaded.ignored.map((i) => i.key).join(', ')}`);
  }
  await train(loaded, { device: values.device });
  return 0;
}
