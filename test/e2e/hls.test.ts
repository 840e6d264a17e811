/**
 * Issue 11, HLS packaging delivered through signed URLs, played by hls.js in real Chromium (Debian's,
 * driven by playwright-core). A video job packages a clip as HLS (two renditions, fMP4 byte-range
 * segments); the master playlist's signed URL is all the player gets. The page is served from another
 * origin (a publishable key allows it, so CORS lets the player read the responses). The playlists the
 * player receives name every part by a signed URL that expires with the master's: after expiry the same
 * page can no longer load it, and a part's URL answers 410. A forged part signature is refused (403).
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { chromium, type Browser } from 'playwright-core';
import { clip } from '../support/video.js';
import { mintKey } from '../support/server.js';
import { tempDir } from '../support/db.js';
import { api, startHarness, startTestWorkers, upload, waitForJob, type Harness } from '../jobs/support.js';

const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--autoplay-policy=no-user-gesture-required'];
const HLS_JS = readFileSync(createRequire(import.meta.url).resolve('hls.js/dist/hls.min.js'), 'utf8');

const PAGE = `<!doctype html><meta charset="utf-8"><title>hls</title><video id="v" muted playsinline></video>
<script src="/hls.js"></script>
<script>
  window.state = { levels: 0, fragments: [], errors: [], playing: false };
  window.play = (src) => new Promise((resolve) => {
    const video = document.getElementById('v');
    const hls = new Hls({ manifestLoadingMaxRetry: 0, levelLoadingMaxRetry: 0, fragLoadingMaxRetry: 0 });
    hls.on(Hls.Events.MANIFEST_PARSED, (_e, d) => { window.state.levels = d.levels.length; video.play().catch(() => {}); });
    hls.on(Hls.Events.FRAG_LOADED, (_e, d) => window.state.fragments.push(d.frag.url));
    hls.on(Hls.Events.ERROR, (_e, d) => { window.state.errors.push({ type: d.type, details: d.details, fatal: d.fatal, code: d.response ? d.response.code : null }); if (d.fatal) resolve(false); });
    video.addEventListener('timeupdate', () => { if (video.currentTime > 1.2) { window.state.playing = true; resolve(true); } });
    hls.loadSource(src);
    hls.attachMedia(video);
  });
</script>`;

describe('HLS through signed URLs, played by hls.js in Chromium', () => {
  let h: Harness;
  let workers: Awaited<ReturnType<typeof startTestWorkers>>;
  let browser: Browser;
  let site: http.Server;
  let origin: string;
  let master: string;
  let skewMs = 0;

  before(async () => {
    assert.ok(existsSync(CHROMIUM), `Chromium is required at ${CHROMIUM} (scripts/ensure-system-deps.sh chromium)`);
    site = http.createServer((req, res) => {
      if (req.url === '/hls.js') res.writeHead(200, { 'content-type': 'text/javascript' }).end(HLS_JS);
      else res.writeHead(200, { 'content-type': 'text/html' }).end(PAGE);
    });
    await new Promise<void>((r) => site.listen(0, '127.0.0.1', r));
    origin = `http://127.0.0.1:${(site.address() as AddressInfo).port}`;
    h = await startHarness('pglite', { env: { OBSCURA_VIDEO_TEMP_DIR: tempDir('obscura-hls-temp-') }, now: () => Date.now() + skewMs });
    workers = await startTestWorkers(h);
    // A publishable key that allows the player's origin: the browser may then read cross-origin responses.
    await mintKey(h.t.db, h.a, { kind: 'publishable', name: 'player', allowedOrigins: [origin] });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });

    const asset = await upload(h.srv, h.a.key, await clip({ width: 320, height: 240, seconds: 4, fps: 25 }));
    const created = await api(h.srv.url, 'POST', '/v1/jobs', { key: h.a.key, body: { input: { asset_id: asset }, operations: 'scale:height=240/format:mp4,preset=ultrafast/hls:segment=1,renditions=2' } });
    assert.equal(created.status, 202, JSON.stringify(created.body));
    const job = await waitForJob(h.srv, h.a.key, created.body.id, 60_000);
    assert.equal(job.status, 'succeeded', JSON.stringify(job.error));
    master = job.output.asset_id;
  });
  after(async () => {
    await browser?.close();
    await workers?.stop();
    await h?.close();
    await new Promise((r) => site?.close(r));
  });

  test('the served playlists name every part by a signed URL that expires with the master', async () => {
    const link = await api(h.srv.url, 'POST', `/v1/assets/${master}/url`, { key: h.a.key, body: { ttl_seconds: 600 } });
    assert.equal(link.status, 201);
    const exp = new URL(link.body.url).searchParams.get('exp');
    const res = await fetch(link.body.url);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'application/vnd.apple.mpegurl');
    const text = await res.text();
    const variants = text.split('\n').filter((l) => l.startsWith('http'));
    assert.equal(variants.length, 2, text);
    assert.doesNotMatch(text, /obscura-asset:/);
    for (const v of variants) {
      assert.equal(new URL(v).searchParams.get('exp'), exp, 'a variant expires with the master');
      const list = await (await fetch(v)).text();
      const parts = [...list.matchAll(/(https?:\/\/[^\s"]+)/g)].map((m) => m[1]!);
      assert.ok(parts.length >= 2, list);
      for (const p of parts) assert.equal(new URL(p).searchParams.get('exp'), exp, 'a segment expires with the master');
      assert.match(list, /#EXT-X-BYTERANGE/);
    }
    // Another org cannot mint a URL for this package.
    assert.equal((await api(h.srv.url, 'POST', `/v1/assets/${master}/url`, { key: h.b.key })).status, 404);
  });

  test('hls.js plays the package from another origin with only the signed master URL; after expiry it cannot, and parts answer 410; a forged part is 403', async () => {
    // A minute to play (a loaded machine took more than 6 s), then the server's clock moves past the
    // expiry instead of the test sleeping through it.
    const link = await api(h.srv.url, 'POST', `/v1/assets/${master}/url`, { key: h.a.key, body: { ttl_seconds: 60 } });
    assert.equal(link.status, 201);
    const page = await browser.newPage();
    await page.goto(origin);
    const played = await page.evaluate((src) => (window as any).play(src), link.body.url);
    const state = await page.evaluate(() => (window as any).state);
    assert.equal(played, true, JSON.stringify(state));
    assert.equal(state.levels, 2);
    assert.ok(state.fragments.length >= 1);
    for (const f of state.fragments as string[]) {
      assert.ok(f.startsWith(`${h.srv.url}/v1/files/`), f);
      assert.ok(new URL(f).searchParams.get('sig'), f);
    }
    const fragment = state.fragments[0] as string;
    // A part whose signature was changed is refused.
    const forged = new URL(fragment);
    forged.searchParams.set('sig', `${forged.searchParams.get('sig')!.slice(0, -2)}AA`);
    assert.equal((await fetch(forged)).status, 403);
    await page.close();

    // After the expiry, the same master URL no longer plays and its parts are gone.
    skewMs = 61_000;
    const later = await browser.newPage();
    await later.goto(origin);
    const again = await later.evaluate((src) => (window as any).play(src), link.body.url);
    const after = await later.evaluate(() => (window as any).state);
    assert.equal(again, false);
    assert.ok(after.errors.some((e: { fatal: boolean; code: number | null }) => e.fatal && e.code === 410), JSON.stringify(after.errors));
    assert.equal((await fetch(fragment)).status, 410);
    await later.close();
    skewMs = 0;
  });
});
