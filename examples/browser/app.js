// The page: upload with a publishable key (tus, resumable, with progress), then ask this example's
// backend for the processed result. Nothing secret ever reaches the browser, and the SDK stores
// nothing in localStorage or cookies.
import { Obscura, ObscuraError } from './obscura-sdk.js';

const $ = (id) => document.getElementById(id);
const status = (text, state = 'info') => {
  $('status').textContent = text;
  $('status').dataset.state = state;
};

// Public configuration only: the API's URL and the publishable key (it is pinned to this origin and
// can do nothing but upload).
const config = await (await fetch('/config.json')).json();
const obscura = new Obscura({ baseUrl: config.apiUrl, apiKey: config.publishableKey });

$('file').addEventListener('change', async (event) => {
  const file = event.target.files?.[0];
  if (!file) return;
  $('figure').hidden = true;
  $('progress').hidden = false;
  $('progress').value = 0;
  status(`Uploading ${file.name}…`);
  try {
    const { assetId } = await obscura.uploads.upload(file, {
      chunkSize: config.chunkSize,
      // After a network failure tus resumes from the server's offset (default delays 0, 1, 3, 5, 10 s).
      retryDelays: config.retryDelays,
      onProgress: ({ bytes, total }) => {
        $('progress').value = total ? Math.floor((bytes / total) * 100) : 0;
        status(`Uploading ${file.name}: ${bytes} of ${total} bytes`);
      },
    });
    status('Processing…');
    const res = await fetch('/api/processed', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ asset_id: assetId }),
    });
    const body = await res.json();
    if (!res.ok) throw new Error(body.error ?? `backend answered ${res.status}`);
    $('result').addEventListener('load', () => status('Done.', 'done'), { once: true });
    $('result').addEventListener('error', () => status('The image could not be loaded.', 'error'), { once: true });
    $('result').src = body.url;
    $('caption').textContent = `${body.width}×${body.height} ${body.content_type}, link valid until ${body.expires_at}`;
    $('figure').hidden = false;
    document.body.dataset.assetId = assetId;
  } catch (err) {
    status(err instanceof ObscuraError ? `${err.code}: ${err.detail}` : String(err?.message ?? err), 'error');
  }
});

status('Ready. Choose an image.');
document.body.dataset.ready = 'true';
