// `neox data inspect|count|merge`: look into and combine .bin/.idx datasets.
//
//   neox data inspect PREFIX [--tokenizer-type T --vocab-file V --merge-file M] [-n N] [--doc I] [--json]
//   neox data count PREFIX...                (GPT-NeoX's tools/datasets/dataset_token_count.py)
//   neox data merge OUT IN...                (GPT-NeoX's tools/datasets/merge_datasets.py; IN = prefixes
//                                             or directories of .bin/.idx pairs)
import { formatSummary, inspectDataset, countTokens } from '../../data/inspect.js';
import { mergeDatasets } from '../../data/merge.js';
import { buildTokenizer } from '../../data/tokenizer.js';

const USAGE = `usage: neox data <inspect|count|merge> ...

  inspect PREFIX [options]   documents, tokens, dtype, document lengths, first tokens of a document
      --tokenizer-type TYPE  decode the first tokens with this tokenizer (with --vocab-file/--merge-file)
      --vocab-file PATH
      --merge-file PATH
      -n N                   how many tokens to show (default 32)
      --doc I                which document (default 0)
      --json                 print the summary as JSON
  count PREFIX...            tokens in each dataset and in all
  merge OUT IN...            concatenate datasets (prefixes, or directories of .bin/.idx pairs taken
                             in name order) into OUT.bin/.idx
`;

export async function run(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '-h' || sub === '--help' || rest.includes('-h') || rest.includes('--help')) {
    process.stdout.write(USAGE);
    return sub === undefined ? 2 : 0;
  }
  try {
    switch (sub) {
      case 'inspect': return inspect(rest);
      case 'count': return count(rest);
      case 'merge': return merge(rest);
      default: throw new Error(`unknown subcommand '${sub}'\n\n${USAGE}`);
    }
  } catch (err) {
    process.stderr.write(`neox data ${sub}: ${(err as Error).message}\n`);
    return 1;
  }
}

function inspect(argv: string[]): number {
  let prefix: string | undefined;
  const opt: Record<string, string> = {};
  let json = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--json') json = true;
    else if (['--tokenizer-type', '--vocab-file', '--merge-file', '-n', '--doc'].includes(a)) {
      const v = argv[++i];
      if (v === undefined) throw new Error(`option ${a} needs a value`);
      opt[a] = v;
    } else if (a.startsWith('-')) throw new Error(`unknown option ${a}\n\n${USAGE}`);
    else if (prefix === undefined) prefix = a;
    else throw new Error(`unexpected argument '${a}'`);
  }
  if (!prefix) throw new Error(`inspect needs a dataset prefix\n\n${USAGE}`);
  const int = (name: string, dflt: number): number => {
    const v = opt[name];
    if (v === undefined) return dflt;
    if (!/^\d+$/.test(v)) throw new Error(`${name}: '${v}' is not a non-negative integer`);
    return Number(v);
  };
  const tokenizer = opt['--tokenizer-type']
    ? buildTokenizer({ tokenizer_type: opt['--tokenizer-type'], vocab_file: opt['--vocab-file'] ?? null, merge_file: opt['--merge-file'] ?? null })
    : null;
  const s = inspectDataset(prefix, { count: int('-n', 32), document: int('--doc', 0), tokenizer });
  process.stdout.write((json ? JSON.stringify(s, null, 2) : formatSummary(s)) + '\n');
  return 0;
}

function count(prefixes: string[]): number {
  if (prefixes.length === 0) throw new Error(`count needs at least one dataset prefix\n\n${USAGE}`);
  const counts = countTokens(prefixes);
  let total = 0;
  for (const c of counts) {
    process.stdout.write(`${c.prefix}: ${c.tokens} tokens in ${c.documents} documents\n`);
    total += c.tokens;
  }
  if (counts.length > 1) process.stdout.write(`total: ${total} tokens\n`);
  return 0;
}

function merge(argv: string[]): number {
  const [out, ...inputs] = argv;
  if (!out || inputs.length === 0) throw new Error(`merge needs OUT and at least one input\n\n${USAGE}`);
  const r = mergeDatasets(out, inputs, (l) => process.stderr.write(l + '\n'));
  process.stdout.write(`wrote ${r.prefix}.bin/.idx: ${r.documents} documents, ${r.tokens} tokens (${r.dtype}) from ${r.inputs.length} datasets\n`);
  return 0;
}
