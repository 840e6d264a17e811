/**
 * Signed transform URLs (imgproxy-style) for CDN delivery:
 *
 *   GET /t/{kid}.{mac}/{operations}/{asset id}?exp={unix seconds}
 *
 * - `mac` = base64url (no padding) of HMAC-SHA256(key, "/{operations}/{asset id}?exp={exp}"), over the
 *   path exactly as sent (operations still percent-encoded) — see docs/transform-urls.md.
 * - Keys belong to an app (`transform_keys`): 32 random bytes, shown once, stored wrapped by the
 *   master key bound to org and key id. Rotation = create a new key, move clients, delete the old one;
 *   every key verifies until it is deleted. The key decides the org: the asset must belong to it.
 * - Checks in order: shape (400) → key and MAC in constant time (403) → expiry (410) → operations
 *   (400, registry and limits as everywhere) → strict mode: only `preset:<name>` (403) → asset (404).
 *
 * Presets: `preset:<name>` expands to the operations stored for the app. Apps with
 * `strict_transforms` accept nothing else through transform URLs (Cloudinary "strict
 * transformations", imgproxy `IMGPROXY_ONLY_PRESETS`), so a leaked key cannot mint arbitrary work.
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { DatabaseHandle, Tx } from '../db/database.js';
import type { AppSettings } from '../db/schema.js';
import type { MasterKeys } from '../crypto/master.js';
import { unwrapKey, wrapKey } from '../crypto/keywrap.js';
import { publicId } from '../crypto/random.js';
import { AppError, notFound } from '../errors.js';
import { appendAudit } from '../audit/log.js';
import type { Ctx } from '../tenants/index.js';
import { MAX_OPERATIONS_LENGTH } from '../media/image/operations/registry.js';
import { appSettings, compileOperations, type CompiledOperations } from './processing.js';
import { getAsset, type Asset } from '../assets/assets.js';
import './schema.js';
import type { WrappedColumn } from '../crypto/keywrap.js';
import { ALL_ROWS, keysetPage, mapPage, type ListOrder, type Page, type PageRequest } from '../db/pagination.js';

/** Transform key lists: oldest first, keyset on (created_at, id). */
export const TRANSFORM_KEY_ORDER: ListOrder = { keys: [{ column: 'created_at', type: 'timestamptz' }, { column: 'id', type: 'text' }], direction: 'asc' };
/** Preset lists: by name (unique per app). */
export const PRESET_ORDER: ListOrder = { keys: [{ column: 'name', type: 'text' }], direction: 'asc' };

/** Key ids: `tfk_` + 22 base62. */
export const TRANSFORM_KID_PATTERN = /^tfk_[0-9A-Za-z]{22}$/;
/** Preset names. */
export const PRESET_NAME_PATTERN = /^[a-z0-9][a-z0-9_-]{0,62}$/;
/** Transform keys per app. */
export const MAX_TRANSFORM_KEYS = 10;
/** Presets per app. */
export const MAX_PRESETS = 100;

const ASSET_ID = /^ast_[0-9A-Za-z]{22}$/;
const MAC = /^[A-Za-z0-9_-]{43}$/;
const EXP = /^[0-9]{1,12}$/;

/** Key-wrap context of a transform-URL signing key: binds the wrapped value to its org and key id. */
export const transformKeyContext = (orgId: string, kid: string): string => `transform-key:${orgId}:${kid}`;

/**
 * The string a transform URL's MAC covers: `/{operations}/{asset id}?exp={exp}`.
 * `operations` is used exactly as it appears in the URL path (percent-encoding included).
 */
export function transformSigningString(operations: string, assetId: string, exp: number | string): string {
  return `/${operations}/${assetId}?exp=${exp}`;
}

/** base64url(HMAC-SHA256(secret, signing string)), 43 characters. */
export function transformMac(secret: Buffer, signingString: string): string {
  return createHmac('sha256', secret).update(signingString, 'utf8').digest('base64url');
}

/**
 * Builds a signed transform path (what a customer's backend does; also used by tests and the bench).
 * @returns `/t/{kid}.{mac}/{operations}/{asset id}?exp={exp}`
 */
export function signTransformPath(kid: string, secret: Buffer, operations: string, assetId: string, exp: number): string {
  const mac = transformMac(secret, transformSigningString(operations, assetId, exp));
  return `/t/${kid}.${mac}/${operations}/${assetId}?exp=${exp}`;
}

/** A transform URL taken apart (not yet verified). */
export interface ParsedTransformUrl {
  kid: string;
  mac: string;
  /** Operations as they appear in the URL (percent-encoded). */
  operations: string;
  assetId: string;
  exp: number;
  signingString: string;
}

function malformed(reason: string): AppError {
  return new AppError('ERR_VALIDATION', 'The transform URL is malformed.', { details: { reason } });
}

/**
 * Splits a raw request URL (`req.url`: path and query as sent) into its parts.
 * @throws AppError `ERR_VALIDATION` (400) for any other shape, unknown query parameters included.
 */
export function parseTransformUrl(rawUrl: string): ParsedTransformUrl {
  if (rawUrl.length > MAX_OPERATIONS_LENGTH + 256) throw malformed('too_long');
  const q = rawUrl.indexOf('?');
  const path = q < 0 ? rawUrl : rawUrl.slice(0, q);
  const query = q < 0 ? '' : rawUrl.slice(q + 1);
  if (!path.startsWith('/t/')) throw malformed('path');
  const parts = path.slice(3).split('/');
  if (parts.length < 3) throw malformed('path');
  const sig = parts[0]!;
  const assetId = parts[parts.length - 1]!;
  const operations = parts.slice(1, -1).join('/');
  const dot = sig.indexOf('.');
  const kid = dot < 0 ? '' : sig.slice(0, dot);
  const mac = dot < 0 ? '' : sig.slice(dot + 1);
  if (!TRANSFORM_KID_PATTERN.test(kid) || !MAC.test(mac)) throw malformed('signature');
  if (!ASSET_ID.test(assetId)) throw malformed('asset_id');
  if (operations === '') throw malformed('operations');
  // Exactly one query parameter: anything else would vary the CDN cache key without being signed.
  const m = /^exp=([0-9]+)$/.exec(query);
  if (!m || !EXP.test(m[1]!)) throw malformed('exp');
  const exp = Number(m[1]);
  return { kid, mac, operations, assetId, exp, signingString: transformSigningString(operations, assetId, m[1]!) };
}

/** A verified key: which app (and so which org) the URL speaks for. */
export interface TransformKeyInfo {
  kid: string;
  orgId: string;
  appId: string;
  secret: Buffer;
}

/** Per-app facts a transform needs, cached briefly. */
interface AppFacts {
  settings: AppSettings;
  presets: Map<string, string>;
}

/**
 * Looks up keys and app facts with a short in-memory cache (default 2 s, the same bound as API key
 * revocation): deleting a key or changing a preset reaches every node within that time.
 */
export class TransformKeys {
  private readonly keys = new Map<string, { at: number; info: TransformKeyInfo | null }>();
  private readonly apps = new Map<string, { at: number; facts: AppFacts }>();
  private readonly assets = new Map<string, { at: number; asset: Asset }>();

  constructor(
    private readonly db: DatabaseHandle,
    private readonly master: MasterKeys,
    private readonly opts: { cacheTtlMs?: number; now?: () => number } = {},
  ) {}

  private now(): number {
    return this.opts.now?.() ?? Date.now();
  }

  private fresh(at: number): boolean {
    return this.now() - at < (this.opts.cacheTtlMs ?? 2000);
  }

  /** The key `kid`, or null. Owner-level lookup: the URL carries no tenant, the key names it. */
  async key(kid: string): Promise<TransformKeyInfo | null> {
    const hit = this.keys.get(kid);
    if (hit && this.fresh(hit.at)) return hit.info;
    const row = await this.db.system.selectFrom('transform_keys').select(['id', 'org_id', 'app_id', 'wrapped']).where('id', '=', kid).executeTakeFirst();
    const info = row ? { kid: row.id, orgId: row.org_id, appId: row.app_id, secret: unwrapKey(this.master.all, row.wrapped, transformKeyContext(row.org_id, row.id)) } : null;
    if (this.keys.size > 10_000) this.keys.clear();
    this.keys.set(kid, { at: this.now(), info });
    return info;
  }

  /** Settings and presets of an app (tenant transaction). */
  async app(orgId: string, appId: string): Promise<AppFacts> {
    const k = `${orgId}/${appId}`;
    const hit = this.apps.get(k);
    if (hit && this.fresh(hit.at)) return hit.facts;
    const facts = await this.db.withTenant(orgId, async (trx) => {
      const settings = await appSettings(trx, orgId, appId);
      const rows = await trx.selectFrom('transform_presets').select(['name', 'operations']).where('org_id', '=', orgId).where('app_id', '=', appId).execute();
      return { settings, presets: new Map(rows.map((r) => [r.name, r.operations])) };
    });
    if (this.apps.size > 10_000) this.apps.clear();
    this.apps.set(k, { at: this.now(), facts });
    return facts;
  }

  /**
   * Verifies a parsed URL: the key exists and the MAC matches (constant time), then the expiry.
   * @throws AppError `ERR_SIGNATURE_INVALID` (403) or `ERR_URL_EXPIRED` (410).
   */
  async verify(url: ParsedTransformUrl): Promise<TransformKeyInfo> {
    const info = await this.key(url.kid);
    // Compute a MAC even for an unknown key id so that timing does not reveal which ids exist.
    const expected = Buffer.from(transformMac(info?.secret ?? DUMMY_KEY, url.signingString), 'utf8');
    const given = Buffer.from(url.mac, 'utf8');
    const ok = expected.length === given.length && timingSafeEqual(expected, given);
    if (!info || !ok) throw new AppError('ERR_SIGNATURE_INVALID', 'The transform URL signature is not valid.');
    if (url.exp * 1000 <= this.now()) throw new AppError('ERR_URL_EXPIRED', 'The transform URL has expired.');
    return info;
  }

  /**
   * An asset of `orgId` (tenant transaction), cached for the same short TTL: a CDN miss storm on one
   * image must not turn into one database transaction per request. Expiry is re-checked on every
   * use; a deletion reaches transform URLs within the TTL, as a key revocation does.
   */
  async asset(orgId: string, assetId: string): Promise<Asset> {
    const k = `${orgId}/${assetId}`;
    const now = this.now();
    const hit = this.assets.get(k);
    let asset: Asset;
    if (hit && this.fresh(hit.at)) {
      asset = hit.asset;
    } else {
      asset = await this.db.withTenant(orgId, (trx) => getAsset(trx, orgId, assetId, now));
      if (this.assets.size > 10_000) this.assets.clear();
      this.assets.set(k, { at: now, asset });
    }
    if (asset.expiresAt !== null && new Date(asset.expiresAt).getTime() <= now) throw notFound('asset');
    return asset;
  }

  /** Forgets one asset (deleted on this node). */
  forgetAsset(orgId: string, assetId: string): void {
    this.assets.delete(`${orgId}/${assetId}`);
  }

  /** Forgets cached keys, app facts and assets (after a change made by this node). */
  invalidate(): void {
    this.keys.clear();
    this.apps.clear();
    this.assets.clear();
  }
}

const DUMMY_KEY = randomBytes(32);

/**
 * Decrypted source images of recent transform requests, in memory only: bounded in bytes (default
 * 64 MiB) and in age (default 2 s, the same bound as every other transform cache), with concurrent
 * loads of one source shared. A page asking for five sizes of one image (srcset), or a CDN miss
 * storm, then reads and decrypts the blob once instead of once per request.
 *
 * Security: plaintext never leaves process memory (as during processing itself); entries are keyed
 * by org, asset id and content hash, so a replaced or deleted asset is never served from here
 * beyond the TTL, and `clear()` drops everything.
 */
export class SourceCache {
  private readonly entries = new Map<string, { at: number; bytes: Buffer }>();
  private readonly loading = new Map<string, Promise<Buffer>>();
  private size = 0;

  constructor(private readonly opts: { maxBytes?: number; ttlMs?: number; now?: () => number } = {}) {}

  private now(): number {
    return this.opts.now?.() ?? Date.now();
  }

  /** The cached bytes for `key`, or `load()` (shared by concurrent callers, cached when small enough). */
  async get(key: string, load: () => Promise<Buffer>): Promise<Buffer> {
    const hit = this.entries.get(key);
    if (hit && this.now() - hit.at < (this.opts.ttlMs ?? 2000)) return hit.bytes;
    if (hit) this.remove(key);
    const pending = this.loading.get(key);
    if (pending) return pending;
    const p = load().finally(() => this.loading.delete(key));
    this.loading.set(key, p);
    const bytes = await p;
    const max = this.opts.maxBytes ?? 64 * 1024 * 1024;
    if (bytes.length <= max / 4) {
      this.remove(key);
      this.entries.set(key, { at: this.now(), bytes });
      this.size += bytes.length;
      // Oldest first (Map keeps insertion order).
      for (const [k] of this.entries) {
        if (this.size <= max) break;
        this.remove(k);
      }
    }
    return bytes;
  }

  private remove(key: string): void {
    const e = this.entries.get(key);
    if (!e) return;
    this.entries.delete(key);
    this.size -= e.bytes.length;
  }

  /** Drops every entry of one asset (deleted on this node): its plaintext is not served again. */
  forgetAsset(orgId: string, assetId: string): void {
    const prefix = `${orgId}/${assetId}/`;
    for (const k of [...this.entries.keys()]) if (k.startsWith(prefix)) this.remove(k);
  }

  /** Drops every entry. */
  clear(): void {
    this.entries.clear();
    this.size = 0;
  }
}

/**
 * Expands `preset:<name>` segments and validates the result with the operation registry.
 * In strict mode every segment must be a preset.
 * @throws AppError `ERR_VALIDATION` (400; unknown preset, invalid operation) or
 *   `ERR_PRESET_REQUIRED` (403) for anything but a preset in strict mode.
 */
/** The operations of preset `segment` (`preset:NAME`), or `ERR_VALIDATION` naming the unknown preset. */
function presetOperations(segment: string, presets: ReadonlyMap<string, string>): string {
  const name = safeDecode(segment.slice('preset:'.length));
  const ops = PRESET_NAME_PATTERN.test(name) ? presets.get(name) : undefined;
  if (ops === undefined) throw new AppError('ERR_VALIDATION', `Unknown preset "${name.slice(0, 63)}"; list this app's presets with GET /v1/apps/{id}/transform-presets.`, { details: { operation: 'preset', reason: 'unknown_preset' } });
  return ops;
}

/**
 * Expands `preset:NAME` in either spelling of operations (a `/`-separated string, or an array whose
 * string items may be `preset:NAME`); everything else is passed on for validation as written.
 */
export function expandPresetSegments(operations: unknown, presets: ReadonlyMap<string, string>): unknown {
  if (typeof operations === 'string') {
    return operations
      .split('/')
      .map((s) => (s.startsWith('preset:') ? presetOperations(s, presets) : s))
      .join('/');
  }
  if (Array.isArray(operations)) {
    return operations.flatMap((o) => (typeof o === 'string' && o.startsWith('preset:') ? presetOperations(o, presets).split('/') : [o]));
  }
  return operations;
}

export function resolveTransformOperations(operations: string, facts: AppFacts): CompiledOperations {
  const strict = facts.settings.strict_transforms === true;
  const expanded: string[] = [];
  for (const segment of operations.split('/')) {
    if (segment.startsWith('preset:')) {
      expanded.push(presetOperations(segment, facts.presets));
    } else if (strict) {
      throw new AppError('ERR_PRESET_REQUIRED', 'This app only accepts named presets in transform URLs (strict mode).');
    } else {
      expanded.push(segment);
    }
  }
  return compileOperations(expanded.filter((s) => s !== '').join('/'));
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return '';
  }
}

/**
 * A strong validator for a transform response, known before any pixel is decoded: the source bytes'
 * SHA-256, the canonical operations, the negotiated-format class, and the pipeline version.
 */
export function transformEtag(parts: { sourceSha256: string; operations: string; accept: string }): string {
  const h = createHash('sha256').update(`obscura-transform/v1\n${parts.sourceSha256}\n${parts.operations}\n${parts.accept}`).digest('base64url');
  return `"${h.slice(0, 32)}"`;
}

/** The Accept classes `format:auto` distinguishes (avif, webp, other), for the ETag and `Vary`. */
export function acceptClass(accept: string | undefined): string {
  const a = (accept ?? '').toLowerCase();
  return `${a.includes('image/avif') ? 'avif' : ''}${a.includes('image/webp') ? 'webp' : ''}` || 'other';
}

// ----- key and preset management (tenant transactions) -----

/** A transform key as listed (never the secret). */
export interface TransformKeyView {
  id: string;
  app_id: string;
  created_at: string;
}

async function requireApp(trx: Tx, orgId: string, appId: string): Promise<void> {
  const app = await trx.selectFrom('apps').select('id').where('org_id', '=', orgId).where('id', '=', appId).executeTakeFirst();
  if (!app) throw notFound('app');
}

/** Creates a signing key for an app. @returns the key with its secret (base64url, 32 bytes), shown once. */
export async function createTransformKey(trx: Tx, master: MasterKeys, orgId: string, appId: string, ctx: Ctx): Promise<TransformKeyView & { secret: string }> {
  await requireApp(trx, orgId, appId);
  const count = await trx.selectFrom('transform_keys').select((eb) => eb.fn.countAll<number>().as('n')).where('org_id', '=', orgId).where('app_id', '=', appId).executeTakeFirstOrThrow();
  if (Number(count.n) >= MAX_TRANSFORM_KEYS) throw new AppError('ERR_CONFLICT', `An app may have at most ${MAX_TRANSFORM_KEYS} transform keys; delete an old one first.`);
  const id = publicId('tfk');
  const secret = randomBytes(32);
  const row = await trx
    .insertInto('transform_keys')
    .values({ id, org_id: orgId, app_id: appId, wrapped: wrapKey(master.current, master.currentId, secret, transformKeyContext(orgId, id)), master_key_id: master.currentId })
    .returning(['id', 'app_id', 'created_at'])
    .executeTakeFirstOrThrow();
  await appendAudit(trx, { orgId, actor: ctx.actor, action: 'transform_key.create', target: { transform_key: id, app: appId }, ip: ctx.ip, requestId: ctx.requestId });
  const out = { id: row.id, app_id: row.app_id, created_at: new Date(row.created_at).toISOString(), secret: secret.toString('base64url') };
  secret.fill(0);
  return out;
}

/** The app's transform keys (ids and dates). */
export async function listTransformKeys(trx: Tx, orgId: string, appId: string, page: PageRequest = ALL_ROWS): Promise<Page<TransformKeyView>> {
  await requireApp(trx, orgId, appId);
  const q = trx.selectFrom('transform_keys').select(['id', 'app_id', 'created_at']).where('org_id', '=', orgId).where('app_id', '=', appId);
  return mapPage(await keysetPage(q, TRANSFORM_KEY_ORDER, page), (r) => ({ id: r.id, app_id: r.app_id, created_at: new Date(r.created_at).toISOString() }));
}

/** Deletes a key: URLs signed with it stop verifying (within the cache TTL on other nodes). */
export async function deleteTransformKey(trx: Tx, orgId: string, appId: string, kid: string, ctx: Ctx): Promise<void> {
  const r = await trx.deleteFrom('transform_keys').where('org_id', '=', orgId).where('app_id', '=', appId).where('id', '=', kid).executeTakeFirst();
  if (Number(r.numDeletedRows) === 0) throw notFound('transform key');
  await appendAudit(trx, { orgId, actor: ctx.actor, action: 'transform_key.delete', target: { transform_key: kid, app: appId }, ip: ctx.ip, requestId: ctx.requestId });
}

/** A preset as listed. */
export interface PresetView {
  name: string;
  operations: string;
  updated_at: string;
}

/**
 * Creates or replaces a preset. The operations are validated now (the registry, no presets inside
 * presets) and stored in canonical form.
 */
export async function putPreset(trx: Tx, orgId: string, appId: string, name: string, operations: unknown, ctx: Ctx): Promise<PresetView> {
  if (!PRESET_NAME_PATTERN.test(name)) throw new AppError('ERR_VALIDATION', 'Preset names are 1-63 characters of a-z, 0-9, _ and -.', { details: { field: 'name' } });
  const { canonical } = compileOperations(operations);
  if (canonical === '') throw new AppError('ERR_VALIDATION', 'A preset needs at least one operation.', { details: { field: 'operations' } });
  await requireApp(trx, orgId, appId);
  const count = await trx.selectFrom('transform_presets').select((eb) => eb.fn.countAll<number>().as('n')).where('org_id', '=', orgId).where('app_id', '=', appId).where('name', '<>', name).executeTakeFirstOrThrow();
  if (Number(count.n) >= MAX_PRESETS) throw new AppError('ERR_CONFLICT', `An app may have at most ${MAX_PRESETS} presets.`);
  const now = new Date();
  const row = await trx
    .insertInto('transform_presets')
    .values({ org_id: orgId, app_id: appId, name, operations: canonical, updated_at: now })
    .onConflict((oc) => oc.columns(['app_id', 'name']).doUpdateSet({ operations: canonical, updated_at: now }))
    .returning(['name', 'operations', 'updated_at'])
    .executeTakeFirstOrThrow();
  await appendAudit(trx, { orgId, actor: ctx.actor, action: 'transform_preset.put', target: { preset: name, app: appId }, data: { operations: canonical }, ip: ctx.ip, requestId: ctx.requestId });
  return { name: row.name, operations: row.operations, updated_at: new Date(row.updated_at).toISOString() };
}

/** The app's presets. */
export async function listPresets(trx: Tx, orgId: string, appId: string, page: PageRequest = ALL_ROWS): Promise<Page<PresetView>> {
  await requireApp(trx, orgId, appId);
  const q = trx.selectFrom('transform_presets').select(['name', 'operations', 'updated_at']).where('org_id', '=', orgId).where('app_id', '=', appId);
  return mapPage(await keysetPage(q, PRESET_ORDER, page), (r) => ({ name: r.name, operations: r.operations, updated_at: new Date(r.updated_at).toISOString() }));
}

/** Deletes a preset. */
export async function deletePreset(trx: Tx, orgId: string, appId: string, name: string, ctx: Ctx): Promise<void> {
  const r = await trx.deleteFrom('transform_presets').where('org_id', '=', orgId).where('app_id', '=', appId).where('name', '=', name).executeTakeFirst();
  if (Number(r.numDeletedRows) === 0) throw notFound('preset');
  await appendAudit(trx, { orgId, actor: ctx.actor, action: 'transform_preset.delete', target: { preset: name, app: appId }, ip: ctx.ip, requestId: ctx.requestId });
}


/** The master-wrapped column of this capability, for master-key rotation (`keys rotate-master`). */
export const TRANSFORM_KEY_COLUMNS: readonly WrappedColumn[] = [
  { table: 'transform_keys', key: ['id'], fields: ['org_id'], column: 'wrapped', masterIdColumn: 'master_key_id', context: (r) => transformKeyContext(String(r.org_id), String(r.id)) },
];
