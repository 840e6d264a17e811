/**
 * The web console in real Chromium (playwright-core + Debian's chromium) against the real server on
 * 127.0.0.1 (issue 13): one server and one browser for the file. Every page is checked for CSP
 * violations (a `securitypolicyviolation` listener installed before any page script) and console
 * errors, run through axe-core (no serious or critical violation), and photographed at 1280 and 375 px
 * into $OBSCURA_TEST_OUT (or a temporary directory, printed).
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { chromium, type Browser, type BrowserContext, type Page, type Request } from 'playwright-core';
import { Secret, TOTP } from 'otpauth';
import { openTestDb, superQuery, type TestDb } from '../support/db.js';
import { startServer, createTenant, api, type TestServer, type Tenant } from '../support/server.js';
import { noisyPng } from '../sdk/support.js';
import { clip } from '../support/video.js';
import { FAST_JOBS_ENV, startTarget, startTestWorkers, testRemote, type Harness, type TargetServer } from '../jobs/support.js';
import { signTransformPath } from '../../sdk/src/transform.js';
import { createUser } from '../../src/tenants/index.js';
import type { UserRole } from '../../src/db/schema.js';

const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];
const PASSWORD = 'correct horse battery staple';
const AXE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

/** Whether a request body carries an image: a format's magic number, or any of `files`' bytes (raw or base64). */
function carriesImage(body: Buffer, files: Buffer[]): boolean {
  if ([[0xff, 0xd8, 0xff], [0x89, 0x50, 0x4e, 0x47], [0x57, 0x45, 0x42, 0x50], [0x47, 0x49, 0x46, 0x38]].some((m) => body.includes(Buffer.from(m)))) return true;
  return files.some((f) => {
    const b64 = f.toString('base64');
    for (let at = 0; at + 64 <= f.length; at += Math.max(64, Math.floor(f.length / 16))) {
      if (body.includes(f.subarray(at, at + 32)) || body.includes(Buffer.from(b64.slice(Math.floor((at * 4) / 3 / 4) * 4, Math.floor((at * 4) / 3 / 4) * 4 + 44)))) return true;
    }
    return false;
  });
}

/**
 * In the playground: waits for an input to be selected, then picks `resize:width=200/format:webp`
 * through the form generated from GET /v1/operations.
 */
async function pickResizeToWebp(page: Page): Promise<void> {
  await page.waitForFunction(() => !!(document.getElementById('pg-asset') as HTMLSelectElement | null)?.value);
  await page.getByLabel('Add an operation').selectOption('resize');
  await page.getByRole('button', { name: 'Add', exact: true }).click();
  await page.locator('fieldset[data-operation="resize"] input[id$="-width"]').fill('200');
  await page.getByLabel('Add an operation').selectOption('format');
  await page.getByRole('button', { name: 'Add', exact: true }).click();
  await page.locator('fieldset[data-operation="format"] select').first().selectOption('webp');
}

describe('web console in Chromium', () => {
  let t: TestDb;
  let s: TestServer;
  let acme: Tenant;
  let browser: Browser;
  let owner: BrowserContext;
  let page: Page;
  let out: string;
  let target: TargetServer;
  let workers: Awaited<ReturnType<typeof startTestWorkers>> | undefined;
  // The server's clock runs ahead on demand, so a TOTP code of the next step can be used at once.
  let offset = 0;
  const problems: string[] = [];

  before(async () => {
    out = process.env.OBSCURA_TEST_OUT ? join(process.env.OBSCURA_TEST_OUT, 'console') : mkdtempSync(join(tmpdir(), 'obscura-console-'));
    mkdirSync(out, { recursive: true });
    console.log(`console screenshots: ${out}`);
    // A local webhook receiver, and a remote policy that lets the server reach exactly it.
    target = await startTarget((_r, res) => res.end('ok'));
    const remote = testRemote([target.port]);
    t = await openTestDb('pglite');
    s = await startServer(t.db, { env: FAST_JOBS_ENV, deps: { now: () => Date.now() + offset, remote } });
    acme = await createTenant(t.db, 'Acme');
    // The workers `obscura serve` runs beside the API: video jobs and webhook deliveries.
    workers = await startTestWorkers({ t, srv: s, remote } as unknown as Harness);
    await addUser('owner@acme.test', 'owner');
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    owner = await newContext();
    page = await owner.newPage();
  });
  after(async () => {
    await browser?.close();
    await workers?.stop();
    await s?.close();
    await target?.close();
    await t?.close();
  });

  const addUser = (email: string, role: UserRole) => t.db.withTenant(acme.orgId, (trx) => createUser(trx, acme.orgId, { email, password: PASSWORD, role }, { actor: { type: 'cli' } }));
  const totp = (secret: string) => new TOTP({ secret: Secret.fromBase32(secret), digits: 6, period: 30, algorithm: 'SHA1' }).generate({ timestamp: Date.now() + offset });

  /** A fresh browser profile that records CSP violations and console errors as problems. */
  async function newContext(): Promise<BrowserContext> {
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    await ctx.addInitScript(() => {
      document.addEventListener('securitypolicyviolation', (e) => {
        const w = window as unknown as { cspViolations?: string[] };
        (w.cspViolations ??= []).push(`${e.violatedDirective} ${e.blockedURI}`);
      });
    });
    ctx.on('page', (p) => watch(p));
    return ctx;
  }
  function watch(p: Page): void {
    p.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
    p.on('dialog', (d) => void d.accept());
    p.on('console', (m) => {
      if (m.type() !== 'error') return;
      // The console shows API refusals (401 before sign-in, a forced 403) as messages: those are answers, not faults.
      if (m.text().startsWith('Failed to load resource') && new URL(m.location().url || s.url).pathname.startsWith('/v1/')) return;
      problems.push(`console: ${m.text()}`);
    });
  }

  /** CSP, console errors and axe on the page as it is, then screenshots at desktop and mobile width. */
  async function check(p: Page, name: string): Promise<void> {
    const csp = await p.evaluate(() => (window as unknown as { cspViolations?: string[] }).cspViolations ?? []);
    assert.deepEqual(csp, [], `CSP violations on ${name}`);
    assert.deepEqual(problems, [], `console errors on ${name}`);
    // Evaluated through the DevTools protocol, not a <script>: the page's CSP stays strict.
    await p.evaluate(AXE);
    // Both themes follow the system: axe runs on each (colour contrast differs between them).
    for (const colorScheme of ['light', 'dark'] as const) {
      await p.emulateMedia({ colorScheme });
      const violations = await p.evaluate(async () => {
        const axe = (window as unknown as { axe: { run: (ctx: Document, o: object) => Promise<{ violations: Array<{ id: string; impact: string; nodes: Array<{ target: string[] }> }> }> } }).axe;
        const r = await axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] } });
        return r.violations.map((v) => ({ id: v.id, impact: v.impact, targets: v.nodes.map((n) => n.target.join(' ')).slice(0, 3) }));
      });
      const serious = violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
      assert.deepEqual(serious, [], `axe on ${name} (${colorScheme})`);
      if (colorScheme === 'dark') await p.screenshot({ path: join(out, `${name}-dark-1280.png`), fullPage: true });
    }
    await p.emulateMedia({ colorScheme: 'light' });
    await p.screenshot({ path: join(out, `${name}-1280.png`), fullPage: true });
    await p.setViewportSize({ width: 375, height: 800 });
    const overflow = await p.evaluate(() => document.documentElement.scrollWidth);
    await p.screenshot({ path: join(out, `${name}-375.png`), fullPage: true });
    await p.setViewportSize({ width: 1280, height: 900 });
    assert.ok(overflow <= 375, `${name} is ${overflow} px wide at 375 px`);
  }

  const signIn = async (p: Page, email: string, code?: () => string) => {
    await p.goto(`${s.url}/console/`);
    await p.getByLabel('Email').fill(email);
    await p.getByLabel('Password').fill(PASSWORD);
    await p.getByRole('button', { name: 'Sign in' }).click();
    if (code) {
      await p.getByLabel('Authentication code').fill(code());
      await p.getByRole('button', { name: 'Verify and sign in' }).click();
    }
    await p.getByRole('heading', { name: 'Apps', level: 1 }).waitFor();
  };

  test('the console is served with a strict CSP, hashed immutable assets, and index.html for client-side routes', async () => {
    const index = await fetch(`${s.url}/console/members`);
    assert.equal(index.status, 200);
    const csp = index.headers.get('content-security-policy')!;
    for (const d of ["default-src 'self'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'", "object-src 'none'"]) assert.ok(csp.includes(d), csp);
    assert.ok(!csp.includes('unsafe-inline') && !csp.includes('unsafe-eval') && !csp.includes('http'), csp);
    const html = await index.text();
    assert.doesNotMatch(html, /<script>|<style|style=/, 'no inline script or style');
    const js = /src="(\/console\/assets\/app-[A-Z0-9]+\.js)"/.exec(html)![1]!;
    const asset = await fetch(s.url + js);
    assert.equal(asset.status, 200);
    assert.match(asset.headers.get('cache-control')!, /immutable/);
    assert.equal((await fetch(`${s.url}/console/assets/../../package.json`)).status, 404);
    assert.equal((await fetch(`${s.url}/console/assets/nope.js`)).status, 404);
    // Cross-origin isolation (the on-device engine needs SharedArrayBuffer) on the console only, not the API.
    for (const r of [index, asset]) assert.deepEqual([r.headers.get('cross-origin-opener-policy'), r.headers.get('cross-origin-embedder-policy')], ['same-origin', 'require-corp']);
    const apiRes = await fetch(`${s.url}/v1/operations`);
    assert.equal(apiRes.headers.get('cross-origin-embedder-policy'), null);
    assert.match(apiRes.headers.get('content-security-policy')!, /^default-src 'none';/, "the API keeps helmet's CSP");
    assert.doesNotMatch(apiRes.headers.get('content-security-policy')!, /eval/);
    // The engine's worker scripts alone may eval (embind); the SDK's page module keeps the console's policy.
    const worker = await fetch(`${s.url}/console/device/obscura-device-worker.js`);
    assert.equal(worker.status, 200);
    assert.match(worker.headers.get('content-security-policy')!, /script-src 'self' 'unsafe-eval' 'wasm-unsafe-eval'/);
    assert.equal(worker.headers.get('cross-origin-embedder-policy'), 'require-corp');
    const sdkModule = await fetch(`${s.url}/console/device/obscura-device.js`);
    assert.equal(sdkModule.headers.get('content-security-policy'), csp);
    const wasm = await fetch(`${s.url}/console/device/vips.wasm`, { headers: { 'if-none-match': worker.headers.get('etag')! } });
    assert.deepEqual([wasm.status, wasm.headers.get('content-type')], [200, 'application/wasm']);
    assert.equal((await fetch(`${s.url}/console/device/vips.wasm`, { headers: { 'if-none-match': wasm.headers.get('etag')! } })).status, 304);
    for (const bad of ['../../package.json', 'vips-heif.wasm', 'nope.js']) assert.equal((await fetch(`${s.url}/console/device/${bad}`)).status, 404, bad);
  });

  test('sign in, enrol TOTP with the QR page, sign in again with a code, create an app, create a key and see it once, roll it, revoke it: the revoked key gets 401', async () => {
    await page.goto(`${s.url}/console/`);
    await page.getByRole('heading', { name: 'Sign in to Obscura' }).waitFor();
    // A wrong password says what happened without saying whether the account exists.
    await page.getByLabel('Email').fill('nobody@acme.test');
    await page.getByLabel('Password').fill('wrong password here');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('alert').filter({ hasText: 'do not match an account' }).waitFor();
    problems.length = 0;
    await check(page, 'sign-in');

    await signIn(page, 'owner@acme.test');
    await page.getByRole('link', { name: 'Account' }).click();
    await page.getByRole('heading', { name: 'Your account' }).waitFor();
    await page.getByText('This session').waitFor();
    await check(page, 'account');
    await page.getByRole('link', { name: 'Not enabled: set it up' }).click();
    await page.getByRole('button', { name: 'Start enrolment' }).click();
    const secret = (await page.getByTestId('totp-secret').textContent())!.trim();
    // The QR code was drawn (client-side, from the otpauth URI).
    assert.ok(await page.$eval('canvas.qr', (c) => (c as HTMLCanvasElement).width >= 100));
    await check(page, 'mfa-enrol');
    await page.getByLabel('Code from the app').fill(totp(secret));
    await page.getByRole('button', { name: 'Confirm' }).click();
    await page.getByRole('heading', { name: 'Your account' }).waitFor();
    await page.getByText('enabled', { exact: true }).waitFor();

    await page.getByRole('button', { name: 'Sign out', exact: true }).click();
    await page.getByRole('heading', { name: 'Sign in to Obscura' }).waitFor();
    offset += 30_000; // the enrolment code's step is spent
    await signIn(page, 'owner@acme.test', () => totp(secret));

    await page.getByLabel('Name', { exact: true }).fill('Console app');
    await page.getByRole('button', { name: 'Create app' }).click();
    await page.getByRole('link', { name: 'Console app' }).click();
    await page.getByRole('heading', { name: 'Console app' }).waitFor();
    await page.getByText('No keys yet').waitFor();
    await check(page, 'app-empty');

    await page.getByLabel('Name', { exact: true }).fill('billing backend');
    await page.getByRole('button', { name: 'Create key' }).click();
    const shown = (await page.getByTestId('new-secret').textContent())!.trim();
    assert.match(shown, /^obs_sk_/);
    await page.getByText('You will not see it again').waitFor();
    await check(page, 'app-key-created');
    assert.equal((await api(s.url, 'GET', '/v1/whoami', { key: shown })).status, 200, 'the shown secret is the key');
    await page.getByRole('button', { name: 'I have stored it' }).click();
    await page.reload();
    await page.getByRole('cell', { name: 'billing backend', exact: true }).waitFor();
    assert.ok(!(await page.content()).includes(shown), 'the secret is never shown again');

    await page.getByLabel('Grace period for rolling billing backend').selectOption('3600');
    await page.getByRole('button', { name: 'Roll billing backend' }).click();
    const replacement = (await page.getByTestId('new-secret').textContent())!.trim();
    assert.notEqual(replacement, shown);
    assert.equal((await api(s.url, 'GET', '/v1/whoami', { key: shown })).status, 200, 'the old key works during its grace period');
    assert.equal((await api(s.url, 'GET', '/v1/whoami', { key: replacement })).status, 200);
    await page.getByRole('button', { name: 'I have stored it' }).click();

    // Revoke the replacement (the live row) and the rolled original.
    for (let i = 0; i < 2; i++) {
      await page.getByRole('button', { name: 'Revoke billing backend' }).first().click();
      // The list reloads before the next click (else the click could land on the row just revoked).
      await page.waitForFunction((n) => document.querySelectorAll('tr[data-state="revoked"]').length === n, i + 1);
    }
    await page.waitForFunction(() => document.querySelectorAll('tr[data-state="revoked"]').length === 2);
    for (const key of [replacement, shown]) {
      const r = await api(s.url, 'GET', '/v1/whoami', { key });
      assert.equal(r.status, 401);
      assert.equal(r.body.code, 'ERR_KEY_REVOKED');
    }
    await check(page, 'app-keys-revoked');
  });

  test('a page of another origin on the same host cannot use the session: its form post and fetch are refused and create nothing', async () => {
    const keysBefore = await superQuery(t, 'select count(*)::int as n from api_keys where org_id = $1', [acme.orgId]);
    const target = `${s.url}/v1/apps/${acme.appId}/keys`;
    const evil: Server = createServer((_req, res) => {
      res.setHeader('content-type', 'text/html');
      res.end(`<!doctype html><body><form id="f" method="POST" action="${target}" enctype="text/plain"><input name='{"kind":"secret","x":"' value='"}'></form>
<script>
fetch(${JSON.stringify(target)}, { method: 'POST', credentials: 'include', mode: 'no-cors', headers: { 'content-type': 'text/plain' }, body: '{"kind":"secret"}' })
  .finally(() => { document.body.dataset.fetched = '1'; document.getElementById('f').submit(); });
</script></body>`);
    });
    await new Promise<void>((r) => evil.listen(0, '127.0.0.1', r));
    try {
      const evilPage = await owner.newPage();
      const refused = evilPage.waitForResponse((r) => r.url() === target && r.request().method() === 'POST' && r.request().resourceType() === 'document');
      await evilPage.goto(`http://127.0.0.1:${(evil.address() as AddressInfo).port}/`);
      const answer = await refused;
      assert.equal(answer.status(), 403);
      assert.equal(((await answer.json()) as { code: string }).code, 'ERR_CSRF');
      // The browser did send the session cookie (same site): the refusal is the CSRF defence, not SameSite.
      assert.match((await answer.request().allHeaders()).cookie ?? '', /__Host-obscura_session=/);
      await evilPage.close();
    } finally {
      evil.close();
    }
    const keysAfter = await superQuery(t, 'select count(*)::int as n from api_keys where org_id = $1', [acme.orgId]);
    assert.equal(keysAfter[0]!.n, keysBefore[0]!.n);
    problems.length = 0; // the evil page's own refusals are not the console's
  });

  test('a viewer does not see the create-key action, and the API refuses it when forced from the console page (403 ERR_ROLE_FORBIDDEN)', async () => {
    await addUser('viewer@acme.test', 'viewer');
    const ctx = await newContext();
    const p = await ctx.newPage();
    await signIn(p, 'viewer@acme.test');
    assert.equal(await p.getByRole('button', { name: 'Create app' }).count(), 0);
    await p.getByRole('link', { name: 'Acme app' }).click();
    await p.getByText('Your role cannot see or manage keys').waitFor();
    assert.equal(await p.getByRole('heading', { name: 'Create a key' }).count(), 0);
    // The metadata policy in force is shown (the test server's default, OBSCURA_METADATA_POLICY=keep:
    // the app sets none), with no way to change it.
    assert.equal(await p.getByTestId('metadata-effective').textContent(), 'keep');
    await p.getByText("this server's default").waitFor();
    assert.equal(await p.getByRole('button', { name: 'Save metadata policy' }).count(), 0);
    await check(p, 'app-viewer');
    const forced = await p.evaluate(async (appId) => {
      const session = await (await fetch('/v1/console/session')).json();
      const r = await fetch(`/v1/apps/${appId}/keys`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-csrf-token': session.csrf_token }, body: JSON.stringify({ kind: 'secret' }) });
      return { status: r.status, body: await r.json() };
    }, acme.appId);
    assert.equal(forced.status, 403);
    assert.equal(forced.body.code, 'ERR_ROLE_FORBIDDEN');
    // The same for the app's other credentials and its presets: the server refuses, whatever the page shows.
    const more = await p.evaluate(async (appId) => {
      const session = await (await fetch('/v1/console/session')).json();
      const h = { 'content-type': 'application/json', 'x-csrf-token': session.csrf_token };
      const codes: Array<[string, number, string]> = [];
      for (const [method, path, body] of [
        ['POST', `/v1/apps/${appId}/oauth-clients`, '{}'],
        ['POST', `/v1/apps/${appId}/transform-keys`, undefined],
        ['PUT', `/v1/apps/${appId}/transform-presets/thumb`, '{"operations":"format:webp"}'],
      ] as const) {
        const r = await fetch(path, { method, headers: body ? h : { 'x-csrf-token': session.csrf_token }, body });
        codes.push([`${method} ${path}`, r.status, (await r.json()).code]);
      }
      return codes;
    }, acme.appId);
    for (const [what, status, code] of more) assert.deepEqual([what, status, code], [what, 403, 'ERR_ROLE_FORBIDDEN']);
    problems.length = 0;
    await ctx.close();
  });

  test('an owner invites a member by single-use link; the invitee sets a password and signs in as a developer', async () => {
    await page.getByRole('link', { name: 'Members' }).click();
    await page.getByRole('heading', { name: 'Members' }).waitFor();
    await page.getByLabel('Email').fill('new.dev@acme.test');
    await page.getByLabel('Role', { exact: true }).selectOption('developer');
    await page.getByRole('button', { name: 'Invite' }).click();
    const link = (await page.getByTestId('invite-url').textContent())!.trim();
    assert.ok(link.startsWith(`${s.url}/console/accept-invite#token=`), link);
    await page.locator('tr[data-member="new.dev@acme.test"]').getByText('invited').waitFor();
    await check(page, 'members');

    const ctx = await newContext();
    const p = await ctx.newPage();
    await p.goto(link);
    await p.getByRole('heading', { name: 'Accept your invitation' }).waitFor();
    await check(p, 'accept-invite');
    await p.getByLabel('New password').fill('violet-kettle-orbit-93');
    await p.getByLabel('Repeat the password').fill('violet-kettle-orbit-93');
    await p.getByRole('button', { name: 'Set password and join' }).click();
    await p.getByText('Your account is ready').waitFor();
    assert.ok(!p.url().includes('token='), 'the spent token left the address bar');
    await p.getByRole('link', { name: 'Sign in' }).click();
    await p.getByLabel('Email').fill('new.dev@acme.test');
    await p.getByLabel('Password').fill('violet-kettle-orbit-93');
    await p.getByRole('button', { name: 'Sign in' }).click();
    await p.getByRole('heading', { name: 'Apps', level: 1 }).waitFor();
    await p.getByText('new.dev@acme.test · developer · Acme').waitFor();
    // A second use of the link is refused.
    const again = await api(s.url, 'POST', '/v1/console/password-reset/confirm', { body: { token: new URL(link).hash.slice('#token='.length), password: 'another-long-passphrase-7' } });
    assert.equal(again.status, 400);
    assert.equal(again.body.code, 'ERR_RESET_TOKEN_INVALID');
    await ctx.close();

    // The reset-request page answers the same for any address.
    const q = await (await newContext()).newPage();
    await q.goto(`${s.url}/console/reset-password`);
    await q.getByLabel('Email').fill('nobody@nowhere.test');
    await q.getByRole('button', { name: 'Send reset link' }).click();
    await q.getByText('If an account uses this address').waitFor();
    await check(q, 'reset-password');
  });

  test('media: upload an image over tus with progress, see its thumbnail through a signed URL, the stored bytes are the file; the playground previews what the API returns; usage, the audit log with "verify chain" showing the API\'s head hash, webhooks', async () => {
    const png = await noisyPng(640, 480);
    await page.getByRole('link', { name: 'Media' }).click();
    await page.getByRole('heading', { name: 'Media', level: 1 }).waitFor();
    await page.getByText('No media yet').waitFor();
    await page.evaluate(() => {
      const w = window as unknown as { progress: number[] };
      w.progress = [];
      new MutationObserver(() => {
        const p = document.getElementById('upload-progress') as HTMLProgressElement | null;
        if (p) w.progress.push(p.value);
      }).observe(document.body, { subtree: true, attributes: true, childList: true });
    });
    await page.getByLabel('File').setInputFiles({ name: 'noise.png', mimeType: 'image/png', buffer: png });
    await page.getByRole('button', { name: 'Upload', exact: true }).click();
    await page.getByRole('status').filter({ hasText: 'noise.png uploaded' }).waitFor({ timeout: 60_000 });
    const progress = (await page.evaluate(() => (window as unknown as { progress: number[] }).progress)) as number[];
    assert.ok(progress.length >= 1, `progress shown: ${progress.join(', ')}`);
    const img = page.getByRole('img', { name: 'Preview of noise.png' });
    await img.waitFor();
    await page.waitForFunction(() => {
      const i = document.querySelector('img.thumb') as HTMLImageElement | null;
      return !!i && i.complete && i.naturalWidth > 0;
    });
    assert.deepEqual(await img.evaluate((i) => [(i as HTMLImageElement).naturalWidth, (i as HTMLImageElement).naturalHeight]), [640, 480]);
    const src = (await img.getAttribute('src'))!;
    assert.match(src, new RegExp(`^${s.url}/v1/files/ast_`));
    // The bytes behind the thumbnail's signed URL are the uploaded file, as the API lists it.
    const listed = await api(s.url, 'GET', '/v1/assets', { key: acme.key });
    assert.equal(listed.body.data[0].size, png.length);
    assert.equal(listed.body.data[0].filename, 'noise.png');
    assert.ok(Buffer.from(await (await fetch(src)).arrayBuffer()).equals(png));
    await check(page, 'media');

    // The playground: a form generated from GET /v1/operations; the preview is what the API returns.
    await page.getByRole('link', { name: 'Playground' }).click();
    await pickResizeToWebp(page);
    const ops = (await page.getByTestId('operations').textContent())!;
    assert.match(ops, /^resize:width=200\/format:(type=)?webp/);
    await page.getByRole('button', { name: 'Preview' }).click();
    await page.waitForFunction(() => {
      const i = document.querySelector('[data-testid="result"]') as HTMLImageElement | null;
      return !!i && i.complete && i.naturalWidth > 0;
    });
    assert.deepEqual(await page.getByTestId('result').evaluate((i) => [(i as HTMLImageElement).naturalWidth, (i as HTMLImageElement).naturalHeight]), [200, 150]);
    const viaApi = await fetch(`${s.url}/v1/process`, { method: 'POST', headers: { authorization: `Bearer ${acme.key}`, 'content-type': 'application/json' }, body: JSON.stringify({ input: { asset_id: listed.body.data[0].id }, operations: ops }) });
    assert.equal(viaApi.status, 200);
    const apiBytes = Buffer.from(await viaApi.arrayBuffer());
    // The page hashed the bytes it received (WebCrypto): the same bytes the API returns to curl.
    assert.equal(await page.getByTestId('result').getAttribute('data-sha256'), createHash('sha256').update(apiBytes).digest('hex'), 'the preview is the bytes the API returns');
    await check(page, 'playground');

    await page.getByRole('link', { name: 'Usage' }).click();
    await page.getByRole('heading', { name: 'Per month' }).waitFor();
    // Today's bar counts the requests this test made (the meter flushes before the daily report answers).
    const today = new Date().toISOString().slice(0, 10);
    await page.locator(`rect[data-day="${today}"]`).waitFor();
    assert.ok(Number(await page.locator(`rect[data-day="${today}"]`).getAttribute('data-value')) > 0);
    await page.locator('[data-testid="by-resolution"]').filter({ hasText: '≤ 240p' }).first().waitFor();
    await check(page, 'usage');

    await page.getByRole('link', { name: 'Audit log' }).click();
    await page.getByRole('cell', { name: 'key.revoke' }).first().waitFor();
    await page.getByRole('button', { name: 'Verify chain' }).click();
    const result = (await page.getByTestId('verify-result').textContent())!;
    const api_ = await api(s.url, 'GET', '/v1/audit/verify', { key: acme.key });
    assert.equal(api_.status, 200);
    assert.equal(api_.body.ok, true);
    assert.ok(result.includes('The chain holds'), result);
    assert.match(api_.body.head_hash, /^[0-9a-f]{64}$/);
    // Nothing was audited in between (reads are not audited): the page shows the same head.
    assert.ok(result.includes(api_.body.head_hash), result);
    await check(page, 'audit');

    await page.getByRole('link', { name: 'Webhooks' }).click();
    await page.getByText('No endpoints yet').waitFor();
    await check(page, 'webhooks');
  });

  test('the playground "On this device" switch runs the same operations in the browser (the SDK, licensed by a publishable key of the app): same size and format as the server, no image bytes sent, only licence and telemetry calls; server-only operations are disabled', async () => {
    await page.getByRole('link', { name: 'Playground', exact: true }).click();
    await pickResizeToWebp(page);
    await page.getByRole('button', { name: 'Preview' }).click();
    const loaded = (testid: string) =>
      page.waitForFunction((id) => {
        const i = document.querySelector(`[data-testid="${id}"]`) as HTMLImageElement | null;
        return !!i && i.complete && i.naturalWidth > 0;
      }, testid, { timeout: 60_000 });
    await loaded('result');
    const server = await page.getByTestId('result').evaluate((i) => [(i as HTMLImageElement).naturalWidth, (i as HTMLImageElement).naturalHeight]);
    await page.getByText('(image/webp').first().waitFor();

    // From here on, every request the page makes is recorded.
    const log: Array<{ url: string; method: string; body: Buffer | null }> = [];
    const record = (r: Request) => void log.push({ url: r.url(), method: r.method(), body: r.postDataBuffer() });
    page.on('request', record);
    try {
      await page.getByRole('switch', { name: 'On this device' }).check();
      await page.getByRole('button', { name: 'Preview' }).click();
      await loaded('result-device');
      const device = page.getByTestId('result-device');
      // The same output size and format as the server's for the same operation string.
      assert.deepEqual([await device.getAttribute('data-width'), await device.getAttribute('data-height'), await device.getAttribute('data-format')], [...server.map(String), 'webp']);
      assert.deepEqual(await device.evaluate((i) => [(i as HTMLImageElement).naturalWidth, (i as HTMLImageElement).naturalHeight]), server);
      // Operations the device cannot run are offered as server only (GET /v1/operations device:false).
      const ref = (await (await fetch(`${s.url}/v1/operations`)).json()) as { operations: Array<{ name: string; device: boolean; reads_assets: boolean }> };
      const serverOnly = ref.operations.filter((o) => !o.device && !o.reads_assets).map((o) => o.name);
      assert.ok(serverOnly.length > 0);
      for (const name of serverOnly) assert.equal(await page.locator(`#pg-add option[value="${name}"]`).isDisabled(), true, name);
      await check(page, 'playground-device');

      // An image from this device: processed here, never uploaded.
      const local = await noisyPng(320, 240);
      await page.getByLabel(/Or an image from this device/).setInputFiles({ name: 'local.png', mimeType: 'image/png', buffer: local });
      const mark = log.length;
      const telemetry = page.waitForRequest((r) => r.url() === `${s.url}/v1/telemetry`, { timeout: 30_000 });
      await page.getByRole('button', { name: 'Preview' }).click();
      await loaded('result-device');
      assert.deepEqual([await device.getAttribute('data-width'), await device.getAttribute('data-height')], ['200', '150']);
      await telemetry;
      const during = log.slice(mark).filter((r) => r.url.startsWith(s.url)).map((r) => `${r.method} ${new URL(r.url).pathname}`);
      assert.ok(during.length > 0 && during.every((r) => r === 'POST /v1/telemetry' || r === 'POST /v1/licenses/session'), `the run's only requests are licence and telemetry: ${during.join(', ')}`);
      // Since the switch went on: the key was minted, the SDK loaded, a licence session started; no request carried image bytes.
      const calls = new Set(log.filter((r) => r.url.startsWith(s.url)).map((r) => `${r.method} ${new URL(r.url).pathname.replace(/[0-9a-f-]{36}|ast_[0-9A-Za-z]{22}/, ':id')}`));
      for (const expected of ['POST /v1/apps/:id/keys', 'GET /v1/licenses/keys', 'POST /v1/licenses/session', 'GET /console/device/obscura-device-worker.js']) assert.ok(calls.has(expected), `${expected} in ${[...calls].join(', ')}`);
      assert.ok(![...calls].includes('POST /v1/process'), 'nothing was processed on the server');
      const uploaded = (await api(s.url, 'GET', '/v1/assets', { key: acme.key })).body.data[0];
      const original = Buffer.from(await (await fetch((await api(s.url, 'POST', `/v1/assets/${uploaded.id}/url`, { key: acme.key, body: {} })).body.url)).arrayBuffer());
      const carrying = log.filter((r) => r.body && r.body.length > 0 && carriesImage(r.body, [local, original])).map((r) => r.url);
      assert.deepEqual(carrying, [], 'no request body carries image bytes');
      // The minted key is publishable, holds licenses:session only, is pinned to the console's origin and expires.
      const minted = (await api(s.url, 'GET', `/v1/apps/${acme.appId}/keys?limit=100`, { key: acme.key })).body.data.find((k: { name: string }) => k.name === 'Console playground (on this device)');
      assert.deepEqual([minted.kind, minted.scopes, minted.allowed_origins], ['publishable', ['licenses:session'], [new URL(s.url).origin]]);
      assert.ok(Date.parse(minted.expires_at) - Date.now() <= 3_600_000);
    } finally {
      page.off('request', record);
      await page.getByRole('switch', { name: 'On this device' }).uncheck().catch(() => undefined);
    }
  });

  test("an app's OAuth clients, transform signing keys and presets: each secret is shown once and works; revoking or deleting stops it (token refused, transform URL 403)", async () => {
    const asset = await uploadBytes(await noisyPng(64, 48));
    await page.getByRole('link', { name: 'Apps', exact: true }).click();
    await page.getByRole('link', { name: 'Acme app' }).click();
    await page.getByRole('heading', { name: 'OAuth clients' }).waitFor();
    await page.getByText('No OAuth clients').waitFor();
    await page.getByText('No transform keys').waitFor();
    await page.getByText('No presets yet').waitFor();
    await check(page, 'app-access-empty');

    // The media metadata policy: the server's default while the app sets none (the test server's is
    // keep; the product's strip_all); an owner changes it through PATCH /v1/apps/{id}. It ends on keep,
    // so later byte-for-byte upload checks hold.
    const policy = async () => (await api(s.url, 'GET', `/v1/apps/${acme.appId}`, { key: acme.key })).body;
    assert.equal(await page.getByTestId('metadata-effective').textContent(), 'keep');
    assert.equal((await policy()).settings.metadata_policy, undefined);
    for (const choice of ['strip_all', 'keep']) {
      await page.getByLabel(/What uploaded images keep/).selectOption(choice);
      await page.getByRole('button', { name: 'Save metadata policy' }).click();
      await page.getByRole('status').filter({ hasText: `policy for new uploads is now ${choice}` }).waitFor();
      const app = await policy();
      assert.deepEqual([app.settings.metadata_policy, app.effective.metadata_policy], [choice, choice]);
      // The card shows the app as read again after the change.
      await page.getByTestId('metadata-effective').filter({ hasText: new RegExp(`^${choice}$`) }).waitFor();
    }

    // OAuth client: the secret once; it gets a token; revoked, it gets none.
    await page.getByLabel('Client name').fill('reporting');
    await page.locator('section[aria-labelledby="oauth-title"]').getByRole('checkbox', { name: 'assets:read' }).check();
    await page.getByRole('button', { name: 'Create OAuth client' }).click();
    const clientSecret = (await page.getByTestId('oauth-secret').textContent())!.trim();
    const clientId = (await page.getByTestId('oauth-client-id').textContent())!.trim();
    const token = (id: string, secret: string) =>
      fetch(`${s.url}/v1/oauth/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ grant_type: 'client_credentials', client_id: id, client_secret: secret }) });
    const issued = await token(clientId, clientSecret);
    assert.equal(issued.status, 200);
    const { access_token: accessToken, scope } = (await issued.json()) as { access_token: string; scope: string };
    assert.equal(scope, 'assets:read');
    assert.equal((await api(s.url, 'GET', '/v1/assets', { key: accessToken })).status, 200);
    await check(page, 'app-oauth-created');
    await page.getByRole('button', { name: 'I have stored it' }).click();

    // Transform key: the secret once; a URL signed with it serves the image; deleted, the URL is refused.
    await page.getByRole('button', { name: 'Create transform key' }).click();
    const tfSecret = (await page.getByTestId('transform-secret').textContent())!.trim();
    const kid = (await page.locator('[data-transform-key]').first().getAttribute('data-transform-key'))!;
    const path = signTransformPath({ id: kid, secret: tfSecret }, 'resize:width=32/format:png', asset, Math.floor(Date.now() / 1000) + 600);
    const served = await fetch(s.url + path);
    assert.equal(served.status, 200);
    assert.equal(served.headers.get('content-type'), 'image/png');
    await page.getByRole('button', { name: 'I have stored it' }).click();
    await page.reload();
    await page.locator(`[data-client="${clientId}"]`).waitFor();
    const html = await page.content();
    assert.ok(!html.includes(clientSecret) && !html.includes(tfSecret), 'secrets are never shown again');

    // Preset: saved through the page, read back through the API, deleted.
    await page.getByLabel('Preset name').fill('thumb');
    await page.getByLabel('Operations', { exact: true }).fill('resize:width=64/format:webp');
    await page.getByRole('button', { name: 'Save preset' }).click();
    await page.locator('[data-preset="thumb"]').waitFor();
    const presets = await api(s.url, 'GET', `/v1/apps/${acme.appId}/transform-presets`, { key: acme.key });
    assert.deepEqual(presets.body.data.map((p: { name: string }) => p.name), ['thumb']);
    await check(page, 'app-access');

    await page.getByRole('button', { name: 'Revoke OAuth client reporting' }).click();
    await page.locator(`[data-client="${clientId}"][data-state="revoked"]`).waitFor();
    const refused = await token(clientId, clientSecret);
    assert.equal(refused.status, 401);
    assert.equal(((await refused.json()) as { error: string }).error, 'invalid_client');
    await page.getByRole('button', { name: `Delete transform key ${kid}` }).click();
    await page.getByText('No transform keys').waitFor();
    assert.equal((await fetch(s.url + path)).status, 403, 'a URL signed with a deleted key is refused');
    await page.getByRole('button', { name: 'Delete preset thumb' }).click();
    await page.getByText('No presets yet').waitFor();
    assert.deepEqual((await api(s.url, 'GET', `/v1/apps/${acme.appId}/transform-presets`, { key: acme.key })).body.data, []);
  });

  test('webhooks: register an endpoint, "send test event" reaches it signed through the worker, the delivery log shows it, "redeliver" sends the same event again', async () => {
    target.requests.length = 0;
    await page.getByRole('link', { name: 'Webhooks' }).click();
    await page.getByText('No endpoints yet').waitFor();
    await page.getByLabel('URL').fill(`${target.origin}/hook`);
    await page.getByRole('button', { name: 'Register' }).click();
    await page.getByRole('button', { name: 'I have stored it' }).click();
    await page.getByRole('button', { name: `Send test event to ${target.origin}/hook` }).click();
    const row = page.locator('tr[data-event-type="webhook.test"][data-status="delivered"]');
    await row.waitFor({ timeout: 30_000 });
    assert.equal(target.requests.filter((r) => r.url === '/hook').length, 1);
    await row.getByRole('button', { name: /^Redeliver/ }).click();
    await page.locator('tr[data-event-type="webhook.test"][data-status="delivered"]').nth(1).waitFor({ timeout: 30_000 });
    const hooks = target.requests.filter((r) => r.url === '/hook');
    assert.equal(hooks.length, 2);
    assert.equal(hooks[1]!.body.toString(), hooks[0]!.body.toString(), 'a redelivery repeats the event');
    assert.equal(JSON.parse(hooks[0]!.body.toString()).type, 'webhook.test');
    await check(page, 'webhooks-log');
  });

  test('video: upload over tus with progress, the details page shows the probe, the playground runs a job with progress, and the download is the bytes the API serves for the output', async () => {
    const mp4 = await clip({ width: 160, height: 120, seconds: 1, fps: 10 });
    await page.getByRole('link', { name: 'Media', exact: true }).click();
    await page.getByRole('heading', { name: 'Media', level: 1 }).waitFor();
    await page.evaluate(() => {
      const w = window as unknown as { progress: number[] };
      w.progress = [];
      new MutationObserver(() => {
        const p = document.getElementById('upload-progress') as HTMLProgressElement | null;
        if (p) w.progress.push(p.value);
      }).observe(document.body, { subtree: true, attributes: true, childList: true });
    });
    await page.getByLabel('File').setInputFiles({ name: 'clip.mp4', mimeType: 'video/mp4', buffer: mp4 });
    await page.getByRole('button', { name: 'Upload', exact: true }).click();
    await page.getByRole('status').filter({ hasText: 'clip.mp4 uploaded' }).waitFor({ timeout: 60_000 });
    assert.ok(((await page.evaluate(() => (window as unknown as { progress: number[] }).progress)) as number[]).length >= 1, 'progress shown');
    const listed = await api(s.url, 'GET', '/v1/assets?type=video', { key: acme.key });
    const video = listed.body.data.find((a: { filename: string }) => a.filename === 'clip.mp4');
    assert.equal(video.size, mp4.length);

    await page.getByRole('link', { name: 'clip.mp4 details' }).click();
    await page.getByRole('heading', { name: 'Video probe' }).waitFor();
    assert.match((await page.getByTestId('asset-probe').textContent())!, /h264/);
    assert.equal((await page.getByTestId('asset-sha256').textContent())!.trim(), createHash('sha256').update(mp4).digest('hex'));
    await page.waitForFunction(() => (document.querySelector('video[data-testid="asset-preview"]') as HTMLVideoElement | null)?.readyState! >= 1);
    await check(page, 'asset-video');

    await page.getByRole('link', { name: 'Playground', exact: true }).click();
    await page.getByLabel('Input').selectOption(video.id);
    await page.getByLabel('Add an operation').selectOption('scale');
    await page.getByRole('button', { name: 'Add', exact: true }).click();
    await page.locator('fieldset[data-operation="scale"] input[id$="-height"]').fill('60');
    assert.equal(await page.getByTestId('operations').textContent(), 'scale:height=60');
    await page.evaluate(() => {
      const w = window as unknown as { notes: string[] };
      w.notes = [];
      new MutationObserver(() => {
        const p = document.querySelector('label[for="pg-progress"]');
        if (p?.textContent) w.notes.push(p.textContent);
      }).observe(document.body, { subtree: true, characterData: true, childList: true });
    });
    await page.getByRole('button', { name: 'Process video' }).click();
    const result = page.locator('video[data-testid="result"]');
    await result.waitFor({ timeout: 90_000 });
    const notes = (await page.evaluate(() => (window as unknown as { notes: string[] }).notes)) as string[];
    assert.ok(notes.some((n) => /Queued|Processing/.test(n)), `job progress shown: ${notes.join(' | ')}`);
    const outId = (await result.getAttribute('data-asset-id'))!;
    const job = (await api(s.url, 'GET', '/v1/jobs?limit=5', { key: acme.key })).body.data.find((j: { output: { asset_id: string } }) => j.output.asset_id === outId);
    assert.equal(job.status, 'succeeded');
    assert.equal(job.operations, 'scale:height=60');
    const download = (await page.getByTestId('download').getAttribute('href'))!;
    const got = Buffer.from(await (await fetch(download)).arrayBuffer());
    const signed = await api(s.url, 'POST', `/v1/assets/${outId}/url`, { key: acme.key, body: {} });
    const viaApi = Buffer.from(await (await fetch(signed.body.url)).arrayBuffer());
    assert.ok(got.length > 0 && got.equals(viaApi), 'the download is the output the API serves');
    await page.getByTestId('snippet').filter({ hasText: '/v1/jobs' }).waitFor();
    await check(page, 'playground-video');
  });

  test('asset details of an image: the facts are the API\'s, the download is the file, and delete removes it (404 from the API)', async () => {
    const png = await noisyPng(120, 90);
    const id = await uploadBytes(png, 'details.png');
    await page.getByRole('link', { name: 'Media', exact: true }).click();
    await page.getByRole('link', { name: 'details.png details' }).click();
    await page.getByRole('heading', { name: 'details.png' }).waitFor();
    assert.equal((await page.getByTestId('asset-sha256').textContent())!.trim(), createHash('sha256').update(png).digest('hex'));
    assert.match((await page.getByTestId('asset-facts').textContent())!, /120×90/);
    const href = (await page.getByRole('link', { name: 'Download' }).getAttribute('href'))!;
    assert.ok(Buffer.from(await (await fetch(href)).arrayBuffer()).equals(png));
    await page.waitForFunction(() => (document.querySelector('img[data-testid="asset-preview"]') as HTMLImageElement | null)?.naturalWidth === 120);
    await page.getByText('No metadata').waitFor();
    await check(page, 'asset-image');
    await page.getByRole('button', { name: 'Delete', exact: true }).click();
    await page.getByRole('heading', { name: 'Media', level: 1 }).waitFor();
    const gone = await api(s.url, 'GET', `/v1/assets/${id}`, { key: acme.key });
    assert.equal(gone.status, 404);
    assert.equal(gone.body.code, 'ERR_NOT_FOUND');
  });

  test('keyboard only: from the focused page heading Shift+Tab walks the navigation back to "Skip to content", Tab walks forward, and Enter on a link opens that page with its heading focused', async () => {
    await page.goto(`${s.url}/console/`);
    await page.getByRole('heading', { name: 'Apps', level: 1 }).waitFor();
    // A page opens with its heading focused; Shift+Tab walks back through the navigation to the skip link.
    const focused = () => page.evaluate(() => document.activeElement?.textContent?.trim() ?? '');
    assert.equal(await focused(), 'Apps');
    const back: string[] = [];
    for (let i = 0; i < 15 && back.at(-1) !== 'Skip to content'; i++) {
      await page.keyboard.press('Shift+Tab');
      back.push(await focused());
    }
    assert.deepEqual(back, ['Sign out', 'Account', 'Members', 'Audit log', 'Webhooks', 'Usage', 'Playground', 'Media', 'Apps', 'Skip to content']);
    for (let i = 0; i < 4; i++) await page.keyboard.press('Tab');
    assert.equal(await focused(), 'Usage');
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { name: 'Usage', level: 1 }).waitFor();
    assert.equal(await page.evaluate(() => document.activeElement?.tagName), 'H1', 'focus moves to the new page heading');
  });

  /** Uploads bytes with the tenant's key (POST /v1/assets); returns the asset id. */
  async function uploadBytes(bytes: Buffer, filename = 'fixture.png'): Promise<string> {
    const r = await fetch(`${s.url}/v1/assets?filename=${encodeURIComponent(filename)}`, { method: 'POST', headers: { authorization: `Bearer ${acme.key}`, 'content-type': 'application/octet-stream' }, body: new Uint8Array(bytes) });
    assert.equal(r.status, 201, await r.clone().text());
    return ((await r.json()) as { id: string }).id;
  }
});
