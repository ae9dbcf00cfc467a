// `neox config show FILES... [--world-size N]`
import { parseArgs } from 'node:util';
import { formatConfig, loadConfig } from '../../config/index.js';

export function run(argv: string[]): number {
  const { values, positionals } = parseArgs({
    args: argv, allowPositionals: true,
    options: { 'world-size': { type: 'string' }, help: { type: 'boolean', short: 'h' } },
  });
  const [sub, ...files] = positionals;
  if (values.help || sub !== 'show' || files.length === 0) {
    console.log('usage: neox config show FILES... [--world-size N]\n\nPrints the merged, validated config (defaults and derived values included) and the ignored keys.');
    return values.help ? 0 : 2;
  }
  const worldSize = values['world-size'] ? Number(values['world-size']) : undefined;
  console.log(formatConfig(loadConfig(files, { worldSize })));
  return 0;
}
