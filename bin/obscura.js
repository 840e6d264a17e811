#!/usr/bin/env node
// The `obscura` command. Runs the compiled CLI (npm install builds it).
// Client commands load only the SDK-based client, not the whole server, so they start fast.
const CLIENT_COMMANDS = new Set(['upload', 'process', 'download', 'jobs']);
const [cmd, ...rest] = process.argv.slice(2);
if (CLIENT_COMMANDS.has(cmd)) {
  const { clientCommand } = await import('../dist/src/cli/client.js');
  process.exitCode = await clientCommand(cmd, rest);
} else {
  const { run } = await import('../dist/src/cli/main.js');
  // `serve` resolves only after a clean shutdown; other commands are done here.
  process.exitCode = await run(process.argv.slice(2));
}
