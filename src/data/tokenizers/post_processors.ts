// HF tokenizer.json post-processors for a single sequence (encode with add_special_tokens, the
// default in tokenizers and so in GPT-NeoX): the template's special tokens around the ids.
//
// defines: PostProcessor, buildPostProcessor
//
// Types: TemplateProcessing, BertProcessing, RobertaProcessing, ByteLevel (offsets only: no ids),
// Sequence.

export interface PostProcessor {
  process(ids: number[]): number[];
  /** How many ids process() adds (HF PostProcessor::added_tokens(false)), for truncation. */
  added: number;
}

type Json = Record<string, unknown>;

function pairOf(v: unknown, what: string, where: string): number {
  if (Array.isArray(v) && v.length === 2 && Number.isInteger(v[1])) return v[1] as number;
  throw new Error(`${where}: ${what} must be [token, id]`);
}

/** Build a post-processor from its tokenizer.json object; `where` names the file for errors. */
export function buildPostProcessor(cfg: Json, where: string): PostProcessor {
  const type = cfg.type as string;
  switch (type) {
    case 'TemplateProcessing': {
      const single = (cfg.single as Json[] | undefined) ?? [];
      const specials = (cfg.special_tokens as Record<string, { ids?: number[] }> | undefined) ?? {};
      // each piece: ids to insert, or null for the sequence itself
      const parts: Array<number[] | null> = single.map((piece) => {
        if ('Sequence' in piece) return null;
        const sp = piece.SpecialToken as { id?: string } | undefined;
        const name = sp?.id;
        const ids = name !== undefined ? specials[name]?.ids : undefined;
        if (!Array.isArray(ids)) {
          throw new Error(`${where}: TemplateProcessing special token ${JSON.stringify(name)} is not in special_tokens`);
        }
        return ids;
      });
      const added = parts.reduce((n, p) => n + (p ? p.length : 0), 0);
      return {
        added,
        process: (ids) => parts.flatMap((p) => (p ? p : ids)),
      };
    }
    case 'BertProcessing': case 'RobertaProcessing': {
      const cls = pairOf(cfg.cls, 'cls', where);
      const sep = pairOf(cfg.sep, 'sep', where);
      return { added: 2, process: (ids) => [cls, ...ids, sep] };
    }
    case 'ByteLevel':
      return { added: 0, process: (ids) => ids };
    case 'Sequence': {
      const parts = ((cfg.processors as Json[] | undefined) ?? []).map((p) => buildPostProcessor(p, where));
      return {
        added: parts.reduce((n, p) => n + p.added, 0),
        process: (ids) => parts.reduce((acc, p) => p.process(acc), ids),
      };
    }
    default:
      throw new Error(`${where}: unsupported post_processor type ${JSON.stringify(type)}`);
  }
}
