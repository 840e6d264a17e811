/** Apps and their keys: create, see the secret once, roll with grace, revoke. */
import { useState } from 'preact/hooks';
import { call, SCOPES, type App, type Key, type MetadataPolicy } from '../api.js';
import { CopyButton, Field, Link, Notice, PageTitle, useAction, useLoad, when } from '../ui.js';
import { OAuthClients, Presets, TransformKeys } from './app-access.js';

export function Apps(props: { scopes: Set<string> }) {
  const apps = useLoad(() => call<{ data: App[] }>('GET', '/v1/apps?limit=100'));
  const [name, setName] = useState('');
  const create = useAction(async () => {
    await call('POST', '/v1/apps', { name });
    setName('');
    apps.reload();
  });
  return (
    <main id="main">
      <PageTitle>Apps</PageTitle>
      <p class="lead">An app groups keys, settings, uploads and usage. Pick one to manage its keys.</p>
      <Notice error={apps.error} />
      {apps.data ? (
        apps.data.data.length ? (
          <ul class="list" aria-label="Apps">
            {apps.data.data.map((a) => (
              <li key={a.id}>
                <Link to={`/apps/${a.id}`}>{a.name}</Link>
                <span class="hint">created {when(a.created_at)}</span>
              </li>
            ))}
          </ul>
        ) : (
          <p class="empty">No apps yet. Create one below, then a key for your server.</p>
        )
      ) : (
        <p class="hint" role="status">Loading…</p>
      )}
      {props.scopes.has('apps:write') ? (
        <form
          class="card inline"
          onSubmit={(e) => {
            e.preventDefault();
            void create.run();
          }}
        >
          <h2>Create an app</h2>
          <Field id="app-name" label="Name">
            <input id="app-name" required maxLength={200} value={name} onInput={(e) => setName(e.currentTarget.value)} />
          </Field>
          <Notice error={create.error} />
          <button type="submit" class="primary" disabled={create.busy}>
            Create app
          </button>
        </form>
      ) : null}
    </main>
  );
}

type Kind = Key['kind'];

/** One app: its keys, and (with keys:manage) creating, rolling and revoking them. */
export function AppKeys(props: { appId: string; scopes: Set<string> }) {
  const canManage = props.scopes.has('keys:manage');
  const app = useLoad(() => call<App>('GET', `/v1/apps/${props.appId}`), [props.appId]);
  const keys = useLoad(() => (canManage ? call<{ data: Key[] }>('GET', `/v1/apps/${props.appId}/keys?limit=100`) : Promise.resolve({ data: [] as Key[] })), [props.appId]);
  const [revealed, setRevealed] = useState<{ secret: string; key: Key; what: string } | null>(null);
  const [ok, setOk] = useState<string | null>(null);

  const roll = useAction(async (k: Key, grace: number) => {
    const r = await call<{ key: Key; secret: string }>('POST', `/v1/keys/${k.id}/roll`, { grace_period_seconds: grace });
    setRevealed({ secret: r.secret, key: r.key, what: `Replacement for “${k.name}”` });
    setOk(null);
    keys.reload();
  });
  const revoke = useAction(async (k: Key) => {
    if (!confirm(`Revoke “${k.name}” (${k.display})? Requests with it fail at once.`)) return;
    await call('DELETE', `/v1/keys/${k.id}`);
    setOk(`Key “${k.name}” revoked.`);
    keys.reload();
  });

  return (
    <main id="main">
      <p>
        <Link to="/">← Apps</Link>
      </p>
      <PageTitle>{app.data ? app.data.name : 'App'}</PageTitle>
      <p class="hint">
        App id <code>{props.appId}</code>
      </p>
      {canManage ? (
        <nav aria-label="On this page" class="toc">
          <a href="#keys-title">Keys</a> <a href="#oauth-title">OAuth clients</a> <a href="#tfk-title">Transform keys</a> <a href="#presets-title">Presets</a>
        </nav>
      ) : null}
      <Notice error={app.error ?? keys.error ?? roll.error ?? revoke.error} ok={ok} />
      {revealed ? <SecretOnce {...revealed} onDone={() => setRevealed(null)} /> : null}
      <h2 id="keys-title">Keys</h2>
      {!canManage ? (
        <p class="empty">Your role cannot see or manage keys. Ask an owner, admin or developer.</p>
      ) : keys.data ? (
        keys.data.data.length ? (
          <div class="table-wrap">
            <table>
              <caption class="sr-only">Keys of this app</caption>
              <thead>
                <tr>
                  <th scope="col">Name</th>
                  <th scope="col">Kind</th>
                  <th scope="col">Key</th>
                  <th scope="col">Scopes</th>
                  <th scope="col">State</th>
                  <th scope="col">Actions</th>
                </tr>
              </thead>
              <tbody>
                {keys.data.data.map((k) => (
                  <KeyRow key={k.id} k={k} onRoll={(g) => void roll.run(k, g)} onRevoke={() => void revoke.run(k)} busy={roll.busy || revoke.busy} />
                ))}
              </tbody>
            </table>
          </div>
        ) : (
          <p class="empty">No keys yet. Create a secret key for your server below.</p>
        )
      ) : (
        <p class="hint" role="status">Loading…</p>
      )}
      {canManage ? (
        <CreateKey
          appId={props.appId}
          onCreated={(r) => {
            setRevealed({ ...r, what: `New key “${r.key.name}”` });
            setOk(null);
            keys.reload();
          }}
        />
      ) : null}
      {app.data ? <MetadataPolicyCard app={app.data} canWrite={props.scopes.has('apps:write')} onSaved={app.reload} /> : null}
      {canManage ? <OAuthClients appId={props.appId} /> : null}
      {canManage && props.scopes.has('assets:read') ? <TransformKeys appId={props.appId} /> : null}
      {props.scopes.has('apps:read') ? <Presets appId={props.appId} canWrite={props.scopes.has('apps:write')} /> : null}
    </main>
  );
}

/** What each metadata policy means, in the words of src/media/image/metadata.ts. */
const METADATA_POLICIES: Array<[MetadataPolicy, string]> = [
  ['strip_all', 'Strip all (default): only orientation and the colour profile stay'],
  ['strip_location', 'Strip location: GPS and the XMP/IPTC/text blocks that can name a place go'],
  ['keep', 'Keep: uploads are stored as sent'],
];

/**
 * The app's media metadata policy (issue 14): what it sets, what is in force (the server default,
 * OBSCURA_METADATA_POLICY, when the app sets none), and for roles with apps:write a change through
 * PATCH /v1/apps/{id}. It applies at ingest: images stored before a change keep what they kept.
 */
function MetadataPolicyCard(props: { app: App; canWrite: boolean; onSaved: () => void }) {
  const set = props.app.settings?.metadata_policy;
  const effective = props.app.effective?.metadata_policy ?? set ?? 'strip_all';
  const [choice, setChoice] = useState<MetadataPolicy>(effective);
  const [ok, setOk] = useState<string | null>(null);
  const save = useAction(async () => {
    const updated = await call<App>('PATCH', `/v1/apps/${props.app.id}`, { settings: { metadata_policy: choice } });
    setOk(`Saved: the policy for new uploads is now ${updated.effective?.metadata_policy ?? choice}.`);
    props.onSaved();
  });
  const label = (p: MetadataPolicy) => METADATA_POLICIES.find(([v]) => v === p)?.[1] ?? p;
  return (
    <section class="card" aria-labelledby="metadata-title">
      <h2 id="metadata-title">Media metadata</h2>
      <p>
        In force: <strong data-testid="metadata-effective">{effective}</strong>{' '}
        <span class="hint">
          ({set ? 'set on this app' : "this server's default: the app sets none"}). Applied when images are uploaded, without re-encoding; earlier uploads keep what they kept.
        </span>
      </p>
      {props.canWrite ? (
        <form
          class="inline"
          onSubmit={(e) => {
            e.preventDefault();
            setOk(null);
            void save.run();
          }}
        >
          <Field id="metadata-policy" label="What uploaded images keep (EXIF, XMP, IPTC, comments)">
            <select id="metadata-policy" value={choice} onChange={(e) => setChoice(e.currentTarget.value as MetadataPolicy)}>
              {METADATA_POLICIES.map(([v]) => (
                <option key={v} value={v}>
                  {label(v)}
                </option>
              ))}
            </select>
          </Field>
          <Notice error={save.error} ok={ok} />
          <button type="submit" disabled={save.busy || choice === set}>
            Save metadata policy
          </button>
        </form>
      ) : (
        <p class="hint">{label(effective)}. Your role cannot change it (apps:write).</p>
      )}
    </section>
  );
}

function state(k: Key): string {
  if (k.revoked_at) return `revoked ${when(k.revoked_at)}`;
  if (k.rolled_to) return k.grace_ends_at ? `rolled; works until ${when(k.grace_ends_at)}` : 'rolled; works until its replacement is used';
  if (k.expires_at) return `active until ${when(k.expires_at)}`;
  return 'active';
}

function KeyRow(props: { k: Key; onRoll: (grace: number) => void; onRevoke: () => void; busy: boolean }) {
  const k = props.k;
  const [grace, setGrace] = useState('3600');
  const live = !k.revoked_at && !k.rolled_to;
  return (
    <tr data-key-id={k.id} data-state={k.revoked_at ? 'revoked' : k.rolled_to ? 'rolled' : 'active'}>
      <td data-label="Name">{k.name || '—'}</td>
      <td data-label="Kind">{k.kind}</td>
      <td data-label="Key">
        <code>{k.display}</code>
      </td>
      <td data-label="Scopes" class="scopes">
        {k.scopes.join(', ')}
      </td>
      <td data-label="State">{state(k)}</td>
      <td class="row-actions">
        {live ? (
          <>
            <label class="sr-only" for={`grace-${k.id}`}>
              Grace period for rolling {k.name}
            </label>
            <select id={`grace-${k.id}`} value={grace} onChange={(e) => setGrace(e.currentTarget.value)}>
              <option value="0">until the new key is used</option>
              <option value="3600">1 hour</option>
              <option value="86400">1 day</option>
              <option value="604800">7 days</option>
            </select>
            <button type="button" onClick={() => props.onRoll(Number(grace))} disabled={props.busy}>
              Roll<span class="sr-only"> {k.name}</span>
            </button>
          </>
        ) : null}
        {!k.revoked_at ? (
          <button type="button" class="danger" onClick={props.onRevoke} disabled={props.busy}>
            Revoke<span class="sr-only"> {k.name}</span>
          </button>
        ) : null}
      </td>
    </tr>
  );
}

/** The secret, shown once. */
function SecretOnce(props: { secret: string; key: Key; what: string; onDone: () => void }) {
  return (
    <section class="card reveal" aria-labelledby="secret-title">
      <h2 id="secret-title">{props.what}</h2>
      <p>
        <strong>Copy this key now. You will not see it again:</strong> Obscura stores only its hash.
      </p>
      <p class="secret-line">
        <code class="secret" data-testid="new-secret">
          {props.secret}
        </code>
        <CopyButton text={props.secret} label="Copy key" />
      </p>
      <button type="button" onClick={props.onDone}>
        I have stored it
      </button>
    </section>
  );
}

function CreateKey(props: { appId: string; onCreated: (r: { key: Key; secret: string }) => void }) {
  const [kind, setKind] = useState<Kind>('secret');
  const [name, setName] = useState('');
  const [scopes, setScopes] = useState<Set<string>>(new Set());
  const [expires, setExpires] = useState('');
  const [ips, setIps] = useState('');
  const [origins, setOrigins] = useState('');
  const lines = (s: string) => s.split(/[\s,]+/).map((x) => x.trim()).filter(Boolean);
  const create = useAction(async () => {
    const body: Record<string, unknown> = { kind, name: name || undefined };
    if (kind === 'restricted') body.scopes = [...scopes];
    if (kind === 'publishable') body.scopes = ['assets:write'];
    if (expires) body.expires_at = new Date(`${expires}T23:59:59Z`).toISOString();
    if (lines(ips).length) body.allowed_ips = lines(ips);
    if (lines(origins).length) body.allowed_origins = lines(origins);
    const r = await call<{ key: Key; secret: string }>('POST', `/v1/apps/${props.appId}/keys`, body);
    setName('');
    setScopes(new Set());
    props.onCreated(r);
  });
  const toggle = (s: string) => {
    const next = new Set(scopes);
    if (next.has(s)) next.delete(s);
    else next.add(s);
    setScopes(next);
  };
  return (
    <form
      class="card"
      aria-labelledby="create-key-title"
      onSubmit={(e) => {
        e.preventDefault();
        void create.run();
      }}
    >
      <h2 id="create-key-title">Create a key</h2>
      <fieldset>
        <legend>Kind</legend>
        {(
          [
            ['secret', 'Secret: your server, every scope'],
            ['restricted', 'Restricted: your server, only the scopes you pick'],
            ['publishable', 'Publishable: web pages, uploads only, pinned to origins'],
          ] as const
        ).map(([value, label]) => (
          <label class="choice" key={value}>
            <input type="radio" name="kind" value={value} checked={kind === value} onChange={() => setKind(value)} /> {label}
          </label>
        ))}
      </fieldset>
      <Field id="key-name" label="Name" hint="What uses it, e.g. “billing backend”.">
        <input id="key-name" maxLength={200} value={name} onInput={(e) => setName(e.currentTarget.value)} aria-describedby="key-name-hint" />
      </Field>
      {kind === 'restricted' ? (
        <fieldset class="scopes-pick">
          <legend>Scopes</legend>
          {SCOPES.map((s) => (
            <label class="choice" key={s}>
              <input type="checkbox" name="scope" value={s} checked={scopes.has(s)} onChange={() => toggle(s)} /> {s}
            </label>
          ))}
        </fieldset>
      ) : null}
      <Field id="key-expiry" label="Expires on (optional)">
        <input id="key-expiry" type="date" value={expires} onInput={(e) => setExpires(e.currentTarget.value)} />
      </Field>
      <Field id="key-ips" label="Allowed IP addresses or CIDR ranges (optional)" hint="Separated by spaces or commas. Empty: any address.">
        <input id="key-ips" value={ips} onInput={(e) => setIps(e.currentTarget.value)} aria-describedby="key-ips-hint" placeholder="203.0.113.0/24" />
      </Field>
      <Field id="key-origins" label={kind === 'publishable' ? 'Allowed origins (required)' : 'Allowed origins (optional)'} hint="Exact origins such as https://app.example.com.">
        <input id="key-origins" value={origins} onInput={(e) => setOrigins(e.currentTarget.value)} aria-describedby="key-origins-hint" required={kind === 'publishable'} />
      </Field>
      <Notice error={create.error} />
      <button type="submit" class="primary" disabled={create.busy}>
        Create key
      </button>
    </form>
  );
}
