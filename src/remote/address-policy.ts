/**
 * Which IP addresses the server may open a connection to on a user's behalf (SSRF defence).
 *
 * Allowlist, not blocklist (STYLE.md "Security as code"): an address is permitted only when
 * ipaddr.js classifies it as plain `unicast` (and, for IPv6, it lies in the global unicast block
 * 2000::/3), after unwrapping the IPv6 forms that carry an IPv4 address a relay or the kernel would
 * actually reach. Everything ipaddr.js knows as special (loopback, private, CGNAT, link-local,
 * unique-local, multicast, broadcast, reserved, documentation, benchmarking, Teredo, ORCHID, ...) and
 * everything it does not know is refused.
 *
 * Pure: takes a string, returns a verdict. No DNS, no network.
 */
import net from 'node:net';
import ipaddr from 'ipaddr.js';

/** A decision about one address. `reason` names the range that made it forbidden (for logs and tests). */
export interface AddressVerdict {
  /** `true` when the server must not connect to this address. */
  forbidden: boolean;
  /**
   * Why, when forbidden: `invalid`, `metadata`, an ipaddr.js range name (`loopback`, `private`,
   * `carrierGradeNat`, `linkLocal`, `uniqueLocal`, `unspecified`, `multicast`, `broadcast`,
   * `reserved`, `teredo`, `benchmarking`, ...), `ipv4Compatible`, `nat64LocalUse` or `notGlobalUnicast`.
   * Embedded IPv4 verdicts are prefixed with the wrapper, e.g. `ipv4Mapped/loopback`, `6to4/private`.
   * Server-side only: never send it to a client (it would tell them how our network is laid out).
   */
  reason?: string;
}

/**
 * Cloud instance-metadata endpoints: AWS/GCP/Azure/OpenStack (169.254.169.254), AWS over IPv6
 * (fd00:ec2::254), Alibaba (100.100.100.200), Oracle (192.0.0.192). Their ranges are already refused;
 * naming them keeps the reason precise and keeps them refused even with `unsafeAllowPrivateAddresses`.
 */
const METADATA_ADDRESSES = new Set(['169.254.169.254', 'fd00:ec2::254', '100.100.100.200', '192.0.0.192']);

const OK: AddressVerdict = { forbidden: false };
const deny = (reason: string): AddressVerdict => ({ forbidden: true, reason });

/** The 32-bit IPv4 address held in two 16-bit IPv6 groups. */
function v4From(hi: number, lo: number): ipaddr.IPv4 {
  return new ipaddr.IPv4([hi >> 8, hi & 0xff, lo >> 8, lo & 0xff]);
}

function judgeV4(a: ipaddr.IPv4): AddressVerdict {
  if (METADATA_ADDRESSES.has(a.toString())) return deny('metadata');
  const range = a.range();
  return range === 'unicast' ? OK : deny(range);
}

function wrapped(prefix: string, inner: AddressVerdict): AddressVerdict {
  return inner.forbidden ? deny(`${prefix}/${inner.reason ?? 'unknown'}`) : OK;
}

function judgeV6(a: ipaddr.IPv6): AddressVerdict {
  const p = a.parts;
  if (METADATA_ADDRESSES.has(a.toString())) return deny('metadata');
  const range = a.range();
  switch (range) {
    // ::ffff:a.b.c.d reaches a.b.c.d through the dual-stack socket (the classic ::ffff:127.0.0.1 bypass).
    case 'ipv4Mapped':
      return wrapped('ipv4Mapped', judgeV4(a.toIPv4Address()));
    case 'rfc6052':
      // 64:ff9b::/96 (RFC 6052 well-known prefix): a NAT64 gateway forwards to the last 32 bits.
      if (p[0] === 0x64 && p[1] === 0xff9b && p[2] === 0 && p[3] === 0 && p[4] === 0 && p[5] === 0) {
        return wrapped('nat64', judgeV4(v4From(p[6] ?? 0, p[7] ?? 0)));
      }
      // 64:ff9b:1::/48 (RFC 8215) is for local use with an operator-chosen prefix length, so where
      // the IPv4 address sits is not knowable from the address alone: refuse rather than guess.
      return deny('nat64LocalUse');
    case '6to4':
      // 2002:AABB:CCDD::/48 tunnels to AA.BB.CC.DD (RFC 3056 §2).
      return wrapped('6to4', judgeV4(v4From(p[1] ?? 0, p[2] ?? 0)));
    case 'unicast':
      break;
    default:
      return deny(range);
  }
  // ::a.b.c.d (IPv4-compatible, deprecated by RFC 4291 §2.5.5.1); some stacks still route it to IPv4.
  if (p.slice(0, 6).every((x) => x === 0)) return deny('ipv4Compatible');
  // IANA allocates global unicast only from 2000::/3; anything else ipaddr.js calls "unicast" is
  // unallocated space we have no reason to reach.
  if (((p[0] ?? 0) & 0xe000) !== 0x2000) return deny('notGlobalUnicast');
  return OK;
}

/**
 * Parses canonical address text. IPv6 goes through the WHATWG URL host parser first because
 * ipaddr.js reads `::a.b.c.d` as `::ffff:a.b.c.d` whereas RFC 4291 (and the kernel) read it as
 * `::a.b.c.d`; judging one address and dialling another is exactly the parser differential SSRF
 * filters fall to. The URL serialiser emits pure hex groups, on which both parsers agree.
 */
function parseStrict(ip: string): ipaddr.IPv4 | ipaddr.IPv6 | 'scoped' | null {
  const family = net.isIP(ip);
  if (family === 0) return null;
  let text = ip;
  if (family === 6) {
    // A zone index only has meaning for link-local scopes, which are refused anyway.
    if (ip.includes('%')) return 'scoped';
    try {
      text = new URL(`http://[${ip}]/`).hostname.slice(1, -1);
    } catch {
      return null;
    }
  }
  try {
    return ipaddr.parse(text);
  } catch {
    return null;
  }
}

/**
 * Decides whether the server may connect to `ip`.
 *
 * Accepts only canonical address text (what `net.isIP` accepts: dotted-quad IPv4 or IPv6, as DNS
 * answers and WHATWG URL host serialisation produce); legacy spellings such as `0177.0.0.1` are
 * `invalid` here because URL parsing normalises them before this point.
 *
 * Security: this is the SSRF gate for every remote input, customer PUT target and webhook URL. The
 * caller must check every resolved address and then connect to the vetted one (see fetcher.ts).
 */
export function isForbiddenAddress(ip: string): AddressVerdict {
  const addr = parseStrict(ip);
  if (addr === 'scoped') return deny('scoped');
  if (addr === null) return deny('invalid');
  return addr.kind() === 'ipv4' ? judgeV4(addr as ipaddr.IPv4) : judgeV6(addr as ipaddr.IPv6);
}

/**
 * The text to hand to `net.connect` for an address that passed {@link isForbiddenAddress}:
 * canonical form, with IPv4-mapped IPv6 unwrapped to IPv4 (so the socket family matches what was
 * judged). Returns `null` for text that is not an IP address.
 */
export function canonicalAddress(ip: string): string | null {
  const a = parseStrict(ip);
  if (a === null || a === 'scoped') return null;
  if (a.kind() === 'ipv6' && (a as ipaddr.IPv6).isIPv4MappedAddress()) return (a as ipaddr.IPv6).toIPv4Address().toString();
  return a.toString();
}
