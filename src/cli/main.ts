/**
 * The `obscura` command.
 *
 * Operator commands (init, keys, users, audit verify, doctor) open the database directly with the
 * same configuration as the server. In embedded mode the data dir is locked by a running server, so
 * run them before `serve` or stop it first (or use the HTTP API with a key). Exit codes: 0 success,
 * 1 failure (including a broken audit chain or an unsafe doctor finding), 2 usage error.
 */
import { findVideoTools } from '../media/video/ffmpeg.js';
import { generatePassword } from '../tenants/password-policy.js';
import { parseArgs } from 'node:util';
import { userInfo } from 'node:os';
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { doctor, loadConfig, type DoctorFinding } from '../config/index.js';
import { nodeSupportFinding } from '../config/node-support.js';
import { DataDirLockedError, DataDirPermissionsError, lockDataDir, widePermissions } from '../db/lock.js';
import { AppError, ConfigError, ERROR_CODES, type ErrorCode } from '../errors.js';
import { openRuntime, serve, setupFilePath, WRAPPED_COLUMNS, type Runtime } from '../main.js';
import { openStore } from '../assets/stores/factory.js';
import { eraseOrg } from '../erasure/erasure.js';
import { createFirstOrg, hasNoOrg, type FirstOrgInput, type FirstOrgResult } from '../auth/setup.js';
import { createUser, setUserRole, ROLES, type Ctx } from '../tenants/index.js';
import { createKey, listKeys, revokeKey, rollKey, type KeyInfo } from '../auth/keys.js';
import { verifyAudit, type AuditReport } from '../audit/log.js';
import { loadAuditKeys } from '../audit/keys.js';
import { openDatabase } from '../db/database.js';
import { describeRoles, RUNTIME_ROLE } from '../db/roles.js';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { masterKeyFile, beginFileRotation, finishFileRotation } from '../crypto/master.js';
import { rewrapAll } from '../crypto/keyring.js';
import type { KeyKind, UserRole } from '../db/schema.js';
import { oauthCommand, OAUTH_HELP } from './oauth.js';
import { licensesCommand, LICENSES_HELP } from './licenses.js';
import { createPasswordResetLink, setRequireMfa } from '../auth/console.js';
import { backupCommand, BackupUsageError, BACKUP_HELP } from './backup.js';
import { CLIENT_HELP } from './client-help.js';

class UsageError extends Error {}

const HELP = `obscura — self-hosted, security-first media processing

Usage:
  obscura serve                         start the API (and worker) on the configured database
  obscura init [--org NAME] [--email EMAIL] [--app NAME] [--origin URL ...] [--password-stdin] [--json]
                                        create the first org, owner and app; print the app's keys once
  obscura keys create --app ID [--kind secret|restricted|publishable] [--scope S ...] [--name N]
                      [--expires-at ISO] [--allow-ip CIDR ...] [--allow-origin URL ...] [--allow-app-id ID ...] [--json]
  obscura keys list --app ID [--json]
  obscura keys roll KEY_ID [--grace SECONDS] [--json]
  obscura keys revoke KEY_ID [--json]
  obscura keys rotate-master [--json]   re-wrap every tenant key under a new master key (blobs untouched)
  obscura users add --org ID --email EMAIL --role owner|admin|developer|viewer [--password-stdin] [--json]
  obscura users set-role --org ID --email EMAIL --role ROLE
${OAUTH_HELP}
  obscura users reset-link --email EMAIL [--json]
                                        issue a single-use, 30-minute password reset token (printed once)
  obscura users require-mfa --org ID --on|--off
  obscura audit verify [--org ID] [--json]
                                        recompute the hash chains and check their keyed MACs and heads;
                                        exit 1 naming each broken chain, a deleted chain or a missing one
  obscura orgs erase ORG_ID --confirm ORG_ID [--json]
                                        erase an org for good: shred its keys, delete its rows, blobs and
                                        audit chain (the system chain records it); resumes an interrupted one
  obscura migrate [--json]              apply database migrations as the schema owner and grant the
                                        runtime role (PostgreSQL: OBSCURA_MIGRATION_DATABASE_URL)
${BACKUP_HELP}
${LICENSES_HELP}
  obscura doctor [--json]               report unsafe settings; exit 1 if any
  obscura help

Configuration comes from OBSCURA_* environment variables (see README.md).

${CLIENT_HELP}`;

const cliActor = (): Ctx => ({ actor: { type: 'cli', id: safeUser() } });

function safeUser(): string {
  try {
    return userInfo().username;
  } catch {
    return 'unknown';
  }
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
}

function print(json: boolean, value: unknown, text: () => string): void {
  process.stdout.write(json ? JSON.stringify(value, null, 2) + '\n' : text() + '\n');
}

function keyLine(k: KeyInfo): string {
  const state = k.revokedAt
    ? 'revoked'
    : k.graceEndsAt
      ? `rolled (grace ends ${k.graceEndsAt})`
      : k.rolledTo
        ? 'rolled (works until the replacement is first used)'
        : k.expiresAt
          ? `expires ${k.expiresAt}`
          : 'active';
  return `${k.id}  ${k.kind.padEnd(11)} ${k.display}  ${state}  scopes=${k.scopes.join(',')}`;
}

async function withRuntime<T>(fn: (rt: Runtime) => Promise<T>): Promise<T> {
  const rt = await openRuntime(process.env);
  try {
    return await fn(rt);
  } finally {
    await rt.close();
  }
}

async function orgOfApp(rt: Runtime, appId: string): Promise<string> {
  const row = await rt.db.system.selectFrom('apps').select('org_id').where('id', '=', appId).executeTakeFirst();
  if (!row) throw new AppError('ERR_NOT_FOUND', `No app ${appId}.`);
  return row.org_id;
}

async function orgOfKey(rt: Runtime, keyId: string): Promise<string> {
  const row = await rt.db.system.selectFrom('api_keys').select('org_id').where('id', '=', keyId).executeTakeFirst();
  if (!row) throw new AppError('ERR_NOT_FOUND', `No key ${keyId}.`);
  return row.org_id;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
function uuidArg(v: string | undefined, name: string): string {
  if (!v || !UUID.test(v)) throw new UsageError(`${name} must be an id (UUID)`);
  return v;
}

async function cmdInit(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      org: { type: 'string', default: 'My Org' },
      email: { type: 'string', default: 'owner@example.com' },
      app: { type: 'string', default: 'default' },
      origin: { type: 'string', multiple: true },
      'password-stdin': { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
    },
    strict: true,
  });
  const input: FirstOrgInput = {
    org: values.org!,
    email: values.email!,
    app: values.app!,
    origins: values.origin,
    password: values['password-stdin'] ? await readStdin() : undefined,
  };
  let out: FirstOrgResult;
  try {
    out = await withRuntime(async (rt) => {
      if (!(await hasNoOrg(rt.db))) throw new UsageError('this database already has an org; use `obscura keys create` or the API');
      return createFirstOrg(rt.db, input, cliActor()).catch((err: unknown) => {
        if (err instanceof AppError && err.code === 'ERR_CONFLICT') throw new UsageError('this database already has an org; use `obscura keys create` or the API');
        throw err;
      });
    });
  } catch (err) {
    // The embedded data dir is held by a running server: ask that server, with its setup token.
    if (!(err instanceof DataDirLockedError)) throw err;
    out = await initThroughServer(loadConfig(process.env).dataDir, input, err);
  }
  print(values.json!, out, () =>
    [
      `Created org ${out.org.name} (${out.org.id}), app ${out.app.name} (${out.app.id}).`,
      `Owner: ${out.owner.email}${out.owner.password ? `  password: ${out.owner.password}` : ''}`,
      ``,
      `Secret key (shown once; keep it on your servers only):`,
      `  ${out.secret_key.key}`,
      ...(out.publishable_key ? [``, `Publishable key for ${out.publishable_key.allowed_origins.join(', ')}:`, `  ${out.publishable_key.key}`] : []),
      ...(out.owner.password ? [``, `Web console: open ${consoleUrl()} and sign in with the owner email and password above.`] : []),
    ].join('\n'),
  );
  return 0;
}

/** Where the server's web console is, from the same settings `serve` reads. */
function consoleUrl(): string {
  try {
    return `${loadConfig(process.env).publicUrl.replace(/\/+$/, '')}/console`;
  } catch {
    return 'http://127.0.0.1:8080/console';
  }
}

/**
 * `init` while `obscura serve` holds the embedded data dir: POST /v1/setup to that server with the
 * one-time token it wrote to `<data dir>/setup.json` (readable only by the server's user).
 */
async function initThroughServer(dataDir: string, input: FirstOrgInput, locked: DataDirLockedError): Promise<FirstOrgResult> {
  let setup: { url?: string; token?: string };
  try {
    setup = JSON.parse(readFileSync(setupFilePath(dataDir), 'utf8')) as typeof setup;
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code === 'EACCES' ? 'is not readable by this user (run init as the user that runs the server)' : 'does not exist (the server already has an org, or it is still starting)';
    throw new UsageError(`${locked.message}; its setup token ${setupFilePath(dataDir)} ${why}`);
  }
  if (typeof setup.url !== 'string' || typeof setup.token !== 'string') throw new UsageError(`${setupFilePath(dataDir)} is not a setup file written by obscura serve`);
  let res: Response;
  try {
    res = await fetch(new URL('/v1/setup', setup.url), {
      method: 'POST',
      headers: { authorization: `Bearer ${setup.token}`, 'content-type': 'application/json' },
      body: JSON.stringify(input),
      signal: AbortSignal.timeout(30_000),
    });
  } catch {
    throw new AppError('ERR_UNAVAILABLE', `Could not reach the running server at ${setup.url} (from ${setupFilePath(dataDir)}); is it still running?`);
  }
  const body = (await res.json().catch(() => null)) as (FirstOrgResult & { code?: string; detail?: string }) | null;
  if (res.status !== 201 || !body) {
    const code = (body?.code ?? 'ERR_INTERNAL') as ErrorCode;
    throw new AppError(code in ERROR_CODES ? code : 'ERR_INTERNAL', body?.detail ?? `The server answered ${res.status}.`);
  }
  return body;
}

async function cmdKeys(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  const { values, positionals } = parseArgs({
    args: rest,
    options: {
      app: { type: 'string' },
      kind: { type: 'string', default: 'secret' },
      scope: { type: 'string', multiple: true },
      name: { type: 'string' },
      'expires-at': { type: 'string' },
      'allow-ip': { type: 'string', multiple: true },
      'allow-origin': { type: 'string', multiple: true },
      'allow-app-id': { type: 'string', multiple: true },
      grace: { type: 'string', default: '0' },
      json: { type: 'boolean', default: false },
    },
    allowPositionals: true,
    strict: true,
  });
  const json = values.json!;
  const ctx = cliActor();
  switch (sub) {
    case 'create': {
      const appId = uuidArg(values.app, '--app');
      if (!['secret', 'restricted', 'publishable'].includes(values.kind!)) throw new UsageError('--kind must be secret, restricted or publishable');
      return withRuntime(async (rt) => {
        const orgId = await orgOfApp(rt, appId);
        const { key, secret } = await rt.db.withTenant(orgId, (trx) =>
          createKey(
            trx,
            orgId,
            appId,
            { kind: values.kind as KeyKind, name: values.name, scopes: values.scope, expiresAt: values['expires-at'] ?? null, allowedIps: values['allow-ip'], allowedOrigins: values['allow-origin'], allowedAppIds: values['allow-app-id'] },
            { ...ctx, granter: null },
          ),
        );
        print(json, { key, secret }, () => `${keyLine(key)}\n\nKey (shown once):\n  ${secret}`);
        return 0;
      });
    }
    case 'list': {
      const appId = uuidArg(values.app, '--app');
      return withRuntime(async (rt) => {
        const orgId = await orgOfApp(rt, appId);
        const keys = (await rt.db.withTenant(orgId, (trx) => listKeys(trx, orgId, appId))).items;
        print(json, keys, () => (keys.length ? keys.map(keyLine).join('\n') : 'no keys'));
        return 0;
      });
    }
    case 'roll': {
      const keyId = uuidArg(positionals[0], 'KEY_ID');
      if (!/^\d+$/.test(values.grace!)) throw new UsageError('--grace must be a number of seconds');
      return withRuntime(async (rt) => {
        const orgId = await orgOfKey(rt, keyId);
        const r = await rt.db.withTenant(orgId, (trx) => rollKey(trx, orgId, keyId, Number(values.grace), { ...ctx, granter: null }));
        const grace0 = Number(values.grace) === 0;
        // With --grace 0 the old key keeps working until the new one is first used: if this output is
        // lost, nothing is locked out; run the same roll again for a new replacement.
        const hint = grace0 ? `\n\nThe old key works until the new key is first used. Lost this output? Run the same command again.\nTo stop the old key now (e.g. it leaked): obscura keys revoke ${r.previous.id}` : '';
        print(json, { key: r.key, secret: r.secret, previous: r.previous }, () => `old: ${keyLine(r.previous)}\nnew: ${keyLine(r.key)}\n\nNew key (shown once):\n  ${r.secret}${hint}`);
        return 0;
      });
    }
    case 'rotate-master': {
      // Embedded: write the next key first (crash-safe), re-wrap under it, then promote it.
      // Env: OBSCURA_MASTER_KEY is the new key and OBSCURA_PREVIOUS_MASTER_KEYS holds the old one(s).
      const config = loadConfig(process.env);
      const fileMode = !config.masterKey && config.database.kind === 'pglite';
      if (fileMode) {
        const lock = lockDataDir(config.dataDir);
        lock.release();
        beginFileRotation(config.dataDir);
      } else if (config.previousMasterKeys.length === 0) {
        throw new UsageError('set OBSCURA_MASTER_KEY to the new key and OBSCURA_PREVIOUS_MASTER_KEYS to the old one(s)');
      }
      const moved = await withRuntime((rt) => rewrapAll(rt.db, rt.masterKeys, WRAPPED_COLUMNS));
      if (fileMode) finishFileRotation(config.dataDir);
      print(json, moved, () => `re-wrapped ${moved.tenantKeys} tenant keys and ${moved.signingKeys} signing keys under the new master key${fileMode ? ' (master.key replaced)' : '; remove OBSCURA_PREVIOUS_MASTER_KEYS once every node runs with the new key'}`);
      return 0;
    }
    case 'revoke': {
      const keyId = uuidArg(positionals[0], 'KEY_ID');
      return withRuntime(async (rt) => {
        const orgId = await orgOfKey(rt, keyId);
        const r = await rt.db.withTenant(orgId, (trx) => revokeKey(trx, orgId, keyId, { ...ctx, granter: null }));
        print(json, r.key, () => `revoked: ${keyLine(r.key)}`);
        return 0;
      });
    }
    default:
      throw new UsageError('keys needs a subcommand: create, list, roll, revoke or rotate-master');
  }
}

async function cmdUsers(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  const { values } = parseArgs({
    args: rest,
    options: {
      org: { type: 'string' },
      email: { type: 'string' },
      role: { type: 'string' },
      'password-stdin': { type: 'boolean', default: false },
      on: { type: 'boolean', default: false },
      off: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (sub === 'reset-link') {
    if (!values.email) throw new UsageError('--email is required');
    return withRuntime(async (rt) => {
      const link = await createPasswordResetLink(rt.db, values.email!, { actor: cliActor().actor, baseUrl: rt.config.publicUrl });
      print(values.json!, { token: link.token, url: link.url, expires_at: link.expiresAt }, () => `Reset token for ${link.email} (single use, expires ${new Date(link.expiresAt).toISOString()}):\n  ${link.token}${link.url ? `\n  ${link.url}` : ''}`);
      return 0;
    });
  }
  if (sub === 'require-mfa') {
    const orgId = uuidArg(values.org, '--org');
    if (values.on === values.off) throw new UsageError('give exactly one of --on or --off');
    return withRuntime(async (rt) => {
      await rt.db.withTenant(orgId, (trx) => setRequireMfa(trx, orgId, values.on!, cliActor()));
      print(values.json!, { org: orgId, require_mfa: values.on }, () => `MFA is now ${values.on ? 'required' : 'optional'} for org ${orgId}`);
      return 0;
    });
  }
  const orgId = uuidArg(values.org, '--org');
  if (!values.email) throw new UsageError('--email is required');
  if (!values.role || !ROLES.includes(values.role as UserRole)) throw new UsageError(`--role must be one of ${ROLES.join(', ')}`);
  const ctx = cliActor();
  if (sub === 'add') {
    const given = values['password-stdin'] ? await readStdin() : undefined;
    return withRuntime(async (rt) => {
      // A generated password always meets the policy (the org's name is read in the same transaction).
      let password = given ?? '';
      const user = await rt.db.withTenant(orgId, async (trx) => {
        if (given === undefined) {
          const org = await trx.selectFrom('orgs').select('name').where('id', '=', orgId).executeTakeFirst();
          password = generatePassword({ email: values.email, orgName: org?.name });
        }
        return createUser(trx, orgId, { email: values.email!, password, role: values.role as UserRole }, ctx);
      });
      print(values.json!, { ...user, password: values['password-stdin'] ? undefined : password }, () => `added ${user.email} as ${user.role}${values['password-stdin'] ? '' : `; password: ${password}`}`);
      return 0;
    });
  }
  if (sub === 'set-role') {
    return withRuntime(async (rt) => {
      const user = await rt.db.withTenant(orgId, (trx) => setUserRole(trx, orgId, values.email!, values.role as UserRole, ctx));
      print(values.json!, user, () => `${user.email} is now ${user.role}`);
      return 0;
    });
  }
  throw new UsageError('users needs a subcommand: add or set-role');
}

async function cmdAudit(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub !== 'verify') throw new UsageError('audit needs a subcommand: verify');
  const { values } = parseArgs({ args: rest, options: { org: { type: 'string' }, json: { type: 'boolean', default: false } }, strict: true });
  const orgId = values.org ? uuidArg(values.org, '--org') : undefined;
  // Opened without loading the audit key for writing: a key that cannot be unwrapped is a finding of
  // the report, not a failure to open.
  const rt = await openRuntime(process.env, { auditKey: false });
  try {
    const report = await verifyAudit(rt.db.system, { orgId, keys: await loadAuditKeys(rt.db.system, rt.masterKeys) });
    print(values.json!, report, () => auditReportText(report));
    return report.ok ? 0 : 1;
  } finally {
    await rt.close();
  }
}

/** The human-readable `audit verify` report: one line per chain, then problems of the log as a whole. */
function auditReportText(report: AuditReport): string {
  const lines = report.chains.map((c) => {
    if (!c.broken) return `ok     ${c.chain}: ${c.entries} entries${c.legacy ? ` (${c.legacy} before the keyed epoch)` : ''}, head ${c.head}`;
    const entry = c.broken.id !== undefined ? ` entry id=${c.broken.id} (seq ${c.broken.chainSeq})` : '';
    return `BROKEN ${c.chain}:${entry} fails: ${c.broken.reason}${c.broken.detail ? ` (${c.broken.detail})` : ''}`;
  });
  for (const p of report.problems) lines.push(`BROKEN log: ${p.reason} (${p.detail})`);
  for (const e of report.erased) lines.push(`erased ${e} (recorded in the system chain)`);
  lines.push(report.keyed ? `keyed since ${report.keyed.since} (key ${report.keyed.keyId}); anchor ${report.anchor}` : `not keyed yet (no server has opened this database since the upgrade); anchor ${report.anchor}`);
  return lines.join('\n');
}

/**
 * `obscura orgs erase ID --confirm ID`: the operator's way to erase an org (the console's is
 * `DELETE /v1/orgs/{id}` by an owner). The id is typed twice: there is no undo. Running it again
 * finishes an erasure that was interrupted.
 */
async function cmdOrgs(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  // The tenant export is a client command (it talks to a running server with the SDK).
  if (sub === 'export') return (await import('./client.js')).clientCommand('orgs-export', rest);
  if (sub !== 'erase') throw new UsageError('orgs needs a subcommand: erase | export');
  const { values, positionals } = parseArgs({ args: rest, options: { confirm: { type: 'string' }, json: { type: 'boolean', default: false } }, allowPositionals: true, strict: true });
  if (positionals.length !== 1) throw new UsageError('orgs erase needs exactly one ORG_ID');
  const orgId = uuidArg(positionals[0]!, 'ORG_ID');
  if (values.confirm !== orgId) throw new UsageError(`erasure cannot be undone: repeat the org id as --confirm ${orgId}`);
  return withRuntime(async (rt) => {
    const store = await openStore(rt.config);
    try {
      const report = await eraseOrg({ db: rt.db, store }, orgId, cliActor());
      print(values.json!, report, () =>
        [
          `erased org ${report.org_id}`,
          `  keys shredded: ${report.keys_shredded} (its media can never be decrypted again)`,
          `  audit entries removed: ${report.audit_entries_removed} (the system chain records org.erase)`,
          `  blobs deleted: ${report.blobs_deleted}`,
          `  completed at: ${report.completed_at ?? 'not yet (run the command again, or maintenance finishes it)'}`,
        ].join('\n'),
      );
      return 0;
    } finally {
      await store.close?.();
    }
  });
}

/**
 * `obscura migrate`: applies pending migrations as the schema owner and grants the runtime role, then
 * exits. On PostgreSQL with two roles, run it with OBSCURA_MIGRATION_DATABASE_URL before starting
 * servers that hold only the runtime role's DATABASE_URL.
 */
async function cmdMigrate(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { json: { type: 'boolean', default: false } }, strict: true });
  const config = loadConfig(process.env);
  if (config.database.kind === 'pglite') {
    // The embedded database migrates whenever it is opened; opening it here does exactly that.
    const rt = await openRuntime(process.env);
    await rt.close();
  } else {
    const db = await openDatabase({ kind: 'postgres', url: config.database.url, migrationUrl: config.database.migrationUrl ?? config.database.url, migrateOnly: true, connectTimeoutMs: config.database.connectTimeoutMs });
    await db.close();
  }
  print(values.json!, { ok: true, database: config.database.kind, runtimeRole: config.database.kind === 'postgres' ? RUNTIME_ROLE : null }, () =>
    config.database.kind === 'postgres' ? `migrated; the runtime role ${RUNTIME_ROLE} has its grants (GRANT ${RUNTIME_ROLE} TO <login role> for a separate runtime login)` : 'migrated',
  );
  return 0;
}

/**
 * `doctor`'s view of the PostgreSQL roles: unsafe when the server's own login role owns the schema
 * (anyone holding DATABASE_URL can disable the audit log's trigger), fine when it only is a member of
 * the runtime role. Connects with DATABASE_URL; an unreachable database is a warning, not a finding.
 */
async function databaseRolesFinding(config: ReturnType<typeof loadConfig>): Promise<DoctorFinding | null> {
  if (config.database.kind !== 'postgres' || !config.database.url) return null;
  const pool = new pg.Pool({ connectionString: config.database.url, max: 1, connectionTimeoutMillis: config.database.connectTimeoutMs });
  const db = new Kysely<unknown>({ dialect: new PostgresDialect({ pool }) });
  try {
    const roles = await describeRoles(db);
    if (roles.ownsSchema) {
      return {
        level: 'warn',
        setting: 'DATABASE_URL',
        message: `the server's login role ${roles.login} owns the schema: the running server is demoted to ${RUNTIME_ROLE}, but whoever holds DATABASE_URL can still alter tables and the audit log's triggers (the keyed audit log detects what they rewrite). Migrate with OBSCURA_MIGRATION_DATABASE_URL (\`obscura migrate\`) and give DATABASE_URL a login role that is only a member of ${RUNTIME_ROLE} (README, "Running on PostgreSQL").`,
      };
    }
    if (!roles.runtimeMember) return { level: 'unsafe', setting: 'DATABASE_URL', message: `${roles.login} is not a member of ${RUNTIME_ROLE}: the server cannot start. As the owner run: GRANT ${RUNTIME_ROLE} TO ${roles.login}` };
    return { level: 'ok', setting: 'DATABASE_URL', message: `the server runs as ${roles.login} (member of ${RUNTIME_ROLE}), which owns nothing: it cannot alter tables or triggers.` };
  } catch (err) {
    return { level: 'warn', setting: 'DATABASE_URL', message: `could not check the database roles (${(err as { code?: string }).code ?? 'connection failed'}); run doctor where the database is reachable.` };
  } finally {
    await db.destroy();
  }
}

/** `doctor`'s view of the data dir: unsafe when other users can read or enter it. */
function dataDirFinding(dataDir: string): DoctorFinding | null {
  const wide = widePermissions(dataDir);
  if (wide === null) return null;
  return { level: 'unsafe', setting: 'OBSCURA_DATA_DIR', message: `${dataDir} has mode ${wide.toString(8).padStart(4, '0')}: other local users can read the embedded database and keys. Run: chmod 700 ${dataDir}` };
}

async function cmdDoctor(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { json: { type: 'boolean', default: false } }, strict: true });
  const config = loadConfig(process.env);
  const tools = findVideoTools(config.video);
  const settings = doctor(config, { masterKeyInDataDir: !config.masterKey && existsSync(masterKeyFile(resolve(config.dataDir))), video: tools && { version: tools.version, prlimit: tools.prlimit !== null, setpriv: tools.setpriv !== null } });
  const extra = [nodeSupportFinding(), dataDirFinding(resolve(config.dataDir)), await databaseRolesFinding(config)].filter((f): f is DoctorFinding => f !== null);
  // "no unsafe settings found" only stands when nothing else was found; facts (the ffmpeg version) stay.
  const findings = extra.length ? [...settings.filter((f) => f.level !== 'ok' || f.setting !== '-'), ...extra] : settings;
  print(values.json!, { findings }, () => findings.map((f) => `${f.level.toUpperCase().padEnd(6)} ${f.setting}: ${f.message}`).join('\n'));
  return findings.some((f) => f.level === 'unsafe') ? 1 : 0;
}

/** Runs the CLI; returns the exit code. */
export async function run(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    switch (cmd) {
      case 'serve':
        await serve(process.env);
        return 0;
      case 'init':
        return await cmdInit(rest);
      case 'keys':
        return await cmdKeys(rest);
      case 'users':
        return await cmdUsers(rest);
      case 'audit':
        return await cmdAudit(rest);
      case 'migrate':
        return await cmdMigrate(rest);
      case 'orgs':
        return await cmdOrgs(rest);
      case 'doctor':
        return await cmdDoctor(rest);
      case 'backup':
        return await backupCommand(rest);
      case 'oauth':
        return await withRuntime((rt) => oauthCommand(rest, rt));
      case 'licenses':
        return await licensesCommand(rest, withRuntime);
      // The client code (SDK, tus client) loads only for client commands, never in `serve`.
      case 'upload': case 'process': case 'download': case 'jobs': case 'assets': return await (await import('./client.js')).clientCommand(cmd, rest);
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        process.stdout.write(HELP + '\n');
        return cmd === undefined ? 2 : 0;
      default:
        throw new UsageError(`unknown command "${cmd}"`);
    }
  } catch (err) {
    if (err instanceof UsageError || err instanceof BackupUsageError || (err as { code?: string }).code?.startsWith?.('ERR_PARSE_ARGS')) {
      process.stderr.write(`obscura: ${(err as Error).message}\nRun "obscura help" for usage.\n`);
      return 2;
    }
    if (err instanceof ConfigError) {
      process.stderr.write(`obscura: configuration error: ${err.message}\n`);
      return 1;
    }
    if (err instanceof DataDirLockedError || err instanceof DataDirPermissionsError) {
      process.stderr.write(`obscura: ${err.message}\n`);
      return 1;
    }
    if (err instanceof AppError) {
      process.stderr.write(`obscura: ${err.code}: ${err.publicMessage}\n`);
      return 1;
    }
    process.stderr.write(`obscura: unexpected error: ${(err as Error)?.message ?? String(err)}\n`);
    return 1;
  }
}
