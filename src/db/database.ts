/**
 * The database adapter: Kysely over PGlite (embedded default, a directory on disk) or node-postgres
 * (`DATABASE_URL`). Both speak the same PostgreSQL dialect, so RLS, SKIP LOCKED and every query behave
 * the same; the test suite runs against both.
 *
 * Two ways in:
 * - `db.system` — used only where no tenant is known yet (verifying a key by its hash, `audit verify`,
 *   sweepers). On PostgreSQL every connection runs as `obscura_runtime`, which owns nothing and sees
 *   every org through a policy of its own (src/db/roles.ts); migrations run on a separate owner
 *   connection first. On PGlite it is the embedded superuser (the data dir is the credential).
 * - `db.withTenant(orgId, fn)` — a transaction that sets `app.org_id` and switches to the non-owner
 *   role `obscura_app`, so PostgreSQL row-level security confines every statement to that org even if
 *   the code forgot its `org_id` filter (the second wall).
 */
import { join } from 'node:path';
import { Kysely, PostgresDialect, sql, type KyselyPlugin, type PluginTransformQueryArgs, type PluginTransformResultArgs, type QueryResult, type RootOperationNode, type Transaction, type UnknownRow } from 'kysely';
import { PGliteProxy, type DatabaseWorkerError, type PGliteProxyOptions } from './pglite-proxy.js';
import { PGliteDialect } from 'kysely-pglite-dialect';
import pg from 'pg';
import type { Database as Schema } from './schema.js';
import { migrate, MIGRATIONS, TENANT_ROLE } from './migrations.js';
import { appliedMigrations, grantRuntimeRole, isSchemaOwner, RUNTIME_ROLE } from './roles.js';
import { ConfigError } from '../errors.js';
import { seedFromTemplate } from './template.js';

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
  /**
   * The embedded database (embedded only), for adapters such as pg-boss: PGlite in a worker thread
   * behind the subset of its API we use (src/db/pglite-proxy.ts), incl. `dumpDataDir()` for backups.
   */
  readonly pglite: PGliteProxy | undefined;
  /** The pg pool (postgres only). */
  readonly pool: pg.Pool | undefined;
  /**
   * Attaches a value to this handle, reachable from any of its query builders and transactions with
   * `attachmentOf` (how the audit log finds its MAC key from the `trx` it is given).
   */
  attach(key: symbol, value: unknown): void;
  close(): Promise<void>;
}

/** A no-op Kysely plugin that carries a handle's attachments into every transaction made from it. */
class Attachments implements KyselyPlugin {
  readonly values = new Map<symbol, unknown>();
  transformQuery(args: PluginTransformQueryArgs): RootOperationNode {
    return args.node;
  }
  async transformResult(args: PluginTransformResultArgs): Promise<QueryResult<UnknownRow>> {
    return args.result;
  }
}

/** The value attached under `key` to the handle `db` (a Kysely instance or transaction) came from. */
export function attachmentOf<T>(db: Kysely<any>, key: symbol): T | undefined {
  for (const p of db.getExecutor().plugins) if (p instanceof Attachments) return p.values.get(key) as T | undefined;
  return undefined;
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export interface OpenOptions {
  kind: 'pglite' | 'postgres';
  /** postgres connection string of the runtime */
  url?: string | undefined;
  /**
   * postgres: connection string of the schema owner, for migrations only (`OBSCURA_MIGRATION_DATABASE_URL`).
   * Unset: `url` migrates when its role owns the schema (or it is empty), else migrations must be done.
   */
  migrationUrl?: string | undefined;
  /** postgres: only migrate (and grant the runtime role); open no runtime pool (`obscura migrate`). */
  migrateOnly?: boolean;
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
  /**
   * embedded: called when the database's worker thread dies (out of memory, a WASM abort). Default:
   * log it on stderr and exit with code 1 shortly after (pending queries have already failed with
   * SQLSTATE 08006, i.e. 503 "database unavailable"), so that a supervisor restarts the process.
   */
  onDatabaseFailure?: (err: DatabaseWorkerError) => void;
  /** embedded: PGlite's memory settings and the thread's heap limits (src/db/pglite-proxy.ts); unset = {@link EMBEDDED_DATABASE}. */
  pglite?: Omit<PGliteProxyOptions, 'onFatal'>;
  /**
   * embedded: where a new data dir (no `db` yet) is copied from instead of running initdb and every
   * migration (src/db/template.ts): default the installation's `dist/db-template`, used only when its
   * key matches this installation; `false` always runs initdb (`OBSCURA_DATABASE_TEMPLATE=off`).
   */
  template?: string | false;
}

/**
 * The embedded database's memory defaults (issue 12, item 6; figures in docs/performance.md).
 *
 * - `shared_buffers = 16MB` (initdb writes 128MB into postgresql.conf): PGlite's buffer pool lives in
 *   its WebAssembly memory and is resident from the start, so it was a third of the idle server. An
 *   embedded Obscura's working set (keys, apps, recent assets and jobs) fits in 16 MB; a page that
 *   does not is read from the data dir through the kernel's page cache, and the bench measured no
 *   difference at 16 or 32 MB. WAL buffers follow (1/32 of it, PostgreSQL's `-1` default).
 * - The database thread's V8 young generation is capped at 8 MiB: PGlite's JavaScript allocates
 *   little that lives long (rows are copied out to this thread), so a larger nursery only held
 *   garbage resident.
 *
 * Nothing here touches durability: `synchronous_commit`, `full_page_writes` and the WAL keep
 * PostgreSQL's defaults (test/db/embedded-settings.test.ts reads them back from the running database).
 */
export const EMBEDDED_DATABASE: Readonly<Omit<PGliteProxyOptions, 'onFatal'>> = Object.freeze({
  settings: Object.freeze({ shared_buffers: '16MB' }),
  youngGenerationMb: 8,
});

/**
 * What a process does when its embedded database thread dies: nothing can be answered any more, and
 * a restart recovers (PostgreSQL's WAL replay; the stale data-dir lock is taken over). The short
 * delay lets in-flight requests receive their 503 first.
 */
function exitOnDatabaseFailure(err: DatabaseWorkerError): void {
  process.stderr.write(JSON.stringify({ level: 60, time: Date.now(), msg: 'the embedded database stopped; exiting so that a supervisor restarts Obscura', err: err.message }) + '\n');
  process.exitCode = 1;
  setTimeout(() => process.exit(1), 250);
}

// node-postgres parses bigint (int8) as string by default; our counters fit in a double.
pg.types.setTypeParser(20, (v) => Number(v));

/**
 * Opens the database and applies pending migrations. The caller holds the data-dir lock (embedded).
 *
 * PostgreSQL: migrations run on a connection of their own as the schema owner (`migrationUrl`, or
 * `url` when its role owns the schema), which then grants the runtime role; the runtime pool's
 * connections all start as `obscura_runtime` (src/db/roles.ts). When `url`'s role does not own the
 * schema, nothing is migrated here and a pending migration is a configuration error naming
 * `obscura migrate`.
 */
export async function openDatabase(opts: OpenOptions): Promise<DatabaseHandle> {
  let system: Db;
  let pglite: PGliteProxy | undefined;
  let pool: pg.Pool | undefined;
  const attachments = new Attachments();
  if (opts.kind === 'pglite') {
    if (!opts.dataDir) throw new Error('openDatabase: dataDir is required for the embedded database');
    if (opts.template !== false) await seedFromTemplate(opts.dataDir, opts.template);
    // PGlite runs in a worker thread (src/db/pglite-proxy.ts): its synchronous WASM never blocks
    // this thread's event loop. Kysely's driver still serialises every statement on one session.
    pglite = await PGliteProxy.create(join(opts.dataDir, 'db'), { ...EMBEDDED_DATABASE, ...opts.pglite, onFatal: opts.onDatabaseFailure ?? exitOnDatabaseFailure });
    system = new Kysely<Schema>({ dialect: new PGliteDialect(pglite as unknown as ConstructorParameters<typeof PGliteDialect>[0]), plugins: [attachments] });
    try {
      await migrate(system);
    } catch (err) {
      await system.destroy();
      throw err;
    }
  } else {
    if (!opts.url) throw new Error('openDatabase: url is required for postgres');
    await migrateAsOwner(opts);
    if (opts.migrateOnly) return closedHandle(opts.kind);
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
      // Every session starts as the runtime role, which owns nothing: the application cannot alter
      // a table or disable a trigger, whoever its login role is (RESET ROLE comes back here too).
      options: withRuntimeRole(opts.url),
    });
    // An idle client that errors (server restart) must not crash the process; the pool replaces it.
    pool.on('error', () => {});
    // Nor a checked-out one: pg-pool listens for errors only while a client is idle, so a connection
    // held between two statements of a transaction when PostgreSQL terminates it would emit an
    // unhandled 'error' and kill the server. Its holder's next statement fails instead, and the pool
    // drops it on release (it is no longer queryable).
    pool.on('connect', (client) => client.on('error', () => {}));
    system = new Kysely<Schema>({ dialect: new PostgresDialect({ pool }), plugins: [attachments] });
    try {
      await sql`select 1`.execute(system);
    } catch (err) {
      await system.destroy();
      if ((err as { code?: string }).code === '42501') {
        const login = new URL(opts.url).username || 'the login role';
        throw new ConfigError('DATABASE_URL', `${login} may not run as ${RUNTIME_ROLE}: as the schema owner run GRANT ${RUNTIME_ROLE} TO ${login} (see "Running on PostgreSQL" in README.md)`);
      }
      throw err;
    }
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
    attach: (key, value) => void attachments.values.set(key, value),
    async close() {
      await system.destroy();
    },
  };
}

/** The pool's `options` startup parameter: the URL's own plus `role=obscura_runtime`. */
function withRuntimeRole(url: string): string {
  const own = new URL(url).searchParams.get('options');
  return [own, `-c role=${RUNTIME_ROLE}`].filter(Boolean).join(' ');
}

/**
 * Applies pending migrations as the schema owner and grants the runtime role; or, when the runtime
 * URL's role does not own the schema and no migration URL is given, checks that none is pending.
 */
async function migrateAsOwner(opts: OpenOptions): Promise<void> {
  // Migrations may legitimately run longer than a request's statement limit (an index on a big
  // table): they get a connection of their own without one.
  const owner = new Kysely<Schema>({
    dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: opts.migrationUrl ?? opts.url, max: 1, connectionTimeoutMillis: opts.connectTimeoutMs ?? 0 }) }),
  });
  try {
    if (opts.migrationUrl || (await isSchemaOwner(owner))) {
      await migrate(owner);
      await grantRuntimeRole(owner);
      return;
    }
    const applied = await appliedMigrations(owner);
    const pending = Object.keys(MIGRATIONS).filter((m) => !applied.has(m));
    if (pending.length > 0) {
      throw new ConfigError(
        'OBSCURA_MIGRATION_DATABASE_URL',
        `${pending.length} database migration(s) are pending (${pending.join(', ')}) and DATABASE_URL's role does not own the schema: run \`obscura migrate\` with OBSCURA_MIGRATION_DATABASE_URL set to the owner's connection string, then start again`,
      );
    }
  } finally {
    await owner.destroy();
  }
}

/** What `migrateOnly` returns: nothing left open. */
function closedHandle(kind: 'pglite' | 'postgres'): DatabaseHandle {
  const none = (): never => {
    throw new Error('openDatabase: opened with migrateOnly');
  };
  return {
    kind,
    get system(): Db {
      return none();
    },
    pglite: undefined,
    pool: undefined,
    withTenant: none,
    withSystem: none,
    attach: none,
    async close() {},
  };
}
