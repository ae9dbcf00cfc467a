// `neox preprocess ...` (GPT-NeoX's tools/datasets/preprocess_data.py options)
import { runPreprocessCli } from '../../data/preprocess.js';

export function run(argv: string[]): Promise<number> {
  return runPreprocessCli(argv);
}
