/**
 * The audit trail: an append-only, hash-chained log.
 *
 * - Append-only is enforced by the database (a trigger refuses UPDATE, DELETE and TRUNCATE; the
 *   tenant role has only SELECT and INSERT).
 * - Each org has its own chain (`org:<uuid>`), plus one `system` chain for events with no tenant
 *   (e.g. bursts of failed authentication with unknown keys). Entry n stores
 *   `hash = SHA-256(prev_hash || "\n" || canonical(entry))`, `prev_hash` being entry n-1's hash
 *   (64 zeros for the first), so editing, deleting or reordering any entry breaks every later link.
 * - Appends to a chain are serialised with a transaction-scoped advisory lock, so concurrent writers
 *   (several nodes) cannot fork a chain.
 * - Removing the newest entries (tail truncation) cannot be detected from the chain alone; `verify`
 *   prints each chain's head hash so operators can anchor it elsewhere (docs/security-model.md).
 */
import { sql } from 'kysely';
import type { Db, Tx } from '../db/database.js';
import { sha256Hex } from '../crypto/random.js';

export const GENESIS_HASH = '0'.repeat(64);

/** Who did it. Never holds a secret: keys are referred to by id. */
export interface AuditActor {
  type: 'key' | 'user' | 'cli' | 'system' | 'anonymous';
  id?: string;
  [k: string]: unknown;
}

export interface AuditEvent {
  orgId: string | null;
  actor: AuditActor;
  /** Dotted verb, e.g. `key.create`, `key.roll`, `auth.failure`. */
  action: string;
  target?: Record<string, unknown>;
  data?: Record<string, unknown>;
  ip?: string | null;
  requestId?: string | null;
}

export interface AuditEntry {
  id: number;
  chain: string;
  chainSeq: number;
  orgId: string | null;
  at: string;
  actor: Record<string, unknown>;
  action: string;
  target: Record<string, unknown>;
  data: Record<string, unknown>;
  ip: string | null;
  requestId: string | null;
  prevHash: string;
  hash: string;
}

/** JSON with object keys sorted recursively: one byte string per logical value. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value ?? null);
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const keys = Object.keys(value as Record<string, unknown>)
    .filter((k) => (value as Record<string, unknown>)[k] !== undefined)
    .sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`).join(',')}}`;
}

function entryHash(prevHash: string, e: Omit<AuditEntry, 'id' | 'hash' | 'prevHash'>): string {
  const canonical = canonicalJson({
    chain: e.chain,
    chainSeq: e.chainSeq,
    orgId: e.orgId,
    at: e.at,
    actor: e.actor,
    action: e.action,
    target: e.target,
    data: e.data,
    ip: e.ip,
    requestId: e.requestId,
  });
  return sha256Hex(`${prevHash}\n${canonical}`);
}

const chainOf = (orgId: string | null) => (orgId ? `org:${orgId}` : 'system');

/**
 * Appends an event inside the caller's transaction, so the event commits or rolls back together with
 * the change it records. For a tenant event pass the tenant transaction; for `system` events an
 * owner-level one.
 */
export async function appendAudit(trx: Tx, event: AuditEvent, now: Date = new Date()): Promise<AuditEntry> {
  const chain = chainOf(event.orgId);
  await sql`select pg_advisory_xact_lock(hashtextextended(${'audit:' + chain}, 0))`.execute(trx);
  const last = await trx
    .selectFrom('audit_log')
    .select(['chain_seq', 'hash'])
    .where('chain', '=', chain)
    .orderBy('chain_seq', 'desc')
    .limit(1)
    .executeTakeFirst();
  const base = {
    chain,
    chainSeq: last ? Number(last.chain_seq) + 1 : 1,
    orgId: event.orgId,
    // Millisecond precision: what both JS and the database round-trip exactly.
    at: new Date(Math.floor(now.getTime())).toISOString(),
    actor: JSON.parse(JSON.stringify(event.actor)) as Record<string, unknown>,
    action: event.action,
    target: JSON.parse(JSON.stringify(event.target ?? {})) as Record<string, unknown>,
    data: JSON.parse(JSON.stringify(event.data ?? {})) as Record<string, unknown>,
    ip: event.ip ?? null,
    requestId: event.requestId ?? null,
  };
  const prevHash = last?.hash ?? GENESIS_HASH;
  const hash = entryHash(prevHash, base);
  const row = await trx
    .insertInto('audit_log')
    .values({
      chain,
      chain_seq: base.chainSeq,
      org_id: base.orgId,
      at: base.at,
      actor: JSON.stringify(base.actor),
      action: base.action,
      target: JSON.stringify(base.target),
      data: JSON.stringify(base.data),
      ip: base.ip,
      request_id: base.requestId,
      prev_hash: prevHash,
      hash,
    })
    .returning('id')
    .executeTakeFirstOrThrow();
  return { id: Number(row.id), ...base, prevHash, hash };
}

type Row = {
  id: string | number;
  chain: string;
  chain_seq: string | number;
  org_id: string | null;
  at: Date;
  actor: unknown;
  action: string;
  target: unknown;
  data: unknown;
  ip: string | null;
  request_id: string | null;
  prev_hash: string;
  hash: string;
};

const asObject = (v: unknown): Record<string, unknown> => (typeof v === 'string' ? JSON.parse(v) : (v as Record<string, unknown>));

function toEntry(r: Row): AuditEntry {
  return {
    id: Number(r.id),
    chain: r.chain,
    chainSeq: Number(r.chain_seq),
    orgId: r.org_id,
    at: new Date(r.at).toISOString(),
    actor: asObject(r.actor),
    action: r.action,
    target: asObject(r.target),
    data: asObject(r.data),
    ip: r.ip,
    requestId: r.request_id,
    prevHash: r.prev_hash,
    hash: r.hash,
  };
}

/** Lists an org's entries, newest first, for `GET /v1/audit`. Runs in a tenant transaction (RLS). */
export async function listAudit(trx: Tx, orgId: string, opts: { before?: number; limit: number }): Promise<AuditEntry[]> {
  let q = trx.selectFrom('audit_log').selectAll().where('org_id', '=', orgId);
  if (opts.before !== undefined) q = q.where('id', '<', String(opts.before));
  const rows = await q.orderBy('id', 'desc').limit(opts.limit).execute();
  return (rows as unknown as Row[]).map(toEntry);
}

export interface ChainReport {
  chain: string;
  entries: number;
  head: string;
  /** The first entry whose link does not hold, if any. */
  broken?: { id: number; chainSeq: number; reason: 'hash_mismatch' | 'prev_hash_mismatch' | 'sequence_gap' };
}

/**
 * Recomputes every chain (or one org's) from the start and reports the first broken link per chain.
 * Streams in pages so memory stays flat on a long log.
 */
export async function verifyAudit(db: Db, opts: { orgId?: string } = {}): Promise<{ ok: boolean; chains: ChainReport[] }> {
  let chainsQ = db.selectFrom('audit_log').select('chain').distinct();
  if (opts.orgId) chainsQ = chainsQ.where('chain', '=', chainOf(opts.orgId));
  const chains = (await chainsQ.orderBy('chain').execute()).map((r) => r.chain);
  const reports: ChainReport[] = [];
  for (const chain of chains) {
    let prev = GENESIS_HASH;
    let expectedSeq = 1;
    let count = 0;
    let broken: ChainReport['broken'];
    let afterSeq = 0;
    for (;;) {
      const rows = (await db
        .selectFrom('audit_log')
        .selectAll()
        .where('chain', '=', chain)
        .where('chain_seq', '>', afterSeq)
        .orderBy('chain_seq')
        .limit(1000)
        .execute()) as unknown as Row[];
      if (rows.length === 0) break;
      for (const r of rows) {
        const e = toEntry(r);
        afterSeq = e.chainSeq;
        count++;
        if (broken) continue;
        if (e.chainSeq !== expectedSeq) broken = { id: e.id, chainSeq: e.chainSeq, reason: 'sequence_gap' };
        else if (e.prevHash !== prev) broken = { id: e.id, chainSeq: e.chainSeq, reason: 'prev_hash_mismatch' };
        else if (entryHash(prev, e) !== e.hash) broken = { id: e.id, chainSeq: e.chainSeq, reason: 'hash_mismatch' };
        prev = e.hash;
        expectedSeq++;
      }
    }
    reports.push(broken ? { chain, entries: count, head: prev, broken } : { chain, entries: count, head: prev });
  }
  return { ok: reports.every((r) => !r.broken), chains: reports };
}
