/**
 * The database section of the configuration (issue 10, item 8): which database, how to reach it, and
 * the data directory the embedded one (and its lock) lives in.
 */
import { ConfigError } from '../errors.js';
import { bool, defineSection, int, str, type Section, type Source } from '../settings.js';

export type DatabaseKind = 'pglite' | 'postgres';

export interface DatabaseSettings {
  /** `postgres` when `DATABASE_URL` (or `OBSCURA_DATABASE_URL`) is set, else the embedded `pglite`. */
  readonly kind: DatabaseKind;
  /** Connection string (postgres only). Never logged. */
  readonly url: string | undefined;
  /**
   * Connection string of the schema owner, used only to migrate (`OBSCURA_MIGRATION_DATABASE_URL`,
   * postgres only; `obscura migrate`). Unset: `DATABASE_URL` migrates when its role owns the schema.
   * Security: give `DATABASE_URL` a login role that is only a member of `obscura_runtime`, and keep
   * this URL out of the server's environment, so nothing the server holds can alter a table or a
   * trigger (README, "Running on PostgreSQL"). Never logged.
   */
  readonly migrationUrl: string | undefined;
  /** Pool size per process (postgres only, default 10). */
  readonly poolSize: number;
  /**
   * Longest a statement may run or wait for its answer (`OBSCURA_DATABASE_QUERY_TIMEOUT_MS`, default
   * 15000; postgres only): sent as `statement_timeout` and enforced on our side too, so a frozen or
   * partitioned server answers 503 instead of hanging requests.
   */
  readonly queryTimeoutMs: number;
  /** Longest wait for a pooled connection or a new one (`OBSCURA_DATABASE_CONNECT_TIMEOUT_MS`, default 5000). */
  readonly connectTimeoutMs: number;
  /**
   * Whether a new embedded data dir is copied from the installation's migrated template
   * (`dist/db-template`, built by `npm run build`) instead of running initdb and every migration
   * (`OBSCURA_DATABASE_TEMPLATE`, default true; src/db/template.ts). The template is used only when
   * it matches this installation's PGlite and migrations and no other user can write to it.
   */
  readonly template: boolean;
}

const POSTGRES_URL = /^postgres(ql)?:\/\//;

const LIMITS = defineSection({
  poolSize: int({ env: 'OBSCURA_DATABASE_POOL_SIZE', doc: 'Connections per process (PostgreSQL).', default: 10, min: 1, max: 500 }),
  queryTimeoutMs: int({ env: 'OBSCURA_DATABASE_QUERY_TIMEOUT_MS', doc: 'Longest a statement may run or wait for its answer, ms (PostgreSQL).', default: 15_000, min: 100, max: 3_600_000 }),
  connectTimeoutMs: int({ env: 'OBSCURA_DATABASE_CONNECT_TIMEOUT_MS', doc: 'Longest wait for a database connection, ms.', default: 5000, min: 100, max: 600_000 }),
  template: bool({ env: 'OBSCURA_DATABASE_TEMPLATE', doc: 'Create a new embedded database from the installation\'s migrated template (dist/db-template) instead of initdb; off: always initdb.', default: true }),
});

/** The variables the connection strings come from (`DATABASE_URL` is the conventional alias, not an `OBSCURA_*` name). */
const URL_ENV = 'OBSCURA_DATABASE_URL';
const MIGRATION_URL_ENV = 'OBSCURA_MIGRATION_DATABASE_URL';

/** Reads the database section. `DATABASE_URL` is read as given (an empty one is refused, not taken for "embedded"). */
function readDatabase(src: Source): DatabaseSettings {
  const url = src[URL_ENV] ?? src.DATABASE_URL;
  if (url !== undefined && !POSTGRES_URL.test(url)) throw new ConfigError('DATABASE_URL', 'must be a postgres:// or postgresql:// connection string');
  const migrationUrl = src[MIGRATION_URL_ENV];
  if (migrationUrl !== undefined && (!url || !POSTGRES_URL.test(migrationUrl))) {
    throw new ConfigError(MIGRATION_URL_ENV, url ? 'must be a postgres:// or postgresql:// connection string' : 'needs DATABASE_URL too (the embedded database has no separate roles)');
  }
  return { kind: url ? 'postgres' : 'pglite', url, migrationUrl, ...LIMITS.read(src) };
}

export const DATABASE_SETTINGS: Section<DatabaseSettings> = {
  envNames: Object.freeze([URL_ENV, MIGRATION_URL_ENV, ...LIMITS.envNames]),
  read: (src) => Object.freeze(readDatabase(src)),
};

/** Where the embedded database, local blobs and the generated master key file live. */
export interface DataDirSettings {
  /** As given (default `./data`); `config/` resolves it against the working directory. */
  readonly dataDir: string;
}

export const DATA_DIR_SETTINGS = defineSection<DataDirSettings>({
  dataDir: str({ env: 'OBSCURA_DATA_DIR', doc: 'Embedded database, local blobs and the generated master key file; locked by one process.', default: './data' }),
});
