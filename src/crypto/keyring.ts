/**
 * The keyring: one random 256-bit key per org, stored only wrapped by the master key (AES-256-GCM,
 * bound to the org id so a wrapped key cannot be moved to another org; see keywrap.ts).
 *
 * - Blobs are encrypted under per-blob keys derived from the org key (stream.ts), so rotating the
 *   master key re-wraps a few rows and never touches media.
 * - Deleting an org's key rows makes every blob of that org undecryptable: crypto-shredding. No
 *   other copy of the key exists: the cache holds unwrapped keys in memory only, and for at most
 *   `ttlMs` (default 2 s, `OBSCURA_KEY_CACHE_TTL_MS`, the bound of API key revocation) before the
 *   key's row is read again, so a key shredded on one node stops working on every node within it.
 */
import { sql } from 'kysely';
import type { DatabaseHandle, Tx } from '../db/database.js';
import { AppError } from '../errors.js';
import type { MasterKeys } from './master.js';
import { generateTenantKey, unwrapKey, wrapKey, type WrappedColumn } from './keywrap.js';

export type { WrappedColumn };
import { publicId } from './random.js';
import { ByteLru, stringBytes } from '../cache.js';

export interface TenantKey {
  readonly id: string;
  readonly key: Buffer;
}

/** An unwrapped key in memory, with the wrapped form it came from and when its row was last read. */
interface CachedKey {
  key: Buffer;
  wrapped: string;
  at: number;
}

/** Default bytes of unwrapped keys held in memory (~17 000 org keys at ~480 B each). */
export const KEY_CACHE_BYTES = 8 * 1024 * 1024;

export class Keyring {
  // Bounded in bytes (issue 12, item 6): with more orgs active than fit, the least recently used key
  // is dropped (not zeroed: a stream may still be using it) and its row read again when needed.
  private readonly cache: ByteLru<string, CachedKey>;

  constructor(
    private readonly db: DatabaseHandle,
    private readonly master: MasterKeys,
    private readonly opts: { ttlMs?: number; now?: () => number; maxBytes?: number } = {},
  ) {
    this.cache = new ByteLru<string, CachedKey>({ maxBytes: opts.maxBytes ?? KEY_CACHE_BYTES, sizeOf: (v, id) => v.key.length + stringBytes(v.wrapped) + stringBytes(id) });
  }

  /** Unwrapped keys held in memory now, and their bytes (for tests and metrics). */
  get cached(): { keys: number; bytes: number } {
    return { keys: this.cache.size, bytes: this.cache.bytes };
  }

  private now(): number {
    return this.opts.now?.() ?? Date.now();
  }

  /** The unwrapped key of a row just read (from the cache when the wrapped form is the same). */
  private remember(id: string, orgId: string, wrapped: string): Buffer {
    const hit = this.cache.get(id);
    if (hit && hit.wrapped === wrapped) {
      hit.at = this.now();
      return hit.key;
    }
    const key = this.unwrap(orgId, wrapped);
    this.cache.set(id, { key, wrapped, at: this.now() });
    return key;
  }

  /** Drops one key from memory, zeroing it (its row is gone: shredded). */
  private evict(id: string): void {
    const hit = this.cache.get(id);
    if (!hit) return;
    hit.key.fill(0);
    this.cache.delete(id);
  }

  private unwrap(orgId: string, wrapped: string): Buffer {
    return unwrapKey(this.master.all as Map<string, Buffer>, wrapped, orgId);
  }

  /** The org's current key, created on first use. Runs in the caller's tenant transaction. */
  async current(trx: Tx, orgId: string): Promise<TenantKey> {
    const row = await trx.selectFrom('tenant_keys').select(['id', 'wrapped']).where('org_id', '=', orgId).orderBy('created_at', 'desc').orderBy('id').limit(1).executeTakeFirst();
    if (row) return { id: row.id, key: this.remember(row.id, orgId, row.wrapped) };
    // No key: a new org, or one whose keys were shredded because it is being erased. Never give an
    // erased org a fresh key (a job finishing after the shred would store readable output).
    const erased = await trx.selectFrom('org_erasures').select('org_id').where('org_id', '=', orgId).executeTakeFirst();
    if (erased) throw new AppError('ERR_NOT_FOUND', 'The org has been erased.');
    const id = publicId('tk');
    const key = generateTenantKey();
    const wrapped = wrapKey(this.master.current, this.master.currentId, key, orgId);
    await trx.insertInto('tenant_keys').values({ id, org_id: orgId, wrapped, master_key_id: this.master.currentId }).execute();
    this.cache.set(id, { key, wrapped, at: this.now() });
    return { id, key };
  }

  /**
   * A specific key of an org (for decryption). A key that no longer exists (crypto-shredded) is an
   * integrity error: the blob can never be read again.
   */
  async get(orgId: string, keyId: string): Promise<Buffer> {
    const cached = this.cache.get(keyId);
    if (cached && this.now() - cached.at < (this.opts.ttlMs ?? 2000)) return cached.key;
    const row = await this.db.withTenant(orgId, (trx) =>
      trx.selectFrom('tenant_keys').select(['wrapped']).where('org_id', '=', orgId).where('id', '=', keyId).executeTakeFirst(),
    );
    if (!row) {
      this.evict(keyId);
      const erased = await this.db.withTenant(orgId, (trx) => trx.selectFrom('org_erasures').select('org_id').where('org_id', '=', orgId).executeTakeFirst());
      // Erased on purpose: the media is gone, as if deleted. Otherwise a key vanished: an integrity failure.
      if (erased) throw new AppError('ERR_NOT_FOUND', 'The media has been erased.');
      throw new AppError('ERR_INTEGRITY', 'The key for this media no longer exists; it cannot be decrypted.');
    }
    return this.remember(keyId, orgId, row.wrapped);
  }

  /** Drops unwrapped keys from memory (after shredding or master rotation). */
  forget(): void {
    for (const k of this.cache.values()) k.key.fill(0);
    this.cache.clear();
  }
}

/**
 * Deletes every key of an org in the caller's system transaction (org erasure's shred step): all its
 * blobs become permanently unreadable, on every node within the key-cache bound. System-level,
 * because the tenant role may not delete keys. Returns how many keys were deleted.
 */
export async function shredOrgKeys(trx: Tx, orgId: string): Promise<number> {
  const r = await trx.deleteFrom('tenant_keys').where('org_id', '=', orgId).executeTakeFirst();
  return Number(r.numDeletedRows);
}


/** The org keys (this module's own wrapped column). */
export const TENANT_KEY_COLUMNS: readonly WrappedColumn[] = [
  { table: 'tenant_keys', key: ['id'], fields: ['org_id'], column: 'wrapped', masterIdColumn: 'master_key_id', context: (r) => String(r.org_id) },
];

/**
 * Re-wraps every secret in `columns` (every capability's list, composed by the composition root:
 * `WRAPPED_COLUMNS` in src/main.ts) under the current master key, accepting any key in `master.all`
 * for unwrapping. One transaction: either every value moves or none. Blobs are untouched.
 * Returns how many values moved per table.
 */
export async function rewrapAll(db: DatabaseHandle, master: MasterKeys, columns: readonly WrappedColumn[]): Promise<{ tenantKeys: number; signingKeys: number; byTable: Record<string, number> }> {
  const prefix = `v1.${master.currentId}.`;
  return db.withSystem(async (trx) => {
    const byTable: Record<string, number> = {};
    for (const col of columns) {
      const exists = await sql<{ t: string | null }>`select to_regclass(${col.table}) as t`.execute(trx);
      if (!exists.rows[0]?.t) continue;
      const cols = [...new Set([...col.key, ...(col.fields ?? []), col.column])];
      const rows = await sql<Record<string, unknown>>`select ${sql.join(cols.map((c) => sql.ref(c)))} from ${sql.table(col.table)} where ${sql.ref(col.column)} is not null and ${sql.ref(col.column)} not like ${prefix + '%'} for update`.execute(trx);
      for (const r of rows.rows) {
        const plain = unwrapKey(master.all as Map<string, Buffer>, String(r[col.column]), col.context(r));
        const wrapped = wrapKey(master.current, master.currentId, plain, col.context(r));
        plain.fill(0);
        const where = sql.join(col.key.map((k) => sql`${sql.ref(k)} = ${r[k]}`), sql` and `);
        const setMaster = col.masterIdColumn ? sql`, ${sql.ref(col.masterIdColumn)} = ${master.currentId}` : sql``;
        await sql`update ${sql.table(col.table)} set ${sql.ref(col.column)} = ${wrapped}${setMaster} where ${where}`.execute(trx);
        byTable[`${col.table}.${col.column}`] = (byTable[`${col.table}.${col.column}`] ?? 0) + 1;
      }
    }
    return { tenantKeys: byTable['tenant_keys.wrapped'] ?? 0, signingKeys: byTable['url_signing_keys.wrapped'] ?? 0, byTable };
  });
}
