/**
 * The one SSRF-safe HTTP client for every request the server makes on a user's behalf: remote image
 * inputs (GET), outputs PUT to a customer's presigned URL, and webhook deliveries (POST).
 *
 * The guarantees (issue 4, item 4; DESIGN.md "Remote URLs"):
 * - only `https:` (and `http:` when `allowHttp`), no `user:pass@`, only allowed ports;
 * - the host is resolved once, EVERY answer is checked by {@link isForbiddenAddress}, and the socket
 *   is opened to the vetted address itself: Node never resolves the name again, so a DNS-rebinding
 *   answer between check and use cannot redirect the connection (TOCTOU);
 * - TLS still validates the certificate against the hostname (SNI + `checkServerIdentity`);
 * - redirects are followed by hand (default at most 3), each `Location` re-parsed and re-vetted before
 *   any connection; forwarded headers never cross to another origin;
 * - bytes (`Content-Length` and the actual stream) and time (total and until headers) are bounded;
 * - errors are `AppError`s that never carry the upstream body or the forwarded headers.
 */
import http from 'node:http';
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import dns from 'node:dns';
import { Readable, Transform, pipeline } from 'node:stream';
import { AppError, isAppError } from '../errors.js';
import { canonicalAddress, isForbiddenAddress } from './address-policy.js';

/** One answer of a name lookup. */
export interface ResolvedAddress {
  address: string;
  family: number;
}

/**
 * Resolves a hostname to all its addresses. Injectable so tests never touch real DNS.
 * Must return every address (the fetcher refuses the host if any one of them is forbidden).
 */
export type LookupFn = (hostname: string) => Promise<readonly ResolvedAddress[]>;

/** The default {@link LookupFn}: the OS resolver (`getaddrinfo`), all answers. */
export const systemLookup: LookupFn = (hostname) => dns.promises.lookup(hostname, { all: true, verbatim: true });

/** Settings of a fetcher. Validated by {@link createFetcher}; a bad value throws at boot. */
export interface FetcherOptions {
  /** Also allow plain `http:` URLs. Default `false`. Security: http exposes forwarded credentials and bytes to the path. */
  allowHttp?: boolean;
  /**
   * Ports a URL may name (after defaulting 443/80). Default `[443, 80]` (`80` only matters with
   * `allowHttp`). Security: keeps customers from probing arbitrary TCP services (SMTP, Redis, ...)
   * on public hosts through us; add e.g. `9000` for a MinIO endpoint explicitly.
   */
  allowedPorts?: readonly number[];
  /**
   * UNSAFE, development only: permit private, loopback and other non-public addresses (e.g. a local
   * MinIO). Cloud-metadata addresses stay refused. Default `false`. Never enable in production:
   * it turns every remote-URL feature into an SSRF primitive.
   */
  unsafeAllowPrivateAddresses?: boolean;
  /**
   * UNSAFE, tests only: additionally permit an exact (vetted address, port) pair, e.g. a test server
   * on 127.0.0.1:<port>, while every other address stays under the normal policy (so redirects to
   * 127.0.0.1:<other port> or 10.0.0.1 are still refused). Default: none.
   */
  unsafeTestAllow?: (ip: string, port: number) => boolean;
  /** Name resolution. Default {@link systemLookup}. Called once per hop, never by the socket. */
  lookup?: LookupFn;
  /** Largest response body accepted, in bytes (declared and actual). Required; positive integer. */
  maxBytes: number;
  /** Total time for one call: lookup, connect, TLS, headers, redirects and body. Required; ms. */
  timeoutMs: number;
  /** Time allowed per hop from connecting until response headers arrive. Default `timeoutMs`. */
  headersTimeoutMs?: number;
  /** Redirects followed per call (the next one fails with ERR_REMOTE_FAILED). Default 3; 0–10. */
  maxRedirects?: number;
  /** `User-Agent` sent. Default `Obscura-Fetcher/1`. */
  userAgent?: string;
  /** Extra trust anchors for https (replaces the default CA list, as in `tls.connect`). Default: Node's CA list. */
  tls?: { ca?: string | Buffer | ReadonlyArray<string | Buffer> };
  /**
   * Observer called right before a socket is opened, with the address and port actually dialled.
   * For diagnostics and for tests that prove refusals happen before any connection. Default: none.
   */
  onConnect?: (ip: string, port: number) => void;
}

/** Per-call options shared by every method. */
export interface CallOptions {
  /**
   * Headers to send, e.g. the customer's temporary `Authorization` for their storage. Sent on the
   * first hop and on redirects that stay on the same origin only; never logged (use
   * {@link redactHeaders}). Hop-by-hop headers, `Host`, `Content-Length` and `Accept-Encoding` are
   * ignored (the fetcher owns them; responses are always requested uncompressed so `maxBytes` bounds
   * what we actually process, not a compressed bomb).
   */
  headers?: Record<string, string>;
  /** Cancels the call (the job was cancelled, the client went away). */
  signal?: AbortSignal;
}

/** Options for `put` and `post`. */
export interface SendOptions extends CallOptions {
  /** Length of a streamed body; sent as `Content-Length` and enforced. Ignored for a Buffer. Without it a stream is sent chunked. */
  contentLength?: number;
  /**
   * `follow` (default) follows redirects like `get`; `manual` returns the 3xx status as is (webhook
   * deliveries use this: a receiver that redirects is a failed delivery, as at Stripe and GitHub).
   */
  redirect?: 'follow' | 'manual';
}

/** A streamed GET response. `body` errors with an AppError when a limit is crossed. */
export interface FetchResponse {
  status: number;
  headers: IncomingHttpHeaders;
  /** The response body; read it to the end or destroy it. Bounded by `maxBytes` and `timeoutMs`. */
  body: Readable;
  /** The URL after redirects. May carry a signed query string: log it only through {@link redactUrl}. */
  finalUrl: string;
}

/** A buffered GET response. */
export interface BufferResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
  finalUrl: string;
}

/** The outcome of a PUT or POST: the status is returned, not thrown (the caller decides). The upstream body is discarded. */
export interface SendResult {
  status: number;
  headers: IncomingHttpHeaders;
  finalUrl: string;
}

/** The SSRF-safe client. All methods reject with `AppError` only. */
export interface Fetcher {
  /**
   * GETs `url`, following redirects. Rejects with ERR_REMOTE_FORBIDDEN (scheme, credentials, port,
   * address), ERR_REMOTE_FAILED (network, timeout, too many redirects, non-2xx status, with
   * `details.upstreamStatus`) or ERR_PAYLOAD_TOO_LARGE (declared length over `maxBytes`).
   */
  get(url: string | URL, options?: CallOptions): Promise<FetchResponse>;
  /** {@link Fetcher.get} and read the whole body (at most `maxBytes`). */
  getBuffer(url: string | URL, options?: CallOptions): Promise<BufferResponse>;
  /**
   * PUTs `body` (e.g. an output to a customer's presigned URL). A streamed body cannot be replayed,
   * so a 307/308 (or a 301/302, which keep PUT) is refused with ERR_REMOTE_FAILED; use a Buffer when
   * the target may redirect.
   */
  put(url: string | URL, body: Buffer | Readable, options?: SendOptions): Promise<SendResult>;
  /** POSTs `body` (webhook deliveries). A 301/302/303 turns into a bodiless GET, as the Fetch standard says. */
  post(url: string | URL, body: Buffer, options?: SendOptions): Promise<SendResult>;
}

const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);

/** Headers the fetcher controls; a caller's value for them is dropped (RFC 9110 §7.6.1 hop-by-hop, plus framing). */
const OWNED_HEADERS = new Set([
  'host', 'connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade',
  'content-length', 'accept-encoding', 'expect',
]);

/** Representation headers that carry no credential and may follow a body across origins. */
const CROSS_ORIGIN_SAFE_HEADERS = new Set(['content-type', 'accept']);

/** Headers whose values are credentials, whatever their name pattern. */
const SECRET_HEADERS = new Set([
  'authorization', 'proxy-authorization', 'cookie', 'set-cookie', 'x-amz-security-token', 'x-goog-iam-authorization-token',
]);
const SECRET_HEADER_PATTERN = /auth|token|secret|key|signature|session|cookie|password|credential/i;

/**
 * Copy of `headers` safe to log: credential-bearing values (Authorization, cookies, anything named
 * like a token, key, secret, signature or session) are replaced by `[REDACTED]`.
 * Security: STYLE.md "never log ... a forwarded auth header"; use it for every header log line.
 */
export function redactHeaders(headers: Readonly<Record<string, string | number | readonly string[] | undefined>>): Record<string, string | number | readonly string[] | undefined> {
  const out: Record<string, string | number | readonly string[] | undefined> = {};
  for (const [name, value] of Object.entries(headers)) {
    out[name] = value !== undefined && (SECRET_HEADERS.has(name.toLowerCase()) || SECRET_HEADER_PATTERN.test(name)) ? '[REDACTED]' : value;
  }
  return out;
}

/**
 * A URL safe to log: no userinfo, no fragment, and the query (where presigned URLs keep their
 * signature and credential) replaced by `?[REDACTED]`. Unparsable input gives `[invalid URL]`.
 */
export function redactUrl(url: string | URL): string {
  let u: URL;
  try {
    u = new URL(String(url));
  } catch {
    return '[invalid URL]';
  }
  return `${u.protocol}//${u.host}${u.pathname}${u.search ? '?[REDACTED]' : ''}`;
}

type ForbiddenWhy = 'url' | 'scheme' | 'credentials' | 'port' | 'address';

/** The setting that governs each refusal, named in the answer so an operator knows what to change. */
const FORBIDDEN_SETTING: Record<ForbiddenWhy, string | null> = {
  url: null,
  scheme: 'OBSCURA_UNSAFE_REMOTE_ALLOW_HTTP',
  credentials: null,
  port: 'OBSCURA_REMOTE_ALLOWED_PORTS',
  address: 'OBSCURA_UNSAFE_REMOTE_ALLOW_PRIVATE',
};

function forbiddenMessage(why: ForbiddenWhy, ports: ReadonlySet<number>, port?: number): string {
  switch (why) {
    case 'url':
      return 'The remote URL is not a valid absolute URL of at most 8192 characters.';
    case 'scheme':
      return 'The remote URL must use https (plain http is allowed only in development, with OBSCURA_UNSAFE_REMOTE_ALLOW_HTTP=true).';
    case 'credentials':
      return 'The remote URL must not contain user:password@; send credentials in headers instead.';
    case 'port':
      return `The remote URL uses port ${port ?? '?'}, which is not allowed; allowed ports are ${[...ports].join(', ')} (the server's OBSCURA_REMOTE_ALLOWED_PORTS setting).`;
    case 'address':
      return 'The remote URL resolves to a loopback, private, link-local or otherwise non-public address; only public addresses are allowed (in development, OBSCURA_UNSAFE_REMOTE_ALLOW_PRIVATE=true allows private ones; cloud metadata addresses never are).';
  }
}

/**
 * The one refusal of a remote URL, shared by the fetcher and the registration-time check: the
 * message names the reason and the setting that governs it; `details.reason` is the category only —
 * the resolved IP and its range stay server-side, so the error is not an oracle for our internal DNS
 * and network layout.
 */
export function remoteForbidden(why: ForbiddenWhy, ports: ReadonlySet<number>, port?: number, internal?: Record<string, unknown>): AppError {
  const setting = FORBIDDEN_SETTING[why];
  return new AppError('ERR_REMOTE_FORBIDDEN', forbiddenMessage(why, ports, port), {
    details: { reason: why, ...(setting ? { setting } : {}), ...(why === 'port' ? { allowed_ports: [...ports] } : {}) },
    internal,
  });
}

function failed(reason: string, extra: { cause?: unknown; upstreamStatus?: number; internal?: Record<string, unknown> } = {}): AppError {
  const details: Record<string, unknown> = { reason };
  if (extra.upstreamStatus !== undefined) details['upstreamStatus'] = extra.upstreamStatus;
  // Never the upstream body or the library's message: `cause` is logged server-side only.
  return new AppError('ERR_REMOTE_FAILED', 'The remote server could not be reached or did not answer successfully.', {
    details,
    cause: extra.cause,
    internal: extra.internal,
  });
}

function tooLarge(maxBytes: number): AppError {
  return new AppError('ERR_PAYLOAD_TOO_LARGE', 'The remote response is larger than allowed.', { details: { maxBytes } });
}

/** One call's total time budget, combined with the caller's cancellation signal. */
class Deadline {
  private readonly controller = new AbortController();
  private readonly timer: NodeJS.Timeout;
  private readonly external: AbortSignal | undefined;
  private readonly onExternalAbort = (): void => this.controller.abort(failed('aborted'));

  constructor(ms: number, external?: AbortSignal) {
    this.timer = setTimeout(() => this.controller.abort(failed('timeout')), ms);
    this.external = external;
    if (external?.aborted) this.onExternalAbort();
    else external?.addEventListener('abort', this.onExternalAbort, { once: true });
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** Throws the abort reason (an AppError) if the budget is spent or the call was cancelled. */
  check(): void {
    if (this.controller.signal.aborted) throw this.controller.signal.reason as AppError;
  }

  /** Races `p` against the deadline. */
  race<T>(p: Promise<T>): Promise<T> {
    this.check();
    return new Promise<T>((resolve, reject) => {
      const onAbort = (): void => reject(this.controller.signal.reason as AppError);
      this.signal.addEventListener('abort', onAbort, { once: true });
      p.then(
        (v) => { this.signal.removeEventListener('abort', onAbort); resolve(v); },
        (e: unknown) => { this.signal.removeEventListener('abort', onAbort); reject(e); },
      );
    });
  }

  clear(): void {
    clearTimeout(this.timer);
    this.external?.removeEventListener('abort', this.onExternalAbort);
  }
}

function bareHost(url: URL): string {
  return url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
}

function portOf(url: URL): number {
  return url.port === '' ? (url.protocol === 'https:' ? 443 : 80) : Number(url.port);
}

function positiveInt(name: string, v: unknown, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > max) {
    throw new RangeError(`fetcher option ${name} must be an integer between 1 and ${max}`);
  }
  return v;
}

/** Drops owned headers, lowercases names, and validates names/values (no CR/LF header injection). */
function sanitiseHeaders(headers: Record<string, string> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [rawName, value] of Object.entries(headers ?? {})) {
    const name = rawName.toLowerCase();
    if (OWNED_HEADERS.has(name)) continue;
    try {
      http.validateHeaderName(name);
      http.validateHeaderValue(name, value);
    } catch {
      // The name is ours to show (not a secret); the value may be a credential, so never echo it.
      throw new AppError('ERR_VALIDATION', `The header "${name.slice(0, 64).replace(/[^\x21-\x7e]/g, '?')}" is not a valid HTTP header.`);
    }
    out[name] = value;
  }
  return out;
}

type Body = Buffer | Readable | undefined;

/**
 * Passes a stream through only if it is exactly `length` bytes. A body longer or shorter than its
 * announced Content-Length would desynchronise the HTTP/1.1 framing (RFC 9112 §6.3) or store a
 * truncated object at the customer's URL; fail the upload instead.
 */
function exactLength(length: number): Transform {
  let seen = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, done) {
      seen += chunk.length;
      if (seen > length) done(failed('request-body-length'));
      else done(null, chunk);
    },
    flush(done) {
      done(seen === length ? null : failed('request-body-length'));
    },
  });
}

/**
 * Creates the SSRF-safe fetcher. Throws `RangeError`/`TypeError` at boot for bad options.
 * Security: see the module comment; the `unsafe*` options must never be set from user input.
 */
export function createFetcher(options: FetcherOptions): Fetcher {
  const maxBytes = positiveInt('maxBytes', options.maxBytes);
  const timeoutMs = positiveInt('timeoutMs', options.timeoutMs, 24 * 3600 * 1000);
  const headersTimeoutMs = options.headersTimeoutMs === undefined ? timeoutMs : positiveInt('headersTimeoutMs', options.headersTimeoutMs, timeoutMs);
  const maxRedirects = options.maxRedirects ?? 3;
  if (!Number.isInteger(maxRedirects) || maxRedirects < 0 || maxRedirects > 10) {
    throw new RangeError('fetcher option maxRedirects must be an integer between 0 and 10');
  }
  const allowedPorts = new Set((options.allowedPorts ?? [443, 80]).map((p) => positiveInt('allowedPorts[]', p, 65535)));
  const allowHttp = options.allowHttp === true;
  const lookup = options.lookup ?? systemLookup;
  const userAgent = options.userAgent ?? 'Obscura-Fetcher/1';
  const ca = options.tls?.ca as tls.ConnectionOptions['ca'];

  /** Parses and checks everything about a URL that needs no DNS. */
  function checkUrl(raw: string | URL): URL {
    const text = String(raw);
    if (text.length > 8192) throw remoteForbidden('url', allowedPorts);
    let url: URL;
    try {
      url = new URL(text);
    } catch {
      throw remoteForbidden('url', allowedPorts);
    }
    if (url.protocol !== 'https:' && !(url.protocol === 'http:' && allowHttp)) throw remoteForbidden('scheme', allowedPorts);
    // userinfo would be sent nowhere by us, but its presence means someone tried to smuggle
    // credentials or to confuse a parser (`https://trusted@evil/`); refuse rather than strip.
    if (url.username !== '' || url.password !== '') throw remoteForbidden('credentials', allowedPorts);
    if (!allowedPorts.has(portOf(url))) throw remoteForbidden('port', allowedPorts, portOf(url));
    return url;
  }

  function permitted(ip: string, port: number): { ok: boolean; reason?: string } {
    if (options.unsafeTestAllow?.(ip, port) === true) return { ok: true };
    const verdict = isForbiddenAddress(ip);
    if (!verdict.forbidden) return { ok: true };
    if (options.unsafeAllowPrivateAddresses === true && verdict.reason !== 'metadata' && verdict.reason !== 'invalid') return { ok: true };
    return { ok: false, reason: verdict.reason };
  }

  /** Resolves once and vets every answer; returns the address to dial. */
  async function vet(url: URL, deadline: Deadline): Promise<string> {
    const host = bareHost(url);
    const port = portOf(url);
    let answers: string[];
    if (net.isIP(host) !== 0) {
      answers = [host];
    } else {
      let resolved: readonly ResolvedAddress[];
      try {
        resolved = await deadline.race(lookup(host));
      } catch (err) {
        if (isAppError(err)) throw err;
        throw failed('dns', { cause: err, internal: { host } });
      }
      if (resolved.length === 0) throw failed('dns', { internal: { host } });
      answers = resolved.map((r) => r.address);
    }
    const canonical: string[] = [];
    for (const answer of answers) {
      const ip = canonicalAddress(answer);
      const verdict = ip === null ? { ok: false, reason: 'invalid' } : permitted(ip, port);
      // One bad answer condemns the name: with several A/AAAA records an attacker controls which
      // one a later connection would use, so a mixed answer is an attack, not a partial success.
      if (!verdict.ok || ip === null) throw remoteForbidden('address', allowedPorts, undefined, { host, ip: answer, range: verdict.reason });
      canonical.push(ip);
    }
    // No Happy Eyeballs: prefer IPv4 (the common reachable family on servers), then answer order.
    const first = canonical.find((a) => net.isIPv4(a)) ?? canonical[0];
    if (first === undefined) throw failed('dns', { internal: { host } });
    return first;
  }

  /** One request/response exchange with the vetted address. Resolves at response headers. */
  function exchange(method: string, url: URL, ip: string, headers: Record<string, string>, body: Body, contentLength: number | undefined, deadline: Deadline): Promise<IncomingMessage> {
    deadline.check();
    const port = portOf(url);
    const host = bareHost(url);
    const secure = url.protocol === 'https:';
    const finalHeaders: Record<string, string> = {
      ...headers,
      host: url.host,
      'user-agent': userAgent,
      // Identity only: maxBytes must bound what we decode, not a compressed representation.
      'accept-encoding': 'identity',
      connection: 'close',
    };
    if (Buffer.isBuffer(body)) finalHeaders['content-length'] = String(body.length);
    else if (body !== undefined && contentLength !== undefined) finalHeaders['content-length'] = String(contentLength);
    else if (body === undefined && (method === 'PUT' || method === 'POST')) finalHeaders['content-length'] = '0';

    return new Promise<IncomingMessage>((resolve, reject) => {
      let response: IncomingMessage | undefined;
      const createConnection = (): net.Socket => {
        options.onConnect?.(ip, port);
        if (!secure) return net.connect({ host: ip, port });
        return tls.connect({
          host: ip,
          port,
          // SNI and certificate identity use the hostname, not the IP we dial (RFC 6066 §3 forbids
          // an IP literal in SNI; Node then checks the certificate against `host`, the IP).
          ...(net.isIP(host) === 0 ? { servername: host } : {}),
          ...(ca === undefined ? {} : { ca }),
          // Explicit so NODE_TLS_REJECT_UNAUTHORIZED=0 in the environment cannot switch validation off.
          rejectUnauthorized: true,
          minVersion: 'TLSv1.2',
          ALPNProtocols: ['http/1.1'],
        });
      };
      let req: http.ClientRequest;
      try {
        req = http.request({ method, path: `${url.pathname}${url.search}`, headers: finalHeaders, setHost: false, createConnection });
      } catch (err) {
        reject(isAppError(err) ? err : failed('request', { cause: err }));
        return;
      }
      const headersTimer = setTimeout(() => req.destroy(failed('headers-timeout')), headersTimeoutMs);
      const onAbort = (): void => {
        const reason = deadline.signal.reason as AppError;
        response?.destroy(reason);
        req.destroy(reason);
      };
      deadline.signal.addEventListener('abort', onAbort, { once: true });
      // A failing request body (short stream, source error) makes pipeline destroy `req` with a
      // generic error; report the body's own failure, which says what actually went wrong.
      let bodyError: AppError | undefined;
      req.on('error', (err) => {
        clearTimeout(headersTimer);
        setImmediate(() => reject(bodyError ?? (isAppError(err) ? err : failed('network', { cause: err }))));
      });
      req.on('response', (res) => {
        clearTimeout(headersTimer);
        response = res;
        resolve(res);
      });
      if (body === undefined) {
        req.end();
      } else if (Buffer.isBuffer(body)) {
        req.end(body);
      } else {
        const noteBodyError = (err: Error): void => {
          bodyError ??= isAppError(err) ? err : failed('request-body', { cause: err });
        };
        body.once('error', noteBodyError);
        const done = (err: Error | null | undefined): void => {
          if (err && !response) req.destroy(err);
        };
        if (contentLength === undefined) {
          pipeline(body, req, done);
        } else {
          const counter = exactLength(contentLength);
          counter.once('error', noteBodyError);
          pipeline(body, counter, req, done);
        }
      }
    });
  }

  /** Runs the redirect loop; returns the final response (headers read, body unread). */
  async function perform(method: string, raw: string | URL, body: Body, call: SendOptions, deadline: Deadline): Promise<{ res: IncomingMessage; url: URL }> {
    let url = checkUrl(raw);
    let headers = sanitiseHeaders(call.headers);
    let payload = body;
    let verb = method;
    const follow = call.redirect !== 'manual';
    for (let hop = 0; ; hop += 1) {
      const ip = await vet(url, deadline);
      const res = await exchange(verb, url, ip, headers, payload, call.contentLength, deadline);
      const status = res.statusCode ?? 0;
      const location = res.headers.location;
      if (!follow || !REDIRECT_STATUSES.has(status) || location === undefined) return { res, url };
      // The redirect body is never read: it is the upstream's text and may be large.
      res.destroy();
      if (hop >= maxRedirects) throw failed('too-many-redirects', { upstreamStatus: status });
      let next: URL;
      try {
        next = new URL(location, url);
      } catch {
        throw failed('bad-redirect', { upstreamStatus: status });
      }
      // Scheme, credentials and port are re-checked here; the address at the top of the loop,
      // before any connection (an open redirect to 169.254.169.254 must never be dialled).
      next = checkUrl(next);
      // WHATWG Fetch "HTTP-redirect fetch" step 12: 303 turns anything but HEAD into GET; 301/302
      // turn POST into GET; 307/308 (and 301/302 for other methods) repeat the request as is.
      const toGet = (status === 303 && verb !== 'GET' && verb !== 'HEAD') || ((status === 301 || status === 302) && verb === 'POST');
      if (toGet) {
        verb = 'GET';
        payload = undefined;
        delete headers['content-type'];
      } else if (payload !== undefined && !Buffer.isBuffer(payload)) {
        throw failed('redirect-with-streamed-body', { upstreamStatus: status });
      }
      if (next.origin !== url.origin) {
        // Any forwarded header may be a credential (Authorization, X-Api-Key, signed x-amz-*):
        // the customer meant it for the origin they named, so it does not follow to another one,
        // and stays dropped even if a later hop comes back.
        headers = Object.fromEntries(Object.entries(headers).filter(([n]) => CROSS_ORIGIN_SAFE_HEADERS.has(n)));
      }
      url = next;
    }
  }

  /** Wraps the response in a stream that enforces maxBytes and maps every failure to an AppError. */
  function boundedBody(res: IncomingMessage, deadline: Deadline): Readable {
    async function* read(): AsyncGenerator<Buffer> {
      let total = 0;
      try {
        for await (const chunk of res as AsyncIterable<Buffer>) {
          total += chunk.length;
          if (total > maxBytes) throw tooLarge(maxBytes);
          yield chunk;
        }
        if (!res.complete) throw failed('truncated');
      } catch (err) {
        throw isAppError(err) ? err : failed('body', { cause: err });
      } finally {
        res.destroy();
        deadline.clear();
      }
    }
    return Readable.from(read(), { objectMode: false });
  }

  async function get(url: string | URL, call: CallOptions = {}): Promise<FetchResponse> {
    const deadline = new Deadline(timeoutMs, call.signal);
    try {
      const { res, url: finalUrl } = await perform('GET', url, undefined, call, deadline);
      const status = res.statusCode ?? 0;
      if (status < 200 || status > 299) {
        res.destroy();
        throw failed('status', { upstreamStatus: status });
      }
      const declared = res.headers['content-length'];
      if (declared !== undefined && Number(declared) > maxBytes) {
        res.destroy();
        throw tooLarge(maxBytes);
      }
      return { status, headers: res.headers, body: boundedBody(res, deadline), finalUrl: finalUrl.href };
    } catch (err) {
      deadline.clear();
      throw err;
    }
  }

  async function getBuffer(url: string | URL, call: CallOptions = {}): Promise<BufferResponse> {
    const r = await get(url, call);
    const chunks: Buffer[] = [];
    for await (const chunk of r.body as AsyncIterable<Buffer>) chunks.push(chunk);
    return { status: r.status, headers: r.headers, body: Buffer.concat(chunks), finalUrl: r.finalUrl };
  }

  async function send(method: 'PUT' | 'POST', url: string | URL, body: Buffer | Readable, call: SendOptions = {}): Promise<SendResult> {
    if (!Buffer.isBuffer(body) && !(body instanceof Readable)) throw new TypeError(`fetcher ${method} body must be a Buffer or a Readable`);
    if (call.contentLength !== undefined && (!Number.isSafeInteger(call.contentLength) || call.contentLength < 0)) {
      throw new RangeError('contentLength must be a non-negative integer');
    }
    const deadline = new Deadline(timeoutMs, call.signal);
    try {
      const { res, url: finalUrl } = await perform(method, url, body, call, deadline);
      // The upstream's body is neither needed nor trusted; closing the socket (Connection: close,
      // no pool) ends the exchange without reading it.
      res.destroy();
      return { status: res.statusCode ?? 0, headers: res.headers, finalUrl: finalUrl.href };
    } finally {
      deadline.clear();
    }
  }

  return {
    get,
    getBuffer,
    put: (url, body, call) => send('PUT', url, body, call),
    post: (url, body, call) => send('POST', url, body, call),
  };
}
