#!/usr/bin/env node
// The `obscura` command. Runs the compiled CLI (npm install builds it).
import { run } from '../dist/src/cli/main.js';

const code = await run(process.argv.slice(2));
// `serve` resolves only after a clean shutdown; other commands are done here.
process.exitCode = code;
