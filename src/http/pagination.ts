/**
 * The one pagination convention of the API (issue 9, item 10): every list takes `limit` (1–500,
 * default 100) and `cursor`, and answers `{ data: [...], next_cursor }` — `next_cursor` is `null` on
 * the last page; pass it back as `cursor` (with the same filters) for the next one.
 *
 * Cursors are opaque and tamper-safe: the position (src/db/pagination.ts) is base64url JSON followed
 * by an HMAC-SHA256 (node:crypto) over it and over what the cursor is for — the list, the caller's org
 * and the list's filters and parent (an app, an endpoint, a console user). A changed, truncated,
 * forged or foreign cursor (another list, another org, other filters) fails the MAC and is a
 * `400 ERR_CURSOR_INVALID`, never a 500 and never another org's rows (the queries are tenant-scoped
 * anyway). The key is derived from the master key, so every node of a fleet accepts every node's
 * cursors; rotating the master key invalidates outstanding cursors (start the listing again).
 */
import { createHmac, hkdfSync, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Type, type TSchema } from 'typebox';
import { AppError } from '../errors.js';
import { DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT, type ListOrder, type Page, type PageRequest } from '../db/pagination.js';
import { errorResponses } from './routes/common.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** Signs and checks list cursors (src/http/pagination.ts). */
    cursors: CursorCodec;
  }
}

/** What a cursor is bound to: it is valid only for the same list, org and filters. */
export interface CursorScope {
  /** The list, e.g. `assets`, `apps/keys`. */
  list: string;
  orgId: string;
  /** The list's filters and parent ids; undefined members are ignored. */
  filter?: Record<string, unknown>;
}

const VERSION = 1;
const MAX_CURSOR_LENGTH = 1024;

function canonical(filter: Record<string, unknown> | undefined): string {
  const entries = Object.entries(filter ?? {})
    .filter(([, v]) => v !== undefined && v !== null)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return JSON.stringify(entries);
}

function invalid(): AppError {
  return new AppError('ERR_CURSOR_INVALID', 'The cursor is not valid for this list: pass next_cursor back unchanged, with the same filters, or start again without a cursor.', {
    details: { field: 'cursor' },
  });
}

/** Issues and verifies cursors under one HMAC key. */
export class CursorCodec {
  readonly #key: Buffer;

  constructor(key: Buffer) {
    if (key.length < 32) throw new Error('CursorCodec: the key must have at least 32 bytes');
    this.#key = key;
  }

  /** A codec keyed from the master key (HKDF-SHA256, its own label). */
  static fromMasterKey(masterKey: Buffer): CursorCodec {
    return new CursorCodec(Buffer.from(hkdfSync('sha256', masterKey, Buffer.alloc(0), 'obscura/list-cursor/v1', 32)));
  }

  #mac(scope: CursorScope, payload: string): Buffer {
    return createHmac('sha256', this.#key).update(JSON.stringify([VERSION, scope.list, scope.orgId, canonical(scope.filter), payload])).digest();
  }

  /** The opaque cursor for `position` in `scope`. */
  encode(scope: CursorScope, position: readonly string[]): string {
    const payload = Buffer.from(JSON.stringify({ v: VERSION, p: position })).toString('base64url');
    return `${payload}.${this.#mac(scope, payload).toString('base64url')}`;
  }

  /** The position a cursor names, or `400 ERR_CURSOR_INVALID` if it was not issued for `scope`. */
  decode(cursor: string, scope: CursorScope, keyCount: number): string[] {
    if (cursor.length > MAX_CURSOR_LENGTH) throw invalid();
    const m = /^([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]{43})$/.exec(cursor);
    if (!m) throw invalid();
    const given = Buffer.from(m[2]!, 'base64url');
    const expected = this.#mac(scope, m[1]!);
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) throw invalid();
    // Authentic from here on; the checks below only guard against our own older formats.
    let parsed: unknown;
    try {
      parsed = JSON.parse(Buffer.from(m[1]!, 'base64url').toString('utf8'));
    } catch {
      throw invalid();
    }
    const p = (parsed as { v?: unknown; p?: unknown } | null)?.p;
    if ((parsed as { v?: unknown }).v !== VERSION || !Array.isArray(p) || p.length !== keyCount || !p.every((x) => typeof x === 'string')) throw invalid();
    return p as string[];
  }
}

/** Installs the cursor codec on the app (every route reads it as `req.server.cursors`). */
export function installCursors(app: FastifyInstance, masterKey: Buffer): void {
  app.decorate('cursors', CursorCodec.fromMasterKey(masterKey));
}

/** The query parameters every list takes. */
export const PageQueryProps = {
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_PAGE_LIMIT, default: DEFAULT_PAGE_LIMIT, description: `Items per page (1–${MAX_PAGE_LIMIT}, default ${DEFAULT_PAGE_LIMIT}).` })),
  cursor: Type.Optional(Type.String({ maxLength: MAX_CURSOR_LENGTH, description: 'The `next_cursor` of the previous page, unchanged (same filters). Omit for the first page.' })),
};

/** A list route's query: the page parameters plus the route's own filters. */
export function pageQuery<P extends Record<string, TSchema>>(filters: P = {} as P) {
  return Type.Object({ ...filters, ...PageQueryProps }, { additionalProperties: false });
}

/** A list route's 200 answer: `{ data, next_cursor }` (plus any extra members, e.g. for compatibility). */
export function pageSchema<T extends TSchema, X extends Record<string, TSchema>>(item: T, extra: X = {} as X) {
  return Type.Object(
    {
      data: Type.Array(item),
      next_cursor: Type.Union([Type.String(), Type.Null()], { description: 'Pass as `cursor` for the next page; null on the last page.' }),
      ...extra,
    },
    { additionalProperties: false },
  );
}

/** The error responses of a list route (a bad cursor is a 400 of its own). */
export function listErrorResponses(extra: Record<number, string> = {}): ReturnType<typeof errorResponses> {
  return errorResponses({ 400: 'Invalid request (ERR_VALIDATION), or a cursor not issued for this list, org and filters (ERR_CURSOR_INVALID).', ...extra });
}

/** The page a list request asks for (the cursor checked against `scope`). */
export function pageRequest(req: FastifyRequest, query: { limit?: number; cursor?: string }, scope: CursorScope, order: ListOrder): PageRequest {
  const limit = query.limit ?? DEFAULT_PAGE_LIMIT;
  return { limit, after: query.cursor === undefined ? null : req.server.cursors.decode(query.cursor, scope, order.keys.length) };
}

/** The answer for a page: its items and the cursor of the next page. */
export function pageReply<T, U>(req: FastifyRequest, page: Page<T>, scope: CursorScope, map: (item: T) => U): { data: U[]; next_cursor: string | null } {
  return { data: page.items.map(map), next_cursor: page.next ? req.server.cursors.encode(scope, page.next) : null };
}
