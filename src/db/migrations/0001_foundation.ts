/** 0001: orgs, users, apps, API keys, the audit log, the tenant role and RLS policies. */
import { TENANT_ROLE, rls, statements } from './helpers.js';

const TENANT_TABLES = ['users', 'apps', 'api_keys'] as const;

export const foundation = statements([
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
]);

