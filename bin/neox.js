#!/usr/bin/env node
// The `neox` command: runs the compiled CLI (built by `npm install` through the prepare script).
import { main } from '../dist/src/cli/main.js';
main(process.argv.slice(2)).then((code) => { process.exitCode = code ?? 0; }, (err) => {
  console.error(err instanceof Error && err.name === 'NeoxError' ? `neox: ${err.message}` : err);
  process.exitCode = 1;
});
