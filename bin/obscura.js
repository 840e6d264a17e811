#!/usr/bin/env node
// The `obscura` command. Runs the compiled CLI (npm install builds it).
//
// This file is CommonJS (bin/package.json) on purpose: libuv sizes its thread pool from
// UV_THREADPOOL_SIZE when the pool is first used, and Node's ES-module loader already uses the pool
// to read modules, so only a CommonJS entry point can still set it. Image work (sharp) runs on that
// pool too; with the default 4 threads, a few AVIF encodes left no thread for file reads and a 20 KB
// download took 25 s (issue 9, item 16). Default here: room for every image the server may process at
// once (sync + job workers, each CPU count by default) plus 8 threads kept for blob I/O; an operator's
// own UV_THREADPOOL_SIZE wins.
const { availableParallelism } = require('node:os');
const IO_THREADS = 8;
if (!process.env.UV_THREADPOOL_SIZE) {
  const setting = (name) => (/^\d{1,4}$/.test(process.env[name] ?? '') ? Number(process.env[name]) : availableParallelism());
  const imageThreads = setting('OBSCURA_PROCESS_CONCURRENCY') + setting('OBSCURA_WORKER_CONCURRENCY');
  process.env.UV_THREADPOOL_SIZE = String(Math.min(1024, Math.max(16, imageThreads + IO_THREADS)));
}

// Memory (issue 12, item 6). WebAssembly code: the embedded database (PGlite, ~10 MB of wasm) is
// compiled by Liftoff at start, and V8 then recompiles its hot functions with TurboFan in background
// threads; that second compile held ~40 MB more resident (its code plus malloc arenas it leaves
// fragmented) and measured no faster on database work here (bench figures in docs/performance.md).
// V8 flags are process-wide and wasm flags are read at compile time, so setting it here, before
// anything is compiled, covers the database's worker thread too. An operator's own wasm flags on the
// node command line win (e.g. `node --no-liftoff-only bin/obscura.js serve`).
if (!process.execArgv.some((a) => /^--(no-)?(liftoff|wasm)/.test(a))) require('node:v8').setFlagsFromString('--liftoff-only');

// Client commands load only the SDK-based client, not the whole server, so they start fast.
const CLIENT_COMMANDS = new Set(['upload', 'process', 'download', 'jobs']);
const [cmd, ...rest] = process.argv.slice(2);

(async () => {
  if (CLIENT_COMMANDS.has(cmd)) {
    const { clientCommand } = await import('../dist/src/cli/client.js');
    process.exitCode = await clientCommand(cmd, rest);
  } else if (cmd === 'backup') {
    // Backups load only what they use (their start-up is part of every backup's time).
    const { runBackup } = await import('../dist/src/cli/backup.js');
    process.exitCode = await runBackup(rest);
  } else {
    const { run } = await import('../dist/src/cli/main.js');
    // `serve` resolves only after a clean shutdown; other commands are done here.
    process.exitCode = await run(process.argv.slice(2));
  }
})();
