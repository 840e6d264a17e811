/**
 * The keyed audit log against someone who holds only the database credentials (issue 9, item 2).
 *
 * Every attack runs through the product's entry points: the log is written by `obscura init` and
 * `obscura keys create` (real processes), checked by `obscura audit verify`, and attacked over a
 * plain SQL connection as the schema owner (who can disable the append-only trigger) — which is all
 * such an attacker has: the MAC key is wrapped by the master key, which is not in the database.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import pg from 'pg';
import { sql } from 'kysely';
import { createEmptyDatabase, tempDir } from '../support/db.js';
import { runCli } from '../support/cli.js';
import { canonicalJson } from '../../src/audit/log.js';
import { openDatabase } from '../../src/db/database.js';

interface Log {
  env: Record<string, string>;
  /** The schema owner's connection string (what DATABASE_URL holds in a one-role setup). */
  ownerUrl: string;
  adminUrl: string;
  orgId: string;
  appId: string;
}

/** A fresh PostgreSQL database with a real log: init, then two keys created through the CLI. */
async function freshLog(): Promise<Log> {
  const { url, adminUrl } = await createEmptyDatabase('postgres');
  const env = { DATABASE_URL: url!, OBSCURA_MASTER_KEY: randomBytes(32).toString('hex'), OBSCURA_DATA_DIR: tempDir() };
  const init = await runCli(['init', '--json'], env);
  assert.equal(init.code, 0, init.stderr);
  const { org, app } = JSON.parse(init.stdout);
  for (const name of ['ci', 'backup']) {
    const k = await runCli(['keys', 'create', '--app', app.id, '--kind', 'restricted', '--scope', 'assets:read', '--name', name, '--json'], env);
    assert.equal(k.code, 0, k.stderr);
  }
  return { env, ownerUrl: url!, adminUrl: adminUrl!, orgId: org.id as string, appId: app.id as string };
}

async function asOwner<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

async function verify(log: Log): Promise<{ code: number; report: any }> {
  const r = await runCli(['audit', 'verify', '--json'], log.env);
  return { code: r.code ?? -1, report: JSON.parse(r.stdout) };
}

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

/**
 * Rewrites every entry of a chain from `fromSeq` on so that its unkeyed SHA-256 links hold again (the
 * algorithm is public), and moves the chain's head to the new last hash: the best an attacker without
 * the MAC key can do.
 */
async function recomputeChain(c: pg.Client, chain: string): Promise<void> {
  const rows = (await c.query('select * from audit_log where chain = $1 order by chain_seq', [chain])).rows;
  let prev = '0'.repeat(64);
  for (const r of rows) {
    const canonical = canonicalJson({
      chain: r.chain,
      chainSeq: Number(r.chain_seq),
      orgId: r.org_id,
      at: new Date(r.at).toISOString(),
      actor: r.actor,
      action: r.action,
      target: r.target,
      data: r.data,
      ip: r.ip,
      requestId: r.request_id,
    });
    const hash = sha256(`${prev}\n${canonical}`);
    await c.query('update audit_log set prev_hash = $1, hash = $2 where id = $3', [prev, hash, r.id]);
    prev = hash;
  }
  await c.query('update audit_heads set head = $1 where chain = $2', [prev, chain]);
}

describe('the keyed audit log against the database credentials (PostgreSQL)', () => {
  test('an untouched log verifies; an edited entry with every SHA-256 link and the head recomputed is caught by its MAC', async () => {
    const log = await freshLog();
    const ok = await verify(log);
    assert.equal(ok.code, 0, JSON.stringify(ok.report.problems));
    assert.equal(ok.report.ok, true);
    assert.ok(ok.report.keyed, 'the log is keyed');
    const chain = `org:${log.orgId}`;
    const victim = await asOwner(log.ownerUrl, async (c) => {
      // The owner of the schema may disable the trigger: exactly the attack the keys make visible.
      await c.query('alter table audit_log disable trigger user');
      const row = (await c.query("select id from audit_log where chain = $1 and action = 'key.create' order by chain_seq limit 1", [chain])).rows[0];
      await c.query(`update audit_log set actor = '{"type":"cli","id":"someone-else"}' where id = $1`, [row.id]);
      await recomputeChain(c, chain);
      await c.query('alter table audit_log enable trigger user');
      return Number(row.id);
    });
    const bad = await verify(log);
    assert.equal(bad.code, 1);
    const broken = bad.report.chains.find((x: any) => x.chain === chain).broken;
    assert.equal(broken.id, victim);
    assert.equal(broken.reason, 'mac_mismatch');
  });

  test('deleting the newest entries of a chain (a shorter chain than its keyed head) is caught', async () => {
    const log = await freshLog();
    const chain = `org:${log.orgId}`;
    await asOwner(log.ownerUrl, async (c) => {
      await c.query('alter table audit_log disable trigger user');
      await c.query('delete from audit_log where chain = $1 and chain_seq = (select max(chain_seq) from audit_log where chain = $1)', [chain]);
      await c.query('alter table audit_log enable trigger user');
    });
    const bad = await verify(log);
    assert.equal(bad.code, 1);
    assert.equal(bad.report.chains.find((x: any) => x.chain === chain).broken.reason, 'truncated');
  });

  test("deleting an org's whole chain is caught, with its head, and with the org itself", async () => {
    const log = await freshLog();
    const chain = `org:${log.orgId}`;
    // 1. The entries only: the head remains and says how long the chain was.
    await asOwner(log.ownerUrl, async (c) => {
      await c.query('alter table audit_log disable trigger user');
      await c.query('delete from audit_log where chain = $1', [chain]);
    });
    let bad = await verify(log);
    assert.equal(bad.code, 1);
    assert.equal(bad.report.chains.find((x: any) => x.chain === chain).broken.reason, 'truncated');
    // 2. And the head: the org exists but has no chain.
    await asOwner(log.ownerUrl, (c) => c.query('delete from audit_heads where chain = $1', [chain]));
    bad = await verify(log);
    assert.equal(bad.code, 1);
    assert.equal(bad.report.chains.find((x: any) => x.chain === chain).broken.reason, 'missing_chain');
    // 3. And the org: the keyed count of chains opened has a gap no erasure accounts for.
    await asOwner(log.adminUrl, async (c) => {
      await c.query('set session_replication_role = replica'); // skip foreign keys: the attacker removes what they like
      for (const t of ['api_keys', 'apps', 'users', 'memberships', 'tenant_keys', 'orgs']) {
        const exists = (await c.query('select to_regclass($1) as t', [t])).rows[0].t;
        if (exists) await c.query(`delete from ${t} where ${t === 'orgs' ? 'id' : 'org_id'} = $1`, [log.orgId]).catch(() => undefined);
      }
    });
    bad = await verify(log);
    assert.equal(bad.code, 1);
    assert.ok(bad.report.problems.some((p: any) => p.reason === 'chain_deleted'), JSON.stringify(bad.report.problems));
  });

  test('the count of chains and the heads cannot be edited to hide a deletion', async () => {
    const log = await freshLog();
    await asOwner(log.ownerUrl, async (c) => {
      await c.query('update audit_state set chains_opened = chains_opened - 1');
    });
    const bad = await verify(log);
    assert.equal(bad.code, 1);
    assert.ok(bad.report.problems.some((p: any) => p.reason === 'state_mac_mismatch'));
  });

  test('the running server cannot alter the audit log: its connections are the runtime role, which owns nothing', async () => {
    const log = await freshLog();
    // The handle the server opens (openDatabase, as `obscura serve` does) with the owner's own URL.
    const db = await openDatabase({ kind: 'postgres', url: log.ownerUrl, dataDir: log.env.OBSCURA_DATA_DIR, poolSize: 2 });
    try {
      const who = await sql<{ r: string }>`select current_user as r`.execute(db.system);
      assert.equal(who.rows[0]!.r, 'obscura_runtime');
      for (const ddl of [
        'alter table audit_log disable trigger user',
        'create or replace function audit_log_append_only() returns trigger language plpgsql as $$ begin return old; end $$',
        'drop trigger audit_log_no_update on audit_log',
        'truncate audit_log',
      ]) {
        await assert.rejects(db.withSystem((trx) => sql.raw(ddl).execute(trx)), /must be owner|permission denied/i, ddl);
      }
      await assert.rejects(db.withSystem((trx) => sql`update audit_log set action = 'x'`.execute(trx)), /permission denied|append-only/i);
      // The legitimate twin: the runtime appends and reads.
      const n = await sql<{ n: string }>`select count(*)::text as n from audit_log`.execute(db.system);
      assert.ok(Number(n.rows[0]!.n) > 0);
    } finally {
      await db.close();
    }
    assert.equal((await verify(log)).code, 0, 'nothing changed');
  });

  test('two roles: `obscura migrate` as the owner, then a server whose login role is only a member of the runtime role', async () => {
    const { url, adminUrl } = await createEmptyDatabase('postgres');
    const login = `rt_${randomBytes(4).toString('hex')}`;
    await asOwner(adminUrl!, (c) => c.query(`create role ${login} login password 'pw'`));
    const runtimeUrl = new URL(url!);
    runtimeUrl.username = login;
    runtimeUrl.password = 'pw';
    const env = { DATABASE_URL: runtimeUrl.toString(), OBSCURA_MASTER_KEY: randomBytes(32).toString('hex'), OBSCURA_DATA_DIR: tempDir() };
    // Before migrating, the runtime URL is refused with what to do.
    const early = await runCli(['init', '--json'], env);
    assert.equal(early.code, 1);
    assert.match(early.stderr, /obscura migrate|OBSCURA_MIGRATION_DATABASE_URL/);
    const m = await runCli(['migrate', '--json'], { ...env, OBSCURA_MIGRATION_DATABASE_URL: url! });
    assert.equal(m.code, 0, m.stderr);
    await asOwner(url!, (c) => c.query(`grant obscura_runtime to ${login}`));
    const init = await runCli(['init', '--json'], env);
    assert.equal(init.code, 0, init.stderr);
    const doc = await runCli(['doctor', '--json'], env);
    const dbFinding = JSON.parse(doc.stdout).findings.find((f: any) => f.setting === 'DATABASE_URL');
    assert.equal(dbFinding?.level, 'ok', doc.stdout);
    // The runtime login cannot touch the trigger even by resetting its role.
    await assert.rejects(
      asOwner(runtimeUrl.toString(), async (c) => {
        await c.query('reset role');
        await c.query('alter table audit_log disable trigger user');
      }),
      /must be owner|permission denied/i,
    );
    assert.equal((await runCli(['audit', 'verify'], env)).code, 0);
  });
});
