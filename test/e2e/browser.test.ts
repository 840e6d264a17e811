/**
 * The browser example driven in real Chromium (playwright-core + Debian's chromium, never a
 * downloaded browser): the page uploads a file with a publishable key over tus straight to a real
 * Obscura server, shows progress, asks the example backend for the processed result and displays it.
 * The example backend runs as its own process (`node examples/browser/server.mjs`), the API
 * in-process on 127.0.0.1.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium, type Browser } from 'playwright-core';
import { openTestDb, type TestDb } from '../support/db.js';
import { startServer, createTenant, mintKey, freePort, type TestServer, type Tenant } from '../support/server.js';
import { Obscura } from '../../sdk/src/index.js';
import { noisyPng, repoRoot, startExampleProcess, type ExampleProcess } from '../sdk/support.js';

const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];

/** Chromium comes from Debian; the project's setup script installs it when missing (as root). */
function ensureChromium(root: string): void {
  if (existsSync(CHROMIUM)) return;
  const r = spawnSync(join(root, 'scripts', 'ensure-system-deps.sh'), ['chromium'], { encoding: 'utf8' });
  assert.ok(existsSync(CHROMIUM), `Chromium is required at ${CHROMIUM}: ${r.stderr || r.stdout}`);
}

describe('browser example in Chromium', () => {
  const root = repoRoot(import.meta.url);
  let t: TestDb;
  let s: TestServer;
  let a: Tenant;
  let browser: Browser;
  let example: ExampleProcess;
  let publishable: string;

  before(async () => {
    ensureChromium(root);
    const { bundleBrowser } = (await import(pathToFileURL(join(root, 'sdk', 'scripts', 'bundle.mjs')).href)) as { bundleBrowser: (out?: string) => Promise<{ inputs: Record<string, unknown> }> };
    const meta = await bundleBrowser();
    // The bundle is what a browser runs: nothing from Node may be in it.
    assert.ok(!Object.keys(meta.inputs).some((f) => f.startsWith('node:') || f.includes('tus-js-client/lib.esm/node/')), 'Node-only module in the browser bundle');

    t = await openTestDb('pglite');
    s = await startServer(t.db);
    a = await createTenant(t.db, 'BrowserCo');
    const admin = new Obscura({ baseUrl: s.url, apiKey: a.key });
    await admin.apps.update(a.appId, { settings: { allow_browser_uploads: true } });
    const port = await freePort();
    publishable = (await mintKey(t.db, a, { kind: 'publishable', name: 'example page', allowedOrigins: [`http://127.0.0.1:${port}`] })).secret;
    example = await startExampleProcess(join(root, 'examples', 'browser', 'server.mjs'), { OBSCURA_URL: s.url, OBSCURA_API_KEY: a.key, PUBLISHABLE_KEY: publishable, PORT: String(port), CHUNK_SIZE: String(256 * 1024), RETRY_DELAYS: '0' });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  });
  after(async () => {
    await browser?.close();
    await example?.stop();
    await s?.close();
    await t?.close();
  });

  test('uploads with a publishable key over tus, shows progress, and displays the processed image', async () => {
    const page = await browser.newPage();
    const problems: string[] = [];
    page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error') problems.push(`console: ${m.text()}`);
    });
    const uploadRequests: string[] = [];
    page.on('request', (r) => {
      if (r.url().startsWith(s.url)) uploadRequests.push(`${r.method()} ${new URL(r.url()).pathname}`);
    });

    await page.goto(example.url);
    await page.waitForSelector('body[data-ready="true"]', { timeout: 15_000 });
    await page.evaluate(() => {
      const w = window as unknown as { statuses: string[] };
      w.statuses = [];
      new MutationObserver(() => w.statuses.push(document.getElementById('status')!.textContent ?? '')).observe(document.getElementById('status')!, { childList: true, characterData: true, subtree: true });
    });

    const png = await noisyPng(800, 600);
    await page.setInputFiles('#file', { name: 'noise.png', mimeType: 'image/png', buffer: png });
    await page.waitForFunction(() => ['done', 'error'].includes(document.getElementById('status')!.dataset.state ?? ''), undefined, { timeout: 60_000 });
    const state = await page.$eval('#status', (e) => ({ state: (e as HTMLElement).dataset.state, text: e.textContent }));
    assert.equal(state.state, 'done', `${state.text}\n${problems.join('\n')}\n${example.output()}`);

    // The displayed image really loaded, at the processed size.
    const img = await page.$eval('#result', (e) => ({ w: (e as HTMLImageElement).naturalWidth, h: (e as HTMLImageElement).naturalHeight, complete: (e as HTMLImageElement).complete, src: (e as HTMLImageElement).src }));
    assert.ok(img.complete && img.w > 0, 'image loaded');
    assert.equal(img.w, 400);
    assert.equal(img.h, 300);
    assert.ok(img.src.startsWith(`${s.url}/v1/files/ast_`), 'a signed Obscura download URL');

    // Progress was shown chunk by chunk, up to the whole file.
    const statuses = (await page.evaluate(() => (window as unknown as { statuses: string[] }).statuses)) as string[];
    const sent = [...new Set(statuses.map((x) => /: (\d+) of (\d+) bytes/.exec(x)).filter((m) => m !== null).map((m) => Number(m![1])))];
    assert.ok(sent.length >= 3, `progress updates: ${sent.join(', ')}`);
    assert.equal(Math.max(...sent), png.length);
    assert.equal(await page.$eval('#progress', (e) => (e as HTMLProgressElement).value), 100);

    // The bytes went straight to Obscura over tus (creation, then PATCH chunks).
    assert.ok(uploadRequests.includes('POST /v1/uploads'), uploadRequests.join(', '));
    assert.ok(uploadRequests.filter((r) => r.startsWith('PATCH /v1/uploads/')).length >= 2, uploadRequests.join(', '));

    // Nothing secret reached the page, and the SDK stored nothing.
    const html = await page.content();
    const config = await page.evaluate(async () => JSON.stringify(await (await fetch('/config.json')).json()));
    assert.ok(!html.includes('obs_sk_') && !config.includes('obs_sk_') && !config.includes(a.key));
    assert.equal(await page.evaluate(() => localStorage.length + sessionStorage.length), 0);
    assert.equal(await page.evaluate(() => document.cookie), '');
    assert.deepEqual(problems, []);

    // The uploaded original is the file the user picked.
    const uploaded = await page.$eval('body', (b) => (b as HTMLElement).dataset.assetId);
    const admin = new Obscura({ baseUrl: s.url, apiKey: a.key });
    const asset = await admin.assets.get(uploaded!);
    assert.equal(asset.size, png.length);
    assert.equal(asset.width, 800);
    await page.close();
  });

  test('the same page served from an origin the key is not pinned to cannot upload with it', async () => {
    const page = await browser.newPage();
    const before = await t.db.withTenant(a.orgId, (trx) => trx.selectFrom('assets').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow());
    // localhost and 127.0.0.1 are different origins: the key is pinned to the latter only.
    await page.goto(example.url.replace('127.0.0.1', 'localhost'));
    await page.waitForSelector('body[data-ready="true"]', { timeout: 15_000 });
    await page.setInputFiles('#file', { name: 'q.png', mimeType: 'image/png', buffer: await noisyPng(64, 64) });
    await page.waitForFunction(() => ['done', 'error'].includes(document.getElementById('status')!.dataset.state ?? ''), undefined, { timeout: 30_000 });
    assert.equal(await page.$eval('#status', (e) => (e as HTMLElement).dataset.state), 'error');
    const after = await t.db.withTenant(a.orgId, (trx) => trx.selectFrom('assets').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow());
    assert.equal(Number(after.n), Number(before.n), 'no asset was created');
    await page.close();

    // What the browser blocked, the server refuses too (for clients that ignore CORS).
    const res = await fetch(`${s.url}/v1/uploads`, { method: 'POST', headers: { authorization: `Bearer ${publishable}`, origin: 'http://localhost:1', 'tus-resumable': '1.0.0', 'upload-length': '10' } });
    assert.equal(res.status, 403);
    assert.equal(((await res.json()) as { code: string }).code, 'ERR_ORIGIN_NOT_ALLOWED');
  });
});
