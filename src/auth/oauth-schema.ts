/**
 * Table types for OAuth2 clients and the server's JWT signing keys, merged into the Kysely `Database`
 * interface (schema.ts stays untouched; each capability declares its own tables).
 */
import type { ColumnType } from 'kysely';

type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>;
type NullableTimestamp = ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
type Json<T> = ColumnType<T, string | T, string | T>;

/** An OAuth2 confidential client of an app (tenant table, RLS). */
export interface OAuthClientsTable {
  /** Internal row id (uuid); the `keyId` of principals authenticated by this client's tokens. */
  id: string;
  org_id: string;
  app_id: string;
  /** Public identifier, `obs_client_<22 base62>`. */
  client_id: string;
  name: string;
  /** SHA-256 (hex) of the client secret. The secret itself is never stored. */
  secret_hash: string;
  /** The most a token issued to this client may carry; a token request may only narrow it. */
  scopes: string[];
  revoked_at: NullableTimestamp;
  created_at: Timestamp;
}

/** The public half of a signing key as published in the JWKS (RFC 7517, OKP / Ed25519). */
export interface PublicSigningJwk {
  kty: string;
  crv: string;
  x: string;
}

/** Server signing keys for access tokens (system table: no org, no tenant access). */
export interface SigningKeysTable {
  /** RFC 7638 JWK thumbprint of the public key. */
  kid: string;
  alg: string;
  public_jwk: Json<PublicSigningJwk>;
  /** The private JWK, wrapped by the master key (keywrap.ts), bound to the kid. Never plaintext. */
  private_wrapped: string;
  master_key_id: string;
  created_at: Timestamp;
  /** When it stopped signing (null: the current key). */
  rotated_at: NullableTimestamp;
  /** When it leaves the JWKS: every token it signed has expired by then. */
  retire_at: NullableTimestamp;
}

declare module '../db/schema.js' {
  interface Database {
    oauth_clients: OAuthClientsTable;
    signing_keys: SigningKeysTable;
  }
}
