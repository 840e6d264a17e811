import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createRemote } from '../../src/remote/remote.js';
import type { ResolvedAddress } from '../../src/remote/fetcher.js';

/** A resolver that answers from a table (tests never touch real DNS). */
function table(entries: Record<string, string[]>) {
  const calls: string[] = [];
  const lookup = async (host: string): Promise<ResolvedAddress[]> => {
    calls.push(host);
    return (entries[host] ?? []).map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));
  };
  return { lookup, calls };
}

async function reason(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (err) {
    const e = err as { code?: string; details?: { reason?: string } };
    return `${e.code}:${e.details?.reason}`;
  }
}

describe('registration-time URL check (webhooks, presigned PUT targets)', () => {
  const dns = table({
    'hooks.example.com': ['93.184.216.34'],
    'rebind.example.com': ['93.184.216.34', '10.0.0.7'],
    'internal.example.com': ['127.0.0.1'],
    'v6.example.com': ['2606:2800:220:1:248:1893:25c8:1946'],
  });
  const remote = createRemote({ lookup: dns.lookup }, { timeoutMs: 1000, maxInputBytes: 1 << 20 });

  test('accepts https to a public address, resolved through the injected resolver', async () => {
    assert.equal(await reason(remote.check('https://hooks.example.com/obscura')), 'ok');
    assert.equal(await reason(remote.check('https://v6.example.com/obscura')), 'ok');
  });

  test('refuses http, credentials, other ports and non-URLs', async () => {
    assert.equal(await reason(remote.check('http://hooks.example.com/x')), 'ERR_REMOTE_FORBIDDEN:scheme');
    assert.equal(await reason(remote.check('https://a:b@hooks.example.com/x')), 'ERR_REMOTE_FORBIDDEN:credentials');
    assert.equal(await reason(remote.check('https://hooks.example.com:6379/x')), 'ERR_REMOTE_FORBIDDEN:port');
    assert.equal(await reason(remote.check('not a url')), 'ERR_REMOTE_FORBIDDEN:url');
  });

  test('refuses a name with any private answer, and private, metadata and odd IPv4 spellings', async () => {
    for (const url of [
      'https://rebind.example.com/x',
      'https://internal.example.com/x',
      'https://10.0.0.1/x',
      'https://169.254.169.254/x',
      'https://[::ffff:127.0.0.1]/x',
      'https://0x7f000001/x',
      'https://0177.0.0.1/x',
      'https://[fe80::1]/x',
    ]) {
      assert.equal(await reason(remote.check(url)), 'ERR_REMOTE_FORBIDDEN:address', url);
    }
  });

  test('a name that does not resolve is a validation error', async () => {
    assert.equal(await reason(remote.check('https://nowhere.example.com/x')), 'ERR_VALIDATION:dns');
  });

  test('the development switches widen exactly what they say, and metadata stays refused', async () => {
    const dev = createRemote({ lookup: dns.lookup, allowHttp: true, unsafeAllowPrivateAddresses: true }, { timeoutMs: 1000, maxInputBytes: 1 << 20 });
    assert.equal(await reason(dev.check('http://internal.example.com/x')), 'ok');
    assert.equal(await reason(dev.check('http://169.254.169.254/x')), 'ERR_REMOTE_FORBIDDEN:address');
    const test1 = createRemote({ allowHttp: true, allowedPorts: [8080], unsafeTestAllow: (ip, port) => ip === '127.0.0.1' && port === 8080 }, { timeoutMs: 1000, maxInputBytes: 1 << 20 });
    assert.equal(await reason(test1.check('http://127.0.0.1:8080/x')), 'ok');
    assert.equal(await reason(test1.check('http://127.0.0.2:8080/x')), 'ERR_REMOTE_FORBIDDEN:address');
  });
});
