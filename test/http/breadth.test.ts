/**
 * Breadth matrices over every route the app registers, through `app.inject()` (issue 10, item 9;
 * fastify's testing guide): one in-process request per case, no listening port, on the embedded PGlite
 * database. The routes come from the app's own OpenAPI document (test/support/inject.ts), so a route
 * added later is in every matrix without editing this file. The listening end-to-end tests beside it
 * (scopes, errors, tenancy, …) prove the same promises on the wire for chosen routes.
 *
 * 1. No credential: every route that takes one answers 401 with an authentication code; the routes
 *    that take none (UNAUTHENTICATED, explained in test/support/inject.ts) never answer 401.
 * 2. A valid credential and a malformed JSON body, or a body of the wrong type: 400 on every route that
 *    takes a JSON body, and not one row written anywhere.
 * 3. A publishable key: 403 on every route it must not call; PUBLISHABLE_MAY_CALL lists the others.
 * 4. Every error response in these matrices has the problem+json shape (test/support/problem.ts).
 * 5. Unknown routes and wrong methods on known paths: 404 problem+json, never HTML or a stack.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { LightMyRequestResponse } from 'fastify';
import { superQuery } from '../support/db.js';
import { createTenant, mintKey, type Tenant } from '../support/server.js';
import { injectedApp, injectRoute, takesBody, urlOf, UNAUTHENTICATED, CONSOLE_PREFIX, CONSOLE_SESSION_ROUTES, type InjectedApp, type Route } from '../support/inject.js';
import { problemIssues } from '../support/problem.js';
import { createUser } from '../../src/tenants/index.js';
import { SESSION_COOKIE } from '../../src/auth/console.js';

/** Console routes used before there is a session (they authenticate the user themselves). */
const CONSOLE_PRE_SESSION: Record<string, string> = {
  'POST /v1/console/login': 'signs a user in with email and password (and TOTP)',
  'POST /v1/console/password-reset': 'asks for a reset link by email',
  'POST /v1/console/password-reset/confirm': 'sets a new password with the emailed one-time token',
};

/**
 * The OAuth token endpoint answers RFC 6749 §5.2 errors (`application/json` with `error`,
 * `error_description`, plus our `code`), not problem+json: OAuth clients parse that shape. A missing
 * client credential there is `invalid_client`, the client's own secret, not an API credential.
 */
const OAUTH_TOKEN = 'POST /v1/oauth/token';

/**
 * What a publishable key (obs_pk_…, shipped inside web pages, holds only `assets:write`, origin-checked)
 * may call, and why. Everything else answers it 403. The upload routes refuse it with
 * ERR_ROLE_FORBIDDEN unless the app sets `allow_browser_uploads` (src/http/routes/assets.ts,
 * assertUploadAllowed).
 */
const PUBLISHABLE_MAY_CALL: Record<string, string> = {
  'GET /v1/whoami': 'describes the calling credential itself (any valid credential)',
  'POST /v1/assets': 'browser upload of a small file, when the app allows browser uploads',
  'POST /v1/assets/upload-url': 'presigned direct upload from the browser, when the app allows browser uploads',
  'POST /v1/assets/upload-url/{id}/complete': 'finalises that presigned upload, when the app allows browser uploads',
  'POST /v1/uploads': 'resumable (tus) browser upload: create, when the app allows browser uploads',
  'HEAD /v1/uploads/{id}': 'tus: read the offset to resume, when the app allows browser uploads',
  'PATCH /v1/uploads/{id}': 'tus: send bytes, when the app allows browser uploads',
  'DELETE /v1/uploads/{id}': 'tus: abandon the upload, when the app allows browser uploads',
};
/** Routes that only refuse a publishable key in their handler: a valid body, so the refusal is not a 400 first. */
const VALID_BODY: Record<string, unknown> = {
  'POST /v1/assets/upload-url': { content_type: 'image/png', content_length: 1000 },
};
const ORIGIN = 'https://shop.example';
const PASSWORD = 'correct horse battery staple';

/** The JSON bodies every route that takes one must refuse, with why. */
const BAD_BODIES: Array<[string, string]> = [
  ['{"name": ', 'malformed JSON'],
  ['{"a":1}}', 'trailing garbage'],
  ['[]', 'an array'],
  ['"x"', 'a string'],
  ['42', 'a number'],
  ['true', 'a boolean'],
];

const isConsole = (r: Route) => r.path.startsWith(CONSOLE_PREFIX) || CONSOLE_SESSION_ROUTES.includes(r.id);
const codeOf = (res: LightMyRequestResponse): string | undefined => {
  try {
    return (JSON.parse(res.payload) as { code?: string }).code;
  } catch {
    return undefined;
  }
};
const summary = (r: Route, res: LightMyRequestResponse) => `${r.id}: ${res.statusCode} ${codeOf(res) ?? res.payload.slice(0, 60)}`;

describe('the problem+json check the matrices share (test/support/problem.ts)', () => {
  const res = (statusCode: number, type: string, payload: unknown) => ({ statusCode, headers: { 'content-type': type }, payload: typeof payload === 'string' ? payload : JSON.stringify(payload) });
  const good = { type: 'urn:obscura:error:ERR_NOT_FOUND', title: 'Not Found', status: 404, detail: 'No such route.', code: 'ERR_NOT_FOUND', request_id: 'r' };

  test('accepts a problem document as the root handler renders it, and names each way a response is not one', () => {
    assert.deepEqual(problemIssues(res(404, 'application/problem+json; charset=utf-8', good), { status: 404, codes: ['ERR_NOT_FOUND'] }), []);
    const cases: Array<[ReturnType<typeof res>, RegExp]> = [
      [res(404, 'text/html', '<html><body>Not Found</body></html>'), /content-type.*HTML body/s],
      [res(500, 'application/problem+json', { ...good, status: 500, code: 'ERR_INTERNAL', type: 'urn:obscura:error:ERR_INTERNAL', detail: 'TypeError: x is undefined\n    at handler (/app/dist/src/http/routes/assets.js:12:5)' }), /leaks internals/],
      [res(404, 'application/problem+json', { ...good, status: 400 }), /body status 400 ≠ HTTP 404/],
      [res(404, 'application/problem+json', { ...good, code: 'FST_ERR_NOT_FOUND' }), /not in src\/errors\.ts/],
      [res(403, 'application/problem+json', { ...good, status: 403 }), /code ERR_NOT_FOUND is status 404/],
      [res(400, 'application/json', { error: 'Bad Request', code: 'FST_ERR_BAD_URL', statusCode: 400 }), /content-type "application\/json"/],
      [res(200, 'application/problem+json', good), /not an error/],
    ];
    for (const [r, issue] of cases) assert.match(problemIssues(r).join('; '), issue, r.payload);
  });
});

describe('breadth: every route through app.inject(), no listening port', () => {
  let a: InjectedApp;
  let tenant: Tenant;
  let publishable: string;
  let session: { cookie: string; csrf: string };

  /** Every table's row count (the write check: a refused request must change none of them). */
  const rowCounts = async (): Promise<Record<string, number>> => {
    const tables = await superQuery(a.t, "select schemaname || '.' || tablename as t from pg_tables where schemaname not in ('pg_catalog', 'information_schema') order by 1");
    const out: Record<string, number> = {};
    for (const { t } of tables) out[t as string] = Number((await superQuery(a.t, `select count(*)::int as n from ${t as string}`))[0]!.n);
    return out;
  };

  /** Headers of a valid credential for the route: the tenant's full secret key, or an owner's console session. */
  const credentialFor = (r: Route): Record<string, string> => (isConsole(r) ? { cookie: session.cookie, 'x-csrf-token': session.csrf } : { authorization: `Bearer ${tenant.key}` });

  before(async () => {
    a = await injectedApp();
    tenant = await createTenant(a.t.db, 'Breadth');
    publishable = (await mintKey(a.t.db, tenant, { kind: 'publishable', name: 'site', allowedOrigins: [ORIGIN] })).secret;
    await a.t.db.withTenant(tenant.orgId, (trx) => createUser(trx, tenant.orgId, { email: 'owner@breadth.test', password: PASSWORD, role: 'owner' }, { actor: { type: 'cli' } }));
    const login = await a.app.inject({ method: 'POST', url: '/v1/console/login', payload: { email: 'owner@breadth.test', password: PASSWORD } });
    assert.equal(login.statusCode, 200, login.payload);
    const cookie = login.cookies.find((c) => c.name === SESSION_COOKIE);
    assert.ok(cookie, 'the login set a session cookie');
    session = { cookie: `${SESSION_COOKIE}=${cookie.value}`, csrf: login.json().csrf_token };
  });
  after(async () => {
    await a?.close();
  });

  test('every route is in the matrices: it takes an API credential, a console session, or is on the explained list of routes without one', () => {
    assert.ok(a.routes.length > 40, `only ${a.routes.length} routes found`);
    const unclassified = a.routes.filter((r) => r.scopes === null && !(r.id in UNAUTHENTICATED) && !isConsole(r)).map((r) => r.id);
    assert.deepEqual(unclassified, []);
    for (const id of [...Object.keys(CONSOLE_PRE_SESSION), OAUTH_TOKEN, ...Object.keys(PUBLISHABLE_MAY_CALL), ...Object.keys(VALID_BODY)]) {
      assert.ok(a.routes.some((r) => r.id === id), `${id} is listed here but the app has no such route`);
    }
    assert.ok(a.routes.filter((r) => r.jsonBody).length >= 15, 'the OpenAPI document declares the JSON request bodies');
  });

  test('without a credential, every route that takes one answers 401 problem+json with an authentication code and no stack', async () => {
    const failures: string[] = [];
    let checked = 0;
    for (const r of a.routes) {
      if (r.scopes === null && (!isConsole(r) || r.id in CONSOLE_PRE_SESSION)) continue;
      const res = await injectRoute(a.app, r, tenant.appId, { headers: { 'tus-resumable': '1.0.0', ...(takesBody(r) ? { 'content-type': 'application/json' } : {}) }, ...(takesBody(r) ? { payload: '{}' } : {}) });
      const issues = problemIssues(res, { method: r.method, status: 401, ...(r.method === 'HEAD' ? {} : { codes: ['ERR_AUTH_MISSING'] }) });
      if (!String(res.headers['www-authenticate'] ?? '').startsWith('Bearer') && !isConsole(r)) issues.push('no WWW-Authenticate: Bearer');
      if (issues.length) failures.push(`${summary(r, res)}: ${issues.join('; ')}`);
      checked++;
    }
    assert.deepEqual(failures, []);
    assert.ok(checked > 40, `only ${checked} routes checked`);
  });

  test('routes that take no API credential never answer 401 to a missing one, and their errors are problem+json', async () => {
    const failures: string[] = [];
    for (const r of a.routes) {
      if (!(r.id in UNAUTHENTICATED) || isConsole(r)) continue;
      const res = await injectRoute(a.app, r, tenant.appId, { headers: { 'tus-resumable': '1.0.0', ...(takesBody(r) ? { 'content-type': 'application/json' } : {}) }, ...(takesBody(r) ? { payload: '{}' } : {}) });
      if (res.statusCode === 401 || res.statusCode >= 500) failures.push(summary(r, res));
      else if (res.statusCode >= 400 && r.id !== OAUTH_TOKEN) {
        const issues = problemIssues(res, { method: r.method });
        if (issues.length) failures.push(`${summary(r, res)}: ${issues.join('; ')}`);
      }
    }
    for (const r of a.routes.filter((x) => x.id in CONSOLE_PRE_SESSION)) {
      const res = await injectRoute(a.app, r, tenant.appId, { headers: { 'content-type': 'application/json' }, payload: '{}' });
      // Without a session they validate the body: the missing fields, not a missing credential.
      const issues = problemIssues(res, { status: 400, codes: ['ERR_VALIDATION'] });
      if (issues.length) failures.push(`${summary(r, res)}: ${issues.join('; ')}`);
    }
    assert.deepEqual(failures, []);
  });

  test('the OAuth token endpoint answers RFC 6749 §5.2 JSON errors with a stable code, and a request without a client credential is invalid_client', async () => {
    const noClient = await a.app.inject({ method: 'POST', url: '/v1/oauth/token', headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: 'grant_type=client_credentials' });
    assert.equal(noClient.statusCode, 401);
    assert.match(String(noClient.headers['content-type']), /^application\/json/);
    assert.equal(noClient.json().error, 'invalid_client');
    assert.equal(noClient.json().code, 'ERR_OAUTH_INVALID_CLIENT');
    const json = await a.app.inject({ method: 'POST', url: '/v1/oauth/token', headers: { 'content-type': 'application/json' }, payload: '{}' });
    assert.equal(json.statusCode, 400);
    assert.equal(json.json().error, 'invalid_request');
    assert.equal(typeof json.json().code, 'string');
    assert.doesNotMatch(json.payload, /node_modules|\.js:\d+|\n\s+at /);
  });

  test('with a valid credential, every route that takes a JSON body refuses malformed JSON and a body of the wrong type with 400 problem+json, and writes nothing', async () => {
    const failures: string[] = [];
    const routes = a.routes.filter((r) => r.jsonBody && r.id !== OAUTH_TOKEN);
    // The usage meter writes its buffered counts every 2 s: flush them now and after the matrix, so
    // the comparison does not depend on when its timer fires.
    await a.built.perimeter.meter.flush();
    const before = await rowCounts();
    for (const r of routes) {
      for (const [payload, what] of BAD_BODIES) {
        const res = await injectRoute(a.app, r, tenant.appId, { headers: { ...credentialFor(r), 'content-type': 'application/json' }, payload });
        const issues = problemIssues(res, { method: r.method, status: 400, codes: ['ERR_BAD_REQUEST', 'ERR_VALIDATION'] });
        if (issues.length) failures.push(`${summary(r, res)} for ${what}: ${issues.join('; ')}`);
      }
    }
    // A malformed JSON body on a route that declares none (no body, or raw bytes) is refused too, never taken.
    for (const r of a.routes.filter((x) => takesBody(x) && !x.jsonBody && x.id !== OAUTH_TOKEN && x.scopes !== null)) {
      const res = await injectRoute(a.app, r, tenant.appId, { headers: { ...credentialFor(r), 'content-type': 'application/json', 'tus-resumable': '1.0.0' }, payload: BAD_BODIES[0]![0] });
      const issues = problemIssues(res, { method: r.method, codes: ['ERR_BAD_REQUEST', 'ERR_UNSUPPORTED_MEDIA_TYPE'] });
      if (issues.length) failures.push(`${summary(r, res)} for malformed JSON on a route without a JSON body: ${issues.join('; ')}`);
    }
    assert.deepEqual(failures, []);
    assert.ok(routes.length >= 15, `only ${routes.length} routes take a JSON body`);
    await a.built.perimeter.meter.flush();
    const after = await rowCounts();
    // Every answered API request is metered, refused or not (src/usage/meter.ts): only its traffic
    // counters may have moved, never a metric of work done (exports, pixels, processing time).
    const metrics = await superQuery(a.t, 'select distinct metric from usage_counters where value > 0 order by 1');
    assert.deepEqual(metrics.map((m) => m.metric).filter((m) => !['requests', 'bytes_in', 'bytes_out'].includes(m as string)), [], 'only traffic was metered');
    const daily = await superQuery(a.t, 'select distinct metric from usage_days where value > 0 order by 1');
    assert.deepEqual(daily.map((m) => m.metric).filter((m) => !['requests', 'bytes_in', 'bytes_out'].includes(m as string)), [], 'only traffic was metered per day');
    // The per-day twin of usage_counters (migration 0019) gains a row per (day, metric) traffic counter.
    for (const table of ['public.usage_counters', 'public.usage_days']) {
      delete after[table];
      delete before[table];
    }
    // The one row a refused request may leave: the org's data key, created on its first upload attempt
    // (keyring.current, before the bytes are sniffed). It holds no client data, and the org's first
    // accepted upload would create the same row.
    assert.ok(after['public.tenant_keys']! <= Math.max(before['public.tenant_keys']!, 1), 'at most the one data key of the org');
    delete after['public.tenant_keys'];
    delete before['public.tenant_keys'];
    assert.deepEqual(after, before, 'no row was written by a refused body');
  });

  test('a valid body is taken by the same routes (the legitimate twin): an app is created and audited', async () => {
    const before = await rowCounts();
    const res = await a.app.inject({ method: 'POST', url: '/v1/apps', headers: { authorization: `Bearer ${tenant.key}`, 'content-type': 'application/json' }, payload: { name: 'twin' } });
    assert.equal(res.statusCode, 201, res.payload);
    const after = await rowCounts();
    assert.equal(after['public.apps'], before['public.apps']! + 1);
    assert.ok(after['public.audit_log']! > before['public.audit_log']!, 'the creation is audited');
  });

  test('a publishable key is refused with 403 problem+json on every route it must not call, and calls the listed ones only where the app allows browser uploads', async () => {
    const pkCall = (r: Route) =>
      injectRoute(a.app, r, tenant.appId, {
        // Its own origin, so a refusal is about the kind of key, not where it is used from.
        headers: { authorization: `Bearer ${publishable}`, origin: ORIGIN, 'tus-resumable': '1.0.0', ...(takesBody(r) ? { 'content-type': 'application/json' } : {}) },
        ...(takesBody(r) ? { payload: JSON.stringify(VALID_BODY[r.id] ?? {}) } : {}),
      });
    const bearerRoutes = a.routes.filter((r) => r.scopes !== null);
    const setBrowserUploads = async (on: boolean) => {
      const res = await a.app.inject({ method: 'PATCH', url: `/v1/apps/${tenant.appId}`, headers: { authorization: `Bearer ${tenant.key}` }, payload: { settings: { allow_browser_uploads: on } } });
      assert.equal(res.statusCode, 200, res.payload);
    };
    const failures: string[] = [];
    for (const on of [false, true]) {
      await setBrowserUploads(on);
      for (const r of bearerRoutes) {
        const res = await pkCall(r);
        const allowed = r.id === 'GET /v1/whoami' || (on && r.id in PUBLISHABLE_MAY_CALL);
        if (allowed) {
          // Past the key check: the handler answers (placeholder ids give 404/409, empty bodies 400).
          if (res.statusCode === 401 || res.statusCode === 403 || res.statusCode >= 500) failures.push(`browser uploads ${on}: ${summary(r, res)} (should be allowed)`);
        } else {
          const issues = problemIssues(res, { method: r.method, status: 403, ...(r.method === 'HEAD' ? {} : { codes: ['ERR_SCOPE_MISSING', 'ERR_ROLE_FORBIDDEN'] }) });
          if (issues.length) failures.push(`browser uploads ${on}: ${summary(r, res)}: ${issues.join('; ')}`);
        }
      }
    }
    await setBrowserUploads(false);
    assert.deepEqual(failures, []);
  });

  test('unknown routes and wrong methods on known paths answer 404 problem+json (ERR_NOT_FOUND), never HTML or a stack', async () => {
    const failures: string[] = [];
    const unknown = ['/nope', '/v1', '/v1/', '/v1/nope', '/v1/assets/x/y/z', `/v1/apps/${tenant.appId}/nope`, '/.env', '/v1/%2e%2e/%2e%2e/etc/passwd', '/docs/nope', '/index.html', '/%00', '/v1/assets%2Fx'];
    for (const url of unknown) {
      for (const method of ['GET', 'POST', 'DELETE'] as const) {
        for (const auth of [{}, { authorization: `Bearer ${tenant.key}` }]) {
          const res = await a.app.inject({ method, url, headers: auth });
          const issues = problemIssues(res, { status: 404, codes: ['ERR_NOT_FOUND'] });
          if (issues.length) failures.push(`${method} ${url}: ${res.statusCode} ${issues.join('; ')}`);
        }
      }
    }
    /** Whether some route of `method` takes `url` (GET /v1/assets/upload-url is GET /v1/assets/{id}). */
    const routed = (method: string, url: string) =>
      a.routes.some((r) => r.method === method && new RegExp(`^${r.path.replace(/\{\*\}/g, '.*').replace(/\{[^}]+\}/g, '[^/]+')}$`).test(url));
    let wrong = 0;
    for (const path of new Set(a.routes.map((r) => r.path))) {
      const url = urlOf(a.routes.find((r) => r.path === path)!, tenant.appId);
      for (const method of ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'] as const) {
        if (routed(method, url)) continue;
        wrong++;
        for (const auth of [{}, { authorization: `Bearer ${tenant.key}` }]) {
          const res = await a.app.inject({ method, url, headers: auth });
          // The app answers an unrouted method like an unknown route (no 405 today).
          const issues = problemIssues(res, { status: 404, codes: ['ERR_NOT_FOUND'] });
          if (issues.length) failures.push(`${method} ${path}: ${res.statusCode} ${issues.join('; ')}`);
        }
      }
    }
    assert.deepEqual(failures, []);
    assert.ok(wrong > 50, `only ${wrong} wrong methods tried`);
  });

  test('an OPTIONS request with an allowed Origin but no Access-Control-Request-Method answers 400 problem+json, not the CORS plugin\'s text; a real preflight answers 204', async () => {
    const failures: string[] = [];
    for (const url of ['/v1/uploads', '/v1/assets', '/v1/nope']) {
      const res = await a.app.inject({ method: 'OPTIONS', url, headers: { origin: ORIGIN } });
      const issues = problemIssues(res, { status: 400, codes: ['ERR_BAD_REQUEST'] });
      if (issues.length) failures.push(`OPTIONS ${url}: ${res.statusCode} ${issues.join('; ')}`);
    }
    assert.deepEqual(failures, []);
    const preflight = await a.app.inject({ method: 'OPTIONS', url: '/v1/uploads', headers: { origin: ORIGIN, 'access-control-request-method': 'POST' } });
    assert.equal(preflight.statusCode, 204);
    assert.equal(preflight.headers['access-control-allow-origin'], ORIGIN);
  });

  test('a URL the router cannot read (malformed percent-encoding, an over-long path segment) answers 400 problem+json ERR_BAD_REQUEST, not the framework\'s JSON', async () => {
    const failures: string[] = [];
    for (const url of ['/%ff', '/v1/assets/%E0%A4%A', `/v1/assets/${'a'.repeat(150)}`, `/v1/jobs/${'j'.repeat(101)}`]) {
      for (const auth of [{}, { authorization: `Bearer ${tenant.key}` }]) {
        const res = await a.app.inject({ method: 'GET', url, headers: auth });
        const issues = problemIssues(res, { status: 400, codes: ['ERR_BAD_REQUEST'] });
        if (issues.length) failures.push(`GET ${url.slice(0, 40)}: ${res.statusCode} ${issues.join('; ')}`);
      }
    }
    assert.deepEqual(failures, []);
    // The legitimate twin: a path parameter of a real length reaches its route.
    const twin = await a.app.inject({ method: 'GET', url: `/v1/apps/${tenant.appId}`, headers: { authorization: `Bearer ${tenant.key}` } });
    assert.equal(twin.statusCode, 200);
  });
});
