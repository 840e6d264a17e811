/**
 * Presigned direct uploads (`POST /v1/assets/upload-url`): a single-use URL, valid 15 minutes, bound to
 * an exact size and declared type.
 *
 * - S3 store: an S3 presigned PUT into a `staging/` prefix with server-side encryption required. The
 *   client then calls `complete`, which reads the staged object, sniffs and validates it, encrypts it
 *   into the store like any upload, and deletes the staged object.
 * - Local store: a PUT to this server signed with HMAC (the same signer as downloads). The bytes go
 *   straight through the encrypting ingest, so plaintext never touches the disk; the PUT completes it.
 *
 * Single use is enforced by an atomic `UPDATE … WHERE used_at IS NULL`; a failed ingest releases the
 * intent again so the client can retry within the validity window.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { Readable } from 'node:stream';
import type { UploadPathSettings } from './settings.js';
import { AppError, notFound } from '../errors.js';
import { publicId } from '../crypto/random.js';
import type { Principal } from '../auth/keys.js';
import { getApp, type Ctx } from '../tenants/index.js';
import { appendAudit } from '../audit/log.js';
import { allowedTypes, ingest, type Asset, type AssetDeps } from './assets.js';
import { reserveUpload } from './upload-limits.js';

export interface UploadIntentDeps extends AssetDeps {
  config: UploadPathSettings;
  /** HMAC key for local direct-upload URLs (derived from the master key by the caller). */
  directUploadKey: Buffer;
}

export interface UploadIntentView {
  id: string;
  method: 'PUT';
  url: string;
  headers: Record<string, string>;
  expires_at: string;
  complete_url: string | null;
}

const stagingKey = (orgId: string, id: string) => `staging/${orgId}/${id}`;

function directSignature(key: Buffer, id: string, exp: number): string {
  return createHmac('sha256', key).update(`obscura-direct-upload-v1\n${id}\n${exp}`).digest('base64url');
}

/** Creates the intent and returns where and how to PUT. Checks type and size before anything is signed. */
export async function createUploadIntent(
  deps: UploadIntentDeps,
  p: Principal,
  body: { content_type: string; content_length: number; filename?: string },
  ctx: Ctx,
): Promise<UploadIntentView> {
  const { settings } = await deps.db.withTenant(p.orgId, (trx) => getApp(trx, p.orgId, p.appId));
  if (!allowedTypes(settings).has(body.content_type)) {
    throw new AppError('ERR_UNSUPPORTED_MEDIA_TYPE', `Files of type ${body.content_type} are not accepted by this app.`);
  }
  const max = Math.min(deps.config.uploads.maxBytes, settings.max_upload_bytes ?? Number.MAX_SAFE_INTEGER);
  if (body.content_length > max) throw new AppError('ERR_PAYLOAD_TOO_LARGE', `The file exceeds the ${max}-byte limit.`, { details: { limit: max } });
  const id = publicId('upl');
  const ttl = deps.config.uploads.presignTtlSeconds;
  const nowMs = deps.now?.() ?? Date.now();
  const exp = Math.floor(nowMs / 1000) + ttl;
  const key = stagingKey(p.orgId, id);
  await deps.db.withTenant(p.orgId, async (trx) => {
    // An unused URL holds its declared length like an unfinished tus upload (for at most its lifetime).
    await reserveUpload(trx, deps.config.uploads.limits, p.orgId, p.appId, body.content_length, new Date(nowMs));
    await trx
      .insertInto('upload_intents')
      .values({
        id,
        org_id: p.orgId,
        app_id: p.appId,
        staging_key: key,
        content_type: body.content_type,
        content_length: body.content_length,
        filename: body.filename ?? null,
        created_by: p.keyId,
        expires_at: new Date(exp * 1000),
      })
      .execute();
    await appendAudit(trx, { orgId: p.orgId, actor: ctx.actor, action: 'upload.intent', target: { upload: id, app: p.appId }, data: { content_type: body.content_type, content_length: body.content_length }, ip: ctx.ip, requestId: ctx.requestId });
  });
  if (deps.store.supports('presign') && deps.store.presignPut) {
    const signed = await deps.store.presignPut(key, { contentLength: body.content_length, contentType: body.content_type, expiresInSeconds: ttl });
    return { id, method: 'PUT', url: signed.url, headers: signed.headers, expires_at: new Date(exp * 1000).toISOString(), complete_url: `${deps.config.publicUrl}/v1/assets/upload-url/${id}/complete` };
  }
  const sig = directSignature(deps.directUploadKey, id, exp);
  return {
    id,
    method: 'PUT',
    url: `${deps.config.publicUrl}/v1/uploads/direct/${id}?exp=${exp}&sig=${sig}`,
    headers: { 'content-type': body.content_type, 'content-length': String(body.content_length) },
    expires_at: new Date(exp * 1000).toISOString(),
    complete_url: null,
  };
}

type IntentRow = { id: string; org_id: string; app_id: string; staging_key: string; content_type: string; content_length: number | string; filename: string | null; created_by: string | null; expires_at: Date };

/** Claims an unused, unexpired intent atomically (single use). */
async function claim(deps: AssetDeps, orgId: string, id: string, nowMs: number): Promise<IntentRow> {
  return deps.db.withTenant(orgId, async (trx) => {
    const row = await trx.selectFrom('upload_intents').selectAll().where('org_id', '=', orgId).where('id', '=', id).executeTakeFirst();
    if (!row) throw notFound('upload');
    if (new Date(row.expires_at).getTime() <= nowMs) throw new AppError('ERR_URL_EXPIRED', 'This upload URL has expired; request a new one.');
    const claimed = await trx.updateTable('upload_intents').set({ used_at: new Date(nowMs) }).where('org_id', '=', orgId).where('id', '=', id).where('used_at', 'is', null).returningAll().executeTakeFirst();
    if (!claimed) throw new AppError('ERR_CONFLICT', 'This upload URL was already used.');
    return claimed as IntentRow;
  });
}

async function release(deps: AssetDeps, orgId: string, id: string): Promise<void> {
  await deps.db.withTenant(orgId, (trx) => trx.updateTable('upload_intents').set({ used_at: null }).where('org_id', '=', orgId).where('id', '=', id).where('asset_id', 'is', null).execute());
}

async function finish(deps: AssetDeps, intent: IntentRow, asset: Asset): Promise<void> {
  await deps.db.withTenant(intent.org_id, (trx) => trx.updateTable('upload_intents').set({ asset_id: asset.id }).where('org_id', '=', intent.org_id).where('id', '=', intent.id).execute());
}

/** Local store: the signed PUT itself. Verifies the HMAC (403/410), then ingests exactly the bound size and type. */
export async function receiveDirectUpload(
  deps: UploadIntentDeps,
  id: string,
  q: { exp?: string; sig?: string },
  req: { body: Readable; contentType: string; contentLength: number; ip: string; requestId: string },
): Promise<Asset> {
  const nowMs = deps.now?.() ?? Date.now();
  if (!q.exp || !q.sig || !/^\d{1,12}$/.test(q.exp) || !/^[A-Za-z0-9_-]{43}$/.test(q.sig)) throw new AppError('ERR_SIGNATURE_INVALID', 'The upload URL signature is not valid.');
  const expected = Buffer.from(directSignature(deps.directUploadKey, id, Number(q.exp)), 'base64url');
  const given = Buffer.from(q.sig, 'base64url');
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) throw new AppError('ERR_SIGNATURE_INVALID', 'The upload URL signature is not valid.');
  if (Number(q.exp) * 1000 <= nowMs) throw new AppError('ERR_URL_EXPIRED', 'This upload URL has expired; request a new one.');
  const owner = await deps.db.system.selectFrom('upload_intents').select(['org_id']).where('id', '=', id).executeTakeFirst();
  if (!owner) throw notFound('upload');
  const intent = await claim(deps, owner.org_id, id, nowMs);
  try {
    if (req.contentType.split(';')[0]!.trim().toLowerCase() !== intent.content_type) {
      throw new AppError('ERR_UNSUPPORTED_MEDIA_TYPE', `This URL accepts only ${intent.content_type}.`);
    }
    if (req.contentLength !== Number(intent.content_length)) {
      throw new AppError('ERR_VALIDATION', `This URL accepts exactly ${intent.content_length} bytes.`);
    }
    const asset = await ingest(deps, {
      orgId: intent.org_id,
      appId: intent.app_id,
      kind: 'upload',
      body: req.body,
      maxBytes: Number(intent.content_length),
      expectedSize: Number(intent.content_length),
      declaredType: intent.content_type,
      filename: intent.filename,
      ctx: { actor: { type: 'key', id: intent.created_by ?? undefined, via: 'presigned' }, ip: req.ip, requestId: req.requestId },
    });
    await finish(deps, intent, asset);
    return asset;
  } catch (err) {

    await release(deps, intent.org_id, intent.id);
    throw err;
  }
}

/** S3 store: finalise a presigned PUT. Reads the staged object, ingests it (sniff, validate, encrypt), deletes it. */
export async function completeUploadIntent(deps: UploadIntentDeps, p: Principal, id: string, ctx: Ctx): Promise<Asset> {
  if (!deps.store.supports('presign')) throw new AppError('ERR_CONFLICT', 'Uploads to this server complete with the PUT itself; there is nothing to finalise.');
  const nowMs = deps.now?.() ?? Date.now();
  const intent = await claim(deps, p.orgId, id, nowMs);
  try {
    const head = await deps.store.head(intent.staging_key);
    if (!head) throw new AppError('ERR_CONFLICT', 'Nothing was uploaded to this URL yet.');
    if (head.size !== Number(intent.content_length)) throw new AppError('ERR_VALIDATION', `Expected ${intent.content_length} bytes, found ${head.size}.`);
    const body = await deps.store.get(intent.staging_key);
    const asset = await ingest(deps, {
      orgId: p.orgId,
      appId: intent.app_id,
      kind: 'upload',
      body,
      maxBytes: Number(intent.content_length),
      expectedSize: Number(intent.content_length),
      declaredType: intent.content_type,
      filename: intent.filename,
      ctx,
    });
    await finish(deps, intent, asset);
    await deps.store.delete(intent.staging_key);
    return asset;
  } catch (err) {
    // A refused file must not linger in staging: remove it, and let the client retry with a new URL.
    if (err instanceof AppError && (err.code === 'ERR_UNSUPPORTED_MEDIA_TYPE' || err.code === 'ERR_VALIDATION' || err.code === 'ERR_PAYLOAD_TOO_LARGE' || err.code === 'ERR_MEDIA_INVALID' || err.code === 'ERR_IMAGE_TOO_LARGE')) {
      await deps.store.delete(intent.staging_key).catch(() => undefined);
    } else {
      await release(deps, p.orgId, intent.id);
    }
    throw err;
  }
}

/** Removes expired, unfinished intents and their staged objects. Returns how many. */
export async function sweepUploadIntents(deps: AssetDeps, batch = 100): Promise<number> {
  const now = new Date(deps.now?.() ?? Date.now());
  const rows = await deps.db.system.selectFrom('upload_intents').select(['id', 'staging_key']).where('expires_at', '<=', now).where('asset_id', 'is', null).limit(batch).execute();
  for (const r of rows) {
    await deps.store.delete(r.staging_key).catch(() => undefined);
    await deps.db.system.deleteFrom('upload_intents').where('id', '=', r.id).execute();
  }
  return rows.length;
}
