// `neox launch [options] train FILES...`: start one process per GPU (torchrun-style), or every
// node's processes through pdsh / srun / mpirun (src/parallel/launcher.ts).
import { runLaunch } from '../../parallel/launcher.js';

export function run(argv: string[]): Promise<number> {
  return runLaunch(argv);
}
