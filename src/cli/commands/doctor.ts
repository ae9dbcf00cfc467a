// `neox doctor`: the driver, the GPUs, and each CUDA library's path and version (or why it is missing).
import { doctorReport } from '../../backends/cuda/index.js';

export function run(argv: string[]): number {
  if (argv.includes('--help') || argv.includes('-h')) {
    console.log('usage: neox doctor\n\nPrints what the CUDA backend finds: driver, GPUs, and the path and version of each library.');
    return 0;
  }
  console.log(doctorReport());
  return 0;
}
