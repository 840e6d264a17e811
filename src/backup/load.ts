/**
 * Loading a dump (src/backup/dump.ts) into a freshly migrated, empty database, in one transaction:
 * either every row is in or none is.
 *
 * Rows go in through `json_populate_recordset`, so PostgreSQL itself turns each `row_to_json` text
 * back into typed columns (arrays, jsonb, bytea, timestamps with microseconds, bigints); identity
 * columns keep their values (`OVERRIDING SYSTEM VALUE`) and sequences are set afterwards. Columns
 * are named, so a column a later version added takes its default. Nothing here needs a superuser:
 * on PostgreSQL the runtime role inserts (it may, on every table, through its own RLS policy), and no
 * trigger fires on INSERT (the audit log's append-only trigger guards UPDATE, DELETE and TRUNCATE).
 */
import { sql, type Kysely } from 'kysely';
import type { DatabaseHandle, Tx } from '../db/database.js';
import { AppError } from '../errors.js';
import { columnsOf, quoteIdent, tablesInOrder, type DumpEnd, type DumpHeader } from './dump.js';
import { invalid } from './keys.js';

/** Rows or bytes per INSERT. */
const BATCH_ROWS = 500;
const BATCH_CHARS = 4 * 1024 * 1024;

/** What the loaded dump said about itself. */
export interface LoadedDump {
  header: DumpHeader;
  end: DumpEnd;
  /** Rows inserted (less than `end.rows` by the rows left out, see `skipRows`). */
  inserted: number;
}

export interface LoadOptions {
  /** The archive-relative name of the dump, for messages. */
  name: string;
  /** Migrations this version knows: a dump made after a migration it does not know is refused. */
  knownMigrations: ReadonlySet<string>;
  /**
   * Rows never to insert, by table: rows whose `column` is in `values` (an erased org's wrapped keys
   * are not written even briefly, so no page of the restored database ever holds them).
   */
  skipRows?: { table: string; column: string; values: ReadonlySet<string> };
  /** Runs in the load's transaction after the last row (e.g. marking assets whose blob was gone). */
  finish?: (trx: Tx) => Promise<void>;
}

/**
 * Whether any application table of `db` has a row (the restore target must have none). Reads the
 * catalog first, so an empty, unmigrated database answers false.
 */
export async function hasRows(db: Kysely<any>): Promise<string | null> {
  for (const t of await tablesInOrder(db)) {
    const r = await sql.raw<{ any: boolean }>(`select exists (select 1 from ${quoteIdent(t)}) as any`).execute(db);
    if (r.rows[0]?.any) return t;
  }
  return null;
}

/** Loads `lines` (a whole dump) into `db` in one transaction; throws and leaves nothing on any failure. */
export async function loadDump(db: DatabaseHandle, lines: AsyncIterable<string>, opts: LoadOptions): Promise<LoadedDump> {
  return db.system.transaction().execute(async (trx) => {
    let header: DumpHeader | undefined;
    let end: DumpEnd | undefined;
    let table: { name: string; columns: string[] } | undefined;
    let batch: string[] = [];
    let chars = 0;
    let rows = 0;
    let inserted = 0;
    const targetTables = new Set(await tablesInOrder(trx));
    const skipValues = opts.skipRows ? [...opts.skipRows.values] : [];
    for await (const line of lines) {
      if (line === '') continue;
      const tag = line.slice(0, 2);
      const body = line.slice(2);
      if (tag === 'R ') {
        if (!table) throw invalid(opts.name, 'a row comes before its table');
        batch.push(body);
        chars += body.length;
        rows += 1;
        if (batch.length >= BATCH_ROWS || chars >= BATCH_CHARS) {
          inserted += await flushWith(trx, table, batch, opts, skipValues);
          batch = [];
          chars = 0;
        }
        continue;
      }
      if (table && batch.length) {
        inserted += await flushWith(trx, table, batch, opts, skipValues);
        batch = [];
        chars = 0;
      }
      const value = JSON.parse(body) as Record<string, unknown>;
      if (tag === 'H ') {
        header = value as unknown as DumpHeader;
        if (header.format !== 'obscura-dump/1') throw invalid(opts.name, `is not a dump this version reads (${String(header.format)})`);
        const unknown = header.migrations.filter((m) => !opts.knownMigrations.has(m));
        if (unknown.length) throw new AppError('ERR_BACKUP_INVALID', `${opts.name}: was made by a newer Obscura (database migrations ${unknown.join(', ')} are unknown here); restore it with that version or later`);
      } else if (tag === 'T ') {
        if (!header) throw invalid(opts.name, 'has no header');
        const name = String(value.table);
        const columns = value.columns as string[];
        if (!targetTables.has(name)) throw new AppError('ERR_BACKUP_INVALID', `${opts.name}: table ${name} does not exist in this version of Obscura`);
        const have = new Set(await columnsOf(trx, name));
        const missing = columns.filter((c) => !have.has(c));
        if (missing.length) throw new AppError('ERR_BACKUP_INVALID', `${opts.name}: columns ${missing.map((c) => `${name}.${c}`).join(', ')} do not exist in this version of Obscura`);
        table = { name, columns };
      } else if (tag === 'S ') {
        for (const s of value.sequences as { name: string; value: string; called: boolean }[]) {
          await sql`select setval(${'public.' + quoteIdent(s.name)}::regclass, ${s.value}::bigint, ${s.called})`.execute(trx);
        }
        table = undefined;
      } else if (tag === 'E ') {
        end = value as unknown as DumpEnd;
      } else if (tag !== 'B ' && tag !== 'X ') {
        throw invalid(opts.name, `has an unknown line type "${tag.trim()}"`);
      }
    }
    if (!header || !end) throw invalid(opts.name, 'is incomplete (no end line)');
    if (end.rows !== rows) throw invalid(opts.name, `holds ${rows} rows where its end line says ${end.rows}`);
    await opts.finish?.(trx);
    return { header, end, inserted };
  });
}

/** Inserts one batch of rows into `table`, leaving out the rows `opts.skipRows` names. */
async function flushWith(trx: Tx, table: { name: string; columns: string[] }, batch: string[], opts: LoadOptions, skipValues: string[]): Promise<number> {
  const list = table.columns.map(quoteIdent).join(', ');
  const json = '[' + batch.join(',') + ']';
  const skipping = opts.skipRows && opts.skipRows.table === table.name && skipValues.length > 0;
  const source = sql.raw(`select ${list} from json_populate_recordset(null::${quoteIdent(table.name)}, `);
  const query = skipping
    ? sql`insert into ${sql.table(table.name)} (${sql.raw(list)}) overriding system value ${source}${json}::json) r where ${sql.ref(opts.skipRows!.column)}::text <> all(${skipValues}::text[])`
    : sql`insert into ${sql.table(table.name)} (${sql.raw(list)}) overriding system value ${source}${json}::json) r`;
  const r = await query.execute(trx);
  return Number(r.numAffectedRows ?? 0);
}
