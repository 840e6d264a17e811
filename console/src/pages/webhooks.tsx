/**
 * Webhooks of an app: register (secret shown once), enable/disable, rotate the secret, delete, the
 * delivery log with "redeliver", and "send test event" (both queued and sent by the worker like every event).
 */
import { useEffect, useState } from 'preact/hooks';
import { call, type App } from '../api.js';
import { CopyButton, Field, Notice, PageTitle, useAction, useLoad, when } from '../ui.js';

const EVENTS = ['job.completed', 'job.failed', 'job.cancelled', 'job.progress'] as const;
interface Endpoint {
  id: string;
  url: string;
  events: string[];
  description: string;
  enabled: boolean;
  previous_secret_expires_at: string | null;
  created_at: string;
}
interface Delivery {
  id: string;
  event_type: string;
  status: 'pending' | 'delivered' | 'failed';
  created_at: string;
  event_id: string;
  attempts: Array<{ attempt: number; at: string; status_code: number | null; duration_ms: number; error: string | null }>;
}

export function Webhooks(props: { scopes: Set<string> }) {
  const apps = useLoad(() => call<{ data: App[] }>('GET', '/v1/apps?limit=100'));
  const [appId, setAppId] = useState('');
  useEffect(() => {
    if (!appId && apps.data?.data[0]) setAppId(apps.data.data[0].id);
  }, [apps.data]);
  const h = { 'x-obscura-app': appId };
  const endpoints = useLoad(() => (appId ? call<{ data: Endpoint[] }>('GET', '/v1/webhooks?limit=100', undefined, h) : Promise.resolve({ data: [] as Endpoint[] })), [appId]);
  const [url, setUrl] = useState('');
  const [events, setEvents] = useState<Set<string>>(new Set(['job.completed', 'job.failed']));
  const [secret, setSecret] = useState<{ id: string; secret: string } | null>(null);
  const [logOf, setLogOf] = useState<Endpoint | null>(null);
  const log = useLoad(() => (logOf ? call<{ data: Delivery[] }>('GET', `/v1/webhooks/${logOf.id}/deliveries?limit=50`, undefined, h) : Promise.resolve(null)), [logOf?.id]);
  // While a delivery of the open log is pending, look again shortly (the worker sends it within seconds).
  const pending = log.data?.data.some((d) => d.status === 'pending') ?? false;
  useEffect(() => {
    if (!pending) return;
    const t = setTimeout(() => log.reload(), 700);
    return () => clearTimeout(t);
  }, [pending, log.data]);
  const [ok, setOk] = useState<string | null>(null);
  const create = useAction(async () => {
    const r = await call<Endpoint & { secret: string }>('POST', '/v1/webhooks', { url, events: [...events] }, h);
    setSecret({ id: r.id, secret: r.secret });
    setUrl('');
    endpoints.reload();
  });
  const act = useAction(async (what: 'toggle' | 'rotate' | 'delete' | 'log' | 'test', e: Endpoint) => {
    setOk(null);
    if (what === 'toggle') await call('PATCH', `/v1/webhooks/${e.id}`, { enabled: !e.enabled }, h);
    if (what === 'rotate') {
      const r = await call<{ secret: string }>('POST', `/v1/webhooks/${e.id}/rotate-secret`, {}, h);
      setSecret({ id: e.id, secret: r.secret });
    }
    if (what === 'delete') {
      if (!confirm(`Delete the endpoint ${e.url}?`)) return;
      await call('DELETE', `/v1/webhooks/${e.id}`, undefined, h);
      setOk('Endpoint deleted.');
    }
    if (what === 'test') {
      await call('POST', `/v1/webhooks/${e.id}/test`, undefined, h);
      setOk(`Test event queued for ${e.url}; its delivery appears in the log below.`);
    }
    if (what === 'log' || what === 'test') {
      if (logOf?.id === e.id) log.reload();
      else setLogOf(e);
    }
    if (what === 'delete' && logOf?.id === e.id) setLogOf(null);
    endpoints.reload();
  });
  const again = useAction(async (d: Delivery) => {
    if (!logOf) return;
    await call('POST', `/v1/webhooks/${logOf.id}/deliveries/${d.id}/redeliver`, undefined, h);
    setOk(`Event ${d.event_id} queued again.`);
    log.reload();
  });
  const can = props.scopes.has('webhooks:manage');
  return (
    <main id="main">
      <PageTitle>Webhooks</PageTitle>
      <p class="lead">Obscura signs every delivery (see docs/webhooks.md); your endpoint verifies it with the secret.</p>
      {!can ? <p class="empty">Your role cannot manage webhooks.</p> : null}
      {can && apps.data && apps.data.data.length > 1 ? (
        <div class="field">
          <label for="wh-app">App</label>
          <select id="wh-app" value={appId} onChange={(e) => setAppId(e.currentTarget.value)}>
            {apps.data.data.map((a) => (
              <option key={a.id} value={a.id}>
                {a.name}
              </option>
            ))}
          </select>
        </div>
      ) : null}
      <Notice error={endpoints.error ?? act.error} ok={ok} />
      {secret ? (
        <section class="card reveal" aria-labelledby="wh-secret-title">
          <h2 id="wh-secret-title">Signing secret</h2>
          <p>
            <strong>Copy it now. You will not see it again.</strong>
          </p>
          <p class="secret-line">
            <code class="secret">{secret.secret}</code>
            <CopyButton text={secret.secret} label="Copy secret" />
          </p>
          <button type="button" onClick={() => setSecret(null)}>
            I have stored it
          </button>
        </section>
      ) : null}
      {can && endpoints.data ? (
        endpoints.data.data.length ? (
          <ul class="list" aria-label="Endpoints">
            {endpoints.data.data.map((e) => (
              <li key={e.id}>
                <span>
                  <code>{e.url}</code> · {e.events.join(', ')} · {e.enabled ? 'enabled' : 'disabled'}
                  {e.previous_secret_expires_at ? ` · previous secret signs until ${when(e.previous_secret_expires_at)}` : ''}
                </span>
                <span class="row-actions">
                  <button type="button" onClick={() => void act.run('test', e)} disabled={!e.enabled || act.busy}>
                    Send test event<span class="sr-only"> to {e.url}</span>
                  </button>
                  <button type="button" onClick={() => void act.run('log', e)}>
                    Deliveries<span class="sr-only"> of {e.url}</span>
                  </button>
                  <button type="button" onClick={() => void act.run('toggle', e)}>
                    {e.enabled ? 'Disable' : 'Enable'}
                  </button>
                  <button type="button" onClick={() => void act.run('rotate', e)}>
                    Rotate secret
                  </button>
                  <button type="button" class="danger" onClick={() => void act.run('delete', e)}>
                    Delete
                  </button>
                </span>
              </li>
            ))}
          </ul>
        ) : (
          <p class="empty">No endpoints yet. Register one below to hear when jobs finish.</p>
        )
      ) : null}
      {logOf ? (
        <section aria-labelledby="wh-log-title">
          <h2 id="wh-log-title">
            Deliveries to <code>{logOf.url}</code>
          </h2>
          <div class="actions">
            <button type="button" onClick={() => log.reload()}>
              Refresh log
            </button>
          </div>
          <Notice error={log.error ?? again.error} />
          {log.data ? (
            log.data.data.length ? (
              <div class="table-wrap">
                <table>
                  <caption class="sr-only">Deliveries, newest first</caption>
                  <thead>
                    <tr>
                      <th scope="col">Event</th>
                      <th scope="col">Status</th>
                      <th scope="col">Created</th>
                      <th scope="col">Attempts</th>
                      <th scope="col">Actions</th>
                    </tr>
                  </thead>
                  <tbody>
                    {log.data.data.map((d) => (
                      <tr key={d.id} data-delivery={d.id} data-status={d.status} data-event-type={d.event_type}>
                        <td data-label="Event">
                          {d.event_type}
                          <br />
                          <code class="hint">{d.event_id}</code>
                        </td>
                        <td data-label="Status" class={`status-${d.status}`}>
                          {d.status}
                        </td>
                        <td data-label="Created">{when(d.created_at)}</td>
                        <td data-label="Attempts">
                          {d.attempts.length
                            ? d.attempts.map((a) => `#${a.attempt} ${a.status_code ?? 'no answer'}${a.error && a.error !== 'status' ? ` (${a.error})` : ''} in ${a.duration_ms} ms`).join('; ')
                            : 'not attempted yet'}
                        </td>
                        <td class="row-actions">
                          {d.status !== 'pending' ? (
                            <button type="button" onClick={() => void again.run(d)} disabled={again.busy}>
                              Redeliver<span class="sr-only"> {d.event_type} {d.id}</span>
                            </button>
                          ) : (
                            <span class="hint">sending…</span>
                          )}
                        </td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              </div>
            ) : (
              <p class="empty">No deliveries yet. Press “Send test event” to check the endpoint now; job events appear when jobs of this app finish.</p>
            )
          ) : (
            <p class="hint" role="status">Loading…</p>
          )}
        </section>
      ) : null}
      {can ? (
        <form
          class="card"
          aria-labelledby="wh-new-title"
          onSubmit={(e) => {
            e.preventDefault();
            void create.run();
          }}
        >
          <h2 id="wh-new-title">Register an endpoint</h2>
          <Field id="wh-url" label="URL" hint="https on a public address; checked now and at every delivery.">
            <input id="wh-url" type="url" required value={url} onInput={(e) => setUrl(e.currentTarget.value)} aria-describedby="wh-url-hint" placeholder="https://api.example.com/obscura" />
          </Field>
          <fieldset>
            <legend>Events</legend>
            {EVENTS.map((ev) => (
              <label class="choice" key={ev}>
                <input
                  type="checkbox"
                  checked={events.has(ev)}
                  onChange={() => {
                    const next = new Set(events);
                    if (next.has(ev)) next.delete(ev);
                    else next.add(ev);
                    setEvents(next);
                  }}
                />{' '}
                {ev}
              </label>
            ))}
          </fieldset>
          <Notice error={create.error} />
          <button type="submit" class="primary" disabled={create.busy}>
            Register
          </button>
        </form>
      ) : null}
    </main>
  );
}
