/**
 * The licence signing keys of this deployment: generated on the server with node:crypto (RSA 3072 for
 * RS256, Ed25519 for EdDSA), the private half stored only wrapped by the master key, one current key
 * per algorithm, rotation, and the published public keys.
 *
 * Rotation differs from the access-token keys (src/auth/jwt.ts) on purpose: an offline licence file
 * lives for months and a device verifies it against the public key it ships with, so a rotated key is
 * never retired on a schedule. It stops signing at once and stays published (`GET /v1/licenses/keys`,
 * `obscura licenses public-key`) until an operator removes it (`obscura licenses remove-key KID`),
 * when every licence it signed has expired or been reissued.
 *
 * Security: a private key is unwrapped only to sign, kept as a non-extractable-by-API KeyObject in
 * this process, and never logged or returned by any method here.
 */
import { createPrivateKey, generateKeyPair as generateKeyPairCb, type KeyObject } from 'node:crypto';
import { promisify } from 'node:util';
import { sql } from 'kysely';
import { calculateJwkThumbprint, type JWK } from 'jose';
import type { DatabaseHandle } from '../db/database.js';
import type { MasterKeys } from '../crypto/master.js';
import { unwrapKey, wrapKey, type WrappedColumn } from '../crypto/keywrap.js';
import { appendAudit, type AuditActor } from '../audit/log.js';
import { AppError } from '../errors.js';
import { LICENCE_ALGORITHMS, type LicenceAlgorithm } from '../../sdk/src/licence.js';
import './schema.js';

const generateKeyPair = promisify(generateKeyPairCb);

/** RSA modulus for licence keys: 3072 bits (NIST SP 800-57: beyond 2030), since licence files are long-lived. */
export const LICENCE_RSA_BITS = 3072;

/** Wrapping context of a licence signing key: binds the wrapped private key to its kid. */
export const licenceKeyContext = (kid: string) => `license_signing_key:${kid}`;

/** The licence signing keys' private halves, wrapped by the master key (for `keys rotate-master`). */
export const LICENCE_KEY_COLUMNS: readonly WrappedColumn[] = [
  { table: 'license_signing_keys', key: ['kid'], column: 'private_wrapped', masterIdColumn: 'master_key_id', context: (r) => licenceKeyContext(String(r.kid)) },
];

/** A published licence key: the public JWK with `kid`, `alg` and `use`. */
export type PublicLicenceJwk = JWK & { kid: string; alg: LicenceAlgorithm; use: 'sig' };

/** One key as `obscura licenses keys` lists it. */
export interface LicenceKeyInfo {
  kid: string;
  alg: LicenceAlgorithm;
  createdAt: string;
  /** null while it signs. */
  rotatedAt: string | null;
  current: boolean;
}

/** The key that signs for an algorithm right now. */
export interface LicenceSigner {
  readonly kid: string;
  readonly alg: LicenceAlgorithm;
  readonly privateKey: KeyObject;
}

type Row = { kid: string; alg: LicenceAlgorithm; public_jwk: Record<string, unknown> | string; private_wrapped: string; created_at: Date; rotated_at: Date | null };

const LOCK_KEY = 'obscura:license_signing_keys';
const parse = (v: Record<string, unknown> | string): JWK => (typeof v === 'string' ? (JSON.parse(v) as JWK) : (v as JWK));

/** Only the public members of a JWK of either type. */
function publicMembers(jwk: JWK): JWK {
  return jwk.kty === 'RSA' ? { kty: 'RSA', n: jwk.n!, e: jwk.e! } : { kty: 'OKP', crv: jwk.crv!, x: jwk.x! };
}

export function isLicenceAlgorithm(v: unknown): v is LicenceAlgorithm {
  return typeof v === 'string' && (LICENCE_ALGORITHMS as readonly string[]).includes(v);
}

/** The deployment's licence signing keys. One instance per process. */
export class LicenceKeyStore {
  private readonly signers = new Map<LicenceAlgorithm, LicenceSigner>();

  constructor(
    private readonly db: DatabaseHandle,
    private readonly master: MasterKeys,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * The current signer for `alg`, creating the first key when there is none. Reads the current kid
   * each call (one indexed row), so a rotation by the CLI or another node takes effect at once; the
   * private key is unwrapped only when the kid changes.
   */
  async signer(alg: LicenceAlgorithm): Promise<LicenceSigner> {
    let row = (await this.db.system.selectFrom('license_signing_keys').selectAll().where('alg', '=', alg).where('rotated_at', 'is', null).executeTakeFirst()) as Row | undefined;
    if (!row) row = await this.create(alg, 'ensure', { type: 'system' });
    const cached = this.signers.get(alg);
    if (cached?.kid === row.kid) return cached;
    const plain = unwrapKey(this.master.all, row.private_wrapped, licenceKeyContext(row.kid));
    let privateKey: KeyObject;
    try {
      privateKey = createPrivateKey({ key: JSON.parse(plain.toString('utf8')) as import('node:crypto').JsonWebKey, format: 'jwk' });
    } finally {
      plain.fill(0);
    }
    const signer = { kid: row.kid, alg, privateKey };
    this.signers.set(alg, signer);
    return signer;
  }

  /** Rotates `alg` now: a new key signs from this moment; the previous one stays published until removed. */
  async rotate(alg: LicenceAlgorithm, actor: AuditActor): Promise<{ kid: string; previousKid: string | null }> {
    const before = await this.db.system.selectFrom('license_signing_keys').select('kid').where('alg', '=', alg).where('rotated_at', 'is', null).executeTakeFirst();
    const row = await this.create(alg, 'force', actor);
    return { kid: row.kid, previousKid: before?.kid ?? null };
  }

  /**
   * Removes a rotated key: it is no longer published, so licences it signed stop verifying on the
   * server (devices keep the keys they ship with). The current key of an algorithm cannot be removed.
   */
  async remove(kid: string, actor: AuditActor): Promise<void> {
    await this.db.withSystem(async (trx) => {
      const row = await trx.selectFrom('license_signing_keys').select(['kid', 'alg', 'rotated_at']).where('kid', '=', kid).forUpdate().executeTakeFirst();
      if (!row) throw new AppError('ERR_NOT_FOUND', 'No licence signing key has this kid (see `obscura licenses keys`).');
      if (row.rotated_at === null) throw new AppError('ERR_CONFLICT', 'This key signs new licences: rotate it first (`obscura licenses rotate-key`), then remove it once its licences have expired.');
      await trx.deleteFrom('license_signing_keys').where('kid', '=', kid).execute();
      await appendAudit(trx, { orgId: null, actor, action: 'license_key.remove', target: { kid }, data: { alg: row.alg } }, new Date(this.now()));
    });
  }

  /** Every published key (current and rotated), newest first. */
  async list(): Promise<LicenceKeyInfo[]> {
    const rows = (await this.db.system.selectFrom('license_signing_keys').select(['kid', 'alg', 'created_at', 'rotated_at']).orderBy('created_at', 'desc').execute()) as Row[];
    return rows.map((r) => ({ kid: r.kid, alg: r.alg, createdAt: new Date(r.created_at).toISOString(), rotatedAt: r.rotated_at ? new Date(r.rotated_at).toISOString() : null, current: r.rotated_at === null }));
  }

  /**
   * The published public keys (current and rotated, not removed). Creates the RS256 key when there is
   * none, so a deployment can hand its public key to a device before the first licence is issued.
   */
  async publicKeys(): Promise<PublicLicenceJwk[]> {
    let rows = (await this.db.system.selectFrom('license_signing_keys').select(['kid', 'alg', 'public_jwk', 'created_at']).orderBy('created_at', 'desc').execute()) as Row[];
    if (rows.length === 0) {
      await this.signer('RS256');
      rows = (await this.db.system.selectFrom('license_signing_keys').select(['kid', 'alg', 'public_jwk', 'created_at']).orderBy('created_at', 'desc').execute()) as Row[];
    }
    return rows.map((r) => ({ ...publicMembers(parse(r.public_jwk)), kid: r.kid, alg: r.alg, use: 'sig' as const }));
  }

  /**
   * `ensure`: create a key for `alg` if none signs; `force`: rotate. Under a transaction-scoped
   * advisory lock, re-reading the current key inside it, so concurrent callers produce one key.
   */
  private async create(alg: LicenceAlgorithm, mode: 'ensure' | 'force', actor: AuditActor): Promise<Row> {
    // Generated off the event loop (libuv thread pool): an RSA-3072 key takes tens of milliseconds.
    const pair = alg === 'RS256' ? await generateKeyPair('rsa', { modulusLength: LICENCE_RSA_BITS, publicExponent: 0x10001 }) : await generateKeyPair('ed25519');
    const publicJwk = publicMembers(pair.publicKey.export({ format: 'jwk' }) as JWK);
    const kid = await calculateJwkThumbprint(publicJwk);
    const plain = Buffer.from(JSON.stringify(pair.privateKey.export({ format: 'jwk' })), 'utf8');
    let wrapped: string;
    try {
      wrapped = wrapKey(this.master.current, this.master.currentId, plain, licenceKeyContext(kid));
    } finally {
      plain.fill(0);
    }
    const at = new Date(this.now());
    return this.db.withSystem(async (trx) => {
      await sql`select pg_advisory_xact_lock(hashtextextended(${LOCK_KEY}, 0))`.execute(trx);
      const cur = (await trx.selectFrom('license_signing_keys').selectAll().where('alg', '=', alg).where('rotated_at', 'is', null).forUpdate().executeTakeFirst()) as Row | undefined;
      if (cur && mode === 'ensure') return cur;
      if (cur) await trx.updateTable('license_signing_keys').set({ rotated_at: at }).where('kid', '=', cur.kid).execute();
      const row = (await trx
        .insertInto('license_signing_keys')
        .values({ kid, alg, public_jwk: JSON.stringify(publicJwk), private_wrapped: wrapped, master_key_id: this.master.currentId, created_at: at })
        .returningAll()
        .executeTakeFirstOrThrow()) as Row;
      await appendAudit(trx, { orgId: null, actor, action: cur ? 'license_key.rotate' : 'license_key.create', target: { kid }, data: { alg, ...(cur ? { previous: cur.kid } : {}) } }, at);
      return row;
    });
  }
}
