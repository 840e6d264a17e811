/**
 * The API's one pagination convention: every list takes `limit` and `cursor` and answers
 * `{ data, next_cursor }` (`null` on the last page). Cursors are opaque: pass them back unchanged,
 * with the same filters.
 */
import type { Page } from './types.js';

/** The largest page the API serves; used when the SDK reads a whole list for you. */
export const MAX_PAGE_LIMIT = 500;

/** Every item of a list, page by page, following `next_cursor` until the last page. */
export async function* eachItem<T>(fetchPage: (cursor: string | undefined) => Promise<Page<T>>): AsyncGenerator<T> {
  let cursor: string | undefined;
  for (;;) {
    const page = await fetchPage(cursor);
    yield* page.data;
    if (page.next_cursor === null || page.next_cursor === undefined) return;
    cursor = page.next_cursor;
  }
}

/** Every item of a list in one array (for lists that stay small: apps, keys, clients, endpoints). */
export async function allItems<T>(fetchPage: (cursor: string | undefined) => Promise<Page<T>>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of eachItem(fetchPage)) out.push(item);
  return out;
}
