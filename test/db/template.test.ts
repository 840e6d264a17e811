/**
 * The embedded database's migrated template (src/db/template.ts): a new data dir is a copy of the
 * installation's template instead of initdb and every migration, for `obscura init` and for a
 * restore, through the real `obscura` command. A database made from it is identical in schema to a
 * freshly migrated one; a template that does not match this installation (another key, a changed
 * migration list) or that another user could have written is not used.
 *
 * Whether the template was used is read from PostgreSQL's system identifier (pg_control), which
 * initdb draws at random: a copy of the template has the template's, a fresh initdb a new one.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmodSync, cpSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { sql, type RawBuilder } from 'kysely';
import { runCli, type CliResult } from '../support/cli.js';
import { pgliteTemplate, tempDir } from '../support/db.js';
import { openDatabase } from '../../src/db/database.js';
import { seedFromTemplate, templateKey, usableTemplate } from '../../src/db/template.js';

const cli = (args: string[], env: Record<string, string>): Promise<CliResult> => runCli(args, env, { timeoutMs: 300_000 });

/** The system identifier and a fingerprint of the schema (tables, columns, indexes, constraints, policies, triggers, functions, grants, migrations) of the embedded database in `dataDir`. */
async function inspect(dataDir: string): Promise<{ systemId: string; schema: string[]; orgs: number }> {
  // Opened without a template: the data dir already holds its database (nothing may be seeded here).
  const db = await openDatabase({ kind: 'pglite', dataDir, template: false });
  try {
    const rows = async (q: RawBuilder<{ line: string }>) => (await q.execute(db.system)).rows.map((r) => r.line);
    const systemId = (await sql<{ id: string }>`select system_identifier::text as id from pg_control_system()`.execute(db.system)).rows[0]!.id;
    const schema = [
      ...(await rows(sql<{ line: string }>`select format('column %s.%s %s %s %s', table_name, column_name, data_type, is_nullable, coalesce(column_default, '')) as line from information_schema.columns where table_schema = 'public'`)),
      ...(await rows(sql<{ line: string }>`select format('index %s', indexdef) as line from pg_indexes where schemaname = 'public'`)),
      ...(await rows(sql<{ line: string }>`select format('constraint %s %s %s', conrelid::regclass, conname, pg_get_constraintdef(oid)) as line from pg_constraint where connamespace = 'public'::regnamespace`)),
      ...(await rows(sql<{ line: string }>`select format('policy %s %s %s %s %s', tablename, policyname, cmd, roles::text, coalesce(qual, '')) as line from pg_policies where schemaname = 'public'`)),
      ...(await rows(sql<{ line: string }>`select format('rls %s %s %s', relname, relrowsecurity, relforcerowsecurity) as line from pg_class where relnamespace = 'public'::regnamespace and relkind = 'r'`)),
      ...(await rows(sql<{ line: string }>`select format('trigger %s', pg_get_triggerdef(oid)) as line from pg_trigger where not tgisinternal`)),
      ...(await rows(sql<{ line: string }>`select format('function %s', pg_get_functiondef(p.oid)) as line from pg_proc p where pronamespace = 'public'::regnamespace`)),
      ...(await rows(sql<{ line: string }>`select format('grant %s %s %s', grantee, table_name, privilege_type) as line from information_schema.role_table_grants where table_schema = 'public'`)),
      ...(await rows(sql<{ line: string }>`select format('role %s %s %s', rolname, rolsuper, rolbypassrls) as line from pg_roles where rolname like 'obscura%'`)),
      ...(await rows(sql<{ line: string }>`select format('migration %s', name) as line from kysely_migration`)),
    ].sort();
    const orgs = Number((await sql<{ n: number }>`select count(*)::int as n from orgs`.execute(db.system)).rows[0]!.n);
    return { systemId, schema, orgs };
  } finally {
    await db.close();
  }
}

describe('the embedded database template', () => {
  let root: string;
  let template: string;
  let templateId: string;
  let fresh: { systemId: string; schema: string[] };

  before(async () => {
    root = tempDir('obscura-template-');
    template = await pgliteTemplate();
    // The template's own identifier, read from a throwaway copy (the template itself is never opened).
    const probe = join(root, 'probe');
    cpSync(join(template, 'db'), join(probe, 'db'), { recursive: true });
    templateId = (await inspect(probe)).systemId;
    // The reference: `obscura init` with the template turned off (initdb and every migration).
    const r = await cli(['init', '--json'], { OBSCURA_DATA_DIR: join(root, 'fresh'), OBSCURA_DATABASE_TEMPLATE: 'off' });
    assert.equal(r.code, 0, r.stderr);
    fresh = await inspect(join(root, 'fresh'));
  });

  after(() => rmSync(root, { recursive: true, force: true }));

  test('the reference database was made by initdb, not copied from the template', () => {
    assert.notEqual(fresh.systemId, templateId);
  });

  test('obscura init copies the template into a new data dir, and its schema is that of a freshly migrated database', async () => {
    const dataDir = join(root, 'init');
    const r = await cli(['init', '--json'], { OBSCURA_DATA_DIR: dataDir });
    assert.equal(r.code, 0, r.stderr);
    const got = await inspect(dataDir);
    assert.equal(got.systemId, templateId, 'the database is a copy of the template');
    assert.deepEqual(got.schema, fresh.schema);
    assert.equal(got.orgs, 1);
    assert.deepEqual(readdirSync(dataDir).filter((n) => n.startsWith('.db-seeding-')), [], 'no staging copy left behind');
  });

  test('a restore into an empty data dir builds its database from the template, with the schema of a freshly migrated one', async () => {
    const env = { OBSCURA_DATA_DIR: join(root, 'source'), OBSCURA_BACKUP_KEY: randomBytes(32).toString('hex') };
    assert.equal((await cli(['init', '--json'], env)).code, 0);
    const archive = join(root, 'archive');
    const made = await cli(['backup', 'create', '--to', archive, '--json'], env);
    assert.equal(made.code, 0, made.stderr);
    const target = join(root, 'restored');
    const r = await cli(['backup', 'restore', archive, '--to-data-dir', target, '--json'], env);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).ok, true);
    const got = await inspect(target);
    assert.equal(got.systemId, templateId, 'the restored database started as a copy of the template');
    assert.deepEqual(got.schema, fresh.schema);
    assert.equal(got.orgs, 1, 'the backup\'s org is in the restored database');
  });

  test('a template whose key does not match this installation is not used: the database is made by initdb', async () => {
    const stale = join(root, 'stale-parent', 'db-template');
    mkdirSync(join(root, 'stale-parent'), { mode: 0o755 });
    cpSync(template, stale, { recursive: true });
    const meta = JSON.parse(readFileSync(join(stale, 'template.json'), 'utf8')) as { key: string };
    assert.ok(await usableTemplate(stale), 'the twin: an unchanged copy is usable');
    writeFileSync(join(stale, 'template.json'), JSON.stringify({ ...meta, key: meta.key.replace(/^./, (c) => (c === '0' ? '1' : '0')) }));
    assert.equal(await usableTemplate(stale), null);
    const dataDir = join(root, 'stale-data');
    mkdirSync(dataDir, { mode: 0o700 });
    const db = await openDatabase({ kind: 'pglite', dataDir, template: stale });
    await db.close();
    const got = await inspect(dataDir);
    assert.notEqual(got.systemId, templateId, 'initdb ran instead of a copy');
    assert.deepEqual(got.schema, fresh.schema);
  });

  test('a changed migration list changes the key, so a template made before it is stale', () => {
    const compiled = new URL('../../src/db/', import.meta.url).pathname;
    const copy = join(root, 'migrations-copy');
    mkdirSync(copy);
    cpSync(join(compiled, 'migrations.js'), join(copy, 'migrations.js'));
    cpSync(join(compiled, 'migrations'), join(copy, 'migrations'), { recursive: true });
    assert.equal(templateKey(copy), templateKey(), 'the twin: the same files give the same key');
    writeFileSync(join(copy, 'migrations', '9999_new.js'), 'export const next = { async up() {} };\n');
    assert.notEqual(templateKey(copy), templateKey());
  });

  test('a template that other users can write to is not used', async () => {
    const parent = join(root, 'open-parent');
    mkdirSync(parent, { mode: 0o755 });
    const open = join(parent, 'db-template');
    cpSync(template, open, { recursive: true });
    assert.ok(await usableTemplate(open), 'the twin: the same copy, closed to others, is usable');
    // One file inside, writable by everyone: the copy stops there and nothing is left behind.
    const inside = join(open, 'db', 'global', readdirSync(join(open, 'db', 'global')).find((n) => /^\d+$/.test(n))!);
    chmodSync(inside, 0o666);
    const dataDir = join(root, 'open-data');
    mkdirSync(dataDir, { mode: 0o700 });
    assert.equal(await seedFromTemplate(dataDir, open), false);
    assert.deepEqual(readdirSync(dataDir), []);
    // The directory itself, writable by everyone (as /tmp is): refused before any copy.
    chmodSync(inside, 0o644);
    chmodSync(parent, 0o777);
    assert.equal(await usableTemplate(open), null);
    assert.equal(await seedFromTemplate(dataDir, open), false);
    assert.equal(existsSync(join(dataDir, 'db')), false);
  });
});
