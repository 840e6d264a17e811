/** Table types of the licensing room (declaration merging into the Kysely `Database`; migration 0020). */
import type { ColumnType } from 'kysely';

export interface LicenseSigningKeysTable {
  /** RFC 7638 thumbprint of the public JWK. */
  kid: string;
  alg: 'RS256' | 'EdDSA';
  /** The public JWK (no private members). */
  public_jwk: ColumnType<Record<string, unknown> | string, string, string>;
  /** The private JWK, wrapped by the master key (`keywrap.ts`, bound to the kid). */
  private_wrapped: string;
  master_key_id: string;
  created_at: ColumnType<Date, Date | string | undefined, Date | string>;
  /** When a newer key of its algorithm replaced it (null: it signs). It stays published until removed. */
  rotated_at: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
}

declare module '../db/schema.js' {
  interface Database {
    license_signing_keys: LicenseSigningKeysTable;
  }
}
