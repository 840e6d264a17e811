/**
 * A real server like `startServer`, but exposing what the perimeter built (meter, quotas, metrics)
 * and letting a test add routes before it listens (per-route policy: `config.rateLimit`, `config.quota`).
 */
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { createFsStore } from '../../src/assets/stores/fs.js';
import { loadConfig, type Config } from '../../src/config/index.js';
import { buildApp, type AppDeps } from '../../src/app.js';
import type { DatabaseHandle } from '../../src/db/database.js';
import type { Perimeter } from '../../src/app.js';
import { tempDir } from '../support/db.js';
import { freePort, masterKeysFor, TEST_SERVER_ENV } from '../support/server.js';

export interface PerimeterServer {
  url: string;
  port: number;
  app: FastifyInstance;
  config: Config;
  perimeter: Perimeter;
  close(): Promise<void>;
}

export async function startPerimeterServer(
  db: DatabaseHandle,
  opts: { env?: Record<string, string>; routes?: (app: FastifyInstance) => void; deps?: Partial<AppDeps>; scheme?: 'http' | 'https' } = {},
): Promise<PerimeterServer> {
  const port0 = await freePort();
  const config = loadConfig({ ...TEST_SERVER_ENV, OBSCURA_PORT: String(port0), ...opts.env });
  const store = await createFsStore({ root: join(tempDir('obscura-blobs-'), 'blobs') });
  const { app, perimeter } = await buildApp(config, { db, masterKeys: masterKeysFor(db), store, logger: false, ...opts.deps });
  opts.routes?.(app);
  await app.listen({ host: '127.0.0.1', port: config.port });
  const { port } = app.server.address() as AddressInfo;
  return { url: `${opts.scheme ?? 'http'}://127.0.0.1:${port}`, port, app, config, perimeter, close: () => app.close() };
}
