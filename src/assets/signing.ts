/**
 * Signed download URLs: `GET /v1/files/{asset}?exp=<unix s>&kid=<key id>&sig=<base64url HMAC>`.
 *
 * - HMAC-SHA256 over a versioned, newline-separated canonical string (asset id, expiry, disposition),
 *   under a server-wide signing key named by `kid`. Keys are random 256-bit values stored wrapped by
 *   the master key; `rotate()` adds a key and retires the previous one, which keeps verifying until
 *   every URL it signed has expired (it is never used to sign again).
 * - Comparison is constant-time; a bad signature is checked before the expiry, so an expired URL
 *   reveals nothing either.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { DatabaseHandle } from '../db/database.js';
import type { MasterKeys } from '../crypto/master.js';
import { unwrapKey, wrapKey, type WrappedColumn } from '../crypto/keywrap.js';
import { publicId } from '../crypto/random.js';
import { AppError } from '../errors.js';

export type Disposition = 'inline' | 'attachment';

export interface SignedUrlParams {
  assetId: string;
  /** Unix seconds. */
  exp: number;
  disposition: Disposition;
}

const context = (kid: string) => `url-signing:${kid}`;

/** The download-URL signing keys, wrapped by the master key (for `keys rotate-master`). */
export const URL_SIGNING_COLUMNS: readonly WrappedColumn[] = [
  { table: 'url_signing_keys', key: ['kid'], column: 'wrapped', masterIdColumn: 'master_key_id', context: (r) => context(String(r.kid)) },
];

function canonical(p: SignedUrlParams): string {
  return `obscura-download-v1\n${p.assetId}\n${p.exp}\n${p.disposition}`;
}

export class UrlSigner {
  private readonly keys = new Map<string, Buffer>();
  private currentKid: string | undefined;

  constructor(
    private readonly db: DatabaseHandle,
    private readonly master: MasterKeys,
  ) {}

  private async loadKey(kid: string): Promise<Buffer | undefined> {
    const cached = this.keys.get(kid);
    if (cached) return cached;
    const row = await this.db.system.selectFrom('url_signing_keys').select(['wrapped']).where('kid', '=', kid).executeTakeFirst();
    if (!row) return undefined;
    const key = unwrapKey(this.master.all as Map<string, Buffer>, row.wrapped, context(kid));
    this.keys.set(kid, key);
    return key;
  }

  /** The newest unretired key, created on first use. */
  private async current(): Promise<{ kid: string; key: Buffer }> {
    if (this.currentKid) {
      const key = this.keys.get(this.currentKid);
      if (key) return { kid: this.currentKid, key };
    }
    let row = await this.db.system.selectFrom('url_signing_keys').select(['kid']).where('retired_at', 'is', null).orderBy('created_at', 'desc').limit(1).executeTakeFirst();
    if (!row) {
      await this.insertKey();
      row = await this.db.system.selectFrom('url_signing_keys').select(['kid']).where('retired_at', 'is', null).orderBy('created_at', 'desc').limit(1).executeTakeFirstOrThrow();
    }
    const key = await this.loadKey(row.kid);
    this.currentKid = row.kid;
    return { kid: row.kid, key: key! };
  }

  private async insertKey(): Promise<string> {
    const kid = publicId('sk').slice(0, 14);
    const key = randomBytes(32);
    await this.db.system
      .insertInto('url_signing_keys')
      .values({ kid, wrapped: wrapKey(this.master.current, this.master.currentId, key, context(kid)), master_key_id: this.master.currentId })
      .execute();
    return kid;
  }

  /** Adds a new signing key and retires the others (they still verify). Takes effect on this node at once; other nodes pick it up on restart or when they see an unknown kid. */
  async rotate(): Promise<string> {
    const kid = await this.db.withSystem(async (trx) => {
      await trx.updateTable('url_signing_keys').set({ retired_at: new Date() }).where('retired_at', 'is', null).execute();
      const k = publicId('sk').slice(0, 14);
      const key = randomBytes(32);
      await trx
        .insertInto('url_signing_keys')
        .values({ kid: k, wrapped: wrapKey(this.master.current, this.master.currentId, key, context(k)), master_key_id: this.master.currentId })
        .execute();
      return k;
    });
    this.currentKid = undefined;
    return kid;
  }

  /** Returns the query string (without `?`) for a signed URL. */
  async sign(p: SignedUrlParams): Promise<string> {
    const { kid, key } = await this.current();
    const sig = createHmac('sha256', key).update(canonical(p)).digest('base64url');
    const q = new URLSearchParams({ exp: String(p.exp), kid, sig });
    if (p.disposition === 'attachment') q.set('dl', '1');
    return q.toString();
  }

  /**
   * Verifies a signed request. Throws ERR_SIGNATURE_INVALID (403) for a missing, malformed or wrong
   * signature or an unknown key, ERR_URL_EXPIRED (410) after `exp`.
   */
  async verify(p: { assetId: string; exp: unknown; kid: unknown; sig: unknown; disposition: Disposition }, nowSeconds: number): Promise<void> {
    const invalid = () => new AppError('ERR_SIGNATURE_INVALID', 'The URL signature is not valid.');
    if (typeof p.kid !== 'string' || typeof p.sig !== 'string' || typeof p.exp !== 'string' || !/^\d{1,12}$/.test(p.exp) || !/^[A-Za-z0-9_-]{43}$/.test(p.sig) || !/^[A-Za-z0-9_]{1,64}$/.test(p.kid)) {
      throw invalid();
    }
    const key = await this.loadKey(p.kid);
    if (!key) throw invalid();
    const expected = createHmac('sha256', key).update(canonical({ assetId: p.assetId, exp: Number(p.exp), disposition: p.disposition })).digest();
    const given = Buffer.from(p.sig, 'base64url');
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) throw invalid();
    if (Number(p.exp) <= nowSeconds) throw new AppError('ERR_URL_EXPIRED', 'This link has expired; ask for a new one.');
  }
}
