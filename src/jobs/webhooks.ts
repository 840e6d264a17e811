/**
 * Webhooks: endpoints per app, signed deliveries with retries, and the delivery log.
 *
 * - Endpoint URLs follow the remote-URL policy (https only, public addresses only) when registered
 *   and again at every delivery (the fetcher re-resolves and re-vets: DNS answers change).
 * - The secret (`whsec_…`) is shown once. It is stored wrapped by the master key (the receiver
 *   verifies an HMAC, so we need the secret itself, not a hash), bound to the org and endpoint.
 * - Rotation keeps the previous secret signing for a grace window: deliveries then carry one `v1=`
 *   per secret (current first), so receivers can switch at their own pace.
 * - Events are written as delivery rows in the same transaction as the change they announce (an
 *   outbox), then enqueued; a crash in between is repaired by the reconciler (see worker.ts).
 * - The log records time, status code, duration and attempt number. Never a response body, never
 *   a header, never the secret.
 */
import { randomUUID } from 'node:crypto';
import type { DatabaseHandle, Tx } from '../db/database.js';
import type { MasterKeys } from '../crypto/master.js';
import { unwrapKey, wrapKey } from '../crypto/keywrap.js';
import { publicId } from '../crypto/random.js';
import { AppError, isAppError, notFound } from '../errors.js';
import { appendAudit } from '../audit/log.js';
import type { Ctx } from '../tenants/index.js';
import { generateWebhookSecret, signWebhook, WEBHOOK_SIGNATURE_HEADER } from '../../sdk/src/webhook-signature.js';
import type { Remote } from '../remote/remote.js';
import type { WebhookEndpointsTable } from './schema.js';
import { sql, type Selectable } from 'kysely';
import type { WrappedColumn } from '../crypto/keywrap.js';
import { ALL_ROWS, keysetPage, mapPage, type ListOrder, type Page, type PageRequest } from '../db/pagination.js';

/** Endpoint lists: oldest first, keyset on (created_at, id). */
export const ENDPOINT_ORDER: ListOrder = { keys: [{ column: 'created_at', type: 'timestamptz' }, { column: 'id', type: 'text' }], direction: 'asc' };
/** Delivery logs: newest first, keyset on (created_at, id). */
export const DELIVERY_ORDER: ListOrder = { keys: [{ column: 'created_at', type: 'timestamptz' }, { column: 'id', type: 'text' }], direction: 'desc' };

/** Events an endpoint may subscribe to. */
export const WEBHOOK_EVENTS = ['job.completed', 'job.failed', 'job.cancelled', 'job.progress'] as const;
export type WebhookEvent = (typeof WEBHOOK_EVENTS)[number];

/** Default and largest grace period for the previous secret after a rotation. */
export const DEFAULT_ROTATION_GRACE_SECONDS = 24 * 3600;
export const MAX_ROTATION_GRACE_SECONDS = 7 * 24 * 3600;

/** Endpoints per app (bounds fan-out per event). */
export const MAX_ENDPOINTS_PER_APP = 20;

/** What webhook functions need. */
export interface WebhookDeps {
  db: DatabaseHandle;
  masterKeys: MasterKeys;
  remote: Remote;
  now?: () => number;
}

/** An endpoint as the API shows it (never the secret). */
export interface WebhookEndpoint {
  id: string;
  appId: string;
  url: string;
  events: WebhookEvent[];
  description: string;
  enabled: boolean;
  /** While a rotation's grace window runs: when the previous secret stops signing. */
  previousSecretExpiresAt: string | null;
  createdAt: string;
  updatedAt: string;
}

type EndpointRow = Selectable<WebhookEndpointsTable>;

const iso = (d: Date | string) => new Date(d).toISOString();

function toEndpoint(r: EndpointRow, now: number): WebhookEndpoint {
  const prev = r.previous_expires_at && new Date(r.previous_expires_at).getTime() > now ? iso(r.previous_expires_at) : null;
  return {
    id: r.id,
    appId: r.app_id,
    url: r.url,
    events: r.events as WebhookEvent[],
    description: r.description,
    enabled: r.enabled,
    previousSecretExpiresAt: prev,
    createdAt: iso(r.created_at),
    updatedAt: iso(r.updated_at),
  };
}

/** Key-wrap context of a webhook endpoint's signing secret (current and previous). */
export const webhookSecretContext = (orgId: string, endpointId: string): string => `webhook:${orgId}:${endpointId}`;

function wrapSecret(master: MasterKeys, orgId: string, endpointId: string, secret: string): string {
  return wrapKey(master.current, master.currentId, Buffer.from(secret, 'utf8'), webhookSecretContext(orgId, endpointId));
}

function unwrapSecret(master: MasterKeys, orgId: string, endpointId: string, wrapped: string): string {
  const bytes = unwrapKey(master.all, wrapped, webhookSecretContext(orgId, endpointId));
  const s = bytes.toString('utf8');
  bytes.fill(0);
  return s;
}

function normaliseEvents(events: readonly string[] | undefined): WebhookEvent[] {
  const list = events === undefined || events.length === 0 ? [...WEBHOOK_EVENTS] : [...new Set(events)];
  for (const e of list) {
    if (!(WEBHOOK_EVENTS as readonly string[]).includes(e)) {
      throw new AppError('ERR_VALIDATION', 'Unknown event type.', { details: { field: 'events', accepted: WEBHOOK_EVENTS } });
    }
  }
  return list as WebhookEvent[];
}

async function endpointRow(trx: Tx, orgId: string, appId: string, id: string): Promise<EndpointRow> {
  const row = await trx.selectFrom('webhook_endpoints').selectAll().where('org_id', '=', orgId).where('app_id', '=', appId).where('id', '=', id).executeTakeFirst();
  if (!row) throw notFound('webhook endpoint');
  return row;
}

/** Input of {@link createEndpoint}. */
export interface EndpointInput {
  url: string;
  events?: string[];
  description?: string;
  enabled?: boolean;
}

/**
 * Registers an endpoint for an app. The URL is checked now (scheme, port, every resolved address).
 * @returns the endpoint and its secret, which is never shown again.
 */
export async function createEndpoint(deps: WebhookDeps, orgId: string, appId: string, input: EndpointInput, ctx: Ctx): Promise<{ endpoint: WebhookEndpoint; secret: string }> {
  const url = (await deps.remote.check(input.url)).href;
  const events = normaliseEvents(input.events);
  const id = publicId('whe');
  const secret = generateWebhookSecret();
  const now = deps.now?.() ?? Date.now();
  const row = await deps.db.withTenant(orgId, async (trx) => {
    const count = await trx.selectFrom('webhook_endpoints').select((eb) => eb.fn.countAll<number>().as('n')).where('org_id', '=', orgId).where('app_id', '=', appId).executeTakeFirstOrThrow();
    if (Number(count.n) >= MAX_ENDPOINTS_PER_APP) throw new AppError('ERR_CONFLICT', `An app may have at most ${MAX_ENDPOINTS_PER_APP} webhook endpoints.`);
    const inserted = await trx
      .insertInto('webhook_endpoints')
      .values({
        id,
        org_id: orgId,
        app_id: appId,
        url,
        events,
        description: input.description ?? '',
        enabled: input.enabled ?? true,
        secret_wrapped: wrapSecret(deps.masterKeys, orgId, id, secret),
      })
      .returningAll()
      .executeTakeFirstOrThrow();
    await appendAudit(trx, { orgId, actor: ctx.actor, action: 'webhook.create', target: { webhook: id, app: appId }, data: { url: redactForAudit(url), events }, ip: ctx.ip, requestId: ctx.requestId });
    return inserted;
  });
  return { endpoint: toEndpoint(row, now), secret };
}

/** A URL for the audit log: origin and path only (a query may carry a token). */
function redactForAudit(url: string): string {
  const u = new URL(url);
  return `${u.origin}${u.pathname}${u.search ? '?…' : ''}`;
}

/** The app's endpoints. */
export async function listEndpoints(deps: WebhookDeps, orgId: string, appId: string, page: PageRequest = ALL_ROWS): Promise<Page<WebhookEndpoint>> {
  const now = deps.now?.() ?? Date.now();
  const rows = await deps.db.withTenant(orgId, (trx) => keysetPage(trx.selectFrom('webhook_endpoints').selectAll().where('org_id', '=', orgId).where('app_id', '=', appId), ENDPOINT_ORDER, page));
  return mapPage(rows, (r) => toEndpoint(r, now));
}

/** One endpoint of the app, or ERR_NOT_FOUND. */
export async function getEndpoint(deps: WebhookDeps, orgId: string, appId: string, id: string): Promise<WebhookEndpoint> {
  const now = deps.now?.() ?? Date.now();
  return toEndpoint(await deps.db.withTenant(orgId, (trx) => endpointRow(trx, orgId, appId, id)), now);
}

/** Changes an endpoint's URL (re-checked), events, description or enabled flag. */
export async function updateEndpoint(deps: WebhookDeps, orgId: string, appId: string, id: string, patch: Partial<EndpointInput>, ctx: Ctx): Promise<WebhookEndpoint> {
  const url = patch.url === undefined ? undefined : (await deps.remote.check(patch.url)).href;
  const events = patch.events === undefined ? undefined : normaliseEvents(patch.events);
  const now = deps.now?.() ?? Date.now();
  const row = await deps.db.withTenant(orgId, async (trx) => {
    await endpointRow(trx, orgId, appId, id);
    const updated = await trx
      .updateTable('webhook_endpoints')
      .set({
        ...(url !== undefined ? { url } : {}),
        ...(events !== undefined ? { events } : {}),
        ...(patch.description !== undefined ? { description: patch.description } : {}),
        ...(patch.enabled !== undefined ? { enabled: patch.enabled } : {}),
        updated_at: new Date(now),
      })
      .where('org_id', '=', orgId)
      .where('id', '=', id)
      .returningAll()
      .executeTakeFirstOrThrow();
    await appendAudit(trx, {
      orgId,
      actor: ctx.actor,
      action: 'webhook.update',
      target: { webhook: id, app: appId },
      data: { ...(url ? { url: redactForAudit(url) } : {}), ...(events ? { events } : {}), ...(patch.enabled !== undefined ? { enabled: patch.enabled } : {}) },
      ip: ctx.ip,
      requestId: ctx.requestId,
    });
    return updated;
  });
  return toEndpoint(row, now);
}

/** Deletes an endpoint and its delivery log; pending deliveries are dropped. */
export async function deleteEndpoint(deps: WebhookDeps, orgId: string, appId: string, id: string, ctx: Ctx): Promise<void> {
  await deps.db.withTenant(orgId, async (trx) => {
    await endpointRow(trx, orgId, appId, id);
    await trx.deleteFrom('webhook_endpoints').where('org_id', '=', orgId).where('id', '=', id).execute();
    await appendAudit(trx, { orgId, actor: ctx.actor, action: 'webhook.delete', target: { webhook: id, app: appId }, ip: ctx.ip, requestId: ctx.requestId });
  });
}

/**
 * Replaces the secret. The previous one keeps signing (a second `v1=`) for `graceSeconds`
 * (default 24 h, 0 ends it at once). A rotation during a grace window drops the oldest secret.
 * @returns the new secret, shown once.
 */
export async function rotateSecret(deps: WebhookDeps, orgId: string, appId: string, id: string, graceSeconds: number, ctx: Ctx): Promise<{ endpoint: WebhookEndpoint; secret: string }> {
  if (!Number.isInteger(graceSeconds) || graceSeconds < 0 || graceSeconds > MAX_ROTATION_GRACE_SECONDS) {
    throw new AppError('ERR_VALIDATION', `The grace period must be 0 to ${MAX_ROTATION_GRACE_SECONDS} seconds.`, { details: { field: 'grace_seconds' } });
  }
  const now = deps.now?.() ?? Date.now();
  const secret = generateWebhookSecret();
  const row = await deps.db.withTenant(orgId, async (trx) => {
    const current = await endpointRow(trx, orgId, appId, id);
    const updated = await trx
      .updateTable('webhook_endpoints')
      .set({
        secret_wrapped: wrapSecret(deps.masterKeys, orgId, id, secret),
        previous_secret_wrapped: graceSeconds > 0 ? current.secret_wrapped : null,
        previous_expires_at: graceSeconds > 0 ? new Date(now + graceSeconds * 1000) : null,
        updated_at: new Date(now),
      })
      .where('org_id', '=', orgId)
      .where('id', '=', id)
      .returningAll()
      .executeTakeFirstOrThrow();
    await appendAudit(trx, { orgId, actor: ctx.actor, action: 'webhook.rotate_secret', target: { webhook: id, app: appId }, data: { graceSeconds }, ip: ctx.ip, requestId: ctx.requestId });
    return updated;
  });
  return { endpoint: toEndpoint(row, now), secret };
}

/** One delivery in the log. */
export interface DeliveryLogEntry {
  id: string;
  eventId: string;
  eventType: string;
  status: 'pending' | 'delivered' | 'failed';
  createdAt: string;
  finishedAt: string | null;
  attempts: Array<{ attempt: number; at: string; statusCode: number | null; durationMs: number; error: string | null }>;
}

/** The endpoint's most recent deliveries (newest first) with every attempt. */
export async function listDeliveries(deps: WebhookDeps, orgId: string, appId: string, endpointId: string, page: PageRequest = ALL_ROWS): Promise<Page<DeliveryLogEntry>> {
  return deps.db.withTenant(orgId, async (trx) => {
    await endpointRow(trx, orgId, appId, endpointId);
    const { items: deliveries, next } = await keysetPage(
      trx.selectFrom('webhook_deliveries').select(['id', 'event_id', 'event_type', 'status', 'created_at', 'finished_at']).where('org_id', '=', orgId).where('endpoint_id', '=', endpointId),
      DELIVERY_ORDER,
      page,
    );
    const ids = deliveries.map((d) => d.id);
    const attempts = ids.length
      ? await trx.selectFrom('webhook_attempts').selectAll().where('org_id', '=', orgId).where('delivery_id', 'in', ids).orderBy('attempt').execute()
      : [];
    const items = deliveries.map((d) => ({
      id: d.id,
      eventId: d.event_id,
      eventType: d.event_type,
      status: d.status,
      createdAt: iso(d.created_at),
      finishedAt: d.finished_at ? iso(d.finished_at) : null,
      attempts: attempts
        .filter((a) => a.delivery_id === d.id)
        .map((a) => ({ attempt: a.attempt, at: iso(a.at), statusCode: a.status_code, durationMs: a.duration_ms, error: a.error })),
    }));
    return { items, next };
  });
}

/** A delivery row written by {@link recordEvent}, to be enqueued after commit. */
export interface DeliveryRef {
  orgId: string;
  id: string;
  queueId: string;
}

/**
 * Writes one delivery per enabled endpoint of the app subscribed to `type`, in the caller's
 * transaction (so the event exists if and only if the change it announces committed).
 */
export async function recordEvent(trx: Tx, e: { orgId: string; appId: string; type: WebhookEvent; data: Record<string, unknown>; now: number }): Promise<DeliveryRef[]> {
  const endpoints = await trx
    .selectFrom('webhook_endpoints')
    .select(['id'])
    .where('org_id', '=', e.orgId)
    .where('app_id', '=', e.appId)
    .where('enabled', '=', true)
    .where(sql<boolean>`${e.type} = ANY(events)`)
    .execute();
  if (endpoints.length === 0) return [];
  const eventId = publicId('evt');
  const body = JSON.stringify({ id: eventId, type: e.type, created_at: new Date(e.now).toISOString(), data: e.data });
  const refs: DeliveryRef[] = endpoints.map(() => ({ orgId: e.orgId, id: publicId('whd'), queueId: randomUUID() }));
  await trx
    .insertInto('webhook_deliveries')
    .values(endpoints.map((ep, i) => ({ id: refs[i]!.id, queue_id: refs[i]!.queueId, org_id: e.orgId, endpoint_id: ep.id, event_id: eventId, event_type: e.type, body, status: 'pending' as const })))
    .execute();
  return refs;
}

/** The event type of a test delivery (`POST /v1/webhooks/{id}/test`); never sent for anything else. */
export const WEBHOOK_TEST_EVENT = 'webhook.test';

async function deliveryView(trx: Tx, orgId: string, id: string): Promise<DeliveryLogEntry> {
  const d = await trx.selectFrom('webhook_deliveries').select(['id', 'event_id', 'event_type', 'status', 'created_at', 'finished_at']).where('org_id', '=', orgId).where('id', '=', id).executeTakeFirstOrThrow();
  return { id: d.id, eventId: d.event_id, eventType: d.event_type, status: d.status, createdAt: iso(d.created_at), finishedAt: d.finished_at ? iso(d.finished_at) : null, attempts: [] };
}

/**
 * Writes a `webhook.test` delivery for one endpoint (whatever events it subscribes to), audited, in one
 * transaction. The caller enqueues the returned ref (`JobService.dispatch`): the test travels the
 * same path as every event (queue, worker, signature, retries, log). A disabled endpoint is refused
 * (409): its deliveries would only fail.
 */
export async function sendTestEvent(deps: WebhookDeps, orgId: string, appId: string, endpointId: string, ctx: Ctx): Promise<{ ref: DeliveryRef; delivery: DeliveryLogEntry }> {
  const now = deps.now?.() ?? Date.now();
  return deps.db.withTenant(orgId, async (trx) => {
    const ep = await endpointRow(trx, orgId, appId, endpointId);
    if (!ep.enabled) throw new AppError('ERR_CONFLICT', 'This endpoint is disabled: enable it (PATCH /v1/webhooks/{id} {"enabled": true}) before sending a test event.');
    const eventId = publicId('evt');
    const body = JSON.stringify({ id: eventId, type: WEBHOOK_TEST_EVENT, created_at: new Date(now).toISOString(), data: { webhook: { id: ep.id, app_id: appId } } });
    const ref: DeliveryRef = { orgId, id: publicId('whd'), queueId: randomUUID() };
    await trx.insertInto('webhook_deliveries').values({ id: ref.id, queue_id: ref.queueId, org_id: orgId, endpoint_id: ep.id, event_id: eventId, event_type: WEBHOOK_TEST_EVENT, body, status: 'pending' }).execute();
    await appendAudit(trx, { orgId, actor: ctx.actor, action: 'webhook.test', target: { webhook: ep.id, app: appId, delivery: ref.id }, ip: ctx.ip, requestId: ctx.requestId });
    return { ref, delivery: await deliveryView(trx, orgId, ref.id) };
  });
}

/**
 * Sends a finished delivery again as a new delivery of the same event (same event id, same bytes, so a
 * receiver that deduplicates on `id` sees a repeat), audited. A delivery still pending is refused (409):
 * its retries are running. The caller enqueues the returned ref.
 */
export async function redeliver(deps: WebhookDeps, orgId: string, appId: string, endpointId: string, deliveryId: string, ctx: Ctx): Promise<{ ref: DeliveryRef; delivery: DeliveryLogEntry }> {
  return deps.db.withTenant(orgId, async (trx) => {
    const ep = await endpointRow(trx, orgId, appId, endpointId);
    const d = await trx.selectFrom('webhook_deliveries').selectAll().where('org_id', '=', orgId).where('endpoint_id', '=', ep.id).where('id', '=', deliveryId).executeTakeFirst();
    if (!d) throw notFound('webhook delivery');
    if (d.status === 'pending') throw new AppError('ERR_CONFLICT', 'This delivery is still being attempted; redeliver it once it is delivered or failed.');
    if (!ep.enabled) throw new AppError('ERR_CONFLICT', 'This endpoint is disabled: enable it before redelivering.');
    const ref: DeliveryRef = { orgId, id: publicId('whd'), queueId: randomUUID() };
    await trx.insertInto('webhook_deliveries').values({ id: ref.id, queue_id: ref.queueId, org_id: orgId, endpoint_id: ep.id, event_id: d.event_id, event_type: d.event_type, body: d.body, status: 'pending' }).execute();
    await appendAudit(trx, { orgId, actor: ctx.actor, action: 'webhook.redeliver', target: { webhook: ep.id, app: appId, delivery: ref.id }, data: { of: d.id, event: d.event_id }, ip: ctx.ip, requestId: ctx.requestId });
    return { ref, delivery: await deliveryView(trx, orgId, ref.id) };
  });
}

/** Outcome of one delivery attempt. */
export type DeliveryOutcome = 'delivered' | 'skipped' | 'retry' | 'failed';

/**
 * Makes one delivery attempt: sign the stored body with every active secret, POST it (no redirects),
 * log the attempt. 2xx is delivered; anything else is `retry` (or `failed` when `lastAttempt`).
 */
export async function attemptDelivery(deps: WebhookDeps, ref: { orgId: string; id: string }, opts: { lastAttempt: boolean; signal?: AbortSignal }): Promise<DeliveryOutcome> {
  const { db, masterKeys } = deps;
  const now = () => deps.now?.() ?? Date.now();
  const loaded = await db.withTenant(ref.orgId, async (trx) => {
    const d = await trx.selectFrom('webhook_deliveries').selectAll().where('org_id', '=', ref.orgId).where('id', '=', ref.id).executeTakeFirst();
    if (!d || d.status !== 'pending') return null;
    const ep = await trx.selectFrom('webhook_endpoints').selectAll().where('org_id', '=', ref.orgId).where('id', '=', d.endpoint_id).executeTakeFirst();
    return { d, ep };
  });
  if (!loaded) return 'skipped';
  const { d, ep } = loaded;
  const attempt = d.attempts + 1;
  if (!ep || !ep.enabled) {
    await finish(deps, ref, 'failed', attempt, { statusCode: null, durationMs: 0, error: 'endpoint_disabled' });
    return 'failed';
  }
  const secrets = [unwrapSecret(masterKeys, ref.orgId, ep.id, ep.secret_wrapped)];
  if (ep.previous_secret_wrapped && ep.previous_expires_at && new Date(ep.previous_expires_at).getTime() > now()) {
    secrets.push(unwrapSecret(masterKeys, ref.orgId, ep.id, ep.previous_secret_wrapped));
  }
  const body = Buffer.from(d.body, 'utf8');
  const t = Math.floor(now() / 1000);
  const started = performance.now();
  let statusCode: number | null = null;
  let error: string | null = null;
  try {
    const res = await deps.remote.webhooks.post(ep.url, body, {
      redirect: 'manual',
      signal: opts.signal,
      headers: {
        'content-type': 'application/json',
        [WEBHOOK_SIGNATURE_HEADER.toLowerCase()]: signWebhook(body, secrets, t),
        'obscura-event': d.event_type,
        'obscura-delivery': d.id,
      },
    });
    statusCode = res.status;
    if (res.status < 200 || res.status > 299) error = 'status';
  } catch (err) {
    // A short machine code only: the fetcher's errors carry no upstream text, and neither does the log.
    error = isAppError(err) ? (err.code === 'ERR_REMOTE_FORBIDDEN' ? 'forbidden' : String(err.details?.reason ?? 'network')).slice(0, 40) : 'network';
  }
  const durationMs = Math.round(performance.now() - started);
  for (let i = 0; i < secrets.length; i++) secrets[i] = '';
  const outcome: DeliveryOutcome = error === null ? 'delivered' : opts.lastAttempt ? 'failed' : 'retry';
  await finish(deps, ref, outcome === 'retry' ? 'pending' : outcome, attempt, { statusCode, durationMs, error });
  return outcome;
}

async function finish(deps: WebhookDeps, ref: { orgId: string; id: string }, status: 'pending' | 'delivered' | 'failed', attempt: number, log: { statusCode: number | null; durationMs: number; error: string | null }): Promise<void> {
  const now = new Date(deps.now?.() ?? Date.now());
  await deps.db.withTenant(ref.orgId, async (trx) => {
    await trx
      .insertInto('webhook_attempts')
      .values({ delivery_id: ref.id, org_id: ref.orgId, attempt, at: now, status_code: log.statusCode, duration_ms: log.durationMs, error: log.error })
      .onConflict((oc) => oc.columns(['delivery_id', 'attempt']).doNothing())
      .execute();
    await trx
      .updateTable('webhook_deliveries')
      .set({ attempts: attempt, status, ...(status === 'pending' ? {} : { finished_at: now }) })
      .where('org_id', '=', ref.orgId)
      .where('id', '=', ref.id)
      .where('status', '=', 'pending')
      .execute();
  });
}

/** Marks a delivery failed after its retries ran out (dead-letter queue); no-op when already final. */
export async function abandonDelivery(deps: WebhookDeps, ref: { orgId: string; id: string }): Promise<void> {
  const now = new Date(deps.now?.() ?? Date.now());
  await deps.db.withTenant(ref.orgId, (trx) =>
    trx.updateTable('webhook_deliveries').set({ status: 'failed', finished_at: now }).where('org_id', '=', ref.orgId).where('id', '=', ref.id).where('status', '=', 'pending').execute(),
  );
}

/**
 * Retry schedule for deliveries: pg-boss exponential backoff with jitter (each delay is 50–100 % of
 * `first × 2^n`), capped at one hour, with enough retries to cover about 24 hours.
 */
export function deliveryRetryPolicy(firstDelaySeconds: number): { retryLimit: number; retryDelay: number; retryBackoff: true; retryDelayMax: number } {
  const cap = 3600;
  let total = 0;
  let n = 0;
  // Expected delay is 75 % of the nominal one; count retries until the expected total reaches 24 h.
  while (total < 24 * 3600 && n < 200) {
    total += 0.75 * Math.min(cap, firstDelaySeconds * 2 ** Math.min(16, n));
    n += 1;
  }
  return { retryLimit: n, retryDelay: firstDelaySeconds, retryBackoff: true, retryDelayMax: cap };
}


/** The master-wrapped columns of this capability, for master-key rotation (`keys rotate-master`). */
export const WEBHOOK_SECRET_COLUMNS: readonly WrappedColumn[] = [
  { table: 'webhook_endpoints', key: ['id'], fields: ['org_id'], column: 'secret_wrapped', context: (r) => webhookSecretContext(String(r.org_id), String(r.id)) },
  { table: 'webhook_endpoints', key: ['id'], fields: ['org_id'], column: 'previous_secret_wrapped', context: (r) => webhookSecretContext(String(r.org_id), String(r.id)) },
];
