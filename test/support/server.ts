/**
 * Starts the real HTTP server on 127.0.0.1 (an ephemeral port) over a test database, plus helpers to
 * create tenants through the domain layer.
 */
import type { AddressInfo } from 'node:net';
import { freePort } from '../../src/listen.js';
import { join } from 'node:path';
import { createFsStore } from '../../src/assets/stores/fs.js';
import type { BlobStore } from '../../src/assets/stores/types.js';
import { tempDir } from './db.js';
import { randomBytes } from 'node:crypto';
import type { MasterKeys } from '../../src/crypto/master.js';
import { masterKeyId } from '../../src/crypto/keywrap.js';
import { loadConfig, type Config } from '../../src/config/index.js';
import { buildApp, type AppDeps } from '../../src/app.js';
import type { DatabaseHandle } from '../../src/db/database.js';
import { createApp, createOrg, type Ctx } from '../../src/tenants/index.js';
import { createKey, type CreateKeyInput } from '../../src/auth/keys.js';

export interface TestServer {
  url: string;
  config: Config;
  close(): Promise<void>;
  keys: Awaited<ReturnType<typeof buildApp>>['keys'];
  keyring: Awaited<ReturnType<typeof buildApp>>['keyring'];
  signer: Awaited<ReturnType<typeof buildApp>>['signer'];
  store: BlobStore;
}

/**
 * Settings every in-process test server starts from. Event-loop load shedding is off here (and in
 * `obscura serve` children: test/support/cli.ts, kept off there too so CI on 2 busy cores cannot
 * fail on a stray 503). The embedded database no longer runs on this thread, but an in-process
 * server shares its loop with the test itself and often with a second server: building that one
 * (compiling every route's schemas) holds the shared loop for seconds on 2 busy cores, the first
 * server rightly sees overload and sheds, and a stray 503 is not what those tests are about
 * (measured with shedding on: 503s in the Redis rate-limit and download-starvation tests,
 * docs/performance.md). The shedding test turns it on explicitly.
 *
 * Uploads keep their metadata (`OBSCURA_METADATA_POLICY=keep`; the product default is `strip_all`):
 * the shared fixtures carry a tEXt marker (for plaintext scans) and exact-size trailers, and most
 * tests compare downloads with what they uploaded byte for byte. The metadata tests
 * (test/assets/lifecycle.test.ts) set the policies themselves and check the default.
 */
export const TEST_SERVER_ENV: Record<string, string> = {
  OBSCURA_DATA_DIR: '/nonexistent-test-data-dir',
  OBSCURA_LOG_LEVEL: 'silent',
  OBSCURA_SHED_EVENT_LOOP_DELAY_MS: '0',
  OBSCURA_METADATA_POLICY: 'keep',
};

export async function startServer(db: DatabaseHandle, opts: { env?: Record<string, string>; deps?: Partial<AppDeps> } = {}): Promise<TestServer> {
  // Pick the port first so that the public URL (signed URLs, token issuer) names the real listener.
  const port0 = opts.env?.OBSCURA_PORT ? Number(opts.env.OBSCURA_PORT) : await freePort();
  const config = loadConfig({ ...TEST_SERVER_ENV, OBSCURA_PORT: String(port0), ...opts.env });
  const store = opts.deps?.store ?? (await createFsStore({ root: join(tempDir('obscura-blobs-'), 'blobs') }));
  const { app, keys, keyring, signer } = await buildApp(config, { db, masterKeys: masterKeysFor(db), store, logger: false, ...opts.deps });
  await app.listen({ host: '127.0.0.1', port: config.port });
  const { port } = app.server.address() as AddressInfo;
  const url = `http://127.0.0.1:${port}`;
  return { url, config, keys, keyring, signer, store, close: () => app.close() };
}

export { freePort };

const keysByDb = new WeakMap<DatabaseHandle, MasterKeys>();
/** One master key set per test database, shared by every server ("node") on it. */
export function masterKeysFor(db: DatabaseHandle): MasterKeys {
  let k = keysByDb.get(db);
  if (!k) keysByDb.set(db, (k = testMasterKeys()));
  return k;
}

/** Random master keys for one test server (as OBSCURA_MASTER_KEY would provide). */
export function testMasterKeys(): MasterKeys {
  const current = randomBytes(32);
  const currentId = masterKeyId(current);
  return { current, currentId, all: new Map([[currentId, current]]), source: 'env', file: undefined };
}

const ctx: Ctx = { actor: { type: 'cli', id: 'test' } };

export interface Tenant {
  orgId: string;
  appId: string;
  /** A secret key with every scope. */
  key: string;
  keyId: string;
}

/** Creates an org with one app and a full secret key. */
export async function createTenant(db: DatabaseHandle, name = 'Org'): Promise<Tenant> {
  const org = await db.withSystem((trx) => createOrg(trx, name, ctx));
  return db.withTenant(org.id, async (trx) => {
    const app = await createApp(trx, org.id, { name: `${name} app` }, ctx);
    const k = await createKey(trx, org.id, app.id, { kind: 'secret', name: 'full' }, { ...ctx, granter: null });
    return { orgId: org.id, appId: app.id, key: k.secret, keyId: k.key.id };
  });
}

/** Mints an extra key for a tenant's app. */
export async function mintKey(db: DatabaseHandle, t: Tenant, input: CreateKeyInput): Promise<{ id: string; secret: string }> {
  const k = await db.withTenant(t.orgId, (trx) => createKey(trx, t.orgId, t.appId, input, { ...ctx, granter: null }));
  return { id: k.key.id, secret: k.secret };
}

/** fetch with a bearer credential and JSON body; returns status, headers and parsed body. */
export async function api(
  base: string,
  method: string,
  path: string,
  opts: { key?: string; body?: unknown; headers?: Record<string, string> } = {},
): Promise<{ status: number; headers: Headers; body: any }> {
  const headers: Record<string, string> = { ...(opts.headers ?? {}) };
  if (opts.key) headers.authorization = `Bearer ${opts.key}`;
  if (opts.body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(base + path, { method, headers, body: opts.body === undefined ? undefined : JSON.stringify(opts.body) });
  const text = await res.text();
  let body: unknown = text;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    /* not JSON */
  }
  return { status: res.status, headers: res.headers, body };
}
