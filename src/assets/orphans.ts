/**
 * Orphaned blobs (issue 9, item 20): objects in the store that no row refers to, left by a process
 * killed between writing a blob and committing its row (or between deleting a row and its blob).
 *
 * A maintenance pass lists the store (both adapters implement `list`), asks the database which of the
 * keys it understands still have a row, and remembers the ones that do not with the time it first saw
 * them. An object is deleted only when it is still without a row on a pass at least `graceMs`
 * (default 1 hour) after it was first seen: longer than any write takes between its blob and its
 * row (a blob is written in one atomic put and its row committed right after; a tus upload's row and
 * a presigned intent's row exist before their first byte). Keys of a shape this code does not know
 * are never touched. Listing a large store is not free, so a sweeper lists at most once per
 * `everyMs` (default 1 hour).
 */
import type { DatabaseHandle } from '../db/database.js';
import type { BlobStore } from './stores/types.js';

/** How a key maps to the row that owns it. */
interface Owner {
  /** `parts`: a version-2 part, owned by its asset's manifest or by the unfinished upload writing it. */
  table: 'assets' | 'uploads' | 'upload_intents' | 'parts';
  id: string;
}

const UUID = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}';
const SHAPES: Array<{ re: RegExp; table: Owner['table'] }> = [
  { re: new RegExp(`^orgs/${UUID}/assets/([^/]+)$`), table: 'assets' },
  { re: new RegExp(`^uploads/${UUID}/([^/]+)/`), table: 'uploads' },
  { re: new RegExp(`^staging/${UUID}/([^/]+)$`), table: 'upload_intents' },
  { re: new RegExp(`^orgs/${UUID}/parts/([^/]+)/[^/]+$`), table: 'parts' },
];

/** The row a key belongs to, or undefined for a key of a shape we do not own. */
export function ownerOf(key: string): Owner | undefined {
  for (const s of SHAPES) {
    const m = s.re.exec(key);
    if (m) return { table: s.table, id: m[1]! };
  }
  return undefined;
}

export interface OrphanSweeperOptions {
  /** An orphan is deleted when still orphaned this long after first seen (default 1 h). */
  graceMs?: number;
  /** List the store at most this often (default 1 h; 0: every call). */
  everyMs?: number;
  now?: () => number;
}

/** Remembers candidates between passes; one per process (a second process only repeats the work). */
export class OrphanSweeper {
  private readonly seen = new Map<string, number>();
  private lastRun = -Infinity;

  constructor(
    private readonly deps: { db: DatabaseHandle; store: BlobStore },
    private readonly opts: OrphanSweeperOptions = {},
  ) {}

  private now(): number {
    return this.opts.now?.() ?? Date.now();
  }

  /** One pass (skipped when the last was less than `everyMs` ago). Returns the objects deleted. */
  async run(): Promise<{ listed: number; candidates: number; deleted: number } | null> {
    const now = this.now();
    if (now - this.lastRun < (this.opts.everyMs ?? 3600_000)) return null;
    this.lastRun = now;
    const grace = this.opts.graceMs ?? 3600_000;
    const orphans = new Set<string>();
    let listed = 0;
    let batch: Array<{ key: string; owner: Owner }> = [];
    const flush = async () => {
      for (const key of await this.withoutRow(batch)) orphans.add(key);
      batch = [];
    };
    for await (const key of this.deps.store.list('')) {
      listed += 1;
      const owner = ownerOf(key);
      if (!owner) continue;
      batch.push({ key, owner });
      if (batch.length >= 500) await flush();
    }
    await flush();
    let deleted = 0;
    for (const key of orphans) {
      const first = this.seen.get(key);
      if (first === undefined) this.seen.set(key, now);
      else if (now - first >= grace) {
        // Ask once more right before deleting: a row may have appeared since the listing.
        const owner = ownerOf(key)!;
        if ((await this.withoutRow([{ key, owner }])).length === 1) {
          await this.deps.store.delete(key);
          deleted += 1;
        }
        this.seen.delete(key);
      }
    }
    // Forget candidates that got a row (or vanished) since.
    for (const key of this.seen.keys()) if (!orphans.has(key)) this.seen.delete(key);
    return { listed, candidates: this.seen.size, deleted };
  }

  /** The keys of `batch` whose owning row does not exist. */
  private async withoutRow(batch: Array<{ key: string; owner: Owner }>): Promise<string[]> {
    if (batch.length === 0) return [];
    const out: string[] = [];
    for (const table of ['assets', 'uploads', 'upload_intents'] as const) {
      const items = batch.filter((b) => b.owner.table === table);
      if (items.length === 0) continue;
      const ids = [...new Set(items.map((i) => i.owner.id))];
      const rows = await this.deps.db.system.selectFrom(table).select('id').where('id', 'in', ids).execute();
      const live = new Set(rows.map((r) => String(r.id)));
      for (const i of items) if (!live.has(i.owner.id)) out.push(i.key);
    }
    const parts = batch.filter((b) => b.owner.table === 'parts');
    if (parts.length > 0) {
      // A part is owned while the upload writing it is unfinished, while its asset is being deleted
      // (the deletion removes the whole prefix), or when its asset's manifest lists it; a part a
      // crash or a lost race left beside a finished asset is not.
      const ids = [...new Set(parts.map((i) => i.owner.id))];
      const uploads = await this.deps.db.system.selectFrom('uploads').select('target_asset_id').where('target_asset_id', 'in', ids).where('completed_asset_id', 'is', null).execute();
      const assets = await this.deps.db.system.selectFrom('assets').select(['id', 'parts', 'deleted_at']).where('id', 'in', ids).execute();
      const writing = new Set(uploads.map((u) => String(u.target_asset_id)));
      const listed = new Set<string>();
      for (const a of assets) {
        if (a.deleted_at) writing.add(a.id);
        const manifest = (typeof a.parts === 'string' ? JSON.parse(a.parts) : a.parts ?? []) as Array<{ key: string }>;
        for (const p of manifest) listed.add(p.key);
      }
      for (const i of parts) if (!writing.has(i.owner.id) && !listed.has(i.key)) out.push(i.key);
    }
    return out;
  }
}
