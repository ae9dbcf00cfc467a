// `neox convert to-hf CKPT OUT [--architecture …] [--precision …] [--max-shard-size …]`
// `neox convert from-hf HFDIR OUT`
import { parseArgs } from 'node:util';
import { convertFromHF, convertToHF, ConvertError, type ExportPrecision } from '../../convert/index.js';
import type { HFArchitecture } from '../../models/gpt_neox/hf_adapter.js';

const USAGE = `usage:
  neox convert to-hf CKPT OUT [--architecture auto|neox|llama|mistral] [--precision auto|fp16|bf16|fp32]
                              [--max-shard-size 5GB]
      CKPT: a save folder (its \`latest\`), a global_step{N} folder, or a from-hf output folder.
      Writes config.json, generation_config.json, model.safetensors (or shards + index) and the
      run's tokenizer files. --architecture auto picks mistral for a sliding window, llama for
      RMSNorm + SwiGLU, else neox; --precision auto uses the run's precision.
  neox convert from-hf HFDIR OUT
      HFDIR: a GPTNeoXForCausalLM, LlamaForCausalLM or MistralForCausalLM folder (config.json +
      safetensors). Writes OUT/neox.yml, OUT/checkpoint and OUT/hf; fine-tune with
      \`neox train OUT/neox.yml your_training.yml\`.`;

/** "5GB", "500MB", "2GiB", "1000000" → bytes (KB/MB/GB are powers of 10 as in transformers). */
export function parseSize(s: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KIB|MIB|GIB|TIB)?\s*$/i.exec(s);
  if (!m) throw new ConvertError(`--max-shard-size ${s}: use bytes or a size like 5GB, 500MB, 2GiB`);
  const unit = (m[2] ?? 'B').toUpperCase();
  const scale: Record<string, number> = { B: 1, KB: 1e3, MB: 1e6, GB: 1e9, TB: 1e12, KIB: 2 ** 10, MIB: 2 ** 20, GIB: 2 ** 30, TIB: 2 ** 40 };
  return Math.floor(Number(m[1]) * scale[unit]!);
}

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv, allowPositionals: true,
    options: {
      architecture: { type: 'string' }, precision: { type: 'string' }, 'max-shard-size': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const [sub, from, to] = positionals;
  if (values.help || !sub) {
    console.log(USAGE);
    return values.help ? 0 : 2;
  }
  const log = (line: string): void => console.log(line);
  if (sub === 'to-hf' && from && to && positionals.length === 3) {
    const arch = values.architecture ?? 'auto';
    if (!['auto', 'neox', 'llama', 'mistral'].includes(arch)) throw new ConvertError(`--architecture ${arch}: use auto, neox, llama or mistral`);
    const precision = values.precision ?? 'auto';
    if (!['auto', 'fp16', 'bf16', 'fp32'].includes(precision)) throw new ConvertError(`--precision ${precision}: use auto, fp16, bf16 or fp32`);
    await convertToHF(from, to, {
      architecture: arch === 'auto' ? undefined : arch as HFArchitecture,
      precision: precision as ExportPrecision,
      maxShardBytes: values['max-shard-size'] ? parseSize(values['max-shard-size']) : undefined,
      log,
    });
    return 0;
  }
  if (sub === 'from-hf' && from && to && positionals.length === 3) {
    if (values.architecture || values.precision || values['max-shard-size']) {
      throw new ConvertError('from-hf takes no options: the architecture and precision come from config.json');
    }
    const r = await convertFromHF(from, to, { log });
    log(`fine-tune with: neox train ${r.configPath} your_training.yml`);
    return 0;
  }
  console.log(USAGE);
  return 2;
}
