/**
 * Table types of the keyed audit log (migration 0009), merged into the Kysely `Database` interface so
 * schema.ts stays untouched.
 */
import type { ColumnType } from 'kysely';

type Bigint = ColumnType<number, number | string, number | string>;

/** The audit MAC key, wrapped by the master key (context `auditKeyContext(id, since)`). */
export interface AuditKeysTable {
  id: string;
  /** ISO time the keyed epoch began; bound into the wrap context. */
  since: string;
  wrapped: string;
  master_key_id: string;
}

/** Per chain: the newest (seq, hash) under a MAC, updated in the same transaction as every append. */
export interface AuditHeadsTable {
  chain: string;
  org_id: string | null;
  /** 1-based order in which the chain was opened (see `audit_state.chains_opened`). */
  ordinal: Bigint;
  seq: Bigint;
  head: string;
  /** Entries 1..legacy_seq were written before the keyed epoch and carry no MAC. */
  legacy_seq: Bigint;
  key_id: string;
  mac: string;
}

/** One row: how many chains were ever opened, under a MAC. */
export interface AuditStateTable {
  id: number;
  chains_opened: Bigint;
  key_id: string;
  mac: string;
}

declare module '../db/schema.js' {
  interface Database {
    audit_keys: AuditKeysTable;
    audit_heads: AuditHeadsTable;
    audit_state: AuditStateTable;
  }
  interface AuditLogTable {
    /** HMAC of (chain, seq, hash) under `key_id`; null for entries before the keyed epoch. */
    mac: string | null;
    key_id: string | null;
  }
}
