/**
 * IP allowlists (CIDR, IPv4 and IPv6) and origin allowlists for keys.
 */
import ipaddr from 'ipaddr.js';
import { AppError } from '../errors.js';

type Parsed = ipaddr.IPv4 | ipaddr.IPv6;

/** Parses an address, unwrapping IPv4-mapped IPv6 (`::ffff:1.2.3.4`) so it matches IPv4 rules. */
export function parseIp(ip: string): Parsed | null {
  try {
    const a = ipaddr.parse(ip);
    if (a.kind() === 'ipv6' && (a as ipaddr.IPv6).isIPv4MappedAddress()) return (a as ipaddr.IPv6).toIPv4Address();
    return a;
  } catch {
    return null;
  }
}

/** Validates and normalises a CIDR list (a bare address means /32 or /128). Throws ERR_VALIDATION. */
export function normaliseCidrs(list: readonly string[]): string[] {
  return list.map((entry) => {
    const text = entry.trim();
    try {
      const [addr, bits] = text.includes('/') ? ipaddr.parseCIDR(text) : (() => {
        const a = ipaddr.parse(text);
        return [a, a.kind() === 'ipv4' ? 32 : 128] as [Parsed, number];
      })();
      const a = addr.kind() === 'ipv6' && (addr as ipaddr.IPv6).isIPv4MappedAddress() ? (addr as ipaddr.IPv6).toIPv4Address() : addr;
      const b = a.kind() === 'ipv4' && addr.kind() === 'ipv6' ? Math.max(0, bits - 96) : bits;
      return `${a.toString()}/${b}`;
    } catch {
      throw new AppError('ERR_VALIDATION', `"${text.slice(0, 64)}" is not an IP address or CIDR range.`, { details: { field: 'allowed_ips' } });
    }
  });
}

/** A compiled matcher for a normalised CIDR list. */
export function cidrMatcher(list: readonly string[]): (ip: string) => boolean {
  const ranges = list.map((c) => ipaddr.parseCIDR(c));
  return (ip) => {
    const a = parseIp(ip);
    if (!a) return false;
    return ranges.some(([net, bits]) => net.kind() === a.kind() && a.match(net, bits));
  };
}

/**
 * Validates and normalises origins: `https://host[:port]` exactly (no path, no wildcard). Plain
 * `http` is accepted only for loopback development origins (localhost, 127.0.0.1, [::1]).
 */
export function normaliseOrigins(list: readonly string[]): string[] {
  return list.map((o) => {
    let u: URL;
    try {
      u = new URL(o.trim());
    } catch {
      throw new AppError('ERR_VALIDATION', `"${o.slice(0, 64)}" is not an origin.`, { details: { field: 'allowed_origins' } });
    }
    const loopback = ['localhost', '127.0.0.1', '[::1]'].includes(u.hostname);
    const okScheme = u.protocol === 'https:' || (u.protocol === 'http:' && loopback);
    if (!okScheme || u.username || u.password || (u.pathname !== '/' && u.pathname !== '') || u.search || u.hash) {
      throw new AppError('ERR_VALIDATION', `"${o.slice(0, 64)}" must be an origin like https://app.example.com (http only for localhost).`, { details: { field: 'allowed_origins' } });
    }
    return u.origin;
  });
}

/** A native app identifier: reverse-DNS style (`com.example.photos`), as app stores use (issue 15). */
export const APP_ID_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$';
const APP_ID_RE = new RegExp(APP_ID_PATTERN);

/** Validates native app identifiers (a publishable key's `allowed_app_ids`, a licence's `app_ids`). */
export function normaliseAppIds(list: readonly string[]): string[] {
  for (const a of list) if (!APP_ID_RE.test(a)) throw new AppError('ERR_VALIDATION', `"${a.slice(0, 64)}" is not an app identifier such as com.example.photos.`, { details: { field: 'allowed_app_ids' } });
  return [...new Set(list)];
}
