/**
 * Helpers for the processing, jobs, webhook and transform tests: a real server over a test database,
 * workers in the same process (sharing the database's pg-boss), and tiny HTTP servers on 127.0.0.1
 * that play the customer's storage or webhook receiver. No other network is ever touched.
 */
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { openTestDb, type DbKind, type TestDb } from '../support/db.js';
import { api, createTenant, masterKeysFor, startServer, type Tenant, type TestServer } from '../support/server.js';
import { Keyring } from '../../src/crypto/keyring.js';
import { createProcessingService } from '../../src/processing/service.js';
import { JobRuntime } from '../../src/jobs/runtime.js';
import { startWorkers, type Workers } from '../../src/jobs/worker.js';
import type { RemotePolicy } from '../../src/remote/remote.js';

/** Settings that keep job tests fast: quick polling, monitor and webhook retries. */
export const FAST_JOBS_ENV: Record<string, string> = {
  OBSCURA_JOB_POLL_INTERVAL_MS: '500',
  OBSCURA_JOB_MONITOR_INTERVAL_SECONDS: '1',
  OBSCURA_WEBHOOK_RETRY_DELAY_SECONDS: '1',
  OBSCURA_WORKER_CONCURRENCY: '2',
};

/** A recorded request to a {@link TargetServer}. */
export interface Recorded {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** A local HTTP server standing in for a customer's storage or webhook receiver. */
export interface TargetServer {
  port: number;
  origin: string;
  requests: Recorded[];
  handler: (req: Recorded, res: http.ServerResponse) => void;
  close(): Promise<void>;
}

/** Starts a target on 127.0.0.1; replace `handler` to change its behaviour. */
export async function startTarget(handler: TargetServer['handler'] = (_r, res) => res.end()): Promise<TargetServer> {
  const sockets = new Set<Socket>();
  const self = { port: 0, origin: '', requests: [] as Recorded[], handler, close: async () => {} } as TargetServer;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const rec = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks) };
      self.requests.push(rec);
      self.handler(rec, res);
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  self.port = (server.address() as AddressInfo).port;
  self.origin = `http://127.0.0.1:${self.port}`;
  self.close = () =>
    new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    });
  return self;
}

/**
 * The remote policy for tests: plain http and exactly the given 127.0.0.1 ports (the fetcher's
 * test-only allowance); every other address and port stays under the production rules.
 */
export function testRemote(ports: readonly number[]): RemotePolicy {
  return { allowHttp: true, allowedPorts: [443, 80, ...ports], unsafeTestAllow: (ip, port) => ip === '127.0.0.1' && ports.includes(port) };
}

/** A server, its database, two tenants (orgs A and B) and local targets it may reach. */
export interface Harness {
  t: TestDb;
  srv: TestServer;
  a: Tenant;
  b: Tenant;
  targets: TargetServer[];
  remote: RemotePolicy;
  close(): Promise<void>;
}

/** Starts `targets` local HTTP targets, then a server allowed to reach exactly those. */
export async function startHarness(kind: DbKind, opts: { env?: Record<string, string>; targets?: number; now?: () => number } = {}): Promise<Harness> {
  const targets: TargetServer[] = [];
  for (let i = 0; i < (opts.targets ?? 0); i++) targets.push(await startTarget());
  const t = await openTestDb(kind);
  const remote = testRemote(targets.map((x) => x.port));
  const srv = await startServer(t.db, { env: { ...FAST_JOBS_ENV, ...opts.env }, deps: { remote, ...(opts.now ? { now: opts.now } : {}) } });
  const a = await createTenant(t.db, 'A');
  const b = await createTenant(t.db, 'B');
  return {
    t,
    srv,
    a,
    b,
    targets,
    remote,
    async close() {
      await srv.close();
      for (const x of targets) await x.close();
      await t.close();
    },
  };
}

/** A processing service and job queue on the harness database (what a worker process builds). */
export function testRuntime(h: Harness, extra: { testDelayMs?: number } = {}): JobRuntime {
  const masterKeys = masterKeysFor(h.t.db);
  const processing = createProcessingService({
    db: h.t.db,
    store: h.srv.store,
    keyring: new Keyring(h.t.db, masterKeys),
    masterKeys,
    config: h.srv.config,
    remote: h.remote,
  });
  return new JobRuntime({ processing, config: h.srv.config, masterKeys, testDelayMs: extra.testDelayMs });
}

/** Starts workers in this process on the harness database (as `obscura serve --role worker` would). */
export async function startTestWorkers(h: Harness, extra: { testDelayMs?: number } = {}): Promise<{ runtime: JobRuntime; workers: Workers; stop(): Promise<void> }> {
  const runtime = testRuntime(h, extra);
  const workers = await startWorkers(runtime, { concurrency: h.srv.config.jobs.workerConcurrency, orgConcurrency: h.srv.config.jobs.workerOrgConcurrency });
  return {
    runtime,
    workers,
    async stop() {
      await workers.stop();
      await runtime.close();
    },
  };
}

/** Uploads bytes as an asset; returns its id. */
export async function upload(srv: TestServer, key: string, bytes: Buffer): Promise<string> {
  const res = await fetch(`${srv.url}/v1/assets`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/octet-stream' }, body: new Uint8Array(bytes) });
  const body = (await res.json()) as { id: string };
  if (res.status !== 201) throw new Error(`upload failed: ${res.status} ${JSON.stringify(body)}`);
  return body.id;
}

/** Raw request returning bytes. */
export async function raw(base: string, method: string, path: string, opts: { key?: string; body?: Buffer | string; headers?: Record<string, string> } = {}): Promise<{ status: number; headers: Headers; body: Buffer }> {
  const headers: Record<string, string> = { ...(opts.headers ?? {}) };
  if (opts.key) headers.authorization = `Bearer ${opts.key}`;
  const res = await fetch(base + path, { method, headers, body: typeof opts.body === "string" || opts.body === undefined ? opts.body : new Uint8Array(opts.body) });
  return { status: res.status, headers: res.headers, body: Buffer.from(await res.arrayBuffer()) };
}

/** Polls `fn` until it returns a truthy value or `timeoutMs` passes. */
export async function waitFor<T>(fn: () => Promise<T | undefined | null | false>, timeoutMs = 20_000, what = 'condition'): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Polls a job until it is final. */
export async function waitForJob(srv: TestServer, key: string, id: string, timeoutMs = 30_000): Promise<any> {
  return waitFor(
    async () => {
      const r = await api(srv.url, 'GET', `/v1/jobs/${id}`, { key });
      return ['succeeded', 'failed', 'cancelled'].includes(r.body?.status) ? r.body : null;
    },
    timeoutMs,
    `job ${id}`,
  );
}

export { api };
