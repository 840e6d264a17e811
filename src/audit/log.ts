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
 * - Keyed (issue 9, item 2; src/audit/keys.ts): each entry also carries an HMAC of (chain, seq, hash)
 *   under the audit key, which only the master key unwraps, and each chain has a keyed head (seq, hash)
 *   advanced in the same transaction as the append. Whoever holds only the database credentials can
 *   rewrite rows and recompute SHA-256, but not a MAC: `verify` names the entry. Removing the newest
 *   entries leaves a chain shorter than its head; deleting a chain with its head leaves a gap in the
 *   keyed count of chains, unless the keyed `system` chain records its erasure (`org.erase`).
 * - Entries written before the keyed epoch carry no MAC; their chain's head records how many
 *   (`legacy_seq`), and the first keyed entry's MAC covers the link to them.
 * - What a MAC cannot catch: rolling the whole log back to an earlier state the attacker saved (every
 *   row of it genuine). `verify` prints an anchor (a digest of every head) to record elsewhere.
 */
import { sql } from 'kysely';
import type { Db, Tx } from '../db/database.js';
import { sha256Hex } from '../crypto/random.js';
import { attachedAuditKey, entryMac, GENESIS_HASH, headMac, macEquals, stateMac, type AuditKey, type AuditKeys, type HeadFields } from './keys.js';
import './schema.js';
import { keysetPage, mapPage, type ListOrder, type Page, type PageRequest } from '../db/pagination.js';

export { GENESIS_HASH };

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
  // The key is attached by the runtime (openRuntime, buildApp); without it the entry is unkeyed, and
  // verify reports it as such.
  const key = attachedAuditKey(trx);
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
      mac: key ? entryMac(key, chain, base.chainSeq, hash) : null,
      key_id: key?.id ?? null,
    })
    .returning('id')
    .executeTakeFirstOrThrow();
  if (key) await advanceHead(trx, key, { chain, orgId: base.orgId, seq: base.chainSeq, head: hash });
  return { id: Number(row.id), ...base, prevHash, hash };
}

type HeadRow = { chain: string; org_id: string | null; ordinal: number | string; seq: number | string; head: string; legacy_seq: number | string; key_id: string; mac: string };

const headFields = (h: HeadRow): HeadFields => ({ chain: h.chain, orgId: h.org_id, ordinal: Number(h.ordinal), seq: Number(h.seq), head: h.head, legacySeq: Number(h.legacy_seq) });

/**
 * Moves a chain's keyed head to the entry just written (the caller holds the chain's lock), or opens
 * the chain: the next ordinal from the keyed count of chains. A head or count whose MAC does not hold
 * is advanced without a valid MAC, so tampering stays visible instead of being re-signed.
 */
async function advanceHead(trx: Tx, key: AuditKey, at: { chain: string; orgId: string | null; seq: number; head: string }): Promise<void> {
  const current = (await trx.selectFrom('audit_heads').selectAll().where('chain', '=', at.chain).executeTakeFirst()) as HeadRow | undefined;
  if (current) {
    const before = headFields(current);
    const intact = current.key_id === key.id && macEquals(headMac(key, before), current.mac);
    const next: HeadFields = { ...before, seq: at.seq, head: at.head };
    await trx
      .updateTable('audit_heads')
      .set({ seq: next.seq, head: next.head, key_id: key.id, mac: intact ? headMac(key, next) : '' })
      .where('chain', '=', at.chain)
      .execute();
    return;
  }
  const state = await trx.selectFrom('audit_state').selectAll().where('id', '=', 1).forUpdate().executeTakeFirst();
  const opened = state ? Number(state.chains_opened) : 0;
  const stateIntact = !!state && state.key_id === key.id && macEquals(stateMac(key, opened), state.mac);
  const ordinal = opened + 1;
  if (state) await trx.updateTable('audit_state').set({ chains_opened: ordinal, key_id: key.id, mac: stateIntact ? stateMac(key, ordinal) : '' }).where('id', '=', 1).execute();
  else await trx.insertInto('audit_state').values({ id: 1, chains_opened: ordinal, key_id: key.id, mac: '' }).execute();
  // A chain that has entries but no head was written without the key (or its head was deleted): its
  // earlier entries are not blessed as legacy.
  const head: HeadFields = { chain: at.chain, orgId: at.orgId, ordinal, seq: at.seq, head: at.head, legacySeq: 0 };
  await trx
    .insertInto('audit_heads')
    .values({ chain: head.chain, org_id: head.orgId, ordinal, seq: head.seq, head: head.head, legacy_seq: 0, key_id: key.id, mac: headMac(key, head) })
    .execute();
}

/**
 * For org erasure: records `org.erase` (target `{ org_id }`) in the keyed `system` chain, then deletes
 * the org's chain and its head. `audit verify` accepts a missing org chain (and the gap in the count of
 * chains) exactly when such an entry exists. Run it in an owner-level transaction (`db.withSystem`),
 * together with the rest of the erasure so that both commit or neither does; `data` is merged into the
 * entry (e.g. the tombstone id). The append-only trigger lets this transaction, and no other
 * statement, delete that one chain; the `system` chain can never be deleted.
 *
 * @returns how many entries were deleted.
 */
export async function eraseAuditChain(
  trx: Tx,
  orgId: string,
  ctx: { actor: AuditActor; ip?: string | null; requestId?: string | null; data?: Record<string, unknown> },
  now: Date = new Date(),
): Promise<number> {
  const chain = chainOf(orgId);
  await sql`select pg_advisory_xact_lock(hashtextextended(${'audit:' + chain}, 0))`.execute(trx);
  const head = await trx.selectFrom('audit_heads').select(['ordinal', 'seq', 'head']).where('chain', '=', chain).executeTakeFirst();
  await appendAudit(
    trx,
    {
      orgId: null,
      actor: ctx.actor,
      action: 'org.erase',
      target: { org_id: orgId },
      data: { ...ctx.data, chain, ordinal: head ? Number(head.ordinal) : null, entries: head ? Number(head.seq) : null, head: head?.head ?? null },
      ip: ctx.ip ?? null,
      requestId: ctx.requestId ?? null,
    },
    now,
  );
  await sql`select set_config('obscura.audit_erase_chain', ${chain}, true)`.execute(trx);
  const deleted = await trx.deleteFrom('audit_log').where('chain', '=', chain).executeTakeFirst();
  await trx.deleteFrom('audit_heads').where('chain', '=', chain).execute();
  await sql`select set_config('obscura.audit_erase_chain', '', true)`.execute(trx);
  return Number(deleted.numDeletedRows);
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

/** Audit lists: newest first, keyset on the serial id (insertion order). */
export const AUDIT_ORDER: ListOrder = { keys: [{ column: 'id', type: 'bigint' }], direction: 'desc' };

/**
 * One page of an org's entries, newest first, for `GET /v1/audit`. Runs in a tenant transaction
 * (RLS). `before` (an entry id) is the older paging parameter, still honoured.
 */
export async function listAudit(trx: Tx, orgId: string, page: PageRequest, opts: { before?: number | undefined } = {}): Promise<Page<AuditEntry>> {
  let q = trx.selectFrom('audit_log').selectAll().where('org_id', '=', orgId);
  if (opts.before !== undefined) q = q.where('id', '<', String(opts.before));
  return mapPage(await keysetPage(q, AUDIT_ORDER, page), (r) => toEntry(r as unknown as Row));
}

/** Why a chain fails verification. */
export type BrokenReason =
  /** An entry's position, link or unkeyed hash does not hold (rows edited, deleted or reordered). */
  | 'sequence_gap'
  | 'prev_hash_mismatch'
  | 'hash_mismatch'
  /** A keyed-epoch entry has no MAC, a MAC that does not hold, or one under a key not on record. */
  | 'mac_missing'
  | 'mac_mismatch'
  | 'unknown_key'
  /** The chain's keyed head: missing, its MAC does not hold, or the entries disagree with it. */
  | 'no_head'
  | 'head_mac_mismatch'
  | 'truncated'
  | 'unsealed_entries'
  | 'head_mismatch'
  /** An org exists (orgs table) with no chain, and no erasure of it is recorded. */
  | 'missing_chain';

export interface ChainReport {
  chain: string;
  entries: number;
  head: string;
  /** The length its keyed head records, when it has one. */
  checkpoint?: number;
  /** Entries 1..legacy written before the keyed epoch (verified by the unkeyed link only). */
  legacy?: number;
  /** The first failure: the entry (when one is to blame) and why. */
  broken?: { id?: number; chainSeq?: number; reason: BrokenReason; detail?: string };
}

/** A failure of the log as a whole rather than of one chain. */
export interface AuditProblem {
  reason: 'key_unreadable' | 'key_missing' | 'state_missing' | 'state_mac_mismatch' | 'chain_deleted' | 'state_behind';
  detail: string;
}

export interface AuditReport {
  ok: boolean;
  /** The keyed epoch (null: the log has not been keyed yet — no process has opened it since 0009). */
  keyed: { keyId: string; since: string } | null;
  /** Chains ever opened, per the keyed count. */
  chainsOpened?: number;
  /** Org chains whose erasure the `system` chain records. */
  erased: string[];
  /** SHA-256 over every chain's (name, length, head): record it elsewhere to detect a rollback later. */
  anchor: string;
  chains: ChainReport[];
  problems: AuditProblem[];
}

/**
 * Recomputes every chain (or one org's) from the start and reports the first failure per chain, plus
 * failures of the log as a whole: an org with no chain, a chain deleted with its head (a gap in the
 * keyed count of chains), a missing or altered count. Streams in pages so memory stays flat on a long
 * log. Runs as the runtime role (or owner); `keys` from `loadAuditKeys`.
 */
export async function verifyAudit(db: Db, opts: { orgId?: string; keys: AuditKeys }): Promise<AuditReport> {
  const { keys } = opts;
  const only = opts.orgId ? chainOf(opts.orgId) : undefined;
  const problems: AuditProblem[] = [];
  for (const id of keys.unreadable) problems.push({ reason: 'key_unreadable', detail: `audit key ${id} cannot be unwrapped with the configured master key(s)` });

  let headsQ = db.selectFrom('audit_heads').selectAll();
  if (only) headsQ = headsQ.where('chain', '=', only);
  const heads = new Map(((await headsQ.execute()) as HeadRow[]).map((h) => [h.chain, h]));
  const state = await db.selectFrom('audit_state').selectAll().where('id', '=', 1).executeTakeFirst();
  const stored = await db.selectFrom('audit_keys').select(['id', 'since']).orderBy('since').execute();
  const epoch = stored[0];
  const keyedLog = !!epoch || heads.size > 0 || !!state;
  if (keyedLog && !epoch) problems.push({ reason: 'key_missing', detail: 'the log has keyed heads but no audit key row: it was deleted' });

  let chainsQ = db.selectFrom('audit_log').select('chain').distinct();
  if (only) chainsQ = chainsQ.where('chain', '=', only);
  const names = new Set((await chainsQ.execute()).map((r) => r.chain));
  for (const c of heads.keys()) names.add(c);

  const reports: ChainReport[] = [];
  for (const chain of [...names].sort()) reports.push(await verifyChain(db, chain, heads.get(chain), keyedLog, keys));

  // Erasures recorded in the (keyed, verified above) system chain.
  const erasures = await db.selectFrom('audit_log').select(['target', 'data']).where('chain', '=', 'system').where('action', '=', 'org.erase').execute();
  const erasedOrgs = new Set<string>();
  const erasedOrdinals = new Set<number>();
  for (const e of erasures) {
    const target = asObject(e.target);
    const data = asObject(e.data);
    if (typeof target.org_id === 'string') erasedOrgs.add(target.org_id);
    if (typeof data.ordinal === 'number') erasedOrdinals.add(data.ordinal);
  }

  if (keyedLog) {
    let orgsQ = db.selectFrom('orgs').select('id');
    if (opts.orgId) orgsQ = orgsQ.where('id', '=', opts.orgId);
    for (const o of await orgsQ.execute()) {
      const chain = chainOf(o.id);
      if (names.has(chain) || erasedOrgs.has(o.id)) continue;
      reports.push({ chain, entries: 0, head: GENESIS_HASH, broken: { reason: 'missing_chain', detail: 'the org exists but its audit chain and head are gone, and no erasure is recorded' } });
    }
  }

  let chainsOpened: number | undefined;
  if (keyedLog && !only) {
    if (!state) problems.push({ reason: 'state_missing', detail: 'the keyed count of chains is gone' });
    else {
      chainsOpened = Number(state.chains_opened);
      const key = keys.byId.get(state.key_id);
      if (!key || !macEquals(stateMac(key, chainsOpened), state.mac)) problems.push({ reason: 'state_mac_mismatch', detail: 'the keyed count of chains was altered' });
      const present = new Set([...heads.values()].map((h) => Number(h.ordinal)));
      const missing: number[] = [];
      for (let n = 1; n <= chainsOpened; n++) if (!present.has(n) && !erasedOrdinals.has(n)) missing.push(n);
      if (missing.length > 0) {
        problems.push({ reason: 'chain_deleted', detail: `${missing.length} chain(s) deleted with their heads and no erasure record (opened as #${missing.slice(0, 10).join(', #')}${missing.length > 10 ? ', ...' : ''})` });
      }
      const beyond = [...present].filter((n) => n > chainsOpened!);
      if (beyond.length > 0) problems.push({ reason: 'state_behind', detail: `${beyond.length} chain(s) opened after the keyed count (it was rolled back)` });
    }
  }

  const anchor = sha256Hex(canonicalJson(reports.map((r) => [r.chain, r.entries, r.head])));
  return {
    ok: problems.length === 0 && reports.every((r) => !r.broken),
    keyed: epoch ? { keyId: epoch.id, since: epoch.since } : null,
    ...(chainsOpened === undefined ? {} : { chainsOpened }),
    erased: [...erasedOrgs].sort().map(chainOf),
    anchor,
    chains: reports,
    problems,
  };
}

/** Walks one chain: links and unkeyed hashes, entry MACs after its legacy prefix, then its keyed head. */
async function verifyChain(db: Db, chain: string, head: HeadRow | undefined, keyedLog: boolean, keys: AuditKeys): Promise<ChainReport> {
  // Before the keyed epoch (a log no process has opened since 0009) every entry is legacy.
  const legacy = head ? Number(head.legacy_seq) : keyedLog ? 0 : Number.POSITIVE_INFINITY;
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
      .execute()) as unknown as Array<Row & { mac: string | null; key_id: string | null }>;
    if (rows.length === 0) break;
    for (const r of rows) {
      const e = toEntry(r);
      afterSeq = e.chainSeq;
      count++;
      if (broken) continue;
      const at = { id: e.id, chainSeq: e.chainSeq };
      if (e.chainSeq !== expectedSeq) broken = { ...at, reason: 'sequence_gap' };
      else if (e.prevHash !== prev) broken = { ...at, reason: 'prev_hash_mismatch' };
      else if (entryHash(prev, e) !== e.hash) broken = { ...at, reason: 'hash_mismatch' };
      else if (e.chainSeq > legacy || r.mac !== null) {
        const key = r.key_id ? keys.byId.get(r.key_id) : undefined;
        if (r.mac === null) broken = { ...at, reason: 'mac_missing', detail: 'written after the keyed epoch without a MAC' };
        else if (!key) broken = { ...at, reason: 'unknown_key', detail: `MAC under key ${String(r.key_id)}, which is not on record` };
        else if (!macEquals(entryMac(key, chain, e.chainSeq, e.hash), r.mac)) broken = { ...at, reason: 'mac_mismatch' };
      }
      prev = e.hash;
      expectedSeq++;
    }
  }
  const report: ChainReport = { chain, entries: count, head: prev };
  if (head) {
    report.checkpoint = Number(head.seq);
    if (Number(head.legacy_seq) > 0) report.legacy = Number(head.legacy_seq);
  }
  if (!broken && keyedLog) {
    const key = head ? keys.byId.get(head.key_id) : undefined;
    if (!head) broken = { reason: 'no_head', detail: 'the chain has no keyed head' };
    else if (!key || !macEquals(headMac(key, headFields(head)), head.mac)) broken = { reason: 'head_mac_mismatch', detail: 'the keyed head was altered' };
    else if (count < Number(head.seq)) broken = { reason: 'truncated', detail: `${count} entries, but the keyed head records ${Number(head.seq)}` };
    else if (count > Number(head.seq)) broken = { reason: 'unsealed_entries', detail: `${count} entries, but the keyed head records ${Number(head.seq)}` };
    else if (prev !== head.head) broken = { reason: 'head_mismatch', detail: 'the last entry is not the one the keyed head records' };
  }
  if (broken) report.broken = broken;
  return report;
}
