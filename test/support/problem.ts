/**
 * The one check that an error response is RFC 9457 problem+json the way src/http/problem.ts renders it:
 * `application/problem+json`, `type`, `title`, `status` equal to the HTTP status, a `code` of the closed
 * union in src/errors.ts whose status it is, a `detail`, and nothing that leaks the server's insides
 * (a stack frame, a source path, HTML).
 */
import { ERROR_CODES, type ErrorCode } from '../../src/errors.js';

/** What a response looks like to the check (an `app.inject()` response or a fetch result reshaped). */
export interface ResponseLike {
  statusCode: number;
  headers: Record<string, string | string[] | number | undefined>;
  payload: string;
}

/** A stack frame, a source or dependency path, or a Node error name: never in a client's answer. */
const LEAK = /\n\s+at |\bat [\w$.<>]+ \(|(?:^|[\s"'(/])(?:src|dist|node_modules)\/|\.(?:ts|js|mjs|cjs):\d+|\b(?:TypeError|ReferenceError|SyntaxError|RangeError): /;

/**
 * The ways `res` is not a well-formed problem document, as readable lines (empty: it is one). A HEAD
 * answer has no body, so only its status and content type are checked. `status` (when given) is the
 * HTTP status expected; `codes` (when given) the codes allowed.
 */
export function problemIssues(res: ResponseLike, opts: { method?: string; status?: number; codes?: readonly ErrorCode[] } = {}): string[] {
  const issues: string[] = [];
  const type = String(res.headers['content-type'] ?? '');
  if (opts.status !== undefined && res.statusCode !== opts.status) issues.push(`status ${res.statusCode}, expected ${opts.status}`);
  if (res.statusCode < 400) issues.push(`status ${res.statusCode} is not an error`);
  if (!type.startsWith('application/problem+json')) issues.push(`content-type "${type}"`);
  if (LEAK.test(res.payload)) issues.push(`leaks internals: ${res.payload.slice(0, 200)}`);
  if (/^\s*</.test(res.payload)) issues.push('HTML body');
  if (opts.method === 'HEAD') return issues;
  let body: Record<string, unknown>;
  try {
    body = JSON.parse(res.payload) as Record<string, unknown>;
  } catch {
    return [...issues, `body is not JSON: ${res.payload.slice(0, 80)}`];
  }
  const code = body.code as ErrorCode;
  if (typeof code !== 'string' || !(code in ERROR_CODES)) issues.push(`code ${String(code)} is not in src/errors.ts`);
  else if (ERROR_CODES[code] !== res.statusCode) issues.push(`code ${code} is status ${ERROR_CODES[code]} in src/errors.ts, answered ${res.statusCode}`);
  if (opts.codes && !opts.codes.includes(code)) issues.push(`code ${String(code)}, expected one of ${opts.codes.join(', ')}`);
  if (body.type !== `urn:obscura:error:${String(code)}`) issues.push(`type ${String(body.type)}`);
  if (typeof body.title !== 'string' || body.title === '') issues.push('no title');
  if (body.status !== res.statusCode) issues.push(`body status ${String(body.status)} ≠ HTTP ${res.statusCode}`);
  if (typeof body.detail !== 'string' || body.detail === '') issues.push('no detail');
  return issues;
}

