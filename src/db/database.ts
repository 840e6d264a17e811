/**
 * The database adapter: Kysely over PGlite (embedded default, a directory on disk) or node-postgres
 * (`DATABASE_URL`). Both speak the same PostgreSQL dialect, so RLS, SKIP LOCKED and every query behave
 * the same; the test suite runs against both.
 *
 * Two ways in:
 * - `db.system` — the connecting role itself (table owner), used only where no tenant is known yet
 *   (verifying a key by its hash, migrations, `audit verify`, sweepers). Owners bypass RLS.
 * - `db.withTenant(orgId, fn)` — a transaction that sets `app.org_id` and switches to the non-owner
 *   role `obscura_app`, so PostgreSQL row-level security confines every statement to that org even if
 *   the code forgot its `org_id` filter (the second wall).
 */
import { join } from 'node:path';
import { Kysely, PostgresDialect, sql, type Transaction } from 'kysely';
import { PGlite } from '@electric-sql/pglite';
import { PGliteDialect } from 'kysely-pglite-dialect';
import pg from 'pg';
import type { Database as Schema } from './schema.js';
import { migrate, TENANT_ROLE } from './migrations.js';

export type Db = Kysely<Schema>;
export type Tx = Transaction<Schema>;

export interface DatabaseHandle {
  readonly kind: 'pglite' | 'postgres';
  /** Owner-level access. Bypasses RLS: use only where no tenant is known. */
  readonly system: Db;
  /** Runs `fn` in a transaction confined to `orgId` by RLS. */
  withTenant<T>(orgId: string, fn: (trx: Tx) => Promise<T>): Promise<T>;
  /** Runs `fn` in an owner-level transaction. */
  withSystem<T>(fn: (trx: Tx) => Promise<T>): Promise<T>;
  /** The raw PGlite instance (embedded only), for adapters such as pg-boss. */
  readonly pglite: PGlite | undefined;
  /** The pg pool (postgres only). */
  readonly pool: pg.Pool | undefined;
  close(): Promise<void>;
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export interface OpenOptions {
  kind: 'pglite' | 'postgres';
  /** postgres connection string */
  url?: string | undefined;
  /** embedded data dir (the database lives in `<dataDir>/db`) */
  dataDir?: string;
  poolSize?: number;
  /**
   * postgres: longest a statement may run (server-side `statement_timeout`) or wait for its answer
   * (client-side, so a frozen server cannot hang a request); unset = no limit (issue 9, item 17).
   */
  queryTimeoutMs?: number;
  /** postgres: longest wait for a pooled or new connection; unset = no limit. */
  connectTimeoutMs?: number;
}

// node-postgres parses bigint (int8) as string by default; our counters fit in a double.
pg.types.setTypeParser(20, (v) => Number(v));

/** Opens the database and applies pending migrations. The caller holds the data-dir lock (embedded). */
export async function openDatabase(opts: OpenOptions): Promise<DatabaseHandle> {
  let system: Db;
  let pglite: PGlite | undefined;
  let pool: pg.Pool | undefined;
  if (opts.kind === 'pglite') {
    if (!opts.dataDir) throw new Error('openDatabase: dataDir is required for the embedded database');
    pglite = await PGlite.create(join(opts.dataDir, 'db'));
    system = new Kysely<Schema>({ dialect: new PGliteDialect(pglite) });
  } else {
    if (!opts.url) throw new Error('openDatabase: url is required for postgres');
    pool = new pg.Pool({
      connectionString: opts.url,
      max: opts.poolSize ?? 10,
      idleTimeoutMillis: 30_000,
      connectionTimeoutMillis: opts.connectTimeoutMs ?? 0,
      // The server cancels a slow statement itself; our own read timeout (a little longer, so the
      // server's clean cancel normally wins) covers a server that no longer answers at all.
      statement_timeout: opts.queryTimeoutMs,
      query_timeout: opts.queryTimeoutMs === undefined ? undefined : opts.queryTimeoutMs + 1000,
      keepAlive: true,
    });
    // An idle client that errors (server restart) must not crash the process; the pool replaces it.
    pool.on('error', () => {});
    system = new Kysely<Schema>({ dialect: new PostgresDialect({ pool }) });
  }
  if (opts.kind === 'postgres' && opts.queryTimeoutMs !== undefined) {
    // Migrations may legitimately run longer than a request's statement limit (an index on a big
    // table): they get a connection of their own without one.
    const unbounded = new Kysely<Schema>({ dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: opts.url, max: 1 }) }) });
    try {
      await migrate(unbounded);
    } finally {
      await unbounded.destroy();
    }
  } else {
    await migrate(system);
  }

  const withTenant = async <T>(orgId: string, fn: (trx: Tx) => Promise<T>): Promise<T> => {
    // Not a user-input check (routes validate ids); a guard so a programming error can never widen scope.
    if (!UUID_RE.test(orgId)) throw new Error('withTenant: orgId must be a uuid');
    return system.transaction().execute(async (trx) => {
      await sql`select set_config('app.org_id', ${orgId}, true)`.execute(trx);
      await sql.raw(`set local role ${TENANT_ROLE}`).execute(trx);
      return fn(trx);
    });
  };
  return {
    kind: opts.kind,
    system,
    pglite,
    pool,
    withTenant,
    withSystem: (fn) => system.transaction().execute(fn),
    async close() {
      await system.destroy();
    },
  };
}
