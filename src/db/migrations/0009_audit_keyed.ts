/**
 * 0009: the keyed audit log (issue 9, item 2). See src/audit/log.ts and src/audit/keys.ts.
 *
 * - `audit_keys`: the audit MAC key, stored only wrapped by the master key (like tenant keys). `since`
 *   is when the keyed epoch began; it is bound into the wrap context, so it cannot be backdated.
 * - `audit_log.mac` / `key_id`: each entry's HMAC over (chain, seq, hash). The unkeyed SHA-256 link
 *   stays as it was, so entries written before this migration keep verifying the old way.
 * - `audit_heads`: per chain, the last (seq, hash) under a MAC, updated with every append. Removing
 *   the newest entries leaves a chain shorter than its head; `legacy_seq` says how many entries were
 *   written before the keyed epoch (they have no MAC; the first keyed entry links to them).
 * - `audit_state`: the number of chains ever opened, under a MAC; each head carries its ordinal, so
 *   a chain deleted with its head (and its org) leaves a gap unless an `org.erase` entry in the keyed
 *   `system` chain accounts for it.
 * - The append-only trigger now lets exactly one org chain be deleted inside a transaction that names
 *   it in `obscura.audit_erase_chain` (org erasure, `eraseAuditChain`); the `system` chain never.
 *   Nothing but the owner can replace the function or the trigger.
 */
import { TENANT_ROLE, rls, statements } from './helpers.js';

export const auditKeyed = statements([
  `CREATE TABLE audit_keys (
     id text PRIMARY KEY,
     since text NOT NULL,
     wrapped text NOT NULL,
     master_key_id text NOT NULL
   )`,
  `ALTER TABLE audit_log ADD COLUMN mac text`,
  `ALTER TABLE audit_log ADD COLUMN key_id text`,
  `CREATE TABLE audit_heads (
     chain text PRIMARY KEY,
     org_id uuid,
     ordinal bigint NOT NULL UNIQUE,
     seq bigint NOT NULL,
     head text NOT NULL,
     legacy_seq bigint NOT NULL,
     key_id text NOT NULL,
     mac text NOT NULL
   )`,
  ...rls('audit_heads'),
  `CREATE TABLE audit_state (
     id smallint PRIMARY KEY CHECK (id = 1),
     chains_opened bigint NOT NULL,
     key_id text NOT NULL,
     mac text NOT NULL
   )`,
  `GRANT SELECT ON audit_keys TO ${TENANT_ROLE}`,
  `GRANT SELECT, INSERT, UPDATE ON audit_heads TO ${TENANT_ROLE}`,
  `GRANT SELECT, UPDATE ON audit_state TO ${TENANT_ROLE}`,
  `CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
   BEGIN
     IF TG_OP = 'DELETE' THEN
       IF OLD.chain <> 'system' AND OLD.chain = current_setting('obscura.audit_erase_chain', true) THEN
         RETURN OLD;
       END IF;
     END IF;
     RAISE EXCEPTION 'audit_log is append-only' USING ERRCODE = 'insufficient_privilege';
   END $$`,
]);
