/**
 * Transport security: the native HTTPS listener's TLS settings and the optional plain-HTTP listener
 * that only redirects to HTTPS.
 *
 * TLS: minimum TLS 1.2 (RFC 8996 deprecates 1.0 and 1.1); for TLS 1.2 only AEAD suites with forward
 * secrecy (ECDHE/DHE + AES-GCM or ChaCha20-Poly1305: Mozilla's "intermediate" profile, RFC 9325 §4.2),
 * so no CBC, no RSA key exchange, no SHA-1 MACs; TLS 1.3's three standard suites. HSTS is sent by
 * helmet on every response (browsers honour it only over HTTPS, RFC 6797 §8.1).
 */
import { listenSide } from '../listen.js';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { SecureContextOptions, TlsOptions } from 'node:tls';

/** TLS 1.3 suites (OpenSSL names), strongest first. */
export const TLS13_SUITES = ['TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256'] as const;

/** TLS 1.2 suites: forward-secret AEAD only (Mozilla intermediate). */
export const TLS12_CIPHERS = [
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
  'DHE-RSA-AES128-GCM-SHA256',
  'DHE-RSA-AES256-GCM-SHA384',
  'DHE-RSA-CHACHA20-POLY1305',
] as const;

/** The OpenSSL cipher string for the HTTPS listener. */
export const MODERN_CIPHERS = [...TLS13_SUITES, ...TLS12_CIPHERS].join(':');

/** The minimum protocol version the HTTPS listener accepts. */
export const MIN_TLS_VERSION = 'TLSv1.2' as const;

/**
 * The `https` server options for a certificate and key: TLS >= 1.2, the modern suites above, the
 * server's suite order (so a client cannot steer toward its weakest shared choice).
 */
export function serverTlsOptions(creds: { key: SecureContextOptions['key']; cert: SecureContextOptions['cert'] }): TlsOptions {
  return { key: creds.key, cert: creds.cert, minVersion: MIN_TLS_VERSION, ciphers: MODERN_CIPHERS, honorCipherOrder: true };
}

/**
 * Where a plain-HTTP request is sent: the public base URL plus the request path. The host always comes
 * from the configured URL, never from the request (no open redirect through `Host` or `//evil/...`).
 */
export function httpsRedirectTarget(publicUrl: string, requestUrl: string): string {
  const base = publicUrl.replace(/\/+$/, '');
  const path = requestUrl.startsWith('/') ? requestUrl.replace(/^\/+/, '/') : '/';
  return base + path;
}

export interface RedirectServer {
  readonly port: number;
  close(): Promise<void>;
}

function refuse(res: ServerResponse, requestId: string): void {
  const body = JSON.stringify({
    type: 'urn:obscura:error:ERR_HTTPS_REQUIRED',
    title: 'Forbidden',
    status: 403,
    detail: 'This API is served over HTTPS only. If this request carried a credential, treat it as exposed and roll it.',
    code: 'ERR_HTTPS_REQUIRED',
    request_id: requestId,
  });
  res.writeHead(403, { 'content-type': 'application/problem+json; charset=utf-8', 'content-length': Buffer.byteLength(body), connection: 'close', 'cache-control': 'no-store' }).end(body);
}

/**
 * A plain-HTTP listener that answers GET/HEAD with `308` to the same path on `publicUrl` (https), and
 * refuses everything else, and anything carrying `Authorization`, with 403 `ERR_HTTPS_REQUIRED`:
 * redirecting an API call would hide that its credential just crossed the network in clear (the
 * client should fail loudly and be fixed, not silently follow). Reads no body.
 */
export async function startRedirectServer(opts: { host: string; port: number; publicUrl: string; requestId: () => string }): Promise<RedirectServer> {
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    if ((req.method !== 'GET' && req.method !== 'HEAD') || req.headers.authorization !== undefined) {
      refuse(res, opts.requestId());
      return;
    }
    res.writeHead(308, { location: httpsRedirectTarget(opts.publicUrl, req.url ?? '/'), 'content-length': 0, connection: 'close', 'cache-control': 'no-store' }).end();
  });
  return listenSide(server, { port: opts.port, host: opts.host, requestTimeoutMs: 15_000, keepAliveTimeoutMs: 1_000 });
}
