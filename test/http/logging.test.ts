import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { openTestDb } from '../support/db.js';
import { startServer, createTenant, api } from '../support/server.js';
import { redactUrl } from '../../src/http/logging.js';

test('redactUrl removes signatures, tokens and keys from URLs', () => {
  assert.equal(redactUrl('/d/ast_1?exp=1&sig=abcdef&kid=k1'), '/d/ast_1?exp=1&sig=[redacted]&kid=k1');
  assert.equal(redactUrl('/t/SIGNATURE123/resize:width=4/ast_1'), '/t/[redacted]/resize:width=4/ast_1');
  assert.equal(redactUrl('/x?X-Amz-Signature=aa&X-Amz-Credential=bb&ok=1'), '/x?X-Amz-Signature=[redacted]&X-Amz-Credential=[redacted]&ok=1');
  assert.equal(redactUrl('/oops/obs_sk_abcDEF123'), '/oops/obs_sk_[redacted]');
});

test('request logs never contain the API key, cookies or URL signatures, but do contain the request', async () => {
  const t = await openTestDb('pglite');
  const lines: string[] = [];
  const stream = new PassThrough();
  stream.on('data', (d) => lines.push(String(d)));
  const s = await startServer(t.db, { deps: { logger: { stream, level: 'info' } } });
  try {
    const a = await createTenant(t.db, 'Log');
    await api(s.url, 'GET', '/v1/apps?sig=SIGNATURE-SECRET', { key: a.key, headers: { cookie: 'session=COOKIE-SECRET' } });
    await api(s.url, 'GET', '/v1/apps', { key: a.key.slice(0, -1) + (a.key.endsWith('x') ? 'y' : 'x') });
    await new Promise((r) => setTimeout(r, 50));
    const all = lines.join('');
    assert.ok(all.includes('/v1/apps'), 'requests are logged');
    assert.ok(all.includes('ERR_KEY_CHECKSUM'), 'refusals are logged with their code');
    for (const secret of [a.key, a.key.slice(7, 30), 'SIGNATURE-SECRET', 'COOKIE-SECRET']) assert.ok(!all.includes(secret), `log contains ${secret.slice(0, 12)}`);
  } finally {
    await s.close();
    await t.close();
  }
});
