/** Media: the asset browser (thumbnails through signed URLs), resumable upload with progress (tus), delete. */
import { useEffect, useRef, useState } from 'preact/hooks';
import { Upload } from 'tus-js-client';
import { call, csrf, type App } from '../api.js';
import { Link, Notice, PageTitle, useAction, useLoad, when } from '../ui.js';

interface Asset {
  id: string;
  app_id: string;
  kind: 'upload' | 'output';
  content_type: string;
  size: number;
  width: number | null;
  height: number | null;
  filename: string | null;
  created_at: string;
  expires_at: string | null;
}

const size = (n: number) => (n < 1024 ? `${n} B` : n < 1024 ** 2 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1024 ** 2).toFixed(1)} MiB`);

export function Media(props: { scopes: Set<string> }) {
  const [type, setType] = useState('');
  const apps = useLoad(() => call<{ data: App[] }>('GET', '/v1/apps?limit=100'));
  const [appId, setAppId] = useState('');
  const assets = useLoad(() => call<{ data: Asset[] }>('GET', `/v1/assets?limit=48${type ? `&type=${encodeURIComponent(type)}` : ''}`), [type]);
  const [ok, setOk] = useState<string | null>(null);
  const remove = useAction(async (a: Asset) => {
    if (!confirm(`Delete ${a.filename ?? a.id}? This cannot be undone.`)) return;
    await call('DELETE', `/v1/assets/${a.id}`);
    setOk(`${a.filename ?? a.id} deleted.`);
    assets.reload();
  });
  useEffect(() => {
    if (!appId && apps.data?.data[0]) setAppId(apps.data.data[0].id);
  }, [apps.data]);
  return (
    <main id="main">
      <PageTitle>Media</PageTitle>
      <p class="lead">Uploaded originals and processed outputs, newest first. Thumbnails load through short-lived signed URLs.</p>
      {props.scopes.has('assets:write') && apps.data?.data.length ? (
        <UploadForm apps={apps.data.data} appId={appId} setAppId={setAppId} onDone={(name) => {
          setOk(`${name} uploaded.`);
          assets.reload();
        }} />
      ) : null}
      <div class="field">
        <label for="type-filter">Show</label>
        <select id="type-filter" value={type} onChange={(e) => setType(e.currentTarget.value)}>
          <option value="">All types</option>
          <option value="image/jpeg">JPEG images</option>
          <option value="image/png">PNG images</option>
          <option value="image/webp">WebP images</option>
          <option value="video/mp4">MP4 videos</option>
        </select>
      </div>
      <Notice error={assets.error ?? remove.error} ok={ok} />
      {assets.data ? (
        assets.data.data.length ? (
          <ul class="grid" aria-label="Assets">
            {assets.data.data.map((a) => (
              <li key={a.id} class="tile" data-asset-id={a.id}>
                <Thumb asset={a} />
                <p class="tile-name">
                  <Link to={`/media/${a.id}`}>
                    {a.filename ?? a.id}
                    <span class="sr-only"> details</span>
                  </Link>
                </p>
                <p class="hint">
                  {a.content_type} · {size(a.size)}
                  {a.width ? ` · ${a.width}×${a.height}` : ''} · {a.kind === 'upload' ? 'original' : 'output'}
                  <br />
                  {when(a.created_at)}
                </p>
                {props.scopes.has('assets:delete') ? (
                  <button type="button" class="danger" onClick={() => void remove.run(a)} disabled={remove.busy}>
                    Delete<span class="sr-only"> {a.filename ?? a.id}</span>
                  </button>
                ) : null}
              </li>
            ))}
          </ul>
        ) : (
          <p class="empty">No media yet. Upload an image or a video above, or send one with POST /v1/assets.</p>
        )
      ) : (
        <p class="hint" role="status">Loading…</p>
      )}
    </main>
  );
}

/** A thumbnail from a signed URL (issued for 10 minutes): an image, or a video's first frame; other types show their type. */
function Thumb(props: { asset: Asset }) {
  const [src, setSrc] = useState<string | null>(null);
  const image = props.asset.content_type.startsWith('image/') && props.asset.content_type !== 'image/svg+xml';
  const video = props.asset.content_type.startsWith('video/');
  useEffect(() => {
    if (!image && !video) return;
    call<{ url: string }>('POST', `/v1/assets/${props.asset.id}/url`, { ttl_seconds: 600 }).then(
      (r) => setSrc(r.url),
      () => setSrc(null),
    );
  }, [props.asset.id]);
  if ((!image && !video) || !src) return <div class="thumb placeholder" aria-hidden="true">{props.asset.content_type.split('/')[1]}</div>;
  // preload="metadata" fetches only the head: the first frame shows, nothing plays.
  if (video) return <video class="thumb" src={src} preload="metadata" muted aria-label={`Video ${props.asset.filename ?? props.asset.id}`} width={160} height={120} />;
  return <img class="thumb" src={src} alt={`Preview of ${props.asset.filename ?? props.asset.id}`} loading="lazy" width={160} height={120} />;
}

/** A resumable upload over tus, with progress; the session cookie and CSRF token authenticate it. */
function UploadForm(props: { apps: App[]; appId: string; setAppId: (id: string) => void; onDone: (name: string) => void }) {
  const [file, setFile] = useState<File | null>(null);
  const [sent, setSent] = useState<number | null>(null);
  const [error, setError] = useState<unknown>(null);
  const form = useRef<HTMLFormElement>(null);
  const start = () => {
    if (!file) return;
    setError(null);
    setSent(0);
    const upload = new Upload(file, {
      endpoint: '/v1/uploads',
      chunkSize: 1024 * 1024,
      retryDelays: [0, 1000, 3000],
      metadata: { filename: file.name },
      headers: { 'X-CSRF-Token': csrf() ?? '', 'X-Obscura-App': props.appId },
      onProgress: (bytes) => setSent(bytes),
      onError: (err) => {
        setSent(null);
        setError(new Error(err.message));
      },
      onSuccess: () => {
        setSent(null);
        setFile(null);
        form.current?.reset();
        props.onDone(file.name);
      },
    });
    upload.start();
  };
  return (
    <form
      ref={form}
      class="card"
      aria-labelledby="upload-title"
      onSubmit={(e) => {
        e.preventDefault();
        start();
      }}
    >
      <h2 id="upload-title">Upload</h2>
      {props.apps.length > 1 ? (
        <div class="field">
          <label for="upload-app">App</label>
          <select id="upload-app" value={props.appId} onChange={(e) => props.setAppId(e.currentTarget.value)}>
            {props.apps.map((a) => (
              <option value={a.id} key={a.id}>
                {a.name}
              </option>
            ))}
          </select>
        </div>
      ) : null}
      <div class="field">
        <label for="upload-file">File</label>
        <input id="upload-file" type="file" accept="image/*,video/*" onChange={(e) => setFile(e.currentTarget.files?.[0] ?? null)} />
      </div>
      {sent !== null && file ? (
        <p>
          <label for="upload-progress">Uploading {file.name}</label>
          <progress id="upload-progress" max={file.size} value={sent} data-sent={sent} />
          <span class="hint">
            {size(sent)} of {size(file.size)}
          </span>
        </p>
      ) : null}
      <Notice error={error} />
      <button type="submit" class="primary" disabled={!file || sent !== null}>
        Upload
      </button>
    </form>
  );
}
