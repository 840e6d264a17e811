/** 0004: console accounts — sessions, TOTP MFA, password resets, login throttling, org MFA policy. */
import { TENANT_ROLE, rls, statements } from './helpers.js';

export const consoleAccounts = statements([
  `ALTER TABLE orgs ADD COLUMN require_mfa boolean NOT NULL DEFAULT false`,
  // Column-level grant: a tenant transaction may flip its own org's MFA policy (RLS keeps it to its
  // own row) and nothing else on orgs.
  `GRANT UPDATE (require_mfa) ON orgs TO ${TENANT_ROLE}`,
  `CREATE TABLE console_sessions (
     id uuid PRIMARY KEY,
     org_id uuid NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
     user_id uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
     token_hash text NOT NULL UNIQUE CHECK (length(token_hash) = 64),
     created_at timestamptz NOT NULL,
     last_seen_at timestamptz NOT NULL,
     expires_at timestamptz NOT NULL,
     ip text,
     user_agent text CHECK (length(user_agent) <= 256)
   )`,
  `CREATE INDEX console_sessions_user_idx ON console_sessions (org_id, user_id)`,
  `CREATE INDEX console_sessions_expiry_idx ON console_sessions (expires_at)`,
  `CREATE TABLE user_mfa (
     user_id uuid PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
     org_id uuid NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
     secret_wrapped text NOT NULL,
     master_key_id text NOT NULL,
     confirmed_at timestamptz,
     last_used_step bigint,
     created_at timestamptz NOT NULL
   )`,
  `CREATE INDEX user_mfa_org_idx ON user_mfa (org_id)`,
  `CREATE TABLE password_resets (
     id uuid PRIMARY KEY,
     org_id uuid NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
     user_id uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
     token_hash text NOT NULL UNIQUE CHECK (length(token_hash) = 64),
     created_at timestamptz NOT NULL,
     expires_at timestamptz NOT NULL,
     used_at timestamptz,
     requested_ip text
   )`,
  `CREATE INDEX password_resets_user_idx ON password_resets (org_id, user_id)`,
  // System table: keyed by a hash of the email and by source address, before any tenant is known.
  // No grant to the tenant role.
  `CREATE TABLE login_attempts (
     key text PRIMARY KEY,
     failures integer NOT NULL DEFAULT 0 CHECK (failures >= 0),
     locked_until timestamptz,
     last_attempt_at timestamptz NOT NULL,
     notified_until timestamptz
   )`,
  `CREATE INDEX login_attempts_age_idx ON login_attempts (last_attempt_at)`,
  ...rls('console_sessions'),
  ...rls('user_mfa'),
  ...rls('password_resets'),
  `GRANT SELECT, INSERT, UPDATE, DELETE ON console_sessions, user_mfa, password_resets TO ${TENANT_ROLE}`,
]);
