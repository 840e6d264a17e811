/**
 * Monthly quotas per app: requests, exports and bytes (in + out), set in the app's settings
 * (`quota_requests_per_month`, `quota_exports_per_month`, `quota_bytes_per_month`; unset = unlimited).
 *
 * A check must not cost a database round trip per request, so each node keeps, per app, the settings
 * and the month's totals as last read (refreshed after `ttlMs`, default 2 s: the key cache TTL) plus
 * what it has recorded itself and not yet committed. Across several nodes a quota can therefore be
 * overshot by what the other nodes do within one refresh + flush interval (a few seconds of traffic):
 * quotas are budgets, not locks.
 */
import { sql } from 'kysely';
import type { DatabaseHandle } from '../db/database.js';
import type { AppSettings } from '../db/schema.js';
import { AppError } from '../errors.js';
import type { UsageMeter } from './meter.js';
import { monthEnd, monthOf, monthStart } from './month.js';
import './schema.js';

export type QuotaKind = 'requests' | 'exports' | 'bytes';
export const QUOTA_KINDS: readonly QuotaKind[] = ['requests', 'exports', 'bytes'];

/** Monthly limits (null = unlimited). */
export type QuotaLimits = Readonly<Record<QuotaKind, number | null>>;
/** This month's usage as far as this node knows. */
export type QuotaUsage = Record<QuotaKind, number>;

export interface QuotaStatus {
  readonly month: string;
  /** When this month's quotas reset (the first instant of the next UTC month). */
  readonly resetsAt: Date;
  readonly limits: QuotaLimits;
  readonly used: Readonly<QuotaUsage>;
}

/** The quota limits an app's settings declare. */
export function limitsFromSettings(s: AppSettings | undefined): QuotaLimits {
  const pick = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : null);
  return { requests: pick(s?.quota_requests_per_month), exports: pick(s?.quota_exports_per_month), bytes: pick(s?.quota_bytes_per_month) };
}

/** True when any quota is set. */
export function hasQuota(l: QuotaLimits): boolean {
  return QUOTA_KINDS.some((k) => l[k] !== null);
}

/** The first of `kinds` whose quota is used up (used >= limit), or null. Pure. */
export function exceededQuota(status: QuotaStatus, kinds: readonly QuotaKind[]): QuotaKind | null {
  for (const k of kinds) {
    const limit = status.limits[k];
    if (limit !== null && status.used[k] >= limit) return k;
  }
  return null;
}

/**
 * Response headers describing the app's quotas (RFC 8941 dictionaries), sent on every authenticated
 * response of an app that has quotas: `Obscura-Quota-Limit: requests=1000, bytes=5000000`,
 * `Obscura-Quota-Remaining: requests=12, bytes=4000000`, `Obscura-Quota-Reset: <seconds>`.
 */
export function quotaHeaders(status: QuotaStatus, nowMs: number): Record<string, string> {
  const set = QUOTA_KINDS.filter((k) => status.limits[k] !== null);
  if (set.length === 0) return {};
  return {
    'Obscura-Quota-Limit': set.map((k) => `${k}=${status.limits[k]}`).join(', '),
    'Obscura-Quota-Remaining': set.map((k) => `${k}=${Math.max(0, status.limits[k]! - status.used[k])}`).join(', '),
    'Obscura-Quota-Reset': String(Math.max(1, Math.ceil((status.resetsAt.getTime() - nowMs) / 1000))),
  };
}

const NOUN: Record<QuotaKind, string> = { requests: 'request', exports: 'export', bytes: 'byte' };

/** The 429 ERR_QUOTA_EXCEEDED for `kind`, with Retry-After until the month resets and the quota headers. */
export function quotaExceededError(status: QuotaStatus, kind: QuotaKind, nowMs: number): AppError {
  const headers = quotaHeaders(status, nowMs);
  return new AppError(
    'ERR_QUOTA_EXCEEDED',
    `This app has used its monthly ${NOUN[kind]} quota (${status.limits[kind]}); it resets at ${status.resetsAt.toISOString()}. Raise quota_${kind}_per_month in the app settings to continue now.`,
    {
      details: { quota: kind, limit: status.limits[kind], used: status.used[kind], resets_at: status.resetsAt.toISOString() },
      headers: { ...headers, 'Retry-After': headers['Obscura-Quota-Reset'] ?? '60' },
    },
  );
}

interface Entry {
  month: string;
  limits: QuotaLimits;
  /** Totals read from the database at `fetchedAt`, plus what this node recorded since. */
  used: QuotaUsage;
  fetchedAt: number;
  /** The month's first instant and the next month's (ms): `unlimited` answers only inside them. */
  startsAt: number;
  endsAt: number;
}

/** Reads an app's month totals for the quota metrics from `usage_counters`. */
export async function appMonthTotals(db: DatabaseHandle, orgId: string, appId: string, month: string): Promise<{ limits: QuotaLimits; used: QuotaUsage }> {
  return db.withTenant(orgId, async (trx) => {
    const app = await trx.selectFrom('apps').select('settings').where('org_id', '=', orgId).where('id', '=', appId).executeTakeFirst();
    const settings = (typeof app?.settings === 'string' ? JSON.parse(app.settings) : app?.settings) as AppSettings | undefined;
    const limits = limitsFromSettings(settings);
    const used: QuotaUsage = { requests: 0, exports: 0, bytes: 0 };
    if (!hasQuota(limits)) return { limits, used };
    const rows = await trx
      .selectFrom('usage_counters')
      .select(['metric', sql<string>`sum(value)::text`.as('total')])
      .where('org_id', '=', orgId)
      .where('app_id', '=', appId)
      .where('month', '=', month)
      .groupBy('metric')
      .execute();
    for (const r of rows) {
      const v = Number(r.total);
      if (r.metric === 'requests') used.requests += v;
      else if (r.metric === 'bytes_in' || r.metric === 'bytes_out') used.bytes += v;
      else if (r.metric.startsWith('exports:')) used.exports += v;
    }
    return { limits, used };
  });
}

export interface QuotaGuardOptions {
  /** How long settings and totals are reused before a re-read (ms, default 2000). */
  ttlMs?: number;
  now?: () => number;
}

/** Per-node quota checks over the meter's counts (see the module comment for the consistency model). */
export class QuotaGuard {
  private readonly cache = new Map<string, Entry>();
  private readonly loading = new Map<string, Promise<Entry>>();

  constructor(
    private readonly db: DatabaseHandle,
    private readonly meter: UsageMeter,
    private readonly opts: QuotaGuardOptions = {},
  ) {
    meter.subscribe((d) => {
      const e = this.cache.get(`${d.orgId}|${d.appId}`);
      if (e && e.month === d.month) {
        e.used.requests += d.requests;
        e.used.exports += d.exports;
        e.used.bytes += d.bytes;
      }
    });
  }

  private now(): number {
    return this.opts.now ? this.opts.now() : Date.now();
  }

  /** Forgets an app's cached settings (after its settings change on this node). */
  invalidate(orgId: string, appId: string): void {
    this.cache.delete(`${orgId}|${appId}`);
  }

  /**
   * True when this node read the app's settings less than `ttlMs` ago, in this month, and they set no
   * quota: then there is nothing to enforce or report, and the per-request check can stop here
   * without building a status (issue 12, item 4). False means "ask `status`", never "over quota".
   */
  unlimited(orgId: string, appId: string): boolean {
    const e = this.cache.get(`${orgId}|${appId}`);
    if (!e) return false;
    const now = this.now();
    return now - e.fetchedAt < (this.opts.ttlMs ?? 2000) && now < e.endsAt && now >= e.startsAt && !hasQuota(e.limits);
  }

  /** The app's quota status for the current month. */
  async status(orgId: string, appId: string): Promise<QuotaStatus> {
    const now = this.now();
    const month = monthOf(now);
    const k = `${orgId}|${appId}`;
    let e = this.cache.get(k);
    if (!e || e.month !== month || now - e.fetchedAt >= (this.opts.ttlMs ?? 2000)) {
      // One read per app at a time, however many requests arrive meanwhile.
      let p = this.loading.get(k);
      if (!p) {
        p = appMonthTotals(this.db, orgId, appId, month)
          .then(({ limits, used }) => {
            // What this node counted but has not committed yet (read after the database: a flush
            // racing this read can only make us undercount, never refuse a request wrongly).
            const local = this.meter.unflushed(orgId, appId, month);
            const fresh: Entry = { month, limits, used: { requests: used.requests + local.requests, exports: used.exports + local.exports, bytes: used.bytes + local.bytes }, fetchedAt: now, startsAt: monthStart(month).getTime(), endsAt: monthEnd(month).getTime() };
            if (this.cache.size >= 50_000) this.cache.clear();
            this.cache.set(k, fresh);
            return fresh;
          })
          .finally(() => this.loading.delete(k));
        this.loading.set(k, p);
      }
      e = await p;
    }
    return { month: e.month, resetsAt: monthEnd(e.month), limits: e.limits, used: { ...e.used } };
  }

  /** Throws 429 ERR_QUOTA_EXCEEDED when one of `kinds` is used up; otherwise returns the status. */
  async enforce(orgId: string, appId: string, kinds: readonly QuotaKind[]): Promise<QuotaStatus> {
    const status = await this.status(orgId, appId);
    const over = exceededQuota(status, kinds);
    if (over) throw quotaExceededError(status, over, this.now());
    return status;
  }
}
