// `neox prepare-data [NAME] ...`: download, check, extract and preprocess a corpus from GPT-NeoX's list
// (tools/datasets/corpora.py); see src/data/prepare_data.ts.
import { runPrepareCli } from '../../data/prepare_data.js';

export function run(argv: string[]): Promise<number> {
  return runPrepareCli(argv);
}
