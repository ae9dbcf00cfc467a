// The `neox` command line: a table of subcommands, one file each under commands/, each a thin
// layer over the library. To add a command: write commands/<name>.ts exporting `summary` and
// `run(argv)`, and add one line to COMMANDS.

import * as checkpoint from './commands/checkpoint.js';
import * as config from './commands/config.js';
import * as preprocess from './commands/preprocess.js';
import * as train from './commands/train.js';

interface Command {
  summary: string;
  run(argv: string[]): number | Promise<number>;
}

const COMMANDS: Record<string, Command> = {
  train,
  config,
  preprocess,
  checkpoint,
};

function usage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((n) => n.length));
  const lines = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`);
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
  const command = COMMANDS[name];
  if (!command) throw new UsageError(`unknown command '${name}'\n\n${usage()}`);
  return command.run(rest);
}
