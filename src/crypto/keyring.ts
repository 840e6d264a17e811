/**
 * The keyring: one random 256-bit key per org, stored only wrapped by the master key (AES-256-GCM,
 * bound to the org id so a wrapped key cannot be moved to another org; see keywrap.ts).
 *
 * - Blobs are encrypted under per-blob keys derived from the org key (stream.ts), so rotating the
 *   master key re-wraps a few rows and never touches media.
 * - Deleting an org's key rows makes every blob of that org undecryptable: crypto-shredding. No
 *   other copy of the key exists (the cache holds unwrapped keys in memory only, and `forget` clears it).
 */
import type { DatabaseHandle, Tx } from '../db/database.js';
import { AppError } from '../errors.js';
import type { MasterKeys } from './master.js';
import { generateTenantKey, unwrapKey, wrapKey } from './keywrap.js';
import { publicId } from './random.js';

export interface TenantKey {
  readonly id: string;
  readonly key: Buffer;
}

export class Keyring {
  private readonly cache = new Map<string, Buffer>();

  constructor(
    private readonly db: DatabaseHandle,
    private readonly master: MasterKeys,
  ) {}

  private unwrap(orgId: string, wrapped: string): Buffer {
    return unwrapKey(this.master.all as Map<string, Buffer>, wrapped, orgId);
  }

  /** The org's current key, created on first use. Runs in the caller's tenant transaction. */
  async current(trx: Tx, orgId: string): Promise<TenantKey> {
    const row = await trx.selectFrom('tenant_keys').select(['id', 'wrapped']).where('org_id', '=', orgId).orderBy('created_at', 'desc').orderBy('id').limit(1).executeTakeFirst();
    if (row) {
      const cached = this.cache.get(row.id);
      if (cached) return { id: row.id, key: cached };
      const key = this.unwrap(orgId, row.wrapped);
      this.cache.set(row.id, key);
      return { id: row.id, key };
    }
    const id = publicId('tk');
    const key = generateTenantKey();
    await trx
      .insertInto('tenant_keys')
      .values({ id, org_id: orgId, wrapped: wrapKey(this.master.current, this.master.currentId, key, orgId), master_key_id: this.master.currentId })
      .execute();
    this.cache.set(id, key);
    return { id, key };
  }

  /**
   * A specific key of an org (for decryption). A key that no longer exists (crypto-shredded) is an
   * integrity error: the blob can never be read again.
   */
  async get(orgId: string, keyId: string): Promise<Buffer> {
    const cached = this.cache.get(keyId);
    if (cached) return cached;
    const row = await this.db.withTenant(orgId, (trx) =>
      trx.selectFrom('tenant_keys').select(['wrapped']).where('org_id', '=', orgId).where('id', '=', keyId).executeTakeFirst(),
    );
    if (!row) throw new AppError('ERR_INTEGRITY', 'The key for this media no longer exists; it cannot be decrypted.');
    const key = this.unwrap(orgId, row.wrapped);
    this.cache.set(keyId, key);
    return key;
  }

  /** Drops unwrapped keys from memory (after shredding or master rotation). */
  forget(): void {
    for (const k of this.cache.values()) k.fill(0);
    this.cache.clear();
  }
}

/**
 * Deletes every key of an org: all its blobs become permanently unreadable. Owner-level, because the
 * tenant role may not delete keys.
 */
export async function shredOrgKeys(db: DatabaseHandle, orgId: string): Promise<number> {
  const r = await db.system.deleteFrom('tenant_keys').where('org_id', '=', orgId).executeTakeFirst();
  return Number(r.numDeletedRows);
}

/**
 * Re-wraps every tenant key (and URL signing key) under the current master key, accepting any key in
 * `master.all` for unwrapping. One transaction: either every key moves or none. Blobs are untouched.
 */
export async function rewrapAll(db: DatabaseHandle, master: MasterKeys): Promise<{ tenantKeys: number; signingKeys: number }> {
  return db.withSystem(async (trx) => {
    let tenantKeys = 0;
    const rows = await trx.selectFrom('tenant_keys').select(['id', 'org_id', 'wrapped', 'master_key_id']).forUpdate().execute();
    for (const r of rows) {
      if (r.master_key_id === master.currentId) continue;
      const key = unwrapKey(master.all as Map<string, Buffer>, r.wrapped, r.org_id);
      await trx.updateTable('tenant_keys').set({ wrapped: wrapKey(master.current, master.currentId, key, r.org_id), master_key_id: master.currentId }).where('id', '=', r.id).execute();
      key.fill(0);
      tenantKeys++;
    }
    let signingKeys = 0;
    const sk = await trx.selectFrom('url_signing_keys').select(['kid', 'wrapped', 'master_key_id']).forUpdate().execute();
    for (const r of sk) {
      if (r.master_key_id === master.currentId) continue;
      const key = unwrapKey(master.all as Map<string, Buffer>, r.wrapped, `url-signing:${r.kid}`);
      await trx.updateTable('url_signing_keys').set({ wrapped: wrapKey(master.current, master.currentId, key, `url-signing:${r.kid}`), master_key_id: master.currentId }).where('kid', '=', r.kid).execute();
      signingKeys++;
    }
    return { tenantKeys, signingKeys };
  });
}
