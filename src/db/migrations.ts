/**
 * Versioned migrations, applied in order at start (Kysely's Migrator takes a lock so that several
 * nodes starting at once apply each migration once). Each migration is a list of single statements:
 * PGlite's extended protocol runs one statement per call.
 *
 * Never edit a released migration; add a new one.
 */
import { Kysely, Migrator, sql, type Migration, type MigrationProvider } from 'kysely';

/** The non-superuser, non-owner role every tenant transaction switches to, so RLS applies. */
export const TENANT_ROLE = 'obscura_app';

const TENANT_TABLES = ['users', 'apps', 'api_keys'] as const;

function statements(list: string[]): Migration {
  return {
    async up(db: Kysely<unknown>) {
      for (const s of list) await sql.raw(s).execute(db);
    },
  };
}

const rls = (table: string, column = 'org_id') => [
  `ALTER TABLE ${table} ENABLE ROW LEVEL SECURITY`,
  `CREATE POLICY tenant_isolation ON ${table} USING (${column} = nullif(current_setting('app.org_id', true), '')::uuid) WITH CHECK (${column} = nullif(current_setting('app.org_id', true), '')::uuid)`,
];

export const MIGRATIONS: Record<string, Migration> = {
  '0001_foundation': statements([
    // The tenant role is cluster-wide; creating it can race with another database's migration.
    `DO $$ BEGIN
       IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '${TENANT_ROLE}') THEN
         CREATE ROLE ${TENANT_ROLE} NOLOGIN NOSUPERUSER NOBYPASSRLS;
       END IF;
     EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
     END $$`,
    `DO $$ BEGIN
       IF NOT pg_has_role(current_user, '${TENANT_ROLE}', 'SET') THEN
         EXECUTE format('GRANT ${TENANT_ROLE} TO %I', current_user);
       END IF;
     END $$`,
    `CREATE TABLE orgs (
       id uuid PRIMARY KEY,
       name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
       created_at timestamptz NOT NULL DEFAULT now()
     )`,
    `CREATE TABLE users (
       id uuid PRIMARY KEY,
       org_id uuid NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
       email text NOT NULL,
       password_hash text NOT NULL,
       role text NOT NULL CHECK (role IN ('owner', 'admin', 'developer', 'viewer')),
       created_at timestamptz NOT NULL DEFAULT now()
     )`,
    `CREATE UNIQUE INDEX users_email_key ON users (lower(email))`,
    `CREATE INDEX users_org_idx ON users (org_id)`,
    `CREATE TABLE apps (
       id uuid PRIMARY KEY,
       org_id uuid NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
       name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
       settings jsonb NOT NULL DEFAULT '{}',
       created_at timestamptz NOT NULL DEFAULT now()
     )`,
    `CREATE INDEX apps_org_idx ON apps (org_id)`,
    `CREATE TABLE api_keys (
       id uuid PRIMARY KEY,
       org_id uuid NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
       app_id uuid NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
       kind text NOT NULL CHECK (kind IN ('secret', 'publishable', 'restricted')),
       name text NOT NULL DEFAULT '',
       hash text NOT NULL UNIQUE,
       display text NOT NULL,
       scopes text[] NOT NULL,
       allowed_ips text[] NOT NULL DEFAULT '{}',
       allowed_origins text[] NOT NULL DEFAULT '{}',
       expires_at timestamptz,
       revoked_at timestamptz,
       rolled_to uuid,
       grace_ends_at timestamptz,
       created_at timestamptz NOT NULL DEFAULT now(),
       CHECK (kind <> 'publishable' OR cardinality(allowed_origins) > 0)
     )`,
    `CREATE INDEX api_keys_app_idx ON api_keys (org_id, app_id)`,
    `CREATE TABLE audit_log (
       id bigserial PRIMARY KEY,
       chain text NOT NULL,
       chain_seq bigint NOT NULL,
       org_id uuid,
       at timestamptz NOT NULL,
       actor jsonb NOT NULL,
       action text NOT NULL,
       target jsonb NOT NULL,
       data jsonb NOT NULL,
       ip text,
       request_id text,
       prev_hash text NOT NULL,
       hash text NOT NULL,
       UNIQUE (chain, chain_seq)
     )`,
    `CREATE INDEX audit_log_org_idx ON audit_log (org_id, id)`,
    // Append-only: any UPDATE, DELETE or TRUNCATE is refused by the database itself.
    `CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN
       RAISE EXCEPTION 'audit_log is append-only' USING ERRCODE = 'insufficient_privilege';
     END $$`,
    `CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()`,
    `CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()`,
    ...TENANT_TABLES.flatMap((t) => rls(t)),
    ...rls('orgs', 'id'),
    ...rls('audit_log'),
    `GRANT SELECT ON orgs TO ${TENANT_ROLE}`,
    `GRANT SELECT, INSERT, UPDATE, DELETE ON users, apps, api_keys TO ${TENANT_ROLE}`,
    `GRANT SELECT, INSERT ON audit_log TO ${TENANT_ROLE}`,
    `GRANT USAGE ON SEQUENCE audit_log_id_seq TO ${TENANT_ROLE}`,
  ]),
};

class StaticProvider implements MigrationProvider {
  constructor(private readonly extra: Record<string, Migration>) {}
  async getMigrations(): Promise<Record<string, Migration>> {
    return { ...MIGRATIONS, ...this.extra };
  }
}

/**
 * Applies every pending migration. Capabilities that own tables register theirs in `extra`
 * (names sort after the foundation's, e.g. `0002_assets`).
 */
export async function migrate(db: Kysely<any>, extra: Record<string, Migration> = {}): Promise<string[]> {
  const migrator = new Migrator({ db, provider: new StaticProvider(extra) });
  const { error, results } = await migrator.migrateToLatest();
  if (error) {
    const failed = results?.find((r) => r.status === 'Error');
    throw new Error(`database migration ${failed?.migrationName ?? '?'} failed: ${(error as Error).message}`, { cause: error });
  }
  return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
}
