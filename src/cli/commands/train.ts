// `neox train FILES... [--device auto|cpu|cuda]`
import { parseArgs } from 'node:util';
import { loadConfig } from '../../config/index.js';
import { train } from '../../train/trainer.js';

export const summary = 'train a model from YAML configs (merged in order); resumes when `load` has a checkpoint';

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv, allowPositionals: true,
    options: { device: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help || positionals.length === 0) {
    console.log('usage: neox train FILES... [--device auto|cpu|cuda]\n\nTrains (or resumes, when `load` names a checkpoint folder) the model the merged configs describe.');
    return values.help ? 0 : 2;
  }
  const loaded = loadConfig(positionals);
  if (loaded.ignored.length) {
    console.log(`ignoring ${loaded.ignored.length} key(s) that only steer DeepSpeed or unimplemented features: ${loaded.ignored.map((i) => i.key).join(', ')}`);
  }
  await train(loaded, { device: values.device });
  return 0;
}
