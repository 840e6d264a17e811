/**
 * The playground: pick an image, pick operations (forms generated from GET /v1/operations, so new
 * operations appear without console changes), preview the result next to the original, download it,
 * and copy the equivalent curl command.
 */
import { useEffect, useState } from 'preact/hooks';
import { call, callBytes } from '../api.js';
import { CopyButton, Notice, PageTitle, useAction, useLoad } from '../ui.js';

interface Param {
  name: string;
  type: 'integer' | 'number' | 'boolean' | 'enum' | 'colour' | 'string';
  required: boolean;
  description?: string;
  default?: unknown;
  minimum?: number;
  maximum?: number;
  values?: string[];
}
interface Operation {
  name: string;
  description: string;
  parameters: Param[];
  reads_assets: boolean;
  any_position: boolean;
}
interface Reference {
  operations: Operation[];
  pipeline_order: string[];
}
interface AssetLite {
  id: string;
  filename: string | null;
  content_type: string;
}

type Chosen = { op: Operation; values: Record<string, string> };

/** The string form: `resize:width=400,fit=cover/format:webp` (unset parameters are left out). */
export function operationString(chosen: Chosen[], order: string[]): string {
  const rank = (o: Operation) => (o.any_position ? order.length : Math.max(0, order.indexOf(o.name)));
  return [...chosen]
    .sort((a, b) => rank(a.op) - rank(b.op))
    .map(({ op, values }) => {
      const set = op.parameters.filter((p) => values[p.name] !== undefined && values[p.name] !== '').map((p) => `${p.name}=${values[p.name]}`);
      return set.length ? `${op.name}:${set.join(',')}` : op.name;
    })
    .join('/');
}

export function Playground() {
  const reference = useLoad(() => call<Reference>('GET', '/v1/operations'));
  const assets = useLoad(() => call<{ data: AssetLite[] }>('GET', '/v1/assets?limit=100&kind=original'));
  const images = (assets.data?.data ?? []).filter((a) => a.content_type.startsWith('image/'));
  const [assetId, setAssetId] = useState('');
  const [chosen, setChosen] = useState<Chosen[]>([]);
  const [adding, setAdding] = useState('');
  const [original, setOriginal] = useState<string | null>(null);
  const [result, setResult] = useState<{ url: string; type: string; size: number; sha256: string } | null>(null);
  useEffect(() => {
    if (!assetId && images[0]) setAssetId(images[0].id);
  }, [assets.data]);
  useEffect(() => {
    if (!assetId) return;
    call<{ url: string }>('POST', `/v1/assets/${assetId}/url`, { ttl_seconds: 600 }).then((r) => setOriginal(r.url), () => setOriginal(null));
  }, [assetId]);
  const ops = (reference.data?.operations ?? []).filter((o) => !o.reads_assets);
  const operations = operationString(chosen, reference.data?.pipeline_order ?? []);
  const run = useAction(async () => {
    const r = await callBytes('POST', '/v1/process', { input: { asset_id: assetId }, operations });
    if (result) URL.revokeObjectURL(result.url);
    const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', await r.blob.arrayBuffer()));
    const sha256 = Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
    setResult({ url: URL.createObjectURL(r.blob), type: r.type, size: r.blob.size, sha256 });
  });
  const curl = `curl -X POST ${location.origin}/v1/process -H "Authorization: Bearer $OBSCURA_KEY" -H "Content-Type: application/json" -d '${JSON.stringify({ input: { asset_id: assetId }, operations })}' -o result`;
  const add = () => {
    const op = ops.find((o) => o.name === adding);
    if (!op) return;
    const values: Record<string, string> = {};
    for (const p of op.parameters) if (p.required && p.default !== undefined) values[p.name] = String(p.default);
    setChosen([...chosen, { op, values }]);
  };
  const setValue = (i: number, name: string, v: string) => setChosen(chosen.map((c, j) => (j === i ? { ...c, values: { ...c.values, [name]: v } } : c)));

  return (
    <main id="main">
      <PageTitle>Playground</PageTitle>
      <p class="lead">Try operations on one of your images. Every run is one POST /v1/process call; copy it below.</p>
      <Notice error={reference.error ?? assets.error} />
      {assets.data && images.length === 0 ? <p class="empty">Upload an image on the Media page first.</p> : null}
      {images.length ? (
        <form
          class="card"
          aria-labelledby="pg-title"
          onSubmit={(e) => {
            e.preventDefault();
            void run.run();
          }}
        >
          <h2 id="pg-title">Settings</h2>
          <div class="field">
            <label for="pg-asset">Image</label>
            <select id="pg-asset" value={assetId} onChange={(e) => setAssetId(e.currentTarget.value)}>
              {images.map((a) => (
                <option key={a.id} value={a.id}>
                  {a.filename ?? a.id}
                </option>
              ))}
            </select>
          </div>
          <div class="field">
            <label for="pg-add">Add an operation</label>
            <div class="actions">
              <select id="pg-add" value={adding} onChange={(e) => setAdding(e.currentTarget.value)}>
                <option value="">Choose…</option>
                {ops.map((o) => (
                  <option key={o.name} value={o.name}>
                    {o.name}: {o.description.slice(0, 60)}
                  </option>
                ))}
              </select>
              <button type="button" onClick={add} disabled={!adding}>
                Add
              </button>
            </div>
          </div>
          {chosen.map((c, i) => (
            <fieldset key={`${c.op.name}-${i}`} data-operation={c.op.name}>
              <legend>{c.op.name}</legend>
              <p class="hint">{c.op.description}</p>
              {c.op.parameters.map((p) => (
                <ParamInput key={p.name} id={`pg-${i}-${p.name}`} param={p} value={c.values[p.name] ?? ''} onChange={(v) => setValue(i, p.name, v)} />
              ))}
              <button type="button" onClick={() => setChosen(chosen.filter((_, j) => j !== i))}>
                Remove<span class="sr-only"> {c.op.name}</span>
              </button>
            </fieldset>
          ))}
          <p>
            Operations: <code data-testid="operations">{operations || '(none: re-encode only)'}</code>
          </p>
          <Notice error={run.error} />
          <button type="submit" class="primary" disabled={run.busy || !assetId}>
            {run.busy ? 'Processing…' : 'Preview'}
          </button>
        </form>
      ) : null}
      {assetId ? (
        <section aria-labelledby="compare-title">
          <h2 id="compare-title">Before and after</h2>
          <div class="compare">
            <figure>
              {original ? <img src={original} alt="Original" /> : null}
              <figcaption>Original</figcaption>
            </figure>
            <figure>
              {result ? <img src={result.url} alt="Result" data-testid="result" data-sha256={result.sha256} /> : <div class="thumb placeholder">no preview yet</div>}
              <figcaption>
                Result{result ? ` (${result.type}, ${(result.size / 1024).toFixed(1)} KiB)` : ''}
                {result ? (
                  <>
                    {' · '}
                    <a href={result.url} download={`result.${result.type.split('/')[1] ?? 'bin'}`}>
                      Download
                    </a>
                  </>
                ) : null}
              </figcaption>
            </figure>
          </div>
          <h2>The same with curl</h2>
          <p class="secret-line">
            <code class="snippet">{curl}</code>
            <CopyButton text={curl} label="Copy curl" />
          </p>
        </section>
      ) : null}
    </main>
  );
}

function ParamInput(props: { id: string; param: Param; value: string; onChange: (v: string) => void }) {
  const p = props.param;
  const label = `${p.name}${p.required ? '' : ' (optional)'}`;
  const hint = p.description ? <p class="hint" id={`${props.id}-hint`}>{p.description}</p> : null;
  if (p.type === 'boolean') {
    return (
      <div class="field">
        <label class="choice" for={props.id}>
          <input id={props.id} type="checkbox" checked={props.value === 'true'} onChange={(e) => props.onChange(e.currentTarget.checked ? 'true' : '')} /> {label}
        </label>
        {hint}
      </div>
    );
  }
  return (
    <div class="field">
      <label for={props.id}>{label}</label>
      {p.type === 'enum' ? (
        <select id={props.id} value={props.value} onChange={(e) => props.onChange(e.currentTarget.value)}>
          <option value="">{p.default !== undefined ? `default (${String(p.default)})` : '—'}</option>
          {(p.values ?? []).map((v) => (
            <option key={v} value={v}>
              {v}
            </option>
          ))}
        </select>
      ) : (
        <input
          id={props.id}
          type={(p.type === 'integer' || p.type === 'number' ? 'number' : 'text') as 'number'}
          min={p.minimum}
          max={p.maximum}
          step={p.type === 'integer' ? 1 : 'any'}
          placeholder={p.default !== undefined ? String(p.default) : ''}
          value={props.value}
          onInput={(e) => props.onChange(e.currentTarget.value)}
          aria-describedby={p.description ? `${props.id}-hint` : undefined}
        />
      )}
      {hint}
    </div>
  );
}
