/**
 * A least-recently-used map bounded in bytes (issue 12, item 6: bounded caches everywhere, in bytes,
 * not entries). Every long-lived in-memory cache of the server is one of these, or says in its own
 * comment why it is bounded otherwise (by the number of configured apps, by a queue's length).
 *
 * The size of an entry is what the caller's `sizeOf` says, plus {@link ENTRY_OVERHEAD_BYTES} for the
 * map slot, key string and entry object, so a cache of tiny values cannot grow without bound in
 * entries either. An entry larger than the whole budget is not stored (a cache never holds one
 * giant value by evicting everything else). Optional `ttlMs`: an entry older than that is a miss and
 * is dropped when met.
 *
 * A leaf: it imports nothing, so every room may use it (test/architecture.test.ts).
 */

/** Bytes counted for each entry on top of `sizeOf` (map slot, key, entry object, timestamps). */
export const ENTRY_OVERHEAD_BYTES = 160;

/** Approximate heap bytes of a string key or value (UTF-16 worst case). */
export const stringBytes = (s: string): number => 2 * s.length;

/** Options of {@link ByteLru}. */
export interface ByteLruOptions<K, V> {
  /** Most bytes held (sum of `sizeOf` + overhead over the entries). ≥ 0; 0 holds nothing. */
  maxBytes: number;
  /** The bytes one value holds (its key included when the key is large). */
  sizeOf: (value: V, key: K) => number;
  /** Entries older than this are misses (default: no age limit). */
  ttlMs?: number | undefined;
  /** The clock (tests). Default `Date.now`. */
  now?: (() => number) | undefined;
  /** Called for each entry evicted to make room (not for `delete`, `clear` or expiry). */
  onEvict?: ((key: K, value: V) => void) | undefined;
}

interface Slot<V> {
  value: V;
  bytes: number;
  at: number;
}

/** A `Map` with LRU eviction by bytes. Not thread-safe across workers (each has its own). */
export class ByteLru<K, V> {
  private readonly map = new Map<K, Slot<V>>();
  private held = 0;
  private evicted = 0;

  constructor(private readonly opts: ByteLruOptions<K, V>) {
    if (!(opts.maxBytes >= 0)) throw new RangeError('maxBytes must be >= 0');
  }

  private now(): number {
    return this.opts.now ? this.opts.now() : Date.now();
  }

  /** The value, refreshed as most recently used; `undefined` on a miss or an expired entry. */
  get(key: K): V | undefined {
    const slot = this.map.get(key);
    if (!slot) return undefined;
    if (this.opts.ttlMs !== undefined && this.now() - slot.at >= this.opts.ttlMs) {
      this.remove(key, slot);
      return undefined;
    }
    // Re-inserting moves the key to the end of the Map's insertion order: the most recently used.
    this.map.delete(key);
    this.map.set(key, slot);
    return slot.value;
  }

  /** Whether a live entry exists (does not refresh it). */
  has(key: K): boolean {
    const slot = this.map.get(key);
    return !!slot && (this.opts.ttlMs === undefined || this.now() - slot.at < this.opts.ttlMs);
  }

  /**
   * Stores `value` (replacing any entry for `key`), then evicts least recently used entries until the
   * budget holds. Returns false when the value alone exceeds the budget (it is then not stored, and
   * any older entry for `key` is removed, so a stale value is never served).
   */
  set(key: K, value: V): boolean {
    const old = this.map.get(key);
    if (old) this.remove(key, old);
    const bytes = Math.max(0, this.opts.sizeOf(value, key)) + ENTRY_OVERHEAD_BYTES;
    if (bytes > this.opts.maxBytes) return false;
    this.map.set(key, { value, bytes, at: this.now() });
    this.held += bytes;
    while (this.held > this.opts.maxBytes) {
      const [k, slot] = this.map.entries().next().value as [K, Slot<V>];
      this.remove(k, slot);
      this.evicted++;
      this.opts.onEvict?.(k, slot.value);
    }
    return true;
  }

  /** Removes one entry. */
  delete(key: K): boolean {
    const slot = this.map.get(key);
    if (!slot) return false;
    this.remove(key, slot);
    return true;
  }

  /** Removes every entry. */
  clear(): void {
    this.map.clear();
    this.held = 0;
  }

  /** Removes every entry whose key or value matches. */
  deleteWhere(match: (key: K, value: V) => boolean): void {
    for (const [k, slot] of this.map) if (match(k, slot.value)) this.remove(k, slot);
  }

  /** The values held now, least recently used first (expired ones included until met). */
  *values(): IterableIterator<V> {
    for (const slot of this.map.values()) yield slot.value;
  }

  /** Entries held now. */
  get size(): number {
    return this.map.size;
  }

  /** Bytes held now (never above `maxBytes`). */
  get bytes(): number {
    return this.held;
  }

  /** The budget. */
  get maxBytes(): number {
    return this.opts.maxBytes;
  }

  /** Entries evicted to make room since creation. */
  get evictions(): number {
    return this.evicted;
  }

  private remove(key: K, slot: Slot<V>): void {
    this.map.delete(key);
    this.held -= slot.bytes;
  }
}
