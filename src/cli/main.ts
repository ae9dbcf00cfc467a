// The `neox` command line: a table of subcommands, one file each under commands/, each a thin
// layer over the library. Commands load lazily, so one command's dependencies (koffi for
// `doctor`, say) never slow down or break another. To add a command: write commands/<name>.ts
// exporting `run(argv)`, and add one line to COMMANDS.

interface Command {
  run(argv: string[]): number | Promise<number>;
}

const COMMANDS: Record<string, [summary: string, load: () => Promise<Command>]> = {
  train: ['train a model from YAML configs (merged in order); resumes when `load` has a checkpoint', () => import('./commands/train.js')],
  launch: ['start a distributed job: N local processes, or pdsh/Slurm/MPI across a hostfile', () => import('./commands/launch.js')],
  config: ['print the merged config and the keys it ignores', () => import('./commands/config.js')],
  preprocess: ['tokenize text/jsonl into Megatron .bin/.idx', () => import('./commands/preprocess.js')],
  'prepare-data': ['download, check, extract and preprocess a corpus (enwik8, the Pile, ...)', () => import('./commands/prepare_data.js')],
  data: ['look into .bin/.idx datasets: `data inspect PREFIX`, `data count PREFIX...`, `data merge OUT IN...`', () => import('./commands/data.js')],
  generate: ['generate text from a checkpoint (unconditional | input-file | interactive), KV-cached', () => import('./commands/generate.js')],
  serve: ['serve a checkpoint over HTTP (/v1/completions for lm-evaluation-harness)', () => import('./commands/serve.js')],
  eval: ['evaluate a checkpoint: harness tasks from local JSONL files, or dataset perplexity', () => import('./commands/eval.js')],
  convert: ['Hugging Face interop: `convert to-hf CKPT OUT`, `convert from-hf HFDIR OUT`', () => import('./commands/convert.js')],
  checkpoint: ['summarize and verify a checkpoint (`checkpoint inspect DIR`)', () => import('./commands/checkpoint.js')],
  doctor: ['show the CUDA driver, GPUs and libraries that NeoX.ts finds', () => import('./commands/doctor.js')],
};

function usage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((n) => n.length));
  const lines = Object.entries(COMMANDS).map(([name, [summary]]) => `  ${name.padEnd(width)}  ${summary}`);
  return `usage: neox <command> [options]\n\ncommands:\n${lines.join('\n')}\n\nRun \`neox <command> --help\` for a command's options.`;
}

export class UsageError extends Error {
  override name = 'NeoxError';
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '-h' || name === '--help' || name === 'help') {
    console.log(usage());
    return name === undefined ? 2 : 0;
  }
  const entry = COMMANDS[name];
  if (!entry) throw new UsageError(`unknown command '${name}'\n\n${usage()}`);
  const command = await entry[1]();
  return command.run(rest);
}
