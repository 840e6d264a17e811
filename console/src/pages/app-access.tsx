/**
 * The rest of an app's access, below its keys: OAuth2 clients (client credentials), transform-URL
 * signing keys and named transform presets. Each action is one API call; secrets are shown once.
 */
import { useState } from 'preact/hooks';
import { call, SCOPES } from '../api.js';
import { Field, Notice, SecretReveal, useAction, useLoad, when } from '../ui.js';

interface OAuthClient {
  id: string;
  client_id: string;
  name: string;
  scopes: string[];
  revoked_at: string | null;
  created_at: string;
}
interface TransformKey {
  id: string;
  created_at: string;
}
interface Preset {
  name: string;
  operations: string;
  updated_at: string;
}

/** `GET|POST /v1/apps/{id}/oauth-clients`, `DELETE /v1/oauth-clients/{id}` (scope keys:manage). */
export function OAuthClients(props: { appId: string }) {
  const clients = useLoad(() => call<{ data: OAuthClient[] }>('GET', `/v1/apps/${props.appId}/oauth-clients?limit=100`), [props.appId]);
  const [name, setName] = useState('');
  const [scopes, setScopes] = useState<Set<string>>(new Set());
  const [shown, setShown] = useState<{ clientId: string; secret: string } | null>(null);
  const [ok, setOk] = useState<string | null>(null);
  const create = useAction(async () => {
    const r = await call<{ client_id: string; client_secret: string }>('POST', `/v1/apps/${props.appId}/oauth-clients`, { name: name || undefined, scopes: scopes.size ? [...scopes] : undefined });
    setShown({ clientId: r.client_id, secret: r.client_secret });
    setName('');
    setScopes(new Set());
    setOk(null);
    clients.reload();
  });
  const revoke = useAction(async (c: OAuthClient) => {
    if (!confirm(`Revoke the OAuth client “${c.name || c.client_id}”? It gets no new tokens; issued ones expire on their own.`)) return;
    await call('DELETE', `/v1/oauth-clients/${c.id}`);
    setOk(`OAuth client “${c.name || c.client_id}” revoked.`);
    clients.reload();
  });
  const toggle = (s: string) => {
    const next = new Set(scopes);
    if (next.has(s)) next.delete(s);
    else next.add(s);
    setScopes(next);
  };
  return (
    <section aria-labelledby="oauth-title" class="block">
      <h2 id="oauth-title">OAuth clients</h2>
      <p class="hint">For machines that prefer short-lived tokens: they trade the client id and secret for an access token at POST /v1/oauth/token (client credentials).</p>
      <Notice error={clients.error ?? revoke.error} ok={ok} />
      {shown ? (
        <SecretReveal title="New OAuth client" secret={shown.secret} label="Copy client secret" testid="oauth-secret" onDone={() => setShown(null)}>
          <p>
            Client id <code data-testid="oauth-client-id">{shown.clientId}</code>
          </p>
        </SecretReveal>
      ) : null}
      {clients.data ? (
        clients.data.data.length ? (
          <ul class="list" aria-label="OAuth clients">
            {clients.data.data.map((c) => (
              <li key={c.id} data-client={c.client_id} data-state={c.revoked_at ? 'revoked' : 'active'}>
                <span>
                  <strong>{c.name || 'unnamed'}</strong> <code>{c.client_id}</code>
                  <br />
                  <span class="hint">
                    {c.scopes.join(', ')} · {c.revoked_at ? `revoked ${when(c.revoked_at)}` : `created ${when(c.created_at)}`}
                  </span>
                </span>
                {!c.revoked_at ? (
                  <button type="button" class="danger" onClick={() => void revoke.run(c)} disabled={revoke.busy}>
                    Revoke<span class="sr-only"> OAuth client {c.name || c.client_id}</span>
                  </button>
                ) : null}
              </li>
            ))}
          </ul>
        ) : (
          <p class="empty">No OAuth clients. Create one below if a backend should authenticate with short-lived tokens instead of a key.</p>
        )
      ) : null}
      <form
        class="card"
        aria-labelledby="oauth-new-title"
        onSubmit={(e) => {
          e.preventDefault();
          void create.run();
        }}
      >
        <h3 id="oauth-new-title">Create an OAuth client</h3>
        <Field id="oauth-name" label="Client name">
          <input id="oauth-name" maxLength={200} value={name} onInput={(e) => setName(e.currentTarget.value)} />
        </Field>
        <fieldset class="scopes-pick">
          <legend>Scopes (none picked: all of yours)</legend>
          {SCOPES.map((s) => (
            <label class="choice" key={s}>
              <input type="checkbox" checked={scopes.has(s)} onChange={() => toggle(s)} /> {s}
            </label>
          ))}
        </fieldset>
        <Notice error={create.error} />
        <button type="submit" class="primary" disabled={create.busy}>
          Create OAuth client
        </button>
      </form>
    </section>
  );
}

/** `GET|POST /v1/apps/{id}/transform-keys`, `DELETE …/{kid}` (keys:manage + assets:read). */
export function TransformKeys(props: { appId: string }) {
  const keys = useLoad(() => call<{ data: TransformKey[] }>('GET', `/v1/apps/${props.appId}/transform-keys?limit=100`), [props.appId]);
  const [shown, setShown] = useState<{ id: string; secret: string } | null>(null);
  const [ok, setOk] = useState<string | null>(null);
  const create = useAction(async () => {
    const r = await call<{ id: string; secret: string }>('POST', `/v1/apps/${props.appId}/transform-keys`);
    setShown(r);
    setOk(null);
    keys.reload();
  });
  const remove = useAction(async (k: TransformKey) => {
    if (!confirm(`Delete the transform key ${k.id}? Every URL signed with it stops working.`)) return;
    await call('DELETE', `/v1/apps/${props.appId}/transform-keys/${k.id}`);
    setOk(`Transform key ${k.id} deleted.`);
    keys.reload();
  });
  return (
    <section aria-labelledby="tfk-title" class="block">
      <h2 id="tfk-title">Transform signing keys</h2>
      <p class="hint">Sign transform URLs (/t/…) on your server with one of these; see docs/transform-urls.md or buildTransformUrl in the SDK.</p>
      <Notice error={keys.error ?? remove.error} ok={ok} />
      {shown ? (
        <SecretReveal title={`New transform key ${shown.id}`} secret={shown.secret} label="Copy signing secret" testid="transform-secret" onDone={() => setShown(null)} />
      ) : null}
      {keys.data ? (
        keys.data.data.length ? (
          <ul class="list" aria-label="Transform keys">
            {keys.data.data.map((k) => (
              <li key={k.id} data-transform-key={k.id}>
                <span>
                  <code>{k.id}</code> <span class="hint">created {when(k.created_at)}</span>
                </span>
                <button type="button" class="danger" onClick={() => void remove.run(k)} disabled={remove.busy}>
                  Delete<span class="sr-only"> transform key {k.id}</span>
                </button>
              </li>
            ))}
          </ul>
        ) : (
          <p class="empty">No transform keys. Create one to serve resized images straight from URLs your server signs.</p>
        )
      ) : null}
      <Notice error={create.error} />
      <p class="actions">
        <button type="button" class="primary" onClick={() => void create.run()} disabled={create.busy}>
          Create transform key
        </button>
      </p>
    </section>
  );
}

/** `GET /v1/apps/{id}/transform-presets` (apps:read), `PUT|DELETE …/{name}` (apps:write). */
export function Presets(props: { appId: string; canWrite: boolean }) {
  const presets = useLoad(() => call<{ data: Preset[] }>('GET', `/v1/apps/${props.appId}/transform-presets?limit=100`), [props.appId]);
  const [name, setName] = useState('');
  const [operations, setOperations] = useState('');
  const [ok, setOk] = useState<string | null>(null);
  const save = useAction(async () => {
    await call('PUT', `/v1/apps/${props.appId}/transform-presets/${encodeURIComponent(name)}`, { operations });
    setOk(`Preset “${name}” saved.`);
    setName('');
    setOperations('');
    presets.reload();
  });
  const remove = useAction(async (p: Preset) => {
    if (!confirm(`Delete the preset “${p.name}”? URLs that name it stop working.`)) return;
    await call('DELETE', `/v1/apps/${props.appId}/transform-presets/${encodeURIComponent(p.name)}`);
    setOk(`Preset “${p.name}” deleted.`);
    presets.reload();
  });
  return (
    <section aria-labelledby="presets-title" class="block">
      <h2 id="presets-title">Presets</h2>
      <p class="hint">Named operations, used as preset:NAME in transform URLs and jobs (the only form allowed when the app is in strict mode).</p>
      <Notice error={presets.error ?? remove.error} ok={ok} />
      {presets.data ? (
        presets.data.data.length ? (
          <ul class="list" aria-label="Presets">
            {presets.data.data.map((p) => (
              <li key={p.name} data-preset={p.name}>
                <span>
                  <strong>{p.name}</strong> <code class="scopes">{p.operations}</code>
                </span>
                {props.canWrite ? (
                  <button type="button" class="danger" onClick={() => void remove.run(p)} disabled={remove.busy}>
                    Delete<span class="sr-only"> preset {p.name}</span>
                  </button>
                ) : null}
              </li>
            ))}
          </ul>
        ) : (
          <p class="empty">No presets yet.{props.canWrite ? ' Save one below, e.g. “thumb” = resize:width=320,fit=cover/format:webp.' : ''}</p>
        )
      ) : null}
      {props.canWrite ? (
        <form
          class="card"
          aria-labelledby="preset-new-title"
          onSubmit={(e) => {
            e.preventDefault();
            void save.run();
          }}
        >
          <h3 id="preset-new-title">Save a preset</h3>
          <Field id="preset-name" label="Preset name" hint="Lower-case letters, digits, - and _. Saving an existing name replaces it.">
            <input id="preset-name" required pattern="[a-z0-9][a-z0-9_\-]{0,62}" value={name} onInput={(e) => setName(e.currentTarget.value)} aria-describedby="preset-name-hint" />
          </Field>
          <Field id="preset-ops" label="Operations" hint="The string form, as the playground shows it.">
            <input id="preset-ops" required value={operations} onInput={(e) => setOperations(e.currentTarget.value)} aria-describedby="preset-ops-hint" placeholder="resize:width=320,fit=cover/format:webp" />
          </Field>
          <Notice error={save.error} />
          <button type="submit" class="primary" disabled={save.busy}>
            Save preset
          </button>
        </form>
      ) : null}
    </section>
  );
}
