/** Usage (per day and month, per app, by media type and resolution, against quotas) and the audit log (filter, load more, verify the chain). */
import { useEffect, useState } from 'preact/hooks';
import { call, type App } from '../api.js';
import { Notice, PageTitle, useAction, useLoad, when } from '../ui.js';

interface Figures {
  requests: number;
  bytes_in: number;
  bytes_out: number;
  processing_seconds: number;
  exports: { total: number; by_type: Record<string, number>; by_resolution?: Record<string, number> };
}
interface AppUsage extends Figures {
  app_id: string;
  monthly_active_end_users: number;
  quotas: { requests: number | null; exports: number | null; bytes: number | null };
}
interface Report {
  month: string;
  resets_at: string;
  apps: AppUsage[];
}
interface Days {
  month: string;
  days: Array<Figures & { day: string }>;
}

const monthsBack = (n: number) => {
  const d = new Date();
  return Array.from({ length: n }, (_, i) => {
    const m = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() - i, 1));
    return `${m.getUTCFullYear()}-${String(m.getUTCMonth() + 1).padStart(2, '0')}`;
  });
};
const mib = (n: number) => `${(n / 1024 ** 2).toFixed(1)} MiB`;
const RESOLUTIONS = ['240p', '480p', '720p', '1080p', '1440p', '2160p', 'above'];

/** What the daily chart can show. */
const METRICS: Array<{ key: string; label: string; of: (f: Figures) => number; fmt: (n: number) => string }> = [
  { key: 'requests', label: 'Requests', of: (f) => f.requests, fmt: (n) => String(n) },
  { key: 'exports', label: 'Exports', of: (f) => f.exports.total, fmt: (n) => String(n) },
  { key: 'bytes', label: 'Bytes in + out', of: (f) => f.bytes_in + f.bytes_out, fmt: mib },
  { key: 'seconds', label: 'Processing seconds', of: (f) => f.processing_seconds, fmt: (n) => `${n.toFixed(1)} s` },
];

/** Bars for the days of a month: SVG (no inline style: the CSP forbids it), with the numbers in a table too. */
function DayChart(props: { days: Days['days']; metric: (typeof METRICS)[number] }) {
  const values = props.days.map((d) => props.metric.of(d));
  const max = Math.max(1, ...values);
  const w = 10;
  const total = values.reduce((a, b) => a + b, 0);
  return (
    <figure class="chart" aria-labelledby="chart-caption">
      <svg viewBox={`0 0 ${Math.max(1, props.days.length) * w} 100`} preserveAspectRatio="none" role="img" aria-label={`${props.metric.label} per day: ${props.metric.fmt(total)} in total`} data-testid="day-chart">
        {props.days.map((d, i) => {
          const v = values[i]!;
          const h = v === 0 ? 1 : Math.max(2, (v / max) * 98);
          return (
            <rect key={d.day} class={v === 0 ? 'bar zero' : 'bar'} x={i * w + 1} y={100 - h} width={w - 2} height={h} data-day={d.day} data-value={v}>
              <title>
                {d.day}: {props.metric.fmt(v)}
              </title>
            </rect>
          );
        })}
        <line class="axis" x1={0} y1={100} x2={props.days.length * w} y2={100} />
      </svg>
      <figcaption id="chart-caption" class="chart-legend">
        <span>{props.days[0]?.day ?? ''}</span>
        <span>
          {props.metric.label}: {props.metric.fmt(total)} this month, at most {props.metric.fmt(max === 1 && total === 0 ? 0 : max)} a day
        </span>
        <span>{props.days.at(-1)?.day ?? ''}</span>
      </figcaption>
    </figure>
  );
}

function QuotaLine(props: { label: string; used: number; limit: number | null; fmt?: (n: number) => string }) {
  const f = props.fmt ?? String;
  return (
    <>
      <dt>{props.label}</dt>
      <dd>
        {f(props.used)}
        {props.limit !== null ? (
          <>
            {' '}
            of {f(props.limit)} ({Math.min(999, Math.round((props.used / Math.max(1, props.limit)) * 100))} %){' '}
            <meter min={0} max={props.limit} value={props.used} high={props.limit * 0.8} aria-label={`${props.label}: quota used`} />
          </>
        ) : (
          ' (no quota)'
        )}
      </dd>
    </>
  );
}

export function Usage() {
  const months = monthsBack(6);
  const [month, setMonth] = useState(months[0]!);
  const [metric, setMetric] = useState('requests');
  const apps = useLoad(() => call<{ data: App[] }>('GET', '/v1/apps?limit=100'));
  const reports = useLoad(() => Promise.all(months.map((m) => call<Report>('GET', `/v1/usage?month=${m}`))));
  const days = useLoad(() => call<Days>('GET', `/v1/usage/daily?month=${month}`), [month]);
  const name = (id: string) => apps.data?.data.find((a) => a.id === id)?.name ?? id;
  const totals = (reports.data ?? []).map((r) => ({
    month: r.month,
    requests: r.apps.reduce((n, a) => n + a.requests, 0),
    exports: r.apps.reduce((n, a) => n + a.exports.total, 0),
    bytes: r.apps.reduce((n, a) => n + a.bytes_in + a.bytes_out, 0),
    seconds: r.apps.reduce((n, a) => n + a.processing_seconds, 0),
  }));
  const maxRequests = Math.max(1, ...totals.map((t) => t.requests));
  const current = reports.data?.find((r) => r.month === month);
  const chosen = METRICS.find((m) => m.key === metric) ?? METRICS[0]!;
  const nothing = totals.every((t) => t.requests === 0 && t.exports === 0);
  return (
    <main id="main">
      <PageTitle>Usage</PageTitle>
      <p class="lead">Counts only, never content: requests, outputs (exports), bytes, processing time and active end users, per day and per month, against each app's quotas.</p>
      <Notice error={reports.error ?? apps.error ?? days.error} />
      {reports.data && nothing ? <p class="empty">Nothing metered yet. Usage appears here as soon as your apps call the API: create a key on the Apps page, or try the Playground.</p> : null}
      <div class="actions">
        <div class="field">
          <label for="usage-month">Month</label>
          <select id="usage-month" value={month} onChange={(e) => setMonth(e.currentTarget.value)}>
            {months.map((m) => (
              <option key={m} value={m}>
                {m}
              </option>
            ))}
          </select>
        </div>
        <div class="field">
          <label for="usage-metric">Chart</label>
          <select id="usage-metric" value={metric} onChange={(e) => setMetric(e.currentTarget.value)}>
            {METRICS.map((m) => (
              <option key={m.key} value={m.key}>
                {m.label}
              </option>
            ))}
          </select>
        </div>
      </div>
      <h2>Per day, {month}</h2>
      {days.data ? <DayChart days={days.data.days} metric={chosen} /> : <p class="hint" role="status">Loading…</p>}
      {reports.data ? (
        <>
          <h2>Per month</h2>
          <div class="table-wrap">
            <table class="bars">
              <caption class="sr-only">Requests, exports, bytes and processing time per month, all apps</caption>
              <thead>
                <tr>
                  <th scope="col">Month</th>
                  <th scope="col">Requests</th>
                  <th scope="col">Exports</th>
                  <th scope="col">Bytes</th>
                  <th scope="col">Processing</th>
                </tr>
              </thead>
              <tbody>
                {totals.map((t) => (
                  <tr key={t.month}>
                    <th scope="row">{t.month}</th>
                    <td data-label="Requests">
                      <progress max={maxRequests} value={t.requests} aria-label={`Requests in ${t.month}`} /> {t.requests}
                    </td>
                    <td data-label="Exports">{t.exports}</td>
                    <td data-label="Bytes">{mib(t.bytes)}</td>
                    <td data-label="Processing">{t.seconds.toFixed(1)} s</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          <h2>{month}, per app</h2>
          {current && current.apps.length ? (
            current.apps.map((a) => (
              <section class="card" key={a.app_id} aria-label={`Usage of ${name(a.app_id)}`} data-app-usage={a.app_id}>
                <h3>{name(a.app_id)}</h3>
                <dl class="facts">
                  <QuotaLine label="Requests" used={a.requests} limit={a.quotas.requests} />
                  <QuotaLine label="Exports" used={a.exports.total} limit={a.quotas.exports} />
                  <QuotaLine label="Bytes in + out" used={a.bytes_in + a.bytes_out} limit={a.quotas.bytes} fmt={mib} />
                  <dt>Exports by media type</dt>
                  <dd>{Object.entries(a.exports.by_type).length ? Object.entries(a.exports.by_type).map(([k, v]) => `${k}: ${v}`).join(', ') : '—'}</dd>
                  <dt>Exports by resolution</dt>
                  <dd data-testid="by-resolution">
                    {Object.entries(a.exports.by_resolution ?? {}).length
                      ? RESOLUTIONS.filter((r) => a.exports.by_resolution?.[r]).map((r) => `${r === 'above' ? 'above 2160p' : `≤ ${r}`}: ${a.exports.by_resolution![r]}`).join(', ')
                      : '—'}
                  </dd>
                  <dt>Bytes in / out</dt>
                  <dd>
                    {mib(a.bytes_in)} / {mib(a.bytes_out)}
                  </dd>
                  <dt>Processing</dt>
                  <dd>{a.processing_seconds.toFixed(1)} s</dd>
                  <dt>Monthly active end users</dt>
                  <dd>{a.monthly_active_end_users}</dd>
                </dl>
              </section>
            ))
          ) : (
            <p class="empty">Nothing metered in {month}. Usage appears as soon as your apps call the API.</p>
          )}
          {current ? <p class="hint">Quotas reset {when(current.resets_at)}. Set them per app with PATCH /v1/apps/{'{id}'} (quota_requests_per_month, quota_exports_per_month, quota_bytes_per_month).</p> : null}
        </>
      ) : (
        <p class="hint" role="status">Loading…</p>
      )}
    </main>
  );
}

interface Entry {
  id: number;
  seq: number;
  at: string;
  actor: Record<string, unknown>;
  action: string;
  target: Record<string, unknown>;
  ip: string | null;
  hash: string;
}

export function Audit() {
  const [entries, setEntries] = useState<Entry[]>([]);
  const [cursor, setCursor] = useState<string | null | undefined>(undefined);
  const [filter, setFilter] = useState('');
  const [verified, setVerified] = useState<{ ok: boolean; entries: number; head_hash: string; broken: { seq: number | null; reason: string } | null } | null>(null);
  const more = useAction(async () => {
    const page = await call<{ data: Entry[]; next_cursor: string | null }>('GET', `/v1/audit?limit=50${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
    setEntries((e) => [...e, ...page.data]);
    setCursor(page.next_cursor);
  });
  const verify = useAction(async () => setVerified(await call('GET', '/v1/audit/verify')));
  useEffect(() => {
    void more.run();
  }, []);
  const shown = filter ? entries.filter((e) => e.action.includes(filter) || JSON.stringify(e.actor).includes(filter)) : entries;
  return (
    <main id="main">
      <PageTitle>Audit log</PageTitle>
      <p class="lead">Every change to your org, hash-chained and keyed: an edited or deleted entry breaks the chain.</p>
      <section class="card" aria-labelledby="verify-title">
        <h2 id="verify-title">Verify the chain</h2>
        <button type="button" onClick={() => void verify.run()} disabled={verify.busy}>
          {verify.busy ? 'Verifying…' : 'Verify chain'}
        </button>
        <Notice error={verify.error} />
        {verified ? (
          verified.ok ? (
            <p class="notice ok" role="status" data-testid="verify-result">
              The chain holds: {verified.entries} entries. Head hash <code>{verified.head_hash}</code>
            </p>
          ) : (
            <p class="notice error" role="alert" data-testid="verify-result">
              The chain is broken{verified.broken?.seq ? ` at entry ${verified.broken.seq}` : ''}: {verified.broken?.reason}. Tell your operator (obscura audit verify).
            </p>
          )
        ) : null}
      </section>
      <div class="field">
        <label for="audit-filter">Filter by action or actor</label>
        <input id="audit-filter" value={filter} onInput={(e) => setFilter(e.currentTarget.value)} placeholder="key.create" />
      </div>
      <Notice error={more.error} />
      <div class="table-wrap">
        <table>
          <caption class="sr-only">Audit entries, newest first</caption>
          <thead>
            <tr>
              <th scope="col">#</th>
              <th scope="col">When</th>
              <th scope="col">Action</th>
              <th scope="col">Actor</th>
              <th scope="col">Target</th>
              <th scope="col">Address</th>
            </tr>
          </thead>
          <tbody>
            {shown.map((e) => (
              <tr key={e.id}>
                <td data-label="#">{e.seq}</td>
                <td data-label="When">{when(e.at)}</td>
                <td data-label="Action">
                  <code>{e.action}</code>
                </td>
                <td data-label="Actor">{[e.actor.type, e.actor.id].filter(Boolean).join(' ')}</td>
                <td data-label="Target" class="scopes">
                  {Object.entries(e.target)
                    .map(([k, v]) => `${k}: ${String(v)}`)
                    .join(', ')}
                </td>
                <td data-label="Address">{e.ip ?? '—'}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {cursor ? (
        <button type="button" onClick={() => void more.run()} disabled={more.busy}>
          Load older entries
        </button>
      ) : null}
    </main>
  );
}
