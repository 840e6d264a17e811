import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { DB_KINDS, superQuery } from '../support/db.js';
import { masterKeysFor } from '../support/server.js';
import { quadrants } from '../fixtures/make.js';
import { rewrapAll } from '../../src/crypto/keyring.js';
import { WRAPPED_COLUMNS } from '../../src/main.js';
import { masterKeyId, unwrapKey } from '../../src/crypto/keywrap.js';
import type { MasterKeys } from '../../src/crypto/master.js';
import { putUrlContext } from '../../src/jobs/jobs.js';
import { webhookSecretContext } from '../../src/jobs/webhooks.js';
import { transformKeyContext } from '../../src/processing/transform.js';
import { api, startHarness, upload, type Harness } from './support.js';

for (const kind of DB_KINDS) {
  describe(`master-key rotation of processing secrets on ${kind}`, () => {
    let h: Harness;
    before(async () => {
      h = await startHarness(kind, { targets: 1 });
    });
    after(async () => h?.close());

    test('re-wraps transform keys, webhook secrets (current and previous) and PUT URLs; each still unwraps to the same value under the new key alone', async () => {
      const asset = await upload(h.srv, h.a.key, await quadrants(16, 16, 'png'));
      const tk = await api(h.srv.url, 'POST', `/v1/apps/${h.a.appId}/transform-keys`, { key: h.a.key });
      const hook = await api(h.srv.url, 'POST', '/v1/webhooks', { key: h.a.key, body: { url: `${h.targets[0]!.origin}/hook` } });
      const rotated = await api(h.srv.url, 'POST', `/v1/webhooks/${hook.body.id}/rotate-secret`, { key: h.a.key, body: { grace_seconds: 600 } });
      const putUrl = `${h.targets[0]!.origin}/put?sig=abc`;
      const job = await api(h.srv.url, 'POST', '/v1/jobs', { key: h.a.key, body: { input: { asset_id: asset }, operations: 'format:png', output: { put_url: putUrl } } });
      assert.equal(job.status, 202);

      const old = masterKeysFor(h.t.db);
      const current = randomBytes(32);
      const next: MasterKeys = { ...old, current, currentId: masterKeyId(current), all: new Map([[masterKeyId(current), current], ...old.all]) };
      const moved = await rewrapAll(h.t.db, next, WRAPPED_COLUMNS);
      assert.equal(moved.byTable['transform_keys.wrapped'], 1);
      assert.equal(moved.byTable['webhook_endpoints.secret_wrapped'], 1);
      assert.equal(moved.byTable['webhook_endpoints.previous_secret_wrapped'], 1);
      assert.equal(moved.byTable['jobs.put_url_wrapped'], 1);

      const onlyNew = new Map([[masterKeyId(current), current]]);
      const k = (await superQuery(h.t, 'select wrapped from transform_keys where id = $1', [tk.body.id]))[0]!;
      assert.equal(unwrapKey(onlyNew, String(k.wrapped), transformKeyContext(h.a.orgId, tk.body.id)).toString('base64url'), tk.body.secret);
      const w = (await superQuery(h.t, 'select secret_wrapped, previous_secret_wrapped from webhook_endpoints where id = $1', [hook.body.id]))[0]!;
      assert.equal(unwrapKey(onlyNew, String(w.secret_wrapped), webhookSecretContext(h.a.orgId, hook.body.id)).toString(), rotated.body.secret);
      assert.equal(unwrapKey(onlyNew, String(w.previous_secret_wrapped), webhookSecretContext(h.a.orgId, hook.body.id)).toString(), hook.body.secret);
      const j = (await superQuery(h.t, 'select put_url_wrapped from jobs where id = $1', [job.body.id]))[0]!;
      assert.equal(unwrapKey(onlyNew, String(j.put_url_wrapped), putUrlContext(h.a.orgId, job.body.id)).toString(), putUrl);
      // The old master key alone no longer opens any of them.
      assert.throws(() => unwrapKey(old.all, String(k.wrapped), transformKeyContext(h.a.orgId, tk.body.id)), (e: any) => e.code === 'ERR_INTEGRITY');
    });
  });
}
