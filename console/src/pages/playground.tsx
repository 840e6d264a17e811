/**
 * The playground: pick an image or a video, pick operations (forms generated from GET /v1/operations,
 * so new operations appear without console changes), run them (images synchronously, videos as a job
 * with progress), compare the result with the original, download it through a signed URL, and copy
 * the equivalent curl, SDK or transform-URL code.
 */
import { useEffect, useState } from 'preact/hooks';
import { call, callBytes } from '../api.js';
import { deviceUnavailable, processOnDevice, startDevice, stopDevice } from '../device.js';
import { CopyButton, Link, Notice, PageTitle, bytes, useAction, useLoad } from '../ui.js';
import { AssetPreview } from './asset.js';

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
  /** Also runs on the device (the browser SDK); false: server only (refused there with ERR_VALIDATION). */
  device?: boolean;
}
interface Reference {
  operations: Operation[];
  pipeline_order: string[];
}
interface AssetLite {
  id: string;
  app_id: string;
  filename: string | null;
  content_type: string;
  size: number;
  width: number | null;
  height: number | null;
}
interface Job {
  id: string;
  status: 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';
  output: { asset_id: string | null };
  error: { code: string; message: string } | null;
  progress: { percent: number; fps: number; eta_seconds: number | null } | null;
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

/** What a run produced: something to show and download. */
interface RunResult {
  /** Shown in the page (an object URL of bytes received, or a signed URL). */
  url: string;
  /** The download link (a signed URL with Content-Disposition: attachment, or the object URL). */
  download: string;
  type: string;
  size: number;
  /** SHA-256 of the bytes the page received (images), for "the preview is what the API returns". */
  sha256?: string;
  /** The stored output (video jobs). */
  assetId?: string;
  /** What the engine reported (on the device: the SDK's export info). */
  width?: number;
  height?: number;
  format?: string;
}

interface RunRequest {
  asset: AssetLite;
  /** An image chosen from this device (on-device runs only): processed instead of the asset, never uploaded. */
  file?: File | null;
  operations: string;
  onProgress: (percent: number | null, note: string) => void;
}

/**
 * Where processing runs. On the server: images synchronously (POST /v1/process), videos as a job
 * polled until it ends (POST /v1/jobs, GET /v1/jobs/{id}). On this device (issue 15): images through
 * the browser SDK (console/src/device.ts); the image is never sent. The rest of the page only sees
 * `RunResult`.
 */
type Engine = 'server' | 'device';
const ENGINES: Record<Engine, { label: string; run: (r: RunRequest) => Promise<RunResult> }> = {
  server: { label: 'On the server', run: (r) => (isVideo(r.asset) ? runVideoJob(r) : runImage(r)) },
  device: { label: 'On this device', run: (r) => runOnDevice(r) },
};

/**
 * The same operations in this browser. The input is an image from this device, or the asset's bytes
 * downloaded through a signed URL (a GET: nothing is uploaded); the only API calls of the run itself
 * are the SDK's licence session and telemetry counts.
 */
async function runOnDevice(r: RunRequest): Promise<RunResult> {
  r.onProgress(null, 'Starting the on-device engine…');
  let input: Blob;
  if (r.file) input = r.file;
  else {
    const signed = await call<{ url: string }>('POST', `/v1/assets/${r.asset.id}/url`, { ttl_seconds: 300 });
    const res = await fetch(signed.url, { credentials: 'omit', cache: 'no-store' });
    if (!res.ok) throw new Error(`The original could not be downloaded (${res.status}).`);
    input = await res.blob();
  }
  const { blob, info } = await processOnDevice(r.asset.app_id, input, r.operations, (percent) => r.onProgress(percent, `Processing on this device… ${Math.round(percent)} %`));
  const url = URL.createObjectURL(blob);
  return { url, download: url, type: info.mime, size: info.size, sha256: await sha256Hex(blob), width: info.width, height: info.height, format: info.format };
}

const isVideo = (a: { content_type: string }) => a.content_type.startsWith('video/');

async function sha256Hex(blob: Blob): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', await blob.arrayBuffer()));
  return Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
}

async function runImage(r: RunRequest): Promise<RunResult> {
  r.onProgress(null, 'Processing…');
  const out = await callBytes('POST', '/v1/process', { input: { asset_id: r.asset.id }, operations: r.operations });
  const url = URL.createObjectURL(out.blob);
  return { url, download: url, type: out.type, size: out.blob.size, sha256: await sha256Hex(out.blob) };
}

async function runVideoJob(r: RunRequest): Promise<RunResult> {
  let job = await call<Job>('POST', '/v1/jobs', { input: { asset_id: r.asset.id }, operations: r.operations });
  // Poll with a bound: a job longer than the server's video timeout has failed by then anyway.
  const deadline = Date.now() + 60 * 60 * 1000;
  while (job.status === 'queued' || job.status === 'running') {
    const pct = job.progress?.percent ?? null;
    r.onProgress(pct, job.status === 'queued' ? 'Queued…' : `Processing… ${pct === null ? '' : `${pct.toFixed(0)} %`}${job.progress?.eta_seconds ? `, about ${job.progress.eta_seconds} s left` : ''}`);
    if (Date.now() > deadline) throw new Error(`Job ${job.id} is still running; see GET /v1/jobs/${job.id}.`);
    await new Promise((res) => setTimeout(res, 500));
    job = await call<Job>('GET', `/v1/jobs/${job.id}`);
  }
  if (job.status !== 'succeeded' || !job.output.asset_id) throw new Error(job.error ? `${job.error.message} (${job.error.code})` : `The job ended ${job.status}.`);
  r.onProgress(100, 'Done');
  const out = job.output.asset_id;
  const [view, download, meta] = await Promise.all([
    call<{ url: string }>('POST', `/v1/assets/${out}/url`, { ttl_seconds: 3600 }),
    call<{ url: string }>('POST', `/v1/assets/${out}/url`, { ttl_seconds: 3600, disposition: 'attachment' }),
    call<{ content_type: string; size: number }>('GET', `/v1/assets/${out}`),
  ]);
  return { url: view.url, download: download.url, type: meta.content_type, size: meta.size, assetId: out };
}

/** The calls a developer would write for the same run. */
function snippets(origin: string, asset: AssetLite, operations: string): Array<[string, string]> {
  const body = JSON.stringify({ input: { asset_id: asset.id }, operations });
  if (isVideo(asset)) {
    return [
      ['curl', `curl -X POST ${origin}/v1/jobs -H "Authorization: Bearer $OBSCURA_KEY" -H "Content-Type: application/json" -d '${body}'\n# then poll until "status" is "succeeded" and fetch output.asset_id:\ncurl ${origin}/v1/jobs/JOB_ID -H "Authorization: Bearer $OBSCURA_KEY"`],
      ['SDK', `import { Obscura } from '@obscura/sdk';\nconst obscura = new Obscura({ baseUrl: '${origin}', apiKey: process.env.OBSCURA_API_KEY });\nconst job = await obscura.jobs.create({ input: { assetId: '${asset.id}' }, operations: '${operations}' });\nconst done = await obscura.jobs.wait(job.id);\nconst { url } = await obscura.assets.signedUrl(done.output.asset_id, { ttl_seconds: 3600 });`],
    ];
  }
  return [
    ['curl', `curl -X POST ${origin}/v1/process -H "Authorization: Bearer $OBSCURA_KEY" -H "Content-Type: application/json" -d '${body}' -o result`],
    ['SDK', `import { Obscura } from '@obscura/sdk';\nconst obscura = new Obscura({ baseUrl: '${origin}', apiKey: process.env.OBSCURA_API_KEY });\nconst image = await obscura.processing.run({ input: { assetId: '${asset.id}' }, operations: '${operations}' });`],
    [
      'Transform URL',
      `// On your server, with a transform key of this app (its page: “Transform signing keys”):\nimport { buildTransformUrl } from '@obscura/sdk/node';\nconst url = buildTransformUrl({ baseUrl: '${origin}', key: { id: 'tfk_…', secret: process.env.OBSCURA_TRANSFORM_SECRET }, assetId: '${asset.id}', operations: '${operations || 'format:auto'}', expires: { ttlSeconds: 86400 } });\n// → ${origin}/t/tfk_….SIGNATURE/${operations || 'format:auto'}/${asset.id}?exp=UNIX_SECONDS`,
    ],
  ];
}

/** The on-device SDK for the same operations, in a page of the customer's own origin. */
function deviceSnippet(origin: string, operations: string): [string, string] {
  return [
    'On-device SDK',
    `// In your page (cross-origin isolated; see docs/device.md), with a publishable key pinned to its origin:\nimport { ObscuraDevice } from './sdk/obscura-device.js';\nObscuraDevice.preload();\nconst device = await ObscuraDevice.start({ baseUrl: '${origin}', publishableKey: 'obs_pk_…', keys: SHIPPED_LICENCE_JWKS, onExport: (blob, info) => { /* yours */ } });\nawait device.process(file, '${operations || 'format:auto'}');`,
  ];
}

export function Playground() {
  const reference = useLoad(() => call<Reference & { video: Reference & { available: boolean } }>('GET', '/v1/operations'));
  const assets = useLoad(() => call<{ data: AssetLite[] }>('GET', '/v1/assets?limit=100&kind=original'));
  const usable = (assets.data?.data ?? []).filter((a) => (a.content_type.startsWith('image/') && a.content_type !== 'image/svg+xml') || isVideo(a));
  // The input: the one chosen, else the first in the list (derived, so the list arriving changes no state).
  const [chosenId, setChosenId] = useState('');
  const assetId = usable.some((a) => a.id === chosenId) ? chosenId : (usable[0]?.id ?? '');
  const asset = usable.find((a) => a.id === assetId) ?? null;
  const [chosen, setChosen] = useState<Chosen[]>([]);
  const [adding, setAdding] = useState('');
  const [engine, setEngine] = useState<Engine>('server');
  const [localFile, setLocalFile] = useState<File | null>(null);
  const [progress, setProgress] = useState<{ percent: number | null; note: string } | null>(null);
  // One result per engine, so the device's can be compared with the server's for the same settings.
  const [results, setResults] = useState<Partial<Record<Engine, RunResult>>>({});
  const result = results.server ?? null;
  const [resultSize, setResultSize] = useState<string | null>(null);
  const [snippet, setSnippet] = useState(0);
  const video = asset ? isVideo(asset) : false;
  // A new input clears the results. Chosen operations survive unless the registry changes (image ↔
  // video): done here, in the change itself, not in an effect that would run a frame later and wipe
  // an operation picked in between.
  const chooseInput = (id: string) => {
    const next = usable.find((a) => a.id === id) ?? null;
    const nextVideo = next ? isVideo(next) : false;
    setChosenId(id);
    clearResults();
    setProgress(null);
    if (nextVideo !== video) {
      setChosen([]);
      setAdding('');
    }
    // Videos run on the server only: the switch goes off rather than offering a run the device refuses.
    if (engine === 'device' && nextVideo) setDevice(false);
  };
  // The engine stops with the page (it holds a licence and a worker).
  useEffect(() => () => void stopDevice(), []);
  const registry = video ? reference.data?.video : reference.data;
  const ops = (registry?.operations ?? []).filter((o) => !o.reads_assets);
  const operations = operationString(chosen, registry?.pipeline_order ?? []);
  // Results belong to one input and one operation string: anything else clears them.
  function clearResults() {
    setResults((old) => {
      for (const r of Object.values(old)) if (r?.url.startsWith('blob:')) URL.revokeObjectURL(r.url);
      return {};
    });
    setResultSize(null);
  }
  useEffect(() => clearResults(), [operations, localFile]);
  const run = useAction(async () => {
    if (!asset) return;
    const old = results[engine];
    if (old?.url.startsWith('blob:')) URL.revokeObjectURL(old.url);
    setResults((r) => ({ ...r, [engine]: undefined }));
    if (engine === 'server') setResultSize(null);
    try {
      const out = await ENGINES[engine].run({ asset, file: engine === 'device' ? localFile : null, operations, onProgress: (percent, note) => setProgress({ percent, note }) });
      setResults((r) => ({ ...r, [engine]: out }));
    } finally {
      setProgress(null);
    }
  });
  const deviceOff = deviceUnavailable();
  const setDevice = (on: boolean) => {
    setEngine(on ? 'device' : 'server');
    setLocalFile(null);
    // Starting now lets the engine load and the licence session run while operations are picked.
    if (on && asset) startDevice(asset.app_id).catch((err) => run.setError(err));
    if (!on) void stopDevice();
  };
  const serverOnly = engine === 'device' ? chosen.filter((c) => c.op.device === false).map((c) => c.op.name) : [];
  const add = () => {
    const op = ops.find((o) => o.name === adding);
    if (!op) return;
    const values: Record<string, string> = {};
    for (const p of op.parameters) if (p.required && p.default !== undefined) values[p.name] = String(p.default);
    setChosen([...chosen, { op, values }]);
  };
  const setValue = (i: number, name: string, v: string) => setChosen(chosen.map((c, j) => (j === i ? { ...c, values: { ...c.values, [name]: v } } : c)));
  const code = asset ? [...snippets(location.origin, asset, operations), ...(engine === 'device' && !video ? [deviceSnippet(location.origin, operations)] : [])] : [];
  const shown = code[Math.min(snippet, code.length - 1)];

  return (
    <main id="main">
      <PageTitle>Playground</PageTitle>
      <p class="lead">Try operations on one of your images or videos. Images are one POST /v1/process call; videos run as a job you can follow. Copy the code below.</p>
      <Notice error={reference.error ?? assets.error} />
      {assets.data && usable.length === 0 ? (
        <p class="empty">
          Nothing to try yet. Upload an image or a video on the <Link to="/media">Media page</Link> first, then come back.
        </p>
      ) : null}
      {video && reference.data && !reference.data.video.available ? <p class="notice info">This server has no ffmpeg: video jobs will be refused (503). Install ffmpeg to process video.</p> : null}
      {usable.length ? (
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
            <label for="pg-asset">Input</label>
            <select id="pg-asset" value={assetId} onChange={(e) => chooseInput(e.currentTarget.value)}>
              {usable.map((a) => (
                <option key={a.id} value={a.id}>
                  {a.filename ?? a.id} ({a.content_type})
                </option>
              ))}
            </select>
          </div>
          <EngineChoice engine={engine} video={video} unavailable={deviceOff} onChange={setDevice} />
          {engine === 'device' ? (
            <div class="field">
              <label for="pg-local">Or an image from this device (optional; never uploaded)</label>
              <input id="pg-local" type="file" accept="image/*" onChange={(e) => setLocalFile(e.currentTarget.files?.[0] ?? null)} />
            </div>
          ) : null}
          <div class="field">
            <label for="pg-add">Add an operation</label>
            <div class="actions">
              <select id="pg-add" value={adding} onChange={(e) => setAdding(e.currentTarget.value)}>
                <option value="">Choose…</option>
                {ops.map((o) => (
                  <option key={o.name} value={o.name} disabled={engine === 'device' && o.device === false}>
                    {o.name}: {engine === 'device' && o.device === false ? '(server only) ' : ''}
                    {o.description.slice(0, 60)}
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
          {progress ? (
            <p role="status">
              <label for="pg-progress">{progress.note}</label>
              <progress id="pg-progress" max={100} value={progress.percent ?? undefined} data-percent={progress.percent ?? ''} />
            </p>
          ) : null}
          {serverOnly.length ? <p class="notice info">Server only, refused on this device: {serverOnly.join(', ')}. Remove it or switch “On this device” off.</p> : null}
          <Notice error={run.error} />
          <button type="submit" class="primary" disabled={run.busy || !assetId}>
            {run.busy ? 'Processing…' : video ? 'Process video' : 'Preview'}
          </button>
        </form>
      ) : null}
      {asset ? (
        <section aria-labelledby="compare-title">
          <h2 id="compare-title">Before and after</h2>
          <div class="compare">
            <figure>
              {engine === 'device' && localFile ? <LocalPreview file={localFile} /> : <AssetPreview asset={asset} testid="original" />}
              <figcaption>
                {engine === 'device' && localFile ? (
                  <>Original (on this device): {bytes(localFile.size)}</>
                ) : (
                  <>
                    Original: {asset.width ? `${asset.width}×${asset.height}, ` : ''}
                    {bytes(asset.size)}
                  </>
                )}
              </figcaption>
            </figure>
            <figure>
              {result ? (
                result.type.startsWith('video/') ? (
                  <video src={result.url} controls preload="metadata" aria-label="Result video" data-testid="result" data-asset-id={result.assetId} />
                ) : (
                  <img
                    src={result.url}
                    alt="Result"
                    data-testid="result"
                    data-sha256={result.sha256}
                    onLoad={(e) => setResultSize(`${e.currentTarget.naturalWidth}×${e.currentTarget.naturalHeight}, `)}
                  />
                )
              ) : (
                <div class="thumb placeholder">no result yet</div>
              )}
              <figcaption>
                {engine === 'device' || results.device ? 'On the server' : 'Result'}
                {result ? (
                  <>
                    : {resultSize ?? ''}
                    {bytes(result.size)} ({result.type}
                    {asset.size ? `, ${result.size <= asset.size ? '−' : '+'}${Math.abs(Math.round((1 - result.size / asset.size) * 100))} %` : ''}){' · '}
                    <a href={result.download} download={`result.${result.type.split('/')[1] ?? 'bin'}`} data-testid="download">
                      Download
                    </a>
                  </>
                ) : null}
              </figcaption>
            </figure>
            {results.device ? <DeviceResult result={results.device} /> : null}
          </div>
          <h2 id="code-title">The same in code</h2>
          <div class="tabs" role="group" aria-labelledby="code-title">
            {code.map(([label], i) => (
              <button type="button" key={label} aria-pressed={shown?.[0] === label} onClick={() => setSnippet(i)}>
                {label}
              </button>
            ))}
          </div>
          {shown ? (
            <p class="secret-line">
              <code class="snippet" data-testid="snippet">
                {shown[1]}
              </code>
              <CopyButton text={shown[1]} label={`Copy ${shown[0]}`} />
            </p>
          ) : null}
        </section>
      ) : null}
    </main>
  );
}

/** Where to process: the server, or this device (images only; the image never leaves the browser). */
function EngineChoice(props: { engine: Engine; video: boolean; unavailable: string | null; onChange: (device: boolean) => void }) {
  const why = props.video ? 'Videos are processed on the server only.' : props.unavailable;
  return (
    <div class="field" data-engine={props.engine}>
      <label class="choice" for="pg-device">
        <input id="pg-device" type="checkbox" role="switch" checked={props.engine === 'device'} disabled={!!why && props.engine !== 'device'} onChange={(e) => props.onChange(e.currentTarget.checked)} aria-describedby="pg-device-hint" /> On this
        device
      </label>
      <p class="hint" id="pg-device-hint">
        {why ??
          (props.engine === 'device'
            ? 'Runs in this browser (libvips in WebAssembly): the image is not sent; only a licence session (with a short-lived publishable key of the app) and export counts are.'
            : 'Runs on the server.')}
      </p>
    </div>
  );
}

/** The on-device result, with the facts the SDK reported (size, format), beside the server's. */
function DeviceResult(props: { result: RunResult }) {
  const r = props.result;
  return (
    <figure>
      <img src={r.url} alt="Result on this device" data-testid="result-device" data-sha256={r.sha256} data-width={r.width} data-height={r.height} data-format={r.format} />
      <figcaption>
        On this device: {r.width}×{r.height} {r.format}, {bytes(r.size)} ({r.type}){' · '}
        <a href={r.download} download={`result-device.${r.format === 'jpeg' ? 'jpg' : r.format}`}>
          Download
        </a>
      </figcaption>
    </figure>
  );
}

/** A local image's preview (an object URL, revoked when it changes). */
function LocalPreview(props: { file: File }) {
  const [url, setUrl] = useState<string | null>(null);
  useEffect(() => {
    const u = URL.createObjectURL(props.file);
    setUrl(u);
    return () => URL.revokeObjectURL(u);
  }, [props.file]);
  return url ? <img class="thumb" src={url} alt="The image from this device" data-testid="original-local" /> : null;
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
