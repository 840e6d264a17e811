// The on-device example page: starts the SDK with the publishable key (or an offline licence) and
// the pinned licence keys from /config.json, edits the chosen photo on the device and offers the
// result for download. The SDK hands results only to onExport; this page decides what to do with them.
import { ObscuraDevice } from './sdk/obscura-device.js';

// The engine (libvips' WebAssembly) starts loading now, before the configuration is fetched.
ObscuraDevice.preload();

const $ = (id) => document.getElementById(id);
const file = $('file');
const run = $('run');
const progress = $('progress');
const status = $('status');
const say = (el, text, state) => {
  el.textContent = text;
  if (state) el.dataset.state = state;
  else delete el.dataset.state;
};

let lastUrl;
function onExport(blob, info) {
  if (lastUrl) URL.revokeObjectURL(lastUrl);
  lastUrl = URL.createObjectURL(blob);
  $('result').src = lastUrl;
  const link = $('download');
  link.href = lastUrl;
  link.download = `edited.${info.format === 'jpeg' ? 'jpg' : info.format}`;
  $('caption').textContent = `${info.width}×${info.height} ${info.format}, ${Math.round(info.size / 1024)} KiB, ${info.elapsedMs} ms`;
  $('figure').hidden = false;
}

const config = await (await fetch('config.json')).json();
let device;
try {
  device = await ObscuraDevice.start({
    baseUrl: config.apiUrl,
    ...(config.licence ? { licence: config.licence } : { publishableKey: config.publishableKey }),
    keys: config.keys,
    onExport,
    onProgress: (p) => {
      progress.hidden = false;
      progress.value = p.percent;
    },
  });
  say($('licence'), `Licensed to ${device.licence.licensee} on ${location.origin} until ${new Date(device.licence.exp * 1000).toLocaleString()}.`);
  file.disabled = false;
  run.disabled = false;
  // Where the start-up spent its time (ms after navigation), for bench/device.ts and the curious.
  document.body.dataset.startup = JSON.stringify(device.startup);
} catch (err) {
  // The stable code tells the site owner what to fix (ERR_ORIGIN_NOT_ALLOWED, ERR_LICENSE_EXPIRED, …).
  say($('licence'), `Refused: ${err.code ?? 'ERR_UNAVAILABLE'}. ${err.message}`, 'error');
  document.body.dataset.refused = err.code ?? 'ERR_UNAVAILABLE';
}

run.addEventListener('click', async () => {
  const photo = file.files?.[0];
  if (!device || !photo) return say(status, 'Choose a photo first.', 'error');
  run.disabled = true;
  say(status, 'Editing on this device…');
  try {
    const info = await device.process(photo, $('operations').value);
    say(status, `Done: ${info.width}×${info.height} ${info.format}.`);
    document.body.dataset.exported = String(Number(document.body.dataset.exported ?? 0) + 1);
  } catch (err) {
    say(status, `Refused: ${err.code ?? 'ERR_UNPROCESSABLE'}. ${err.message}`, 'error');
  } finally {
    run.disabled = false;
    progress.hidden = true;
  }
});
window.addEventListener('pagehide', () => void device?.close());
