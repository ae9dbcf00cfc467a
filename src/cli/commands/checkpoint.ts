// `neox checkpoint inspect DIR`
import { inspectCheckpoint } from '../../checkpoint/index.js';

export function run(argv: string[]): number {
  const [sub, dir] = argv;
  if (sub !== 'inspect' || !dir) {
    console.log('usage: neox checkpoint inspect DIR');
    return sub === '--help' || sub === '-h' ? 0 : 2;
  }
  console.log(inspectCheckpoint(dir));
  return 0;
}
