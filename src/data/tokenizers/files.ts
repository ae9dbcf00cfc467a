// Reading tokenizer files with errors that name the file and what it was expected to be.
//
// defines: readTokenizerFile, readJsonFile, requirePath

import * as fs from 'node:fs';

/** The path, or a clear error when the config left it unset. */
export function requirePath(path: string | null | undefined, role: string, expected: string): string {
  if (typeof path !== 'string' || path.trim() === '') throw new Error(`${role} is not set; it should name ${expected}`);
  return path;
}

/** The file's bytes; `role` is e.g. "HFTokenizer vocab_file", `expected` what the file should be. */
export function readTokenizerFile(path: string, role: string, expected: string): Buffer {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(path);
  } catch {
    throw new Error(`${role} not found: ${path} (expected ${expected})`);
  }
  if (stat.isDirectory()) throw new Error(`${role} ${path} is a directory; expected ${expected}`);
  try {
    return fs.readFileSync(path);
  } catch (e) {
    throw new Error(`${role} ${path} could not be read: ${(e as Error).message}`);
  }
}

/** The file parsed as JSON, with the parse error and file named on failure. */
export function readJsonFile(path: string, role: string, expected: string): unknown {
  const text = readTokenizerFile(path, role, expected).toString('utf8');
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`${role} ${path} is not valid JSON (${(e as Error).message}); expected ${expected}`);
  }
}
