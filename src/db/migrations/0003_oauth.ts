/** 0003: OAuth2 clients (tenant table) and the server's JWT signing keys (system table). */
import { TENANT_ROLE, rls, statements } from './helpers.js';

export const oauth = statements([
  `CREATE TABLE oauth_clients (
     id uuid PRIMARY KEY,
     org_id uuid NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
     app_id uuid NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
     client_id text NOT NULL UNIQUE,
     name text NOT NULL DEFAULT '',
     secret_hash text NOT NULL,
     scopes text[] NOT NULL,
     revoked_at timestamptz,
     created_at timestamptz NOT NULL DEFAULT now()
   )`,
  `CREATE INDEX oauth_clients_app_idx ON oauth_clients (org_id, app_id)`,
  ...rls('oauth_clients'),
  `GRANT SELECT, INSERT, UPDATE, DELETE ON oauth_clients TO ${TENANT_ROLE}`,
  // Server-wide keys: no org and no grant to the tenant role, so no tenant transaction can read even
  // the wrapped private keys. The private JWK is stored only wrapped by the master key.
  `CREATE TABLE signing_keys (
     kid text PRIMARY KEY,
     alg text NOT NULL CHECK (alg = 'EdDSA'),
     public_jwk jsonb NOT NULL,
     private_wrapped text NOT NULL,
     master_key_id text NOT NULL,
     created_at timestamptz NOT NULL DEFAULT now(),
     rotated_at timestamptz,
     retire_at timestamptz,
     CHECK ((rotated_at IS NULL) = (retire_at IS NULL))
   )`,
  // At most one key signs at a time, even when several nodes rotate at once.
  `CREATE UNIQUE INDEX signing_keys_one_current ON signing_keys ((true)) WHERE rotated_at IS NULL`,
]);
