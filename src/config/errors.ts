// Config errors.
//
// defines: ConfigError (thrown for every problem in a config: parse errors, unknown keys, bad values,
//          inconsistent derived values), Loc (where a value came from), where(loc) (renders a Loc).
//
// Messages are complete sentences the CLI prints as is. One about a single key starts with where it
// was set; one about several keys (derived values) names where each was set:
//   "configs/x.yml line 4: unknown key `hidden_szie`; did you mean `hidden_size`?"
//   "`num_kv_heads` (configs/x.yml line 9) = 3 must divide `num_attention_heads` (configs/x.yml line 8) = 4"

/** Where a value came from: a file and a 1-based line, or `overrides` (no line). */
export interface Loc {
  file: string;
  line: number | null;
}

/** Renders a location as "configs/x.yml line 4" (or just the file name when there is no line). */
export function where(loc: Loc): string {
  return loc.line === null ? loc.file : `${loc.file} line ${loc.line}`;
}

export class ConfigError extends Error {
  /** The CLI prints errors named NeoxError without a stack trace. */
  override name = 'NeoxError';
  readonly file: string | null;
  readonly line: number | null;
  readonly key: string | null;

  constructor(message: string, info: { loc?: Loc; key?: string } = {}) {
    super(message);
    this.file = info.loc?.file ?? null;
    this.line = info.loc?.line ?? null;
    this.key = info.key ?? null;
  }

  /** An error about one key at one place: "<where>: <problem>". */
  static at(loc: Loc, key: string, problem: string): ConfigError {
    return new ConfigError(`${where(loc)}: ${problem}`, { loc, key });
  }
}
