/** Building blocks for migrations. */
import { sql, type Kysely, type Migration } from 'kysely';

/** The non-superuser, non-owner role every tenant transaction switches to, so RLS applies. */
export const TENANT_ROLE = 'obscura_app';

/** A migration made of single statements (PGlite's extended protocol runs one statement per call). */
export function statements(list: string[]): Migration {
  return {
    async up(db: Kysely<unknown>) {
      for (const s of list) await sql.raw(s).execute(db);
    },
  };
}

/** Enables RLS on a tenant table with the standard policy: rows of `app.org_id` only. */
export const rls = (table: string, column = 'org_id'): string[] => [
  `ALTER TABLE ${table} ENABLE ROW LEVEL SECURITY`,
  `CREATE POLICY tenant_isolation ON ${table} USING (${column} = nullif(current_setting('app.org_id', true), '')::uuid) WITH CHECK (${column} = nullif(current_setting('app.org_id', true), '')::uuid)`,
];
