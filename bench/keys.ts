/**
 * Key verification benchmark (issue: foundation). Prints, never asserts.
 *
 * 1. Over HTTP against a real `obscura serve` process on the embedded default: authenticated no-op
 *    requests/s (`GET /v1/whoami` with a secret key) vs unauthenticated no-op requests/s (`GET /healthz`)
 *    in the same run. Goal: ratio >= 0.8.
 * 2. In process: `KeyVerifier.verify` calls/s with the cache warm. Goal: >= 50,000/s per core.
 *
 * Usage: npm run build && node dist/bench/keys.js [--seconds 5] [--connections 16]
 */
import { parseArgs } from 'node:util';
import { Agent, request } from 'node:http';
import { runCli, startServe } from '../test/support/cli.js';
import { openTestDb } from '../test/support/db.js';
import { createTenant } from '../test/support/server.js';
import { KeyVerifier } from '../src/auth/keys.js';

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '5' }, connections: { type: 'string', default: '16' } } });
const seconds = Number(values.seconds);
const connections = Number(values.connections);

async function load(url: string, headers: Record<string, string>): Promise<number> {
  const agent = new Agent({ keepAlive: true, maxSockets: connections });
  const u = new URL(url);
  let done = 0;
  let failed = 0;
  const deadline = Date.now() + seconds * 1000;
  const one = () =>
    new Promise<void>((resolve) => {
      const req = request({ host: u.hostname, port: u.port, path: u.pathname, agent, headers }, (res) => {
        res.resume();
        res.on('end', () => {
          if (res.statusCode === 200) done++;
          else failed++;
          resolve();
        });
      });
      req.on('error', () => {
        failed++;
        resolve();
      });
      req.end();
    });
  await Promise.all(
    Array.from({ length: connections }, async () => {
      while (Date.now() < deadline) await one();
    }),
  );
  agent.destroy();
  if (failed) console.log(`  (${failed} non-200 responses)`);
  return done / seconds;
}

const { tempDir } = await import('../test/support/db.js');
const dataDir = tempDir('obscura-bench-');
// Rate limits would turn most of a load test into 429s: lift them for the measurement.
const env = {
  OBSCURA_DATA_DIR: dataDir,
  OBSCURA_LOG_LEVEL: 'warn',
  OBSCURA_RATE_LIMIT_PER_MINUTE: '10000000',
  OBSCURA_RATE_LIMIT_APP_PER_MINUTE: '100000000',
  OBSCURA_RATE_LIMIT_IP_PER_MINUTE: '10000000',
};
const init = JSON.parse((await runCli(['init', '--json'], env)).stdout);
const server = await startServe(env);
try {
  await load(server.url + '/healthz', {}); // warm-up
  const unauth = await load(server.url + '/healthz', {});
  const auth = await load(server.url + '/v1/whoami', { authorization: `Bearer ${init.secret_key.key}` });
  console.log(`HTTP, ${connections} connections, ${seconds}s each (server: one obscura process, embedded database)`);
  console.log(`  unauthenticated no-op (GET /healthz):         ${unauth.toFixed(0)} req/s`);
  console.log(`  authenticated no-op   (GET /v1/whoami + key): ${auth.toFixed(0)} req/s`);
  console.log(`  ratio authenticated/unauthenticated:          ${(auth / unauth).toFixed(2)}  (goal >= 0.80)`);
} finally {
  await server.stop();
}

const t = await openTestDb('pglite');
try {
  const tenant = await createTenant(t.db, 'bench');
  const v = new KeyVerifier(t.db, { ttlMs: 5000 });
  await v.verify(tenant.key, { ip: '127.0.0.1', origin: undefined });
  const n = 300_000;
  const start = process.hrtime.bigint();
  for (let i = 0; i < n; i++) await v.verify(tenant.key, { ip: '127.0.0.1', origin: undefined });
  const secs = Number(process.hrtime.bigint() - start) / 1e9;
  console.log(`In-process KeyVerifier.verify, cache warm: ${(n / secs).toFixed(0)} verifications/s on one core  (goal >= 50,000/s)`);
} finally {
  await t.close();
}
