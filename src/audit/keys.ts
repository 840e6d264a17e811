/**
 * The audit MAC key: what makes the audit log tamper-evident to someone who holds only the database
 * credentials (issue 9, item 2).
 *
 * - One random 256-bit key per database, stored only wrapped by the master key (AES-256-GCM, context
 *   `audit-mac:<id>:<since>`), so the database never sees it in the clear and `obscura keys
 *   rotate-master` re-wraps it (AUDIT_KEY_COLUMNS). `since`, the start of the keyed epoch, is bound into
 *   the wrap context: it cannot be moved without the master key.
 * - HMAC-SHA256 (node:crypto) over a JSON array with a domain label, so an entry MAC, a head MAC and
 *   the state MAC can never be swapped for one another.
 * - The key is created, once, by the first process that opens the database after migration 0009. In
 *   the same transaction it seals what was written before: every existing chain gets a keyed head
 *   with `legacy_seq` = its length (those entries keep verifying by the unkeyed SHA-256 link, and the
 *   first keyed entry links to them), every org without a chain gets an empty head, and the number of
 *   chains is recorded. A head or state that already exists is never re-sealed.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { sql } from 'kysely';
import type { Db, DatabaseHandle, Tx } from '../db/database.js';
import { attachmentOf } from '../db/database.js';
import type { MasterKeys } from '../crypto/master.js';
import { unwrapKey, wrapKey, type WrappedColumn } from '../crypto/keywrap.js';
import { publicId } from '../crypto/random.js';
import './schema.js';

/** The audit MAC key in memory. */
export interface AuditKey {
  readonly id: string;
  /** ISO time the keyed epoch began. */
  readonly since: string;
  readonly key: Buffer;
}

/** Every audit key of a database that the configured master keys could unwrap, by id. */
export interface AuditKeys {
  readonly byId: ReadonlyMap<string, AuditKey>;
  /** Ids of stored keys no configured master key could unwrap. */
  readonly unreadable: readonly string[];
}

export const GENESIS_HASH = '0'.repeat(64);

const ATTACHMENT = Symbol('obscura.audit.key');

/** The wrap context of an audit key (also used by `rotate-master`). */
export const auditKeyContext = (id: string, since: string): string => `audit-mac:${id}:${since}`;

/** The audit MAC key, wrapped by the master key (its epoch start is part of the context). */
export const AUDIT_KEY_COLUMNS: readonly WrappedColumn[] = [
  { table: 'audit_keys', key: ['id'], fields: ['since'], column: 'wrapped', masterIdColumn: 'master_key_id', context: (r) => auditKeyContext(String(r.id), String(r.since)) },
];

function mac(key: AuditKey, parts: unknown[]): string {
  return createHmac('sha256', key.key).update(JSON.stringify(parts)).digest('hex');
}

/** MAC of one entry: its chain, position and (unkeyed, chained) hash. */
export function entryMac(key: AuditKey, chain: string, seq: number, hash: string): string {
  return mac(key, ['obscura/audit-entry/v1', key.id, chain, seq, hash]);
}

/** A chain's keyed head. */
export interface HeadFields {
  chain: string;
  orgId: string | null;
  ordinal: number;
  seq: number;
  head: string;
  legacySeq: number;
}

/** MAC of a chain's head. */
export function headMac(key: AuditKey, h: HeadFields): string {
  return mac(key, ['obscura/audit-head/v1', key.id, h.chain, h.orgId, h.ordinal, h.seq, h.head, h.legacySeq]);
}

/** MAC of the number of chains ever opened. */
export function stateMac(key: AuditKey, chainsOpened: number): string {
  return mac(key, ['obscura/audit-state/v1', key.id, chainsOpened]);
}

/** Constant-time comparison of two hex MACs. */
export function macEquals(expected: string, actual: string | null | undefined): boolean {
  if (typeof actual !== 'string' || actual.length !== expected.length) return false;
  return timingSafeEqual(Buffer.from(expected), Buffer.from(actual));
}

/** The audit key attached to the handle `db` (a transaction) belongs to, if any. */
export function attachedAuditKey(db: Db | Tx): AuditKey | undefined {
  return attachmentOf<AuditKey>(db, ATTACHMENT);
}

/**
 * Loads the database's audit key (creating and sealing it on first use) and attaches it to `db`, so
 * that every `appendAudit` on it MACs its entry and advances the chain's head. Idempotent.
 *
 * @throws AppError `ERR_INTEGRITY` when the stored key cannot be unwrapped with the configured master
 *   keys (a wrong `OBSCURA_MASTER_KEY`, or a tampered row): refusing to start beats writing entries no
 *   one can verify.
 */
export async function openAuditKey(db: DatabaseHandle, master: MasterKeys): Promise<AuditKey> {
  const attached = attachedAuditKey(db.system);
  if (attached) return attached;
  const key = await db.withSystem(async (trx) => {
    // Several nodes may start at once on a fresh database: one creates, the others read.
    await sql`select pg_advisory_xact_lock(hashtextextended('audit:key', 0))`.execute(trx);
    const row = await trx.selectFrom('audit_keys').selectAll().orderBy('since').orderBy('id').limit(1).executeTakeFirst();
    if (row) return { id: row.id, since: row.since, key: unwrapKey(master.all as Map<string, Buffer>, row.wrapped, auditKeyContext(row.id, row.since)) };
    const created: AuditKey = { id: publicId('ak'), since: new Date().toISOString(), key: randomBytes(32) };
    await trx
      .insertInto('audit_keys')
      .values({ id: created.id, since: created.since, wrapped: wrapKey(master.current, master.currentId, created.key, auditKeyContext(created.id, created.since)), master_key_id: master.currentId })
      .execute();
    await sealLegacy(trx, created);
    return created;
  });
  db.attach(ATTACHMENT, key);
  return key;
}

/**
 * The transition to the keyed epoch: heads for the chains (and orgs) that exist now. Skipped when a
 * state row exists: the log was sealed before and its key row has gone, which verify must keep
 * reporting rather than have a new seal bless whatever the log holds now.
 */
async function sealLegacy(trx: Tx, key: AuditKey): Promise<void> {
  if (await trx.selectFrom('audit_state').select('id').executeTakeFirst()) return;
  const chains = await sql<{ chain: string; seq: number | string; hash: string; org_id: string | null }>`
    select l.chain, l.chain_seq as seq, l.hash, l.org_id from audit_log l
    join (select chain, max(chain_seq) as seq, min(id) as first_id from audit_log group by chain) m
      on m.chain = l.chain and m.seq = l.chain_seq
    order by m.first_id`.execute(trx);
  const heads: HeadFields[] = chains.rows.map((r, i) => ({ chain: r.chain, orgId: r.org_id, ordinal: i + 1, seq: Number(r.seq), head: r.hash, legacySeq: Number(r.seq) }));
  const known = new Set(heads.map((h) => h.chain));
  const orgs = await trx.selectFrom('orgs').select('id').orderBy('created_at').orderBy('id').execute();
  for (const o of orgs) {
    if (!known.has(`org:${o.id}`)) heads.push({ chain: `org:${o.id}`, orgId: o.id, ordinal: heads.length + 1, seq: 0, head: GENESIS_HASH, legacySeq: 0 });
  }
  for (const h of heads) {
    await trx
      .insertInto('audit_heads')
      .values({ chain: h.chain, org_id: h.orgId, ordinal: h.ordinal, seq: h.seq, head: h.head, legacy_seq: h.legacySeq, key_id: key.id, mac: headMac(key, h) })
      .execute();
  }
  await trx.insertInto('audit_state').values({ id: 1, chains_opened: heads.length, key_id: key.id, mac: stateMac(key, heads.length) }).execute();
}

/** Every stored audit key that the configured master keys unwrap (for `audit verify`). */
export async function loadAuditKeys(db: Db, master: MasterKeys): Promise<AuditKeys> {
  const rows = await db.selectFrom('audit_keys').selectAll().execute();
  const byId = new Map<string, AuditKey>();
  const unreadable: string[] = [];
  for (const r of rows) {
    try {
      byId.set(r.id, { id: r.id, since: r.since, key: unwrapKey(master.all as Map<string, Buffer>, r.wrapped, auditKeyContext(r.id, r.since)) });
    } catch {
      unreadable.push(r.id);
    }
  }
  return { byId, unreadable };
}
