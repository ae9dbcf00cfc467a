// The `neox` command line: one subcommand per job, each a thin layer over the library.
//
//   neox train FILES... [--device auto|cpu|cuda]      train (or resume) from merged YAML configs
//   neox config show FILES...                          print the merged, validated config
//   neox preprocess --input ... --output-prefix ...    text/jsonl → Megatron .bin/.idx
//   neox checkpoint inspect DIR                        what a checkpoint holds, verified

import { parseArgs } from 'node:util';
import { formatConfig, loadConfig } from '../config/index.js';
import { inspectCheckpoint } from '../checkpoint/index.js';
import { runPreprocessCli } from '../data/preprocess.js';
import { train } from '../train/trainer.js';

const USAGE = `usage: neox <command> [options]

commands:
  train FILES... [--device auto|cpu|cuda]   train a model from YAML configs (merged in order)
  config show FILES...                      print the merged config and the keys it ignores
  preprocess --input FILES --output-prefix P [--tokenizer-type T] [--append-eod] ...
                                            tokenize text/jsonl into Megatron .bin/.idx
  checkpoint inspect DIR                    summarize and verify a checkpoint

Run \`neox <command> --help\` for a command's options.`;

export class UsageError extends Error {
  override name = 'NeoxError';
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'train': return trainCommand(rest);
    case 'config': return configCommand(rest);
    case 'preprocess': return preprocessCommand(rest);
    case 'checkpoint': return checkpointCommand(rest);
    case undefined: case '-h': case '--help': case 'help':
      console.log(USAGE);
      return command === undefined ? 2 : 0;
    default:
      throw new UsageError(`unknown command '${command}'\n${USAGE}`);
  }
}

async function trainCommand(argv: string[]): Promise<number> {
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

function configCommand(argv: string[]): number {
  const [sub, ...files] = argv;
  if (sub !== 'show' || files.length === 0) {
    console.log('usage: neox config show FILES...');
    return sub === '--help' || sub === '-h' ? 0 : 2;
  }
  console.log(formatConfig(loadConfig(files)));
  return 0;
}

function preprocessCommand(argv: string[]): Promise<number> {
  return runPreprocessCli(argv);
}

function checkpointCommand(argv: string[]): number {
  const [sub, dir] = argv;
  if (sub !== 'inspect' || !dir) {
    console.log('usage: neox checkpoint inspect DIR');
    return 2;
  }
  console.log(inspectCheckpoint(dir));
  return 0;
}
