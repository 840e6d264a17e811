/**
 * Signed download URLs (`/v1/files/{id}?exp&kid&sig[&dl=1]`): minting one for an asset of the
 * caller's org (lifetime clamped to the operator's maximum and never beyond the asset's own expiry),
 * and resolving one presented without a credential (signature and expiry first, in constant time;
 * then the asset, which the signature names; then whether its app requires a credential as well).
 */
import { AppError } from '../errors.js';
import { appendAudit } from '../audit/log.js';
import type { AppSettings } from '../db/schema.js';
import { getAsset, toAsset, type Asset, type AssetDeps } from './assets.js';
import { HLS_PLAYLIST_MIME } from '../media/video/pipeline.js';
import type { Disposition, UrlSigner } from './signing.js';

/** What minting and resolving signed URLs need. */
export interface DownloadDeps extends Pick<AssetDeps, 'db' | 'now'> {
  /** This node's cache of resolved signed downloads (see {@link ResolvedDownloads}); none = read every time. */
  cache?: ResolvedDownloads | undefined;
  signer: UrlSigner;
  /** The server's public URL: signed URLs are absolute. */
  publicUrl: string;
  /** `OBSCURA_URL_TTL_SECONDS` and `OBSCURA_URL_MAX_TTL_SECONDS`. */
  downloads: { defaultTtlSeconds: number; maxTtlSeconds: number };
}

/** Mints a signed download URL for an asset of `orgId` (404 for any other org's). */
export async function createDownloadUrl(
  deps: DownloadDeps,
  orgId: string,
  assetId: string,
  o: { ttlSeconds?: number | undefined; disposition?: Disposition | undefined } = {},
): Promise<{ url: string; expiresAt: string }> {
  const asset = await deps.db.withTenant(orgId, (trx) => getAsset(trx, orgId, assetId));
  const ttl = Math.min(o.ttlSeconds ?? deps.downloads.defaultTtlSeconds, deps.downloads.maxTtlSeconds);
  const nowS = Math.floor((deps.now?.() ?? Date.now()) / 1000);
  // A URL never outlives its asset.
  const exp = asset.expiresAt ? Math.min(nowS + ttl, Math.floor(new Date(asset.expiresAt).getTime() / 1000)) : nowS + ttl;
  const qs = await deps.signer.sign({ assetId: asset.id, exp, disposition: o.disposition ?? 'inline' });
  return { url: `${deps.publicUrl}/v1/files/${asset.id}?${qs}`, expiresAt: new Date(exp * 1000).toISOString() };
}

/**
 * Resolves a presented signed URL to its asset.
 * @throws AppError `ERR_SIGNATURE_INVALID` (403), `ERR_URL_EXPIRED` (410) before any lookup;
 *   `ERR_NOT_FOUND` for a deleted or expired asset.
 * @returns the asset, and whether its app also requires a credential of the org (`require_authorized_urls`).
 */
export async function resolveSignedDownload(
  deps: DownloadDeps,
  q: { assetId: string; exp: unknown; kid: unknown; sig: unknown; disposition: Disposition },
  nowMs: number,
): Promise<{ asset: Asset; requiresCredential: boolean; cached: boolean }> {
  await deps.signer.verify(q, Math.floor(nowMs / 1000));
  const cached = deps.cache?.get(q.assetId, nowMs);
  if (cached) {
    // Expiry is the asset's own: checked on every use, cached or not.
    if (cached.asset.expiresAt !== null && new Date(cached.asset.expiresAt).getTime() <= nowMs) throw new AppError('ERR_NOT_FOUND', 'The asset does not exist.');
    return { ...cached, cached: true };
  }
  const resolved = await findSignedAsset(deps.db, q.assetId, nowMs);
  if (!resolved) throw new AppError('ERR_NOT_FOUND', 'The asset does not exist.');
  deps.cache?.set(resolved, nowMs);
  return { ...resolved, cached: false };
}

/**
 * The live asset a verified signature names, and whether its app requires a credential too: one
 * statement (issue 12, item 3: a cache miss used to cost six round trips to the database). It is an
 * owner-level read because the signature names the asset but not its org, and the org is read from
 * the same row, so a tenant transaction (RLS) could not narrow it further; the asset id, bound by the
 * HMAC, is the scope.
 */
async function findSignedAsset(db: DownloadDeps['db'], assetId: string, nowMs: number): Promise<{ asset: Asset; requiresCredential: boolean } | undefined> {
  const row = await db.system
    .selectFrom('assets')
    .innerJoin('apps', (join) => join.onRef('apps.id', '=', 'assets.app_id').onRef('apps.org_id', '=', 'assets.org_id'))
    .selectAll('assets')
    .select('apps.settings as app_settings')
    .where('assets.id', '=', assetId)
    .where('assets.deleted_at', 'is', null)
    .executeTakeFirst();
  if (!row) return undefined;
  const { app_settings: raw, ...assetRow } = row;
  const asset = toAsset(assetRow);
  // The same liveness rule as getAsset: expired unless under legal hold (toAsset clears expiresAt then).
  if (asset.expiresAt !== null && new Date(asset.expiresAt).getTime() <= nowMs) return undefined;
  const settings = (typeof raw === 'string' ? JSON.parse(raw) : raw) as AppSettings | null;
  return { asset, requiresCredential: settings?.require_authorized_urls === true };
}

/**
 * Resolved signed downloads (the asset row and whether its app wants a credential too), so a page of
 * thumbnails or a player fetching segments costs no database round trip per request (issue 12,
 * item 3). Bounded in bytes (an estimate of each entry's size; oldest dropped first) and in age:
 * entries live `ttlMs`, the key-cache bound (`OBSCURA_KEY_CACHE_TTL_MS`), so a deletion or a settings
 * change made on another node reaches this one within the same bound as a key revocation. A
 * deletion on this node drops the entry at once (`forget`, called by `deleteAsset` through
 * `AssetDeps.assetGone`), and an org erasure drops the org's (`forgetOrg`). Holds no plaintext.
 */
export class ResolvedDownloads {
  private readonly entries = new Map<string, { at: number; bytes: number; value: { asset: Asset; requiresCredential: boolean } }>();
  private bytes = 0;

  constructor(private readonly opts: { ttlMs: number; maxBytes: number }) {}

  /** A fresh entry for `assetId`, or undefined. */
  get(assetId: string, nowMs: number): { asset: Asset; requiresCredential: boolean } | undefined {
    const e = this.entries.get(assetId);
    if (!e) return undefined;
    if (nowMs - e.at >= this.opts.ttlMs) {
      this.forget(assetId);
      return undefined;
    }
    return e.value;
  }

  /** Remembers a resolution read from the database at `nowMs`. */
  set(value: { asset: Asset; requiresCredential: boolean }, nowMs: number): void {
    if (this.opts.ttlMs <= 0 || this.opts.maxBytes <= 0) return;
    this.forget(value.asset.id);
    // Strings are UTF-16 in V8; the fixed part covers the object, the map slot and the numbers.
    const bytes = 400 + 2 * (value.asset.id.length + value.asset.orgId.length + value.asset.appId.length + value.asset.mime.length + value.asset.sha256.length + value.asset.blobKey.length + value.asset.tenantKeyId.length + (value.asset.filename?.length ?? 0)) + (value.asset.video ? 1024 : 0);
    this.entries.set(value.asset.id, { at: nowMs, bytes, value });
    this.bytes += bytes;
    for (const [k] of this.entries) {
      if (this.bytes <= this.opts.maxBytes) break;
      this.forget(k);
    }
  }

  /** Drops one asset (deleted on this node). */
  forget(assetId: string): void {
    const e = this.entries.get(assetId);
    if (!e) return;
    this.entries.delete(assetId);
    this.bytes -= e.bytes;
  }

  /** Drops every asset of an app (its settings, e.g. `require_authorized_urls`, changed on this node). */
  forgetApp(appId: string): void {
    for (const [k, e] of this.entries) if (e.value.asset.appId === appId) this.forget(k);
  }

  /** Drops every asset of an org (erased on this node). */
  forgetOrg(orgId: string): void {
    for (const [k, e] of this.entries) if (e.value.asset.orgId === orgId) this.forget(k);
  }

  /** Bytes held (estimated). */
  get size(): number {
    return this.bytes;
  }
}

/** How a stored playlist names another output of its package (replaced by a signed URL when served). */
export const HLS_ASSET_REF = 'obscura-asset:';
/** Largest playlist rewritten in memory. */
const MAX_PLAYLIST_BYTES = 1024 * 1024;

/**
 * Whether an asset is an index of a package we produced — an HLS playlist or a storyboard's WebVTT
 * file — whose `obscura-asset:` references are signed when served (only outputs: an upload never is).
 */
export function isPackagePlaylist(asset: Asset): boolean {
  return asset.kind === 'output' && (asset.mime === HLS_PLAYLIST_MIME || asset.mime === 'text/vtt') && asset.size <= MAX_PLAYLIST_BYTES;
}

/**
 * Serves an HLS playlist of a package: every `obscura-asset:<id>` becomes a signed URL of that output
 * (an asset of the same org, or 404) that expires exactly when the playlist's own URL does, so a
 * player needs no other credential and the whole package stops working together.
 */
export async function signPlaylist(deps: DownloadDeps, asset: Asset, text: string, exp: number): Promise<string> {
  const ids = [...new Set([...text.matchAll(/obscura-asset:(ast_[0-9A-Za-z]{22})/g)].map((m) => m[1]!))];
  const urls = new Map<string, string>();
  for (const id of ids) {
    const part = await deps.db.withTenant(asset.orgId, (trx) => getAsset(trx, asset.orgId, id, deps.now?.() ?? Date.now()));
    const qs = await deps.signer.sign({ assetId: part.id, exp, disposition: 'inline' });
    urls.set(id, `${deps.publicUrl}/v1/files/${part.id}?${qs}`);
  }
  return text.replace(/obscura-asset:(ast_[0-9A-Za-z]{22})/g, (_, id: string) => urls.get(id)!);
}

/** Records that an asset's ciphertext failed authentication while being served (never throws). */
export async function auditIntegrityFailure(deps: Pick<AssetDeps, 'db'>, asset: Asset, at: { ip: string; requestId: string }): Promise<void> {
  await deps.db.withTenant(asset.orgId, (trx) =>
    appendAudit(trx, { orgId: asset.orgId, actor: { type: 'system', id: 'download' }, action: 'asset.integrity_failure', target: { asset: asset.id, app: asset.appId }, ip: at.ip, requestId: at.requestId }),
  );
}
