/**
 * Keyset pagination: every list in the API pages the same way (issue 9, item 10).
 *
 * A list is ordered by a tuple of columns that is unique per row — `(created_at, id)` for most, the
 * serial `id` of the audit log, a preset's `name` — and a page starts strictly after the last row of
 * the previous one: `WHERE (created_at, id) < ($1, $2) ORDER BY created_at DESC, id DESC LIMIT n+1`.
 * So a page boundary is a position, not an offset: rows inserted meanwhile never shift or repeat the
 * rows of later pages (new rows sort first in newest-first lists, last in oldest-first ones).
 *
 * Positions are the key columns as PostgreSQL text (timestamps to the microsecond, which a JS Date
 * would round), so they compare exactly. Turning a position into an opaque, tamper-safe cursor is the
 * HTTP layer's job (src/http/pagination.ts); this module only reads and writes positions.
 */
import { sql, type SelectQueryBuilder } from 'kysely';

/** Default page size of every list. */
export const DEFAULT_PAGE_LIMIT = 100;
/** Largest page size a client may ask for. */
export const MAX_PAGE_LIMIT = 500;

/** One key column: its name and PostgreSQL type (the position is cast back to it). */
export interface KeyColumn {
  column: string;
  type: 'timestamptz' | 'uuid' | 'text' | 'bigint';
}

/** How a list is ordered. The columns together must be unique per row (end with the primary key). */
export interface ListOrder {
  keys: readonly KeyColumn[];
  direction: 'asc' | 'desc';
}

/** Which page to read: at most `limit` rows (`null`: all) after `after` (`null`: from the start). */
export interface PageRequest {
  limit: number | null;
  after: readonly string[] | null;
}

/** Every row, in order (operator commands and other internal callers). */
export const ALL_ROWS: PageRequest = { limit: null, after: null };

/** A page of a list and where the next one starts (`null` when this page is the last). */
export interface Page<T> {
  items: T[];
  next: string[] | null;
}

const POSITION_PREFIX = '_page_key_';

/** The key column as exact text: timestamps in UTC with microseconds, the others as their text form. */
function keyText(k: KeyColumn) {
  return k.type === 'timestamptz' ? sql<string>`to_char(${sql.ref(k.column)} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')` : sql<string>`${sql.ref(k.column)}::text`;
}

/**
 * Reads one page of `qb` (which already selects the rows and applies the tenant and filter
 * conditions) in `order`, starting after `page.after`. Rows come back without the key columns it added.
 */
export async function keysetPage<DB, TB extends keyof DB, O>(qb: SelectQueryBuilder<DB, TB, O>, order: ListOrder, page: PageRequest): Promise<Page<O>> {
  if (page.after && page.after.length !== order.keys.length) throw new Error('keysetPage: a position of the wrong length');
  // Kysely cannot type columns named at run time; the query is built from the list's own constants.
  let q = qb as unknown as SelectQueryBuilder<any, any, any>;
  q = q.select(order.keys.map((k, i) => keyText(k).as(`${POSITION_PREFIX}${i}`)));
  if (page.after) {
    const after = page.after;
    const columns = sql.join(order.keys.map((k) => sql.ref(k.column)));
    const values = sql.join(order.keys.map((k, i) => sql`${after[i]}::${sql.raw(k.type)}`));
    // Row comparison: strictly after the previous page's last row in the list's order.
    q = q.where(sql<boolean>`(${columns}) ${sql.raw(order.direction === 'desc' ? '<' : '>')} (${values})`);
  }
  for (const k of order.keys) q = q.orderBy(k.column, order.direction);
  if (page.limit !== null) q = q.limit(page.limit + 1);
  const rows = (await q.execute()) as Array<Record<string, unknown>>;
  const more = page.limit !== null && rows.length > page.limit;
  const kept = more ? rows.slice(0, page.limit!) : rows;
  const last = kept[kept.length - 1];
  const next = more && last ? order.keys.map((_, i) => String(last[`${POSITION_PREFIX}${i}`])) : null;
  const items = kept.map((r) => {
    const copy = { ...r };
    for (let i = 0; i < order.keys.length; i++) delete copy[`${POSITION_PREFIX}${i}`];
    return copy as O;
  });
  return { items, next };
}

/** Maps the items of a page, keeping its position. */
export function mapPage<T, U>(page: Page<T>, fn: (item: T) => U): Page<U> {
  return { items: page.items.map(fn), next: page.next };
}
