/** Usage (per month and app, against quotas) and the audit log (filter, load more, verify the chain). */
import { useEffect, useState } from 'preact/hooks';
import { call, type App } from '../api.js';
import { Notice, PageTitle, useAction, useLoad, when } from '../ui.js';

interface Figures {
  requests: number;
  bytes_in: number;
  bytes_out: number;
  processing_seconds: number;
  exports: { total: number; by_type: Record<string, number> };
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

const monthsBack = (n: number) => {
  const d = new Date();
  return Array.from({ length: n }, (_, i) => {
    const m = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() - i, 1));
    return `${m.getUTCFullYear()}-${String(m.getUTCMonth() + 1).padStart(2, '0')}`;
  });
};
const mib = (n: number) => `${(n / 1024 ** 2).toFixed(1)} MiB`;

export function Usage() {
  const months = monthsBack(6);
  const apps = useLoad(() => call<{ data: App[] }>('GET', '/v1/apps?limit=100'));
  const reports = useLoad(() => Promise.all(months.map((m) => call<Report>('GET', `/v1/usage?month=${m}`))));
  const name = (id: string) => apps.data?.data.find((a) => a.id === id)?.name ?? id;
  const totals = (reports.data ?? []).map((r) => ({
    month: r.month,
    requests: r.apps.reduce((n, a) => n + a.requests, 0),
    exports: r.apps.reduce((n, a) => n + a.exports.total, 0),
  }));
  const maxRequests = Math.max(1, ...totals.map((t) => t.requests));
  const current = reports.data?.[0];
  return (
    <main id="main">
      <PageTitle>Usage</PageTitle>
      <Notice error={reports.error ?? apps.error} />
      {reports.data ? (
        <>
          <h2>Requests per month</h2>
          <table class="bars">
            <caption class="sr-only">Requests and exports per month, all apps</caption>
            <thead>
              <tr>
                <th scope="col">Month</th>
                <th scope="col">Requests</th>
                <th scope="col">Exports</th>
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
                </tr>
              ))}
            </tbody>
          </table>
          <h2>This month, per app</h2>
          {current && current.apps.length ? (
            current.apps.map((a) => (
              <section class="card" key={a.app_id} aria-label={`Usage of ${name(a.app_id)}`}>
                <h3>{name(a.app_id)}</h3>
                <dl class="facts">
                  <dt>Requests</dt>
                  <dd>
                    {a.requests}
                    {a.quotas.requests !== null ? (
                      <>
                        {' '}
                        of {a.quotas.requests} <meter min={0} max={a.quotas.requests} value={a.requests} aria-label="Request quota used" />
                      </>
                    ) : ' (no quota)'}
                  </dd>
                  <dt>Exports</dt>
                  <dd>
                    {a.exports.total}
                    {Object.entries(a.exports.by_type).length ? ` (${Object.entries(a.exports.by_type).map(([k, v]) => `${k}: ${v}`).join(', ')})` : ''}
                    {a.quotas.exports !== null ? ` of ${a.quotas.exports}` : ''}
                  </dd>
                  <dt>Bytes in / out</dt>
                  <dd>
                    {mib(a.bytes_in)} / {mib(a.bytes_out)}
                  </dd>
                  <dt>Processing</dt>
                  <dd>{a.processing_seconds.toFixed(1)} s</dd>
                  <dt>Active end users</dt>
                  <dd>{a.monthly_active_end_users}</dd>
                </dl>
              </section>
            ))
          ) : (
            <p class="empty">Nothing metered this month yet. Usage appears as soon as your apps call the API.</p>
          )}
          {current ? <p class="hint">Quotas reset {when(current.resets_at)}.</p> : null}
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
