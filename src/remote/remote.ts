/**
 * Outbound requests (remote inputs, presigned PUTs, webhook deliveries): one set of rules (the SSRF-safe fetcher's) used for remote
 * inputs, presigned PUT targets and webhook endpoints, plus a creation-time check so that a webhook
 * or PUT URL pointing at a private address is refused when it is registered, not only when used
 * (the fetcher checks again at every delivery: DNS answers change).
 */
import net from 'node:net';
import { AppError } from '../errors.js';
import { canonicalAddress, isForbiddenAddress } from './address-policy.js';
import { createFetcher, remoteForbidden, systemLookup, type Fetcher, type FetcherOptions, type ResolvedAddress } from './fetcher.js';

/**
 * Policy shared by every remote call. `unsafe*`, `lookup` and `tls` are for development and tests
 * (a test server on 127.0.0.1 made reachable with `unsafeTestAllow`); never set them from user input.
 */
export type RemotePolicy = Pick<FetcherOptions, 'allowHttp' | 'unsafeAllowPrivateAddresses' | 'unsafeTestAllow' | 'lookup' | 'allowedPorts' | 'tls'>;

/** The three fetchers and the URL check, all under one policy. */
export interface Remote {
  /** GET of remote inputs (bounded by `maxInputBytes`). */
  readonly inputs: Fetcher;
  /** PUT of outputs to customers' presigned URLs. */
  readonly puts: Fetcher;
  /** POST of webhook deliveries: short timeout, redirects are failures. */
  readonly webhooks: Fetcher;
  /**
   * Checks a URL the way the fetcher will (scheme, credentials, port, every resolved address).
   * @throws AppError `ERR_REMOTE_FORBIDDEN` (400) or `ERR_VALIDATION` (host does not resolve).
   */
  check(url: string): Promise<URL>;
}

/** Creates the remote-URL machinery. `timeoutMs` bounds inputs and PUTs; webhooks get 10 s. */
export function createRemote(policy: RemotePolicy, opts: { timeoutMs: number; maxInputBytes: number }): Remote {
  const inputs = createFetcher({ ...policy, maxBytes: opts.maxInputBytes, timeoutMs: opts.timeoutMs });
  const puts = createFetcher({ ...policy, maxBytes: 64 * 1024, timeoutMs: opts.timeoutMs });
  const webhooks = createFetcher({ ...policy, maxBytes: 64 * 1024, timeoutMs: 10_000, maxRedirects: 0 });
  const ports = new Set(policy.allowedPorts ?? [443, 80]);
  const lookup = policy.lookup ?? systemLookup;

  const forbidden = (reason: 'url' | 'scheme' | 'credentials' | 'port' | 'address', port?: number): AppError => remoteForbidden(reason, ports, port);

  async function check(text: string): Promise<URL> {
    let url: URL;
    try {
      url = new URL(text);
    } catch {
      throw forbidden('url');
    }
    if (text.length > 8192) throw forbidden('url');
    if (url.protocol !== 'https:' && !(url.protocol === 'http:' && policy.allowHttp === true)) throw forbidden('scheme');
    if (url.username !== '' || url.password !== '') throw forbidden('credentials');
    const port = url.port === '' ? (url.protocol === 'https:' ? 443 : 80) : Number(url.port);
    if (!ports.has(port)) throw forbidden('port', port);
    const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
    let answers: readonly ResolvedAddress[];
    if (net.isIP(host) !== 0) {
      answers = [{ address: host, family: net.isIP(host) }];
    } else {
      try {
        answers = await lookup(host);
      } catch {
        answers = [];
      }
      if (answers.length === 0) throw new AppError('ERR_VALIDATION', 'The URL host does not resolve.', { details: { field: 'url', reason: 'dns' } });
    }
    for (const a of answers) {
      const ip = canonicalAddress(a.address);
      if (ip === null) throw forbidden('address');
      if (policy.unsafeTestAllow?.(ip, port) === true) continue;
      const verdict = isForbiddenAddress(ip);
      if (!verdict.forbidden) continue;
      if (policy.unsafeAllowPrivateAddresses === true && verdict.reason !== 'metadata' && verdict.reason !== 'invalid') continue;
      // As in the fetcher: the category only, never the resolved address (no network-layout oracle).
      throw forbidden('address');
    }
    return url;
  }

  return { inputs, puts, webhooks, check };
}
