/**
 * Usage metering: counts, never content (seeds: the platforms meter requests, exports, bytes and
 * processing time, and count monthly active end users).
 *
 * `recordUsage()` is synchronous and only touches memory: deltas are summed per org, app, month,
 * credential and metric, and a background flush (default every 2 s, and on close) writes them in one
 * transaction per org with `INSERT ... ON CONFLICT DO UPDATE SET value = value + excluded.value`, so
 * several nodes add up atomically and a request never waits on the meter. A crash loses at most one
 * flush interval of counts (metering, not billing-grade accounting).
 *
 * End users: the caller-supplied id (the `Obscura-End-User` header, or `endUser` here) is replaced at
 * once by HMAC-SHA256 under a per-org key derived from the master key (HKDF-SHA256, RFC 5869); the HMAC
 * input includes the month and the app, so hashes cannot be linked across months or apps, and the raw
 * id is never stored, buffered or logged. A master-key rotation changes the derived key, so an end
 * user active both before and after a rotation in the same month is counted twice (documented).
 */
import { createHmac, hkdfSync } from 'node:crypto';
import { sql } from 'kysely';
import type { DatabaseHandle } from '../db/database.js';
import { monthOf } from './month.js';
import './schema.js';

/** Longest accepted end-user id (characters). */
export const MAX_END_USER_ID_LENGTH = 200;

/** One metered fact. Every number is a non-negative integer delta; omitted fields count as 0. */
export interface UsageEvent {
  readonly orgId: string;
  readonly appId: string;
  /** The credential (API key id or OAuth client credential id) that caused it; null/omitted for none. */
  readonly keyId?: string | null;
  readonly requests?: number;
  readonly bytesIn?: number;
  readonly bytesOut?: number;
  /** Processing time (CPU/wall time spent on media work) in milliseconds. */
  readonly processingMs?: number;
  /** Outputs produced, by media type, e.g. `{ 'image/webp': 1 }`. */
  readonly exports?: Readonly<Record<string, number>>;
  /** Output pixels (width × height × frames) by media type: what on-device SDK vendors bill by size. */
  readonly pixels?: Readonly<Record<string, number>>;
  /** Output video duration in milliseconds by media type (video outputs only). */
  readonly videoMs?: Readonly<Record<string, number>>;
  /** Exports by resolution bucket of the output (`resolutionBucket(width, height)`), e.g. `{ '720p': 1 }`. */
  readonly resolutions?: Readonly<Record<string, number>>;
  /** Of `exports`, those made on the device (on-device SDK telemetry, issue 15), by media type. */
  readonly deviceExports?: Readonly<Record<string, number>>;
  /** On-device engine loads by platform (`web`, `ios`, …; issue 15). */
  readonly deviceLoads?: Readonly<Record<string, number>>;
  /**
   * A caller-supplied end-user id (at most 200 characters) for monthly-active-end-user counts.
   * Security: hashed immediately with a per-org keyed hash; never stored or logged as given.
   */
  readonly endUser?: string;
  /** When it happened (default now); decides the month. */
  readonly at?: Date | number;
}

/** What quota checks need to hear about (per app and month), as the meter sees it. */
export interface QuotaDelta {
  readonly orgId: string;
  readonly appId: string;
  readonly month: string;
  readonly requests: number;
  readonly exports: number;
  readonly bytes: number;
}

export interface UsageMeterOptions {
  db: DatabaseHandle;
  /** The current master key; the per-org end-user hashing keys are derived from it (HKDF-SHA256). */
  masterKey: Buffer;
  /** Wall clock (ms), injectable for month-boundary tests. */
  now?: () => number;
  /** How often buffered counts are written (ms, default 2000; 0 = only on `flush()`/`close()`). */
  flushIntervalMs?: number;
  /** Told about a failed flush (the counts are kept and retried). Never receives an end-user id. */
  onError?: (err: unknown) => void;
  /** Told about each recorded export and processing time (process-level Prometheus counters). */
  onRecord?: (e: { exports: number; processingMs: number; bytesIn: number; bytesOut: number }) => void;
}

interface QuotaUsageDelta {
  requests: number;
  exports: number;
  bytes: number;
}

function addInto(map: Map<string, QuotaUsageDelta>, k: string, d: QuotaUsageDelta, sign = 1): void {
  let e = map.get(k);
  if (!e) map.set(k, (e = { requests: 0, exports: 0, bytes: 0 }));
  e.requests += sign * d.requests;
  e.exports += sign * d.exports;
  e.bytes += sign * d.bytes;
  if (e.requests === 0 && e.exports === 0 && e.bytes === 0) map.delete(k);
}

interface CounterEntry {
  orgId: string;
  appId: string;
  month: string;
  keyId: string;
  metric: string;
  value: number;
}

interface DayEntry {
  orgId: string;
  appId: string;
  /** UTC day, `YYYY-MM-DD`. */
  day: string;
  metric: string;
  value: number;
}

/** Buckets of {@link resolutionBucket}, smallest first. */
export const RESOLUTION_BUCKETS = ['240p', '480p', '720p', '1080p', '1440p', '2160p', 'above'] as const;

/**
 * The resolution bucket of an output by its shorter side (a portrait 1080×1920 video is 1080p):
 * the smallest of 240p … 2160p that holds it, else `above`. Pure.
 */
export function resolutionBucket(width: number, height: number): (typeof RESOLUTION_BUCKETS)[number] {
  const short = Math.min(width, height);
  for (const b of RESOLUTION_BUCKETS) if (b !== 'above' && short <= Number.parseInt(b, 10)) return b;
  return 'above';
}

const dayOf = (ms: number) => new Date(ms).toISOString().slice(0, 10);
/** A UTC day in milliseconds (JavaScript time has no leap seconds, so UTC days are exact). */
const DAY_MS = 86_400_000;

interface EndUserEntry {
  orgId: string;
  appId: string;
  month: string;
  hash: string;
}

const MEDIA_TYPE_RE = /^[a-z0-9]+\/[a-z0-9.+-]+$/;
/** A device platform label (`web`, `ios`, …) for the `device_loads:<platform>` metric. */
const PLATFORM_RE = /^[a-z0-9][a-z0-9._-]{0,31}$/;
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** Bounds memory if the database is unreachable for long: beyond this, new end users are dropped (undercount). */
const MAX_PENDING_END_USERS = 100_000;
/** Hashes already written this process lifetime, so a busy end user costs one insert, not one per request. */
const MAX_SEEN_END_USERS = 200_000;
const ROWS_PER_INSERT = 500;

function count(name: string, v: number | undefined): number {
  if (v === undefined) return 0;
  if (!Number.isFinite(v) || v < 0) throw new RangeError(`recordUsage: ${name} must be a non-negative number`);
  return Math.round(v);
}

/** Normalises a media type for the `exports:<type>` metric; anything odd is counted as octet-stream. */
function exportMetric(type: string): string {
  const t = type.trim().toLowerCase().split(';')[0]!.trim();
  return `exports:${MEDIA_TYPE_RE.test(t) && t.length <= 100 ? t : 'application/octet-stream'}`;
}

/**
 * The per-process usage meter: buffers counts in memory and flushes them in batches. One per process
 * (built by `buildApp`, reachable as `app.usage`); workers that run without HTTP build their own.
 */
export class UsageMeter {
  private counters = new Map<string, CounterEntry>();
  private days = new Map<string, DayEntry>();
  private endUsers = new Map<string, EndUserEntry>();
  private readonly seen = new Set<string>();
  private readonly orgKeys = new Map<string, Buffer>();
  private readonly listeners: Array<(d: QuotaDelta) => void> = [];
  /** Quota-relevant counts per `org|app|month` not yet committed: buffered, and being written. */
  private pendingQuota = new Map<string, QuotaUsageDelta>();
  private readonly inflightQuota = new Map<string, QuotaUsageDelta>();
  private chain: Promise<void> = Promise.resolve();
  private readonly timer: NodeJS.Timeout | undefined;
  private closed = false;
  private today = { start: Number.NaN, month: '', day: '' };

  constructor(private readonly opts: UsageMeterOptions) {
    const every = opts.flushIntervalMs ?? 2000;
    if (every > 0) {
      this.timer = setInterval(() => void this.flush(), every);
      this.timer.unref();
    }
  }

  private now(): number {
    return this.opts.now ? this.opts.now() : Date.now();
  }

  /** Subscribes to per-app deltas (quota checks add them to the last database totals they read). */
  subscribe(fn: (d: QuotaDelta) => void): void {
    this.listeners.push(fn);
  }

  /**
   * Requests, exports and bytes this node recorded for an app in `month` that are not committed to the
   * database yet (quota checks add them to the totals they read).
   */
  unflushed(orgId: string, appId: string, month: string): { requests: number; exports: number; bytes: number } {
    const k = `${orgId}|${appId}|${month}`;
    const a = this.pendingQuota.get(k);
    const b = this.inflightQuota.get(k);
    return { requests: (a?.requests ?? 0) + (b?.requests ?? 0), exports: (a?.exports ?? 0) + (b?.exports ?? 0), bytes: (a?.bytes ?? 0) + (b?.bytes ?? 0) };
  }

  /** Number of buffered, not yet written entries (counters + end users). */
  get pending(): number {
    // Day entries mirror the counters (the same counts per day): not counted twice.
    return this.counters.size + this.endUsers.size;
  }

  /**
   * The keyed hash of an end-user id: HMAC-SHA256(HKDF(master, org), month || app || id), hex.
   * Exposed for tests and for erasure requests ("forget this end user": recompute and delete).
   */
  endUserHash(orgId: string, appId: string, month: string, endUser: string): string {
    let key = this.orgKeys.get(orgId);
    if (!key) {
      // Per-org key: a leaked hash table of one org says nothing about another's end users.
      key = Buffer.from(hkdfSync('sha256', this.opts.masterKey, Buffer.from(orgId, 'utf8'), 'obscura/usage/end-user/v1', 32));
      if (this.orgKeys.size >= 10_000) this.orgKeys.clear();
      this.orgKeys.set(orgId, key);
    }
    // Length-prefixed fields: no two (month, app, id) triples produce the same input.
    return createHmac('sha256', key).update(`${month}\n${appId}\n${endUser.length}:${endUser}`, 'utf8').digest('hex');
  }

  /** Records one usage event (see `UsageEvent`). Synchronous and memory-only; throws RangeError on negative counts. */
  record(e: UsageEvent): void {
    if (!UUID_RE.test(e.orgId) || !UUID_RE.test(e.appId)) throw new RangeError('recordUsage: orgId and appId must be uuids');
    const at = e.at === undefined ? this.now() : typeof e.at === 'number' ? e.at : e.at.getTime();
    const { month, day } = this.calendar(at);
    const keyId = (e.keyId ?? '').slice(0, 64);
    const requests = count('requests', e.requests);
    const bytesIn = count('bytesIn', e.bytesIn);
    const bytesOut = count('bytesOut', e.bytesOut);
    const processingMs = count('processingMs', e.processingMs);
    let exportsTotal = 0;
    // The entry keys' shared part, built once per event (every request records one; issue 12, item 4).
    const slot = { orgId: e.orgId, appId: e.appId, month, day, keyId, counterKey: `${e.orgId}|${e.appId}|${month}|${keyId}|`, dayKey: `${e.orgId}|${e.appId}|${day}|` };
    this.add(slot, 'requests', requests);
    this.add(slot, 'bytes_in', bytesIn);
    this.add(slot, 'bytes_out', bytesOut);
    this.add(slot, 'processing_ms', processingMs);
    if (e.exports) {
      for (const [type, n] of Object.entries(e.exports)) {
        const v = count(`exports[${type}]`, n);
        exportsTotal += v;
        this.add(slot, exportMetric(type), v);
      }
    }
    if (e.pixels) for (const [type, n] of Object.entries(e.pixels)) this.add(slot, `pixels:${exportMetric(type).slice('exports:'.length)}`, count(`pixels[${type}]`, n));
    if (e.resolutions) {
      for (const [bucket, n] of Object.entries(e.resolutions)) {
        if ((RESOLUTION_BUCKETS as readonly string[]).includes(bucket)) this.add(slot, `resolution:${bucket}`, count(`resolutions[${bucket}]`, n));
      }
    }
    if (e.videoMs) for (const [type, n] of Object.entries(e.videoMs)) this.add(slot, `video_ms:${exportMetric(type).slice('exports:'.length)}`, count(`videoMs[${type}]`, n));
    if (e.deviceExports) for (const [type, n] of Object.entries(e.deviceExports)) this.add(slot, `device_exports:${exportMetric(type).slice('exports:'.length)}`, count(`deviceExports[${type}]`, n));
    if (e.deviceLoads) for (const [platform, n] of Object.entries(e.deviceLoads)) this.add(slot, `device_loads:${PLATFORM_RE.test(platform) ? platform : 'other'}`, count(`deviceLoads[${platform}]`, n));
    if (e.endUser !== undefined && e.endUser.length > 0) {
      if (e.endUser.length > MAX_END_USER_ID_LENGTH) throw new RangeError(`recordUsage: endUser longer than ${MAX_END_USER_ID_LENGTH} characters`);
      const hash = this.endUserHash(e.orgId, e.appId, month, e.endUser);
      const k = `${e.orgId}|${e.appId}|${month}|${hash}`;
      if (!this.seen.has(k) && !this.endUsers.has(k) && this.endUsers.size < MAX_PENDING_END_USERS) {
        this.endUsers.set(k, { orgId: e.orgId, appId: e.appId, month, hash });
      }
    }
    if (requests || exportsTotal || bytesIn || bytesOut) {
      const d: QuotaDelta = { orgId: e.orgId, appId: e.appId, month, requests, exports: exportsTotal, bytes: bytesIn + bytesOut };
      addInto(this.pendingQuota, `${e.orgId}|${e.appId}|${month}`, d);
      for (const fn of this.listeners) fn(d);
    }
    this.opts.onRecord?.({ exports: exportsTotal, processingMs, bytesIn, bytesOut });
  }

  /** The UTC month and day of `at`, remembered for the day in progress (every request asks; issue 12, item 4). */
  private calendar(at: number): { month: string; day: string } {
    const c = this.today;
    if (at >= c.start && at < c.start + DAY_MS) return c;
    const start = Math.floor(at / DAY_MS) * DAY_MS;
    this.today = { start, month: monthOf(at), day: dayOf(at) };
    return this.today;
  }

  private add(at: { orgId: string; appId: string; month: string; day: string; keyId: string; counterKey: string; dayKey: string }, metric: string, v: number): void {
    if (v === 0) return;
    const k = at.counterKey + metric;
    const hit = this.counters.get(k);
    if (hit) hit.value += v;
    else this.counters.set(k, { orgId: at.orgId, appId: at.appId, month: at.month, keyId: at.keyId, metric, value: v });
    // The same count per UTC day (no credential split): what per-day charts read.
    const dk = at.dayKey + metric;
    const dayHit = this.days.get(dk);
    if (dayHit) dayHit.value += v;
    else this.days.set(dk, { orgId: at.orgId, appId: at.appId, day: at.day, metric, value: v });
  }

  /** Writes everything buffered so far. Never rejects; failures are reported to `onError` and retried. */
  flush(): Promise<void> {
    this.chain = this.chain.then(() => this.flushOnce());
    return this.chain;
  }

  private async flushOnce(): Promise<void> {
    if (this.counters.size === 0 && this.days.size === 0 && this.endUsers.size === 0) return;
    const counters = this.counters;
    const days = this.days;
    const endUsers = this.endUsers;
    const quota = this.pendingQuota;
    this.counters = new Map();
    this.days = new Map();
    this.endUsers = new Map();
    this.pendingQuota = new Map();
    for (const [k, d] of quota) addInto(this.inflightQuota, k, d);
    const quotaOf = (orgId: string) => [...quota].filter(([k]) => k.startsWith(`${orgId}|`));
    const byOrg = new Map<string, { counters: [string, CounterEntry][]; days: [string, DayEntry][]; endUsers: [string, EndUserEntry][] }>();
    const slot = (orgId: string) => {
      let s = byOrg.get(orgId);
      if (!s) byOrg.set(orgId, (s = { counters: [], days: [], endUsers: [] }));
      return s;
    };
    for (const kv of counters) slot(kv[1].orgId).counters.push(kv);
    for (const kv of days) slot(kv[1].orgId).days.push(kv);
    for (const kv of endUsers) slot(kv[1].orgId).endUsers.push(kv);
    for (const [orgId, batch] of byOrg) {
      try {
        // One RLS-confined transaction per org: the meter writes as the tenant, like every tenant write.
        await this.opts.db.withTenant(orgId, async (trx) => {
          for (let i = 0; i < batch.counters.length; i += ROWS_PER_INSERT) {
            const rows = batch.counters.slice(i, i + ROWS_PER_INSERT).map(([, c]) => ({ org_id: c.orgId, app_id: c.appId, month: c.month, key_id: c.keyId, metric: c.metric, value: c.value }));
            await trx
              .insertInto('usage_counters')
              .values(rows)
              .onConflict((oc) => oc.columns(['org_id', 'app_id', 'month', 'key_id', 'metric']).doUpdateSet({ value: sql`usage_counters.value + excluded.value`, updated_at: sql`now()` }))
              .execute();
          }
          for (let i = 0; i < batch.days.length; i += ROWS_PER_INSERT) {
            const rows = batch.days.slice(i, i + ROWS_PER_INSERT).map(([, d]) => ({ org_id: d.orgId, app_id: d.appId, day: d.day, metric: d.metric, value: d.value }));
            await trx
              .insertInto('usage_days')
              .values(rows)
              .onConflict((oc) => oc.columns(['org_id', 'app_id', 'day', 'metric']).doUpdateSet({ value: sql`usage_days.value + excluded.value`, updated_at: sql`now()` }))
              .execute();
          }
          for (let i = 0; i < batch.endUsers.length; i += ROWS_PER_INSERT) {
            const rows = batch.endUsers.slice(i, i + ROWS_PER_INSERT).map(([, u]) => ({ org_id: u.orgId, app_id: u.appId, month: u.month, user_hash: u.hash }));
            await trx.insertInto('usage_end_users').values(rows).onConflict((oc) => oc.doNothing()).execute();
          }
        });
        if (this.seen.size + batch.endUsers.length > MAX_SEEN_END_USERS) this.seen.clear();
        for (const [k] of batch.endUsers) this.seen.add(k);
        for (const [k, d] of quotaOf(orgId)) addInto(this.inflightQuota, k, d, -1);
      } catch (err) {
        for (const [k, d] of quotaOf(orgId)) addInto(this.inflightQuota, k, d, -1);
        // 23503: the org or app was deleted meanwhile; its counts have nowhere to go. Anything else is
        // transient (database down): keep the counts and try again next time.
        if ((err as { code?: string }).code !== '23503') {
          for (const [k, c] of batch.counters) {
            const hit = this.counters.get(k);
            if (hit) hit.value += c.value;
            else this.counters.set(k, c);
          }
          for (const [k, d] of batch.days) {
            const hit = this.days.get(k);
            if (hit) hit.value += d.value;
            else this.days.set(k, d);
          }
          for (const [k, u] of batch.endUsers) if (this.endUsers.size < MAX_PENDING_END_USERS) this.endUsers.set(k, u);
          for (const [k, d] of quotaOf(orgId)) addInto(this.pendingQuota, k, d);
        }
        this.opts.onError?.(err);
      }
    }
  }

  /** Stops the timer and writes what is left. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    await this.flush();
  }
}

/**
 * Records metered usage; what other capabilities call (assets count uploads/downloads they stream,
 * jobs count exports by media type and processing time). Synchronous, memory-only, never blocks.
 *
 * ```ts
 * recordUsage(meter, { orgId, appId, keyId, exports: { 'image/webp': 1 }, processingMs: 84 });
 * ```
 * Counts only: never pass content, file names or anything personal; `endUser` is hashed at once.
 * Requests and HTTP bytes are already counted for every authenticated request by the HTTP layer.
 */
export function recordUsage(meter: UsageMeter, event: UsageEvent): void {
  meter.record(event);
}
