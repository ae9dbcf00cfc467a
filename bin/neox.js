#!/usr/bin/env node
// The `neox` command: runs the compiled CLI (built by `npm install` through the prepare script).
// Errors print as one `neox: message` line; NEOX_DEBUG=1 adds the stack.
import { main } from '../dist/src/cli/main.js';
main(process.argv.slice(2)).then((code) => { process.exitCode = code ?? 0; }, (err) => {
  const debug = process.env.NEOX_DEBUG === '1';
  console.error(err instanceof Error && !debug ? `neox: ${err.message}` : err);
  process.exitCode = 1;
});
