/**
 * PostgreSQL roles: who may change the schema, and who runs the application.
 *
 * - The **owner** (the role that ran the migrations; `OBSCURA_MIGRATION_DATABASE_URL`, or
 *   `DATABASE_URL` when only one is given) owns every table, trigger and function. Only it can
 *   `ALTER TABLE ... DISABLE TRIGGER`, replace the audit log's append-only function or drop a policy.
 * - The **runtime role** `obscura_runtime` owns nothing in the application's schema. It gets the
 *   privileges the application uses (DML on every table, but no UPDATE on `audit_log`), a permissive
 *   policy that lets it see every org's rows where no tenant is known (key verification, sweepers),
 *   and the `pgboss` schema (the job queue creates tables there as queues and months come and go).
 *   Every runtime connection starts as `obscura_runtime` (the `role` startup parameter), so even
 *   with a single URL the running application cannot alter tables or triggers.
 * - The **tenant role** `obscura_app` (migration 0001): what a tenant transaction switches to, so
 *   row-level security confines it to one org.
 *
 * With a single URL the login role is still the owner: anyone holding that URL (or an SQL injection
 * that runs `SET ROLE NONE`) can alter the schema. A separate login role that is only a member of
 * `obscura_runtime` removes that; the keyed audit log (src/audit/) detects what either could rewrite.
 */
import { sql, type Kysely } from 'kysely';
import { TENANT_ROLE } from './migrations.js';

/** The role every PostgreSQL runtime connection runs as (see the module comment). */
export const RUNTIME_ROLE = 'obscura_runtime';

/** Schema of the job queue (pg-boss); owned by the runtime role, which creates its tables. */
const QUEUE_SCHEMA = 'pgboss';

/**
 * Creates the runtime role if needed and gives it exactly what the application uses. Idempotent;
 * runs as the owner after every migration (so tables added by later migrations are covered).
 */
export async function grantRuntimeRole(owner: Kysely<any>): Promise<void> {
  const run = (text: string) => sql.raw(text).execute(owner);
  // Cluster-wide, like the tenant role; creating it can race with another database's migration.
  await run(`DO $$ BEGIN
      IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '${RUNTIME_ROLE}') THEN
        CREATE ROLE ${RUNTIME_ROLE} NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
      END IF;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
    END $$`);
  // The owner must be able to start sessions as the runtime role; the runtime role must be able to
  // switch to the tenant role inside a tenant transaction.
  await run(`DO $$ BEGIN
      IF NOT pg_has_role(current_user, '${RUNTIME_ROLE}', 'SET') THEN
        EXECUTE format('GRANT ${RUNTIME_ROLE} TO %I', current_user);
      END IF;
      IF NOT pg_has_role('${RUNTIME_ROLE}', '${TENANT_ROLE}', 'SET') THEN
        GRANT ${TENANT_ROLE} TO ${RUNTIME_ROLE};
      END IF;
    END $$`);
  await run(`GRANT USAGE ON SCHEMA public TO ${RUNTIME_ROLE}`);
  await run(`GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO ${RUNTIME_ROLE}`);
  await run(`GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO ${RUNTIME_ROLE}`);
  // The audit log is append-only for the runtime: no UPDATE at all, DELETE only what the trigger
  // lets through (one named org chain during erasure). Migration bookkeeping is the owner's.
  await run(`REVOKE UPDATE ON audit_log FROM ${RUNTIME_ROLE}`);
  await run(`DO $$ DECLARE t text; BEGIN
      FOREACH t IN ARRAY ARRAY['kysely_migration', 'kysely_migration_lock'] LOOP
        IF to_regclass(t) IS NOT NULL THEN
          EXECUTE format('REVOKE INSERT, UPDATE, DELETE ON %I FROM ${RUNTIME_ROLE}', t);
        END IF;
      END LOOP;
    END $$`);
  // Row-level security applies to the runtime role (it owns nothing): where no tenant is known it
  // sees every row, through a policy that names it alone (the tenant role stays confined).
  await run(`DO $$ DECLARE t text; BEGIN
      FOR t IN SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND c.relrowsecurity
                 AND NOT EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid AND p.polname = 'runtime_all')
      LOOP
        EXECUTE format('CREATE POLICY runtime_all ON %I TO ${RUNTIME_ROLE} USING (true) WITH CHECK (true)', t);
      END LOOP;
    END $$`);
  await grantQueueSchema(owner);
}

/** The job queue's schema belongs to the runtime role; an older one made by the owner is handed over. */
async function grantQueueSchema(owner: Kysely<any>): Promise<void> {
  await sql
    .raw(
      `DO $$ DECLARE r record; BEGIN
      IF NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = '${QUEUE_SCHEMA}') THEN
        CREATE SCHEMA ${QUEUE_SCHEMA} AUTHORIZATION ${RUNTIME_ROLE};
        RETURN;
      END IF;
      EXECUTE 'ALTER SCHEMA ${QUEUE_SCHEMA} OWNER TO ${RUNTIME_ROLE}';
      FOR r IN SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname = '${QUEUE_SCHEMA}' AND c.relkind IN ('r', 'p', 'v', 'm')
                 AND c.relowner <> '${RUNTIME_ROLE}'::regrole
      LOOP
        EXECUTE format('ALTER %s ${QUEUE_SCHEMA}.%I OWNER TO ${RUNTIME_ROLE}',
          CASE r.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'TABLE' END, r.relname);
      END LOOP;
      FOR r IN SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname = '${QUEUE_SCHEMA}' AND c.relkind = 'S' AND c.relowner <> '${RUNTIME_ROLE}'::regrole
                 AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype IN ('a', 'i'))
      LOOP
        EXECUTE format('ALTER SEQUENCE ${QUEUE_SCHEMA}.%I OWNER TO ${RUNTIME_ROLE}', r.relname);
      END LOOP;
      FOR r IN SELECT p.oid::regprocedure AS f FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
               WHERE n.nspname = '${QUEUE_SCHEMA}' AND p.proowner <> '${RUNTIME_ROLE}'::regrole
      LOOP
        EXECUTE format('ALTER ROUTINE %s OWNER TO ${RUNTIME_ROLE}', r.f);
      END LOOP;
      FOR r IN SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
               WHERE n.nspname = '${QUEUE_SCHEMA}' AND t.typtype IN ('e', 'd') AND t.typowner <> '${RUNTIME_ROLE}'::regrole
      LOOP
        EXECUTE format('ALTER TYPE ${QUEUE_SCHEMA}.%I OWNER TO ${RUNTIME_ROLE}', r.typname);
      END LOOP;
    END $$`,
    )
    .execute(owner);
}

/**
 * Whether the connection's role may run migrations here: the database has no tables yet and this role
 * may create them, or this role
 * owns (or is a member of the owner of) the migration bookkeeping table.
 */
export async function isSchemaOwner(db: Kysely<any>): Promise<boolean> {
  const r = await sql<{ owner: string | null; member: boolean | null; create: boolean }>`
    select t.tableowner as owner, pg_has_role(current_user, t.tableowner, 'USAGE') as member,
           has_schema_privilege(current_user, 'public', 'CREATE') as create
    from (select 1) one left join pg_tables t on t.schemaname = 'public' and t.tablename = 'kysely_migration'`.execute(db);
  const row = r.rows[0];
  // An empty database: whoever may create tables in it migrates it (a runtime-only login may not).
  if (!row?.owner) return row?.create === true;
  return row.member === true;
}

/** Names of applied migrations, read by a runtime-only role (it has SELECT on the bookkeeping table). */
export async function appliedMigrations(db: Kysely<any>): Promise<Set<string>> {
  const exists = await sql<{ t: string | null }>`select to_regclass('public.kysely_migration')::text as t`.execute(db);
  if (!exists.rows[0]?.t) return new Set(); // an empty database: every migration is pending
  const r = await sql<{ name: string }>`select name from kysely_migration`.execute(db);
  return new Set(r.rows.map((x) => x.name));
}

/** Who this connection is, for `doctor`: the login role, whether it owns the schema, whether it can become the runtime role. */
export async function describeRoles(db: Kysely<any>): Promise<{ login: string; ownsSchema: boolean; runtimeMember: boolean }> {
  const r = await sql<{ login: string; runtime: boolean | null }>`
    select session_user as login,
           (select pg_has_role(session_user, oid, 'SET') from pg_roles where rolname = ${RUNTIME_ROLE}) as runtime`.execute(db);
  return { login: r.rows[0]!.login, ownsSchema: await isSchemaOwner(db), runtimeMember: r.rows[0]!.runtime === true };
}
