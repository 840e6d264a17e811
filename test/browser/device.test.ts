/**
 * On-device processing in real Chromium (issue 15: items 1, 4, 5, the device's part of "Bad input"
 * and "Tests that must exist"), through the production parts: the real server on 127.0.0.1 (licence
 * sessions, offline licences, telemetry, usage), the example page served by its own process
 * (`node examples/device/server.mjs`), and the SDK built by `npm run build` (dist/browser/: the page
 * module, its Web Worker and wasm-vips). One server, one browser for the file; small fixtures.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { generateKeyPairSync } from 'node:crypto';
import { CompactSign } from 'jose';
import sharp from 'sharp';
import { chromium, type Browser, type BrowserContext, type Page, type Request } from 'playwright-core';
import { openTestDb, tempDir, type TestDb } from '../support/db.js';
import { startServer, createTenant, mintKey, freePort, api, type TestServer, type Tenant } from '../support/server.js';
import { repoRoot, startExampleProcess, type ExampleProcess } from '../sdk/support.js';
import { bombPng, hugeJpegHeader, pngWithAlpha, textFile } from '../fixtures/make.js';
import { fetchLicenceKeys } from '../../sdk/src/licence.js';
import type { JWK } from 'jose';

const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];

/**
 * The parity tolerance (docs/device.md): both outputs decoded to 8-bit sRGB at the server's size, the
 * mean absolute difference of each channel at most this many levels of 255.
 */
const PARITY_TOLERANCE = 3;

/**
 * One or more operation strings per device operation. The test fails when an operation marked
 * `device: true` has no sample here, so a new device operation cannot skip the parity check.
 */
const SAMPLES: Record<string, string[]> = {
  background: ['background:%230000ff/rotate:30/format:png'],
  flip: ['flip/format:png'],
  flop: ['flop/format:png'],
  rotate: ['rotate:90/format:png', 'rotate:-20,background=%23ff0000/format:png'],
  trim: ['trim:threshold=20/format:png'],
  extract: ['extract:left=20,top=10,width=120,height=90/format:png'],
  flatten: ['flatten:%2300ff00/format:png'],
  gamma: ['gamma:2.2/format:png'],
  grayscale: ['grayscale/format:png'],
  resize: ['resize:width=160/format:png', 'resize:width=100,height=100,fit=contain,background=%23ff0000/format:png', 'resize:width=120,height=80,fit=cover,position=attention/format:png', 'resize:width=90,height=90,fit=fill/format:png'],
  blur: ['blur:2/format:png'],
  modulate: ['modulate:brightness=1.2,saturation=0.5,hue=30/format:png'],
  sharpen: ['sharpen:2/format:png'],
  normalize: ['normalize/format:png'],
  tint: ['tint:%23ff8800/format:png'],
  format: ['format:webp', 'format:jpeg,quality=60', 'resize:width=200/format:auto'],
  quality: ['resize:width=200/quality:50'],
};

/** Flips one base64url character in the middle of part `part` (1 payload, 2 signature) of a compact JWS. */
function flip(jws: string, part: 1 | 2): string {
  const parts = jws.split('.');
  const p = parts[part]!;
  const i = Math.floor(p.length / 2);
  parts[part] = p.slice(0, i) + (p[i] === 'A' ? 'B' : 'A') + p.slice(i + 1);
  return parts.join('.');
}

/** The compact JWS inside an armoured licence file. */
function dearmour(file: string): string {
  return file.split('\n').filter((l) => l && !l.startsWith('-----')).join('');
}

/** Per-channel mean absolute difference of two encoded images, both decoded to sRGB at `width`×`height`. */
async function meanDifference(a: Buffer, b: Buffer, width: number, height: number): Promise<number[]> {
  const raw = (buf: Buffer) => sharp(buf).resize(width, height, { fit: 'fill' }).flatten({ background: '#ffffff' }).toColourspace('srgb').removeAlpha().raw().toBuffer();
  const [x, y] = await Promise.all([raw(a), raw(b)]);
  const sums = [0, 0, 0];
  for (let i = 0; i < x.length; i++) sums[i % 3]! += Math.abs(x[i]! - y[i]!);
  return sums.map((s) => s / (x.length / 3));
}

/** Bytes that only an image file (or its pixels) would carry: the fixture's own content and the formats' magic numbers. */
function carriesImage(body: Buffer, photo: Buffer): boolean {
  const magic = [Buffer.from([0xff, 0xd8, 0xff]), Buffer.from('\x89PNG', 'latin1'), Buffer.from('WEBP'), Buffer.from('GIF8')];
  if (magic.some((m) => body.includes(m))) return true;
  for (let at = 0; at + 32 <= photo.length; at += Math.floor(photo.length / 16)) if (body.includes(photo.subarray(at, at + 32))) return true;
  // Base64 of the same (a JSON body would carry it that way).
  const b64 = photo.toString('base64');
  for (let at = 0; at + 44 <= b64.length; at += Math.floor(b64.length / 16)) if (body.includes(Buffer.from(b64.slice(at, at + 44)))) return true;
  return false;
}

describe('on-device processing in Chromium (issue 15)', () => {
  const root = repoRoot(import.meta.url);
  let t: TestDb;
  let s: TestServer;
  let a: Tenant;
  let issuer: string;
  let browser: Browser;
  let keys: JWK[];
  let publishable: string;
  let allowed: ExampleProcess;
  let foreign: ExampleProcess;
  let offline: ExampleProcess;
  let offlineFile: string;
  let photo: Buffer;
  // The server's clock, moved back to issue a licence that has already expired in the browser's time.
  let skewMs = 0;
  const dir = tempDir('obscura-device-');

  /** `node examples/device/server.mjs` on `port`, with the publishable key or a licence file. */
  const example = (port: number, env: Record<string, string>) =>
    startExampleProcess(join(root, 'examples', 'device', 'server.mjs'), { OBSCURA_URL: s.url, LICENCE_KEYS: JSON.stringify(keys), PORT: String(port), ...env });

  /** Issues an offline licence file over the API (`POST /v1/licenses`). */
  async function issue(body: Record<string, unknown>): Promise<string> {
    const r = await api(s.url, 'POST', '/v1/licenses', { key: issuer, body: { licensee: 'Example Corp', features: ['image'], expires_at: new Date(Date.now() + 30 * 86_400_000).toISOString(), ...body } });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    return r.body.license as string;
  }

  before(async () => {
    assert.ok(existsSync(join(root, 'dist', 'browser', 'obscura-device.js')), 'dist/browser/ is built by `npm run build`');
    if (!existsSync(CHROMIUM)) spawnSync(join(root, 'scripts', 'ensure-system-deps.sh'), ['chromium']);
    t = await openTestDb('pglite');
    s = await startServer(t.db, { deps: { now: () => Date.now() + skewMs } });
    a = await createTenant(t.db, 'DeviceCo');
    issuer = (await mintKey(t.db, a, { kind: 'secret', name: 'licences', scopes: ['licenses:issue'] })).secret;
    keys = await fetchLicenceKeys({ baseUrl: s.url });
    const [allowedPort, foreignPort, offlinePort] = await Promise.all([freePort(), freePort(), freePort()]);
    publishable = (await mintKey(t.db, a, { kind: 'publishable', name: 'device page', scopes: ['licenses:session'], allowedOrigins: [`http://127.0.0.1:${allowedPort}`] })).secret;
    offlineFile = join(dir, 'obscura.license');
    writeFileSync(offlineFile, await issue({ domains: [`http://127.0.0.1:${offlinePort}`], features: ['image', 'no_telemetry'] }));
    [allowed, foreign, offline] = await Promise.all([
      example(allowedPort, { PUBLISHABLE_KEY: publishable }),
      // The same page and key served from an origin the key does not list.
      example(foreignPort, { PUBLISHABLE_KEY: publishable }),
      example(offlinePort, { LICENCE_FILE: offlineFile }),
    ]);
    // A photo-like JPEG (smooth noise), small enough to keep the file fast.
    const noise = await sharp({ create: { width: 320, height: 240, channels: 3, background: '#808080', noise: { type: 'gaussian', mean: 128, sigma: 60 } } }).blur(2.5).png().toBuffer();
    photo = await sharp(noise).jpeg({ quality: 90 }).toBuffer();
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  });
  after(async () => {
    await browser?.close();
    await Promise.all([allowed?.stop(), foreign?.stop(), offline?.stop()]);
    await s?.close();
    await t?.close();
  });

  let shared: Page | undefined;
  /** One page on the allowed origin for the SDK-level tests (the engine loads once). */
  async function sharedPage(): Promise<Page> {
    if (!shared) shared = await open((await newContext()).ctx, allowed.url);
    return shared;
  }

  /** A fresh profile whose every request is logged (URL, method, body). */
  async function newContext(opts: { blockApi?: boolean } = {}): Promise<{ ctx: BrowserContext; requests: Request[]; problems: string[] }> {
    const ctx = await browser.newContext({ acceptDownloads: true });
    const requests: Request[] = [];
    const problems: string[] = [];
    ctx.on('request', (r) => requests.push(r));
    ctx.on('page', (p) => p.on('pageerror', (e) => problems.push(e.message)));
    if (opts.blockApi) await ctx.route((url) => !url.href.startsWith(offline.url), (route) => route.abort('internetdisconnected'));
    return { ctx, requests, problems };
  }

  /** Opens the example and waits until the SDK has started (or refused). */
  async function open(ctx: BrowserContext, url: string): Promise<Page> {
    const page = await ctx.newPage();
    await page.goto(url);
    await page.waitForFunction(() => !(document.getElementById('file') as HTMLInputElement).disabled || document.body.dataset.refused, undefined, { timeout: 60_000 });
    return page;
  }

  /** Runs the SDK directly in `page` (its published API), starting it with `start` options; returns the export or the refusal's code. */
  async function onDevice(page: Page, start: Record<string, unknown>, bytes: Buffer, operations: string, asBitmap = false): Promise<{ code?: string; details?: Record<string, unknown>; data?: Buffer; info?: { width: number; height: number; format: string; mime: string }; progress?: string[]; maxGapMs?: number }> {
    const out: { data?: string; [k: string]: unknown } = await page.evaluate(
      async ([start, b64, operations, asBitmap]) => {
        const { ObscuraDevice } = await import('/sdk/obscura-device.js' as string);
        const w = window as unknown as { devices?: Record<string, unknown> };
        const key = JSON.stringify(start);
        let exported: { data: string; info: unknown } | undefined;
        const progress: string[] = [];
        w.devices ??= {};
        // One device per set of options (the engine loads once), its onExport rebound per call.
        const slot = (w.devices[key] ??= { sink: (_b: Blob, _i: unknown) => {}, device: undefined }) as { sink: (b: Blob, i: unknown) => void; progress?: (p: { stage: string }) => void; device?: Promise<{ process: (b: Blob | ImageBitmap, o: string) => Promise<unknown> }> };
        slot.sink = async (blob: Blob, info: unknown) => {
          const bytes = new Uint8Array(await blob.arrayBuffer());
          let s = '';
          for (const x of bytes) s += String.fromCharCode(x);
          exported = { data: btoa(s), info };
        };
        slot.progress = (p) => progress.push(p.stage);
        let ticker: ReturnType<typeof setInterval> | undefined;
        let maxGapMs = 0;
        try {
          slot.device ??= ObscuraDevice.start({ ...start, onExport: (b: Blob, i: unknown) => slot.sink(b, i), onProgress: (p: { stage: string }) => slot.progress?.(p) });
          const device = (await slot.device)!;
          const raw = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
          // The main thread keeps ticking while the worker works: the page never hangs.
          let last = performance.now();
          ticker = setInterval(() => {
            const now = performance.now();
            maxGapMs = Math.max(maxGapMs, now - last);
            last = now;
          }, 10);
          await device.process(asBitmap ? await createImageBitmap(new Blob([raw])) : new Blob([raw]), operations);
          await new Promise((r) => setTimeout(r, 0));
          return { ...exported, progress, maxGapMs };
        } catch (err) {
          const e = err as { code?: string; details?: Record<string, unknown> };
          if (e.code?.startsWith('ERR_LICENSE') || e.code === 'ERR_ORIGIN_NOT_ALLOWED') delete w.devices[key];
          return { code: e.code ?? String(err), details: e.details, maxGapMs };
        } finally {
          clearInterval(ticker);
        }
      },
      [start, bytes.toString('base64'), operations, asBitmap] as const,
    );
    return { ...out, ...(out.data ? { data: Buffer.from(out.data, 'base64') } : {}) } as never;
  }

  /** The same operations on the server (`POST /v1/process`, raw body): the output, or the refusal's code. */
  async function onServer(bytes: Buffer, operations: string): Promise<{ code?: string; details?: Record<string, unknown>; data?: Buffer; info?: { width: number; height: number; format: string } }> {
    // `format:auto` on the device picks what the server picks for a client that takes WebP (the device encodes no AVIF).
    const res = await fetch(`${s.url}/v1/process?operations=${encodeURIComponent(operations)}`, { method: 'POST', headers: { authorization: `Bearer ${a.key}`, 'content-type': 'application/octet-stream', accept: 'image/webp,image/*;q=0.8' }, body: new Uint8Array(bytes) });
    const data = Buffer.from(await res.arrayBuffer());
    if (res.status !== 200) {
      const p = JSON.parse(data.toString('utf8')) as { code: string; details?: Record<string, unknown> };
      // problem+json carries the details as members of the document.
      return { code: p.code, details: p as unknown as Record<string, unknown> };
    }
    const meta = await sharp(data).metadata();
    return { data, info: { width: meta.width, height: meta.height, format: meta.format === 'heif' ? 'avif' : meta.format } };
  }

  async function usage(): Promise<{ exports: { total: number } }> {
    const r = await api(s.url, 'GET', `/v1/usage?app_id=${a.appId}`, { key: a.key });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return r.body.apps[0];
  }

  test('the example on an allowed origin edits a photo on the device and downloads it; the only requests are the licence and telemetry, none carries image bytes, and the counts reach /v1/usage', async () => {
    const before = (await usage()).exports.total;
    const { ctx, requests, problems } = await newContext();
    const page = await open(ctx, allowed.url);
    assert.equal(await page.evaluate(() => document.body.dataset.refused), undefined);
    await page.setInputFiles('#file', { name: 'holiday.jpg', mimeType: 'image/jpeg', buffer: photo });
    await page.fill('#operations', 'resize:width=200/format:webp');
    await page.click('#run');
    await page.waitForSelector('body[data-exported="1"]', { timeout: 60_000 });
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download')]);
    const file = readFileSync((await download.path())!);
    const meta = await sharp(file).metadata();
    assert.deepEqual([meta.format, meta.width, meta.height], ['webp', 200, 150]);
    assert.equal(download.suggestedFilename(), 'edited.webp');

    // Telemetry is batched a second after the export: poll the meter, bounded.
    const deadline = Date.now() + 20_000;
    while ((await usage()).exports.total < before + 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    assert.equal((await usage()).exports.total, before + 1, 'the export was counted');
    // Every telemetry batch was accepted (a refused batch counts nothing).
    const batches = requests.filter((r) => r.url() === `${s.url}/v1/telemetry` && r.method() === 'POST');
    assert.ok(batches.length > 0);
    for (const b of batches) assert.equal((await b.response())?.status(), 202, b.postData() ?? '');
    assert.ok(batches.some((b) => b.postData()?.includes('"engine_load"')), 'the engine load was reported');

    const api_ = requests.filter((r) => r.url().startsWith(s.url)).map((r) => `${r.method()} ${new URL(r.url()).pathname}`);
    const apiPosts = api_.filter((r) => !r.startsWith('OPTIONS'));
    assert.deepEqual([...new Set(apiPosts)].sort(), ['POST /v1/licenses/session', 'POST /v1/telemetry']);
    const elsewhere = requests.filter((r) => !r.url().startsWith(s.url) && !r.url().startsWith(allowed.url) && !r.url().startsWith('blob:'));
    assert.deepEqual(elsewhere.map((r) => r.url()), []);
    for (const r of requests) {
      const body = r.postDataBuffer();
      if (body) assert.equal(carriesImage(body, photo), false, `${r.method()} ${r.url()} carries image bytes`);
      assert.ok(!r.url().startsWith(allowed.url) || r.method() === 'GET', `the page only reads its own files: ${r.method()} ${r.url()}`);
    }

    // The key was held in memory only: no storage area of either origin holds anything.
    const stored = await page.evaluate(async () => ({
      local: Object.keys(localStorage).length,
      session: Object.keys(sessionStorage).length,
      indexedDb: (await indexedDB.databases()).length,
      caches: (await caches.keys()).length,
      cookie: document.cookie,
    }));
    assert.deepEqual(stored, { local: 0, session: 0, indexedDb: 0, caches: 0, cookie: '' });
    const state = await ctx.storageState();
    assert.deepEqual(state.cookies, []);
    assert.ok(!JSON.stringify(state).includes(publishable), 'the publishable key is in no storage area');
    assert.deepEqual(problems, []);
    await ctx.close();
  });

  test('a page on an origin the publishable key does not allow gets no licence session and the SDK does not start; the server refuses that origin (403 ERR_ORIGIN_NOT_ALLOWED); the allowed origin starts', async () => {
    const { ctx, requests } = await newContext();
    const page = await open(ctx, foreign.url);
    // The browser asks first (CORS preflight); the server's strict CORS does not allow this origin,
    // so the session request itself is never sent and the SDK reports the service unavailable.
    assert.equal(await page.evaluate(() => document.body.dataset.refused), 'ERR_UNAVAILABLE');
    assert.equal(await page.isDisabled('#file'), true);
    const posts = requests.filter((r) => r.url() === `${s.url}/v1/licenses/session` && r.method() === 'POST');
    assert.ok(posts.length > 0, 'the SDK asked for a session');
    for (const post of posts) assert.equal(await post.response(), null, 'no session answer reached the page');
    // Without a browser in the way (a script that forges Origin), the server refuses the origin itself.
    const forged = await api(s.url, 'POST', '/v1/licenses/session', { key: publishable, body: {}, headers: { origin: foreign.url } });
    assert.deepEqual([forged.status, forged.body.code], [403, 'ERR_ORIGIN_NOT_ALLOWED']);
    const twin = await open(ctx, allowed.url);
    assert.equal(await twin.evaluate(() => document.body.dataset.refused), undefined);
    await ctx.close();
  });

  test('an offline licence works with the network blocked: the photo is edited and exported, and no request leaves the page origin', async () => {
    const { ctx, requests } = await newContext({ blockApi: true });
    const page = await open(ctx, offline.url);
    assert.equal(await page.evaluate(() => document.body.dataset.refused), undefined);
    await page.setInputFiles('#file', { name: 'photo.jpg', mimeType: 'image/jpeg', buffer: photo });
    await page.fill('#operations', 'resize:width=120/format:jpeg');
    await page.click('#run');
    await page.waitForSelector('body[data-exported="1"]', { timeout: 60_000 });
    const result = await onDevice(page, { licence: readFileSync(offlineFile, 'utf8'), keys, baseUrl: s.url }, photo, 'resize:width=64/format:png');
    assert.deepEqual([result.info?.width, result.info?.format], [64, 'png']);
    const outside = requests.filter((r) => !r.url().startsWith(offline.url) && !r.url().startsWith('blob:'));
    assert.deepEqual(outside.map((r) => r.url()), [], 'nothing but the page origin was asked for');
    await ctx.close();
  });

  test('tampered, expired, foreign-origin and foreign-key licences are refused by the SDK with stable codes and nothing is processed; the genuine licence processes', async () => {
    const { ctx } = await newContext({ blockApi: true });
    const page = await open(ctx, offline.url);
    const genuine = readFileSync(offlineFile, 'utf8');
    const jws = dearmour(genuine);
    skewMs = -3 * 86_400_000;
    let expired: string;
    try {
      // Issued by a server whose clock is three days behind, for two days: expired yesterday.
      expired = await issue({ domains: [offline.url], expires_at: new Date(Date.now() - 86_400_000).toISOString() });
    } finally {
      skewMs = 0;
    }
    const otherDomain = await issue({ domains: ['https://photos.example.com'] });
    const header = JSON.parse(Buffer.from(jws.split('.')[0]!, 'base64url').toString('utf8')) as { alg: string };
    const otherKey = await new CompactSign(Buffer.from(jws.split('.')[1]!, 'base64url')).setProtectedHeader(header).sign(generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey);
    const cases: Record<string, [string, string]> = {
      payloadByte: [flip(jws, 1), 'ERR_LICENSE_SIGNATURE'],
      signatureByte: [flip(jws, 2), 'ERR_LICENSE_SIGNATURE'],
      otherKey: [otherKey, 'ERR_LICENSE_SIGNATURE'],
      expired: [expired, 'ERR_LICENSE_EXPIRED'],
      otherDomain: [otherDomain, 'ERR_LICENSE_ORIGIN'],
      garbage: ['not a licence', 'ERR_LICENSE_MALFORMED'],
    };
    for (const [name, [licence, code]] of Object.entries(cases)) {
      const r = await onDevice(page, { licence, keys }, photo, 'resize:width=32/format:png');
      assert.equal(r.code, code, name);
      assert.equal(r.data, undefined, `${name}: nothing exported`);
    }
    const ok = await onDevice(page, { licence: genuine, keys }, photo, 'resize:width=32/format:png');
    assert.equal(ok.code, undefined);
    assert.equal(ok.info?.width, 32);
    await ctx.close();
  });

  test('parity: every device operation gives the server’s output size and format and pixels within the tolerance, with progress; a mismatch is caught', async () => {
    const reference = (await (await fetch(`${s.url}/v1/operations`)).json()) as { operations: Array<{ name: string; device: boolean }> };
    const deviceOps = reference.operations.filter((o) => o.device).map((o) => o.name);
    assert.deepEqual(Object.keys(SAMPLES).sort(), [...deviceOps].sort(), 'one sample (or more) per device operation');
    const page = await sharedPage();
    const start = { baseUrl: s.url, publishableKey: publishable, keys };
    const alpha = await pngWithAlpha();
    const cases = [...Object.values(SAMPLES).flat().map((op) => [photo, op] as const), ...['resize:width=100/format:png', 'flatten/format:png', 'format:jpeg', 'rotate:45/format:png'].map((op) => [alpha, op] as const)];
    const failures: string[] = [];
    let progressSeen: string[] = [];
    for (const [input, op] of cases) {
      const [server, device] = [await onServer(input, op), await onDevice(page, start, input, op)];
      assert.equal(server.code, undefined, `${op} on the server: ${server.code}`);
      assert.equal(device.code, undefined, `${op} on the device: ${device.code} ${JSON.stringify(device.details)}`);
      const meta = await sharp(device.data!).metadata();
      assert.deepEqual([device.info!.width, device.info!.height, device.info!.format], [server.info!.width, server.info!.height, server.info!.format], op);
      assert.deepEqual([meta.width, meta.height], [device.info!.width, device.info!.height], `${op}: info matches the bytes`);
      const diff = await meanDifference(server.data!, device.data!, server.info!.width, server.info!.height);
      if (Math.max(...diff) > PARITY_TOLERANCE) failures.push(`${op}: ${diff.map((d) => d.toFixed(2)).join(' ')}`);
      progressSeen = device.progress ?? [];
    }
    assert.deepEqual(failures, [], 'mean per-channel difference over the tolerance');
    assert.deepEqual([progressSeen[0], progressSeen.at(-1)], ['validated', 'done']);
    assert.ok(progressSeen.includes('encoding'));
    // An ImageBitmap (decoded by the browser) gives the same result as the file it came from.
    const [fromFile, fromBitmap] = [await onServer(photo, 'resize:width=160/format:png'), await onDevice(page, start, photo, 'resize:width=160/format:png', true)];
    assert.deepEqual([fromBitmap.info?.width, fromBitmap.info?.height], [fromFile.info!.width, fromFile.info!.height]);
    assert.ok(Math.max(...(await meanDifference(fromFile.data!, fromBitmap.data!, 160, 120))) <= PARITY_TOLERANCE);
    // The comparison can fail: the server's flip against the device's flop is far apart.
    const [flipped, flopped] = [await onServer(photo, 'flip/format:png'), await onDevice(page, start, photo, 'flop/format:png')];
    const apart = Math.max(...(await meanDifference(flipped.data!, flopped.data!, 320, 240)));
    assert.ok(apart > PARITY_TOLERANCE, `flip vs flop differ by only ${apart}`);
  });

  test('bad operations get the server’s code on the device; server-only operations are refused there with ERR_VALIDATION not_on_device', async () => {
    const page = await sharedPage();
    const start = { baseUrl: s.url, publishableKey: publishable, keys };
    for (const op of ['resize:width=0', 'blur:sigma=500', 'nosuch:1', 'resize:width=10/extract:left=0,top=0,width=5,height=5', 'extract:left=300,top=0,width=100,height=10']) {
      const [server, device] = [await onServer(photo, op), await onDevice(page, start, photo, op)];
      assert.equal(server.code, 'ERR_VALIDATION', op);
      assert.deepEqual([device.code, device.details?.reason, device.details?.operation], [server.code, server.details?.reason, server.details?.operation], op);
    }
    for (const op of ['text:hello', 'watermark:ast_0123456789abcdefghijkl', 'format:avif']) {
      const device = await onDevice(page, start, photo, op);
      assert.deepEqual([device.code, device.details?.reason], ['ERR_VALIDATION', 'not_on_device'], op);
      assert.equal((await onServer(photo, op)).code, op.startsWith('watermark') ? 'ERR_NOT_FOUND' : undefined, `${op} runs on the server`);
    }
  });

  test('hostile images are refused on the device by the server’s limits, with the server’s codes, without hanging the page', async () => {
    const page = await sharedPage();
    const start = { baseUrl: s.url, publishableKey: publishable, keys };
    const polyglot = Buffer.concat([Buffer.from('GIF89a'), await sharp(photo).png().toBuffer()]);
    const inputs: Record<string, Buffer> = { bomb: await bombPng(), huge: await hugeJpegHeader(), text: textFile(), polyglot };
    // The legitimate twin first (it also starts the engine, which is not what is measured below).
    assert.equal((await onDevice(page, start, photo, 'resize:width=100/format:png')).info?.width, 100);
    for (const [name, bytes] of Object.entries(inputs)) {
      const [server, device] = [await onServer(bytes, 'resize:width=100/format:png'), await onDevice(page, start, bytes, 'resize:width=100/format:png')];
      assert.ok(server.code, `${name} refused by the server`);
      assert.equal(device.code, server.code, name);
      assert.ok((device.maxGapMs ?? Infinity) < 1_000, `${name}: the page's main thread was blocked ${device.maxGapMs} ms`);
    }
    // A run over the time limit is stopped (the worker is terminated), never left to hang the page.
    const slow = await onDevice(page, { ...start, limits: { timeoutMs: 1 } }, photo, 'blur:50/format:png');
    assert.deepEqual([slow.code, slow.details?.reason], ['ERR_UNPROCESSABLE', 'timeout']);
  });
});
