/**
 * Key verification benchmark (issue 12: a cheap authenticated path). Prints, never asserts.
 *
 * 1. Over HTTP against a real `obscura serve` process on the embedded default: authenticated no-op
 *    requests/s (`GET /v1/whoami` with a secret key) vs unauthenticated no-op requests/s (`GET /healthz`)
 *    in the same run. Goal: ratio >= 0.85.
 * 2. In process: `KeyVerifier.verify` calls/s with the cache warm (`--verify-calls`, 0 = skip).
 *
 * Usage: npm run build && node dist/bench/keys.js [--seconds 5] [--connections 16] [--verify-calls 300000]
 * (bench/run.ts runs it with the other rows, over rounds.)
 */
import { parseArgs } from 'node:util';
import { openTestDb } from '../test/support/db.js';
import { createTenant } from '../test/support/server.js';
import { KeyVerifier } from '../src/auth/keys.js';
import { httpLoad, isMain, startObscura, type Obscura } from './lib.js';

export interface KeysOptions {
  seconds: number;
  connections: number;
  /** In-process verifications to time (0 = skip). */
  verifyCalls: number;
  /** A running server to measure (run.ts shares one); else one is started and stopped here. */
  target?: Obscura;
}

export interface KeysFigures {
  unauthRps: number;
  authRps: number;
  ratio: number;
  /** Non-200 answers during the two measurements (rate limits, shedding). */
  failed: { unauth: Record<string, number>; auth: Record<string, number> };
  verifyPerS: number | undefined;
}

export const KEYS_DEFAULTS: KeysOptions = { seconds: 5, connections: 16, verifyCalls: 300_000 };

/** One measurement: warm-up, unauthenticated no-op, authenticated no-op (and the in-process figure if asked). */
export async function run(opts: Partial<KeysOptions> = {}): Promise<KeysFigures> {
  const o = { ...KEYS_DEFAULTS, ...opts };
  const own = o.target === undefined;
  const target = o.target ?? (await startObscura());
  let unauth;
  let auth;
  try {
    const load = (path: string, headers: Record<string, string>, seconds = o.seconds) => httpLoad({ base: target.url, path: () => path, connections: o.connections, seconds, headers });
    await load('/healthz', {}, Math.min(2, o.seconds)); // warm-up
    unauth = await load('/healthz', {});
    auth = await load('/v1/whoami', { authorization: `Bearer ${target.key}` });
  } finally {
    if (own) await target.stop();
  }
  let verifyPerS: number | undefined;
  if (o.verifyCalls > 0) {
    const t = await openTestDb('pglite');
    try {
      const tenant = await createTenant(t.db, 'bench');
      const v = new KeyVerifier(t.db, { ttlMs: 5000 });
      await v.verify(tenant.key, { ip: '127.0.0.1', origin: undefined });
      const start = process.hrtime.bigint();
      for (let i = 0; i < o.verifyCalls; i++) await v.verify(tenant.key, { ip: '127.0.0.1', origin: undefined });
      verifyPerS = o.verifyCalls / (Number(process.hrtime.bigint() - start) / 1e9);
    } finally {
      await t.close();
    }
  }
  return { unauthRps: unauth.rps, authRps: auth.rps, ratio: auth.rps / unauth.rps, failed: { unauth: unauth.statuses, auth: auth.statuses }, verifyPerS };
}

if (isMain(import.meta.url)) {
  const { values } = parseArgs({
    options: {
      seconds: { type: 'string', default: String(KEYS_DEFAULTS.seconds) },
      connections: { type: 'string', default: String(KEYS_DEFAULTS.connections) },
      'verify-calls': { type: 'string', default: String(KEYS_DEFAULTS.verifyCalls) },
    },
  });
  const o = { seconds: Number(values.seconds), connections: Number(values.connections), verifyCalls: Number(values['verify-calls']) };
  const f = await run(o);
  console.log(`HTTP, ${o.connections} connections, ${o.seconds}s each (server: one obscura process, embedded database)`);
  console.log(`  unauthenticated no-op (GET /healthz):         ${f.unauthRps.toFixed(0)} req/s`);
  console.log(`  authenticated no-op   (GET /v1/whoami + key): ${f.authRps.toFixed(0)} req/s`);
  console.log(`  ratio authenticated/unauthenticated:          ${f.ratio.toFixed(2)}  (goal >= 0.85)`);
  if (Object.keys(f.failed.unauth).length + Object.keys(f.failed.auth).length > 0) console.log(`  non-200 answers: ${JSON.stringify(f.failed)}`);
  if (f.verifyPerS !== undefined) console.log(`In-process KeyVerifier.verify, cache warm: ${f.verifyPerS.toFixed(0)} verifications/s on one core`);
}
