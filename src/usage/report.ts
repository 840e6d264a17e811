/** Reading usage back: one month of an org's counters, per app and per credential. */
import { sql } from 'kysely';
import type { Tx } from '../db/database.js';
import type { AppSettings } from '../db/schema.js';
import { limitsFromSettings, type QuotaLimits } from './quota.js';
import './schema.js';

/** Counts of one app or one credential in one month. */
export interface UsageFigures {
  requests: number;
  bytesIn: number;
  bytesOut: number;
  processingSeconds: number;
  /** Exports by media type, and their total; `byResolution` by the output's resolution bucket (shorter side). */
  exports: { total: number; byType: Record<string, number>; byResolution: Record<string, number> };
  /** Output pixels (width × height × frames) by media type, and their total. */
  pixels: { total: number; byType: Record<string, number> };
  /** Output video seconds by media type (video outputs only). */
  videoSeconds: { total: number; byType: Record<string, number> };
  /** On-device processing (issue 15): engine loads by platform, and the exports made on the device (also counted in `exports`). */
  device: { loads: { total: number; byPlatform: Record<string, number> }; exports: { total: number; byType: Record<string, number> } };
}

export interface AppUsage extends UsageFigures {
  appId: string;
  /** Distinct end users seen this month (from keyed hashes). */
  monthlyActiveEndUsers: number;
  quotas: QuotaLimits;
  /** Per credential; `keyId` null is usage no credential caused. */
  keys: Array<UsageFigures & { keyId: string | null }>;
}

function empty(): UsageFigures {
  return { requests: 0, bytesIn: 0, bytesOut: 0, processingSeconds: 0, exports: { total: 0, byType: {}, byResolution: {} }, pixels: { total: 0, byType: {} }, videoSeconds: { total: 0, byType: {} }, device: { loads: { total: 0, byPlatform: {} }, exports: { total: 0, byType: {} } } };
}

function add(f: UsageFigures, metric: string, v: number): void {
  if (metric === 'requests') f.requests += v;
  else if (metric === 'bytes_in') f.bytesIn += v;
  else if (metric === 'bytes_out') f.bytesOut += v;
  else if (metric === 'processing_ms') f.processingSeconds += v / 1000;
  else if (metric.startsWith('exports:')) tally(f.exports, metric.slice('exports:'.length), v);
  else if (metric.startsWith('pixels:')) tally(f.pixels, metric.slice('pixels:'.length), v);
  else if (metric.startsWith('resolution:')) {
    const bucket = metric.slice('resolution:'.length);
    f.exports.byResolution[bucket] = (f.exports.byResolution[bucket] ?? 0) + v;
  } else if (metric.startsWith('video_ms:')) tally(f.videoSeconds, metric.slice('video_ms:'.length), v / 1000);
  else if (metric.startsWith('device_exports:')) tally(f.device.exports, metric.slice('device_exports:'.length), v);
  else if (metric.startsWith('device_loads:')) {
    const platform = metric.slice('device_loads:'.length);
    f.device.loads.byPlatform[platform] = (f.device.loads.byPlatform[platform] ?? 0) + v;
    f.device.loads.total += v;
  }
}

function tally(t: { total: number; byType: Record<string, number> }, type: string, v: number): void {
  t.byType[type] = (t.byType[type] ?? 0) + v;
  t.total += v;
}

/** The org's usage in `month` (`YYYY-MM`), for every app (or just `appId`), inside a tenant transaction. */
export async function usageReport(trx: Tx, orgId: string, month: string, appId?: string): Promise<AppUsage[]> {
  let apps = trx.selectFrom('apps').select(['id', 'settings']).where('org_id', '=', orgId);
  if (appId) apps = apps.where('id', '=', appId);
  const appRows = await apps.orderBy('created_at').orderBy('id').execute();
  let counters = trx.selectFrom('usage_counters').select(['app_id', 'key_id', 'metric', sql<string>`value::text`.as('value')]).where('org_id', '=', orgId).where('month', '=', month);
  if (appId) counters = counters.where('app_id', '=', appId);
  const counterRows = await counters.execute();
  let users = trx.selectFrom('usage_end_users').select(['app_id', sql<string>`count(*)::text`.as('n')]).where('org_id', '=', orgId).where('month', '=', month).groupBy('app_id');
  if (appId) users = users.where('app_id', '=', appId);
  const userRows = await users.execute();

  const byApp = new Map<string, AppUsage>();
  const keysByApp = new Map<string, Map<string, UsageFigures & { keyId: string | null }>>();
  for (const a of appRows) {
    const settings = (typeof a.settings === 'string' ? JSON.parse(a.settings) : a.settings) as AppSettings;
    byApp.set(a.id, { appId: a.id, ...empty(), monthlyActiveEndUsers: 0, quotas: limitsFromSettings(settings), keys: [] });
    keysByApp.set(a.id, new Map());
  }
  for (const r of counterRows) {
    const app = byApp.get(r.app_id);
    if (!app) continue;
    const v = Number(r.value);
    add(app, r.metric, v);
    const keys = keysByApp.get(r.app_id)!;
    let k = keys.get(r.key_id);
    if (!k) keys.set(r.key_id, (k = { keyId: r.key_id === '' ? null : r.key_id, ...empty() }));
    add(k, r.metric, v);
  }
  for (const r of userRows) {
    const app = byApp.get(r.app_id);
    if (app) app.monthlyActiveEndUsers = Number(r.n);
  }
  const ms = (s: number) => Math.round(s * 1000) / 1000;
  for (const [id, app] of byApp) {
    app.processingSeconds = ms(app.processingSeconds);
    app.keys = [...keysByApp.get(id)!.values()].sort((a, b) => (a.keyId ?? '').localeCompare(b.keyId ?? ''));
    for (const k of app.keys) k.processingSeconds = ms(k.processingSeconds);
  }
  return [...byApp.values()];
}

/** One UTC day of an org's usage (every app, or one). */
export interface DayUsage extends UsageFigures {
  /** `YYYY-MM-DD` (UTC). */
  day: string;
}

/**
 * The org's usage per UTC day of `month` (`YYYY-MM`), every day of the month up to `untilDay`
 * (inclusive; default the month's last day), zero-filled, summed over its apps (or just `appId`).
 * Days before migration 0019 read as zero: only the monthly counters existed then.
 */
export async function usageDays(trx: Tx, orgId: string, month: string, opts: { appId?: string | undefined; untilDay?: string | undefined } = {}): Promise<DayUsage[]> {
  const [y, m] = month.split('-').map(Number) as [number, number];
  const last = new Date(Date.UTC(y, m, 0)).getUTCDate();
  const first = `${month}-01`;
  const end = `${month}-${String(last).padStart(2, '0')}`;
  const until = opts.untilDay && opts.untilDay < end ? opts.untilDay : end;
  let q = trx
    .selectFrom('usage_days')
    .select([sql<string>`to_char(day, 'YYYY-MM-DD')`.as('day'), 'metric', sql<string>`sum(value)::text`.as('value')])
    .where('org_id', '=', orgId)
    .where('day', '>=', first)
    .where('day', '<=', until)
    .groupBy(['day', 'metric']);
  if (opts.appId) q = q.where('app_id', '=', opts.appId);
  const rows = await q.execute();
  const days: DayUsage[] = [];
  const byDay = new Map<string, DayUsage>();
  for (let d = 1; d <= last; d++) {
    const day = `${month}-${String(d).padStart(2, '0')}`;
    if (day > until) break;
    const entry = { day, ...empty() };
    days.push(entry);
    byDay.set(day, entry);
  }
  for (const r of rows) {
    const entry = byDay.get(r.day);
    if (entry) add(entry, r.metric, Number(r.value));
  }
  for (const d of days) d.processingSeconds = Math.round(d.processingSeconds * 1000) / 1000;
  return days;
}
