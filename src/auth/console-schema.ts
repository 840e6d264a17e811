/**
 * Table types for console accounts (migration 0004), merged into the Kysely `Database` interface.
 *
 * - `console_sessions`, `user_mfa`, `password_resets` are tenant tables (RLS on `org_id`).
 * - `login_attempts` is a system table (no tenant is known before a login succeeds); the tenant
 *   role has no grant on it.
 * - `orgs.require_mfa` is the org policy that forces every user to enrol a TOTP authenticator.
 */
import type { ColumnType } from 'kysely';

type Timestamp = ColumnType<Date, Date | string, Date | string>;
type NullableTimestamp = ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;

export interface ConsoleSessionsTable {
  /** Public id (listing, revocation). Not a credential. */
  id: string;
  org_id: string;
  user_id: string;
  /** SHA-256 (hex) of the cookie value. The cookie value itself is never stored. */
  token_hash: string;
  created_at: Timestamp;
  last_seen_at: Timestamp;
  /** Absolute expiry; the idle timeout is computed from `last_seen_at`. */
  expires_at: Timestamp;
  ip: string | null;
  /** Truncated to 256 characters. */
  user_agent: string | null;
}

export interface UserMfaTable {
  user_id: string;
  org_id: string;
  /** The TOTP secret wrapped by the master key (`wrapKey`, context `obscura/mfa/<user id>`). */
  secret_wrapped: string;
  master_key_id: string;
  /** Null while enrolment is pending; MFA is enforced once set. */
  confirmed_at: NullableTimestamp;
  /** The last accepted TOTP time step: a code for this step or an earlier one is refused (RFC 6238 §5.2). */
  last_used_step: ColumnType<number | null, number | null | undefined, number | null>;
  created_at: Timestamp;
}

export interface PasswordResetsTable {
  id: string;
  org_id: string;
  user_id: string;
  /** SHA-256 (hex) of the token. */
  token_hash: string;
  created_at: Timestamp;
  expires_at: Timestamp;
  used_at: NullableTimestamp;
  requested_ip: string | null;
}

export interface LoginAttemptsTable {
  /** `acct:<sha256(lowercased email)>` or `ip:<address or IPv6 /64>`. */
  key: string;
  /** Attempts not vindicated by a success (charged before the password is checked). */
  failures: number;
  locked_until: NullableTimestamp;
  last_attempt_at: Timestamp;
  /** The `locked_until` already audited, so a lock is audited once however often it is hit. */
  notified_until: NullableTimestamp;
}

declare module '../db/schema.js' {
  interface Database {
    console_sessions: ConsoleSessionsTable;
    user_mfa: UserMfaTable;
    password_resets: PasswordResetsTable;
    login_attempts: LoginAttemptsTable;
  }
  interface OrgsTable {
    /** Org policy: every user must enrol TOTP before doing anything else (default false). */
    require_mfa: ColumnType<boolean, boolean | undefined, boolean>;
  }
}
