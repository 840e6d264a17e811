/**
 * Telling "the database is down, frozen or overloaded" apart from "this query is wrong": the first is
 * a 503 with Retry-After that a client may retry (issue 9, item 17), the second stays a 500.
 */

/** node-postgres' own messages for a connection that never came or went away (it sets no code). */
const PG_CLIENT_MESSAGES = [
  'Query read timeout',
  'timeout exceeded when trying to connect',
  'Connection terminated unexpectedly',
  'Connection terminated due to connection timeout',
  'Connection terminated',
  'Client has encountered a connection error and is not queryable',
  'Cannot use a pool after calling end on the pool',
];

/** Socket errors: the server is not there (stopped, unreachable, reset). */
const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN']);

/**
 * SQLSTATEs meaning "not now": connection exceptions (class 08), statement timeout / cancel (57014),
 * server shutting down or starting (57P01–57P03), too many connections (53300), out of memory or disk
 * (53100, 53200).
 */
function unavailableSqlState(code: string): boolean {
  return code.startsWith('08') || code === '57014' || /^57P0[1-3]$/.test(code) || code === '53300' || code === '53100' || code === '53200';
}

/** True when `err` (or an error in its `cause` chain) says the database could not answer in time. */
export function isDatabaseUnavailable(err: unknown): boolean {
  for (let e = err as { message?: unknown; code?: unknown; cause?: unknown } | undefined, depth = 0; e && depth < 5; e = e.cause as typeof e, depth++) {
    const code = typeof e.code === 'string' ? e.code : '';
    if (NETWORK_CODES.has(code) || (/^[0-9A-Z]{5}$/.test(code) && unavailableSqlState(code))) return true;
    const message = typeof e.message === 'string' ? e.message : '';
    if (PG_CLIENT_MESSAGES.some((m) => message.startsWith(m))) return true;
    if (e.constructor?.name === 'AggregateError' && Array.isArray((e as { errors?: unknown[] }).errors)) {
      if ((e as { errors: unknown[] }).errors.some((inner) => isDatabaseUnavailable(inner))) return true;
    }
  }
  return false;
}
