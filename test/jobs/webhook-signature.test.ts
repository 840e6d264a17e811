import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import {
  WebhookVerificationError,
  generateWebhookSecret,
  signWebhook,
  verifyWebhook,
} from '../../sdk/src/webhook-signature.js';

const body = JSON.stringify({ type: 'job.completed', data: { id: 'job_1', outputs: ['ü'] } });
const secret = 'whsec_current';
const oldSecret = 'whsec_previous';
const t = 1_700_000_000;
const now = t * 1000;

function rejectsWith(code: string, fn: () => unknown): void {
  assert.throws(fn, (err: unknown) => err instanceof WebhookVerificationError && err.code === code);
}

describe('webhook signatures', () => {
  it('produces t and v1 = hex HMAC-SHA256(secret, "t.body") that a plain HMAC call reproduces', () => {
    const header = signWebhook(body, [secret], t);
    const expected = createHmac('sha256', secret).update(`${t}.${body}`).digest('hex');
    assert.equal(header, `t=${t},v1=${expected}`);
  });

  it('verifies a freshly signed delivery', () => {
    assert.equal(verifyWebhook(body, signWebhook(body, [secret], t), secret, { now }), true);
  });

  it('verifies a Buffer body the same as its string', () => {
    const header = signWebhook(Buffer.from(body), [secret], t);
    assert.equal(verifyWebhook(body, header, secret, { now }), true);
  });

  it('rejects a changed body with ERR_WEBHOOK_SIGNATURE', () => {
    const header = signWebhook(body, [secret], t);
    rejectsWith('ERR_WEBHOOK_SIGNATURE', () => verifyWebhook(body.replace('job_1', 'job_2'), header, secret, { now }));
  });

  it('rejects a changed timestamp with ERR_WEBHOOK_SIGNATURE', () => {
    const header = signWebhook(body, [secret], t).replace(`t=${t}`, `t=${t + 1}`);
    rejectsWith('ERR_WEBHOOK_SIGNATURE', () => verifyWebhook(body, header, secret, { now }));
  });

  it('rejects a different secret with ERR_WEBHOOK_SIGNATURE', () => {
    const header = signWebhook(body, [secret], t);
    rejectsWith('ERR_WEBHOOK_SIGNATURE', () => verifyWebhook(body, header, 'whsec_other', { now }));
  });

  it('rejects a delivery signed more than 300 s ago with ERR_WEBHOOK_TIMESTAMP', () => {
    const header = signWebhook(body, [secret], t - 301);
    rejectsWith('ERR_WEBHOOK_TIMESTAMP', () => verifyWebhook(body, header, secret, { now }));
    assert.equal(verifyWebhook(body, signWebhook(body, [secret], t - 300), secret, { now }), true);
  });

  it('rejects a delivery signed more than 300 s in the future with ERR_WEBHOOK_TIMESTAMP', () => {
    const header = signWebhook(body, [secret], t + 301);
    rejectsWith('ERR_WEBHOOK_TIMESTAMP', () => verifyWebhook(body, header, secret, { now }));
  });

  it('honours a custom tolerance', () => {
    const header = signWebhook(body, [secret], t - 60);
    rejectsWith('ERR_WEBHOOK_TIMESTAMP', () => verifyWebhook(body, header, secret, { now, toleranceSeconds: 30 }));
    assert.equal(verifyWebhook(body, header, secret, { now, toleranceSeconds: 90 }), true);
  });

  it('during rotation signs with both secrets and verifies with either one', () => {
    const header = signWebhook(body, [secret, oldSecret], t);
    assert.equal(header.split(',').filter((p) => p.startsWith('v1=')).length, 2);
    assert.equal(verifyWebhook(body, header, secret, { now }), true);
    assert.equal(verifyWebhook(body, header, oldSecret, { now }), true);
    assert.equal(verifyWebhook(body, signWebhook(body, [oldSecret], t), [secret, oldSecret], { now }), true);
    rejectsWith('ERR_WEBHOOK_SIGNATURE', () => verifyWebhook(body, header, 'whsec_other', { now }));
  });

  it('ignores unknown schemes and whitespace, and accepts duplicate v1 values', () => {
    const sig = signWebhook(body, [secret], t).split(',')[1];
    const header = ` t=${t} , v0=not-hex-at-all, ${sig}, ${sig}, v2=whatever`;
    assert.equal(verifyWebhook(body, header, secret, { now }), true);
  });

  it('rejects a header with only unknown schemes with ERR_WEBHOOK_SIGNATURE', () => {
    rejectsWith('ERR_WEBHOOK_SIGNATURE', () => verifyWebhook(body, `t=${t},v0=abc`, secret, { now }));
  });

  for (const [name, header] of [
    ['an empty header', ''],
    ['a header without a timestamp', `v1=${'a'.repeat(64)}`],
    ['two timestamps', `t=${t},t=${t},v1=${'a'.repeat(64)}`],
    ['a non-numeric timestamp', `t=12a,v1=${'a'.repeat(64)}`],
    ['a v1 that is not 64 hex digits', `t=${t},v1=${'a'.repeat(63)}`],
    ['an item without "="', `t=${t},garbage`],
    ['an oversized header', `t=${t},${'x=y,'.repeat(3000)}`],
    ['too many v1 values', `t=${t},${Array(17).fill(`v1=${'a'.repeat(64)}`).join(',')}`],
  ] as const) {
    it(`rejects ${name} with ERR_WEBHOOK_HEADER`, () => {
      rejectsWith('ERR_WEBHOOK_HEADER', () => verifyWebhook(body, header, secret, { now }));
    });
  }

  it('refuses to sign without a secret or with a fractional timestamp', () => {
    assert.throws(() => signWebhook(body, [], t), TypeError);
    assert.throws(() => signWebhook(body, [''], t), TypeError);
    assert.throws(() => signWebhook(body, [secret], 1.5), RangeError);
  });

  it('generates whsec_ secrets carrying 32 random bytes', () => {
    const a = generateWebhookSecret();
    const b = generateWebhookSecret();
    assert.match(a, /^whsec_[A-Za-z0-9_-]{43}$/);
    assert.equal(Buffer.from(a.slice(6), 'base64url').length, 32);
    assert.notEqual(a, b);
  });
});
