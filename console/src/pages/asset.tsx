/**
 * One asset: a preview through a short-lived signed URL (image or video), what the server knows of it
 * (sniffed type, size, SHA-256, dimensions, the ffprobe facts of a video, tags, metadata, retention),
 * a download through a signed URL, and delete. Every action is one API call.
 */
import { Fragment } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { call } from '../api.js';
import { navigate } from '../router.js';
import { Link, Notice, PageTitle, bytes, useAction, useLoad, when } from '../ui.js';

export interface AssetDetail {
  id: string;
  app_id: string;
  kind: 'upload' | 'output';
  content_type: string;
  size: number;
  sha256: string;
  width: number | null;
  height: number | null;
  video: null | {
    container: string;
    duration_seconds: number;
    width: number;
    height: number;
    rotation: number;
    fps: number;
    video_codec: string;
    pixel_format: string | null;
    bit_rate: number | null;
    audio: { codec: string; channels: number; sample_rate: number; bit_rate: number | null } | null;
    color: { primaries: string | null; transfer: string | null; space: string | null; range: string | null; hdr: boolean };
    streams: number;
  };
  filename: string | null;
  tags: string[];
  metadata: Record<string, string | number | boolean>;
  legal_hold: boolean;
  created_at: string;
  expires_at: string | null;
}

/** A signed URL for the asset (10 minutes), or null while it loads or when refused. */
export function useSignedUrl(assetId: string | null, disposition: 'inline' | 'attachment' = 'inline'): string | null {
  const [url, setUrl] = useState<string | null>(null);
  useEffect(() => {
    setUrl(null);
    if (!assetId) return;
    let live = true;
    call<{ url: string }>('POST', `/v1/assets/${assetId}/url`, { ttl_seconds: 600, disposition }).then(
      (r) => live && setUrl(r.url),
      () => live && setUrl(null),
    );
    return () => {
      live = false;
    };
  }, [assetId, disposition]);
  return url;
}

/** An image or video preview of an asset through a signed URL; other types say what they are. */
export function AssetPreview(props: { asset: Pick<AssetDetail, 'id' | 'content_type' | 'filename'>; class?: string; testid?: string }) {
  const url = useSignedUrl(props.asset.id);
  const type = props.asset.content_type;
  const name = props.asset.filename ?? props.asset.id;
  if (!url) return <div class="thumb placeholder">{type.split('/')[1]}</div>;
  if (type.startsWith('video/')) return <video class={props.class} src={url} controls preload="metadata" aria-label={`Video ${name}`} data-testid={props.testid} />;
  if (type.startsWith('image/') && type !== 'image/svg+xml') return <img class={props.class} src={url} alt={`Preview of ${name}`} data-testid={props.testid} />;
  return <div class="thumb placeholder">{type.split('/')[1]}</div>;
}

const seconds = (s: number) => (s >= 60 ? `${Math.floor(s / 60)} min ${(s % 60).toFixed(1)} s` : `${s.toFixed(2)} s`);
const rate = (b: number | null) => (b ? `${(b / 1000).toFixed(0)} kbit/s` : '—');

export function AssetPage(props: { assetId: string; scopes: Set<string> }) {
  const asset = useLoad(() => call<AssetDetail>('GET', `/v1/assets/${props.assetId}`), [props.assetId]);
  const download = useSignedUrl(props.assetId, 'attachment');
  const remove = useAction(async () => {
    const a = asset.data;
    if (!a || !confirm(`Delete ${a.filename ?? a.id}? This cannot be undone.`)) return;
    await call('DELETE', `/v1/assets/${a.id}`);
    navigate('/media');
  });
  const a = asset.data;
  const v = a?.video;
  return (
    <main id="main">
      <p>
        <Link to="/media">← Media</Link>
      </p>
      <PageTitle>{a ? (a.filename ?? a.id) : 'Asset'}</PageTitle>
      <Notice error={asset.error ?? remove.error} />
      {a ? (
        <>
          <div class="compare">
            <figure>
              <AssetPreview asset={a} class="preview-large" testid="asset-preview" />
              <figcaption>{a.kind === 'upload' ? 'Original, as uploaded' : 'Processing output'}</figcaption>
            </figure>
            <section class="card" aria-labelledby="facts-title">
              <h2 id="facts-title">Details</h2>
              <dl class="facts" data-testid="asset-facts">
                <dt>Id</dt>
                <dd>
                  <code>{a.id}</code>
                </dd>
                <dt>Type</dt>
                <dd>{a.content_type} (sniffed from the bytes)</dd>
                <dt>Size</dt>
                <dd>
                  {bytes(a.size)} ({a.size} bytes)
                </dd>
                {a.width ? (
                  <>
                    <dt>Dimensions</dt>
                    <dd>
                      {a.width}×{a.height}
                    </dd>
                  </>
                ) : null}
                <dt>SHA-256</dt>
                <dd>
                  <code data-testid="asset-sha256">{a.sha256}</code>
                </dd>
                <dt>Created</dt>
                <dd>{when(a.created_at)}</dd>
                <dt>Expires</dt>
                <dd>{a.legal_hold ? 'never while under legal hold' : a.expires_at ? when(a.expires_at) : 'never (kept until deleted)'}</dd>
                <dt>Tags</dt>
                <dd>{a.tags.length ? a.tags.join(', ') : '—'}</dd>
              </dl>
              <p class="actions">
                {download ? (
                  <a class="button primary" href={download} download={a.filename ?? a.id}>
                    Download
                  </a>
                ) : null}
                {props.scopes.has('assets:delete') ? (
                  <button type="button" class="danger" onClick={() => void remove.run()} disabled={remove.busy || a.legal_hold}>
                    Delete
                  </button>
                ) : null}
              </p>
              {a.legal_hold ? <p class="hint">Under legal hold: release the hold (PATCH /v1/assets/{'{id}'}) before deleting.</p> : null}
            </section>
          </div>
          {v ? (
            <section class="card" aria-labelledby="probe-title">
              <h2 id="probe-title">Video probe</h2>
              <dl class="facts" data-testid="asset-probe">
                <dt>Duration</dt>
                <dd>{seconds(v.duration_seconds)}</dd>
                <dt>Frame</dt>
                <dd>
                  {v.width}×{v.height} at {v.fps.toFixed(2)} fps{v.rotation ? `, shown rotated ${v.rotation}°` : ''}
                </dd>
                <dt>Video</dt>
                <dd>
                  {v.video_codec}
                  {v.pixel_format ? ` · ${v.pixel_format}` : ''} · {rate(v.bit_rate)}
                </dd>
                <dt>Audio</dt>
                <dd>{v.audio ? `${v.audio.codec} · ${v.audio.channels} ch · ${v.audio.sample_rate} Hz · ${rate(v.audio.bit_rate)}` : 'none'}</dd>
                <dt>Container</dt>
                <dd>
                  {v.container} · {v.streams} stream{v.streams === 1 ? '' : 's'}
                </dd>
                <dt>Colour</dt>
                <dd>
                  {[v.color.primaries, v.color.transfer, v.color.space, v.color.range].filter(Boolean).join(' · ') || 'unspecified'}
                  {v.color.hdr ? ' · HDR' : ''}
                </dd>
              </dl>
            </section>
          ) : null}
          <section class="card" aria-labelledby="meta-title">
            <h2 id="meta-title">Metadata</h2>
            {Object.keys(a.metadata).length ? (
              <dl class="facts">
                {Object.entries(a.metadata).map(([k, val]) => (
                  <Fragment key={k}>
                    <dt>{k}</dt>
                    <dd>{String(val)}</dd>
                  </Fragment>
                ))}
              </dl>
            ) : (
              <p class="empty">No metadata. Set some with PATCH /v1/assets/{'{id}'} {'{"metadata": {"sku": "A-1"}}'} (a JSON merge patch).</p>
            )}
          </section>
        </>
      ) : !asset.error ? (
        <p class="hint" role="status">
          Loading…
        </p>
      ) : null}
    </main>
  );
}
