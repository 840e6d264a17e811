import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { canonicalAddress, isForbiddenAddress } from '../../src/remote/address-policy.js';

const refused: Array<[string, string]> = [
  ['127.0.0.1', 'loopback'],
  ['127.255.255.254', 'loopback'],
  ['10.0.0.1', 'private'],
  ['172.16.0.1', 'private'],
  ['172.31.255.255', 'private'],
  ['192.168.1.1', 'private'],
  ['100.64.0.1', 'carrierGradeNat'],
  ['169.254.1.1', 'linkLocal'],
  ['169.254.169.254', 'metadata'],
  ['100.100.100.200', 'metadata'],
  ['fd00:ec2::254', 'metadata'],
  ['0.0.0.0', 'unspecified'],
  ['0.1.2.3', 'unspecified'],
  ['224.0.0.1', 'multicast'],
  ['239.255.255.250', 'multicast'],
  ['255.255.255.255', 'broadcast'],
  ['240.0.0.1', 'reserved'],
  ['192.0.2.1', 'reserved'],
  ['198.51.100.7', 'reserved'],
  ['203.0.113.9', 'reserved'],
  ['198.18.0.1', 'reserved'],
  ['198.19.255.255', 'reserved'],
  ['::1', 'loopback'],
  ['::', 'unspecified'],
  ['fe80::1', 'linkLocal'],
  ['fc00::1', 'uniqueLocal'],
  ['fd12:3456::1', 'uniqueLocal'],
  ['ff02::1', 'multicast'],
  ['2001:db8::1', 'reserved'],
  ['2001::1', 'teredo'],
  ['2001:2::1', 'benchmarking'],
  ['::ffff:127.0.0.1', 'ipv4Mapped/loopback'],
  ['::ffff:7f00:1', 'ipv4Mapped/loopback'],
  ['::ffff:10.0.0.1', 'ipv4Mapped/private'],
  ['::ffff:169.254.169.254', 'ipv4Mapped/metadata'],
  ['::127.0.0.1', 'ipv4Compatible'],
  ['::8.8.8.8', 'ipv4Compatible'],
  ['::808:808', 'ipv4Compatible'],
  ['64:ff9b::7f00:1', 'nat64/loopback'],
  ['64:ff9b::10.0.0.1', 'nat64/private'],
  ['64:ff9b:1::808:808', 'nat64LocalUse'],
  ['2002:7f00:1::', '6to4/loopback'],
  ['2002:a9fe:a9fe::1', '6to4/metadata'],
  ['2002:c0a8:101::1', '6to4/private'],
  ['::ffff:0:808:808', 'rfc6145'],
  ['fec0::1', 'deprecatedSiteLocal'],
  ['100::1', 'discard'],
  ['4000::1', 'notGlobalUnicast'],
  ['fe80::1%eth0', 'scoped'],
  ['0177.0.0.1', 'invalid'],
  ['2130706433', 'invalid'],
  ['127.1', 'invalid'],
  ['example.com', 'invalid'],
  ['', 'invalid'],
];

const allowed = ['8.8.8.8', '1.1.1.1', '93.184.216.34', '2606:4700:4700::1111', '2a00:1450:4001:80b::200e', '::ffff:8.8.8.8', '64:ff9b::808:808', '2002:808:808::1'];

describe('isForbiddenAddress', () => {
  for (const [ip, reason] of refused) {
    it(`refuses ${ip || '(empty)'} as ${reason}`, () => {
      assert.deepEqual(isForbiddenAddress(ip), { forbidden: true, reason });
    });
  }
  for (const ip of allowed) {
    it(`permits the public address ${ip}`, () => {
      assert.deepEqual(isForbiddenAddress(ip), { forbidden: false });
    });
  }
});

describe('canonicalAddress', () => {
  it('unwraps IPv4-mapped IPv6 so the dialled family matches the judged address', () => {
    assert.equal(canonicalAddress('::ffff:8.8.8.8'), '8.8.8.8');
    assert.equal(canonicalAddress('2606:4700:4700:0:0:0:0:1111'), '2606:4700:4700::1111');
  });

  it('reads ::a.b.c.d as RFC 4291 does (::a.b.c.d), not as IPv4-mapped (parser-differential regression)', () => {
    assert.equal(canonicalAddress('::8.8.8.8'), '::808:808');
  });

  it('returns null for text that is not an address', () => {
    assert.equal(canonicalAddress('0x7f.1'), null);
    assert.equal(canonicalAddress('public.test'), null);
  });
});
