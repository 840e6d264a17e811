/**
 * `obscura backup create | verify | restore` (issue 14, items 1–3). The work is in src/backup/; this
 * file reads arguments, opens what each command needs, draws progress and maps results to exit codes:
 * 0 success; 1 failure (a store or database error, or a restore whose audit or decrypt check failed);
 * 2 usage; 4 the archive failed verification (a file missing, changed, not authentic, or an
 * interrupted backup); 5 the restore target is not empty (nothing was changed).
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { PassThrough, type Readable } from 'node:stream';
import { loadConfig, type Config } from '../config/index.js';
import { AppError, ConfigError } from '../errors.js';
import { lockDataDir, DataDirLockedError, DataDirPermissionsError, type DataDirLock } from '../db/lock.js';
import type { DatabaseHandle } from '../db/database.js';
import { masterKeyFile, resolveMasterKey, type MasterKeys } from '../crypto/master.js';
import { openStore } from '../assets/stores/factory.js';
import { createFsStore } from '../assets/stores/fs.js';
import type { BlobStore } from '../assets/stores/types.js';
import { dirArchive, fsyncPath, PendingSync, storeArchive, type Archive } from '../backup/archive.js';
import { createBackup, type Progress } from '../backup/create.js';
import { openBackupKey } from '../backup/keys.js';
import { dumpThroughServer } from '../backup/socket.js';
import { formatBytes, progressEnabled } from './progress.js';

// Start-up time is part of every backup (docs/performance.md): what only one path needs (the
// database driver and its migrations, the S3 client, the server's column list, the restore checks)
// is imported where that path runs, not here. bin/obscura.js runs `backup` without the rest of the CLI.
export const BACKUP_HELP = `  obscura backup create --to DIR|s3://BUCKET/PREFIX [--json]
                                        snapshot the database and every blob it references into an
                                        archive sealed under OBSCURA_BACKUP_KEY (incremental; works
                                        while the server runs)
  obscura backup verify FROM [--snapshot ID] [--json]
                                        check every file's digest and authenticity without restoring;
                                        exit 4 naming each bad or missing file
  obscura backup restore FROM --to-data-dir DIR | --to-configured [--snapshot ID] [--json]
                                        restore into an empty embedded data dir, or into the empty
                                        configured database and store; then verify the audit chains and
                                        decrypt a sample of assets (exit 5: target not empty)`;

/** A usage mistake (exit 2): the caller's `run` prints it with the usage hint. */
export class BackupUsageError extends Error {}

/** Exit codes of the backup commands besides 0/1/2. */
const EXIT_INVALID = 4;
const EXIT_NOT_EMPTY = 5;

/** Runs a backup subcommand; returns the exit code. */
export async function backupCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  const { values, positionals } = parseArgs({
    args: rest,
    options: { to: { type: 'string' }, 'to-data-dir': { type: 'string' }, 'to-configured': { type: 'boolean', default: false }, snapshot: { type: 'string' }, json: { type: 'boolean', default: false } },
    allowPositionals: true,
    strict: true,
  });
  const json = values.json!;
  try {
    switch (sub) {
      case 'create':
        if (!values.to || positionals.length) throw new BackupUsageError('backup create needs --to DIR or --to s3://BUCKET/PREFIX (and nothing else)');
        return await create(values.to, json);
      case 'verify':
        if (positionals.length !== 1) throw new BackupUsageError('backup verify needs exactly one FROM (a directory or s3://BUCKET/PREFIX)');
        return await verify(positionals[0]!, values.snapshot, json);
      case 'restore': {
        if (positionals.length !== 1) throw new BackupUsageError('backup restore needs exactly one FROM (a directory or s3://BUCKET/PREFIX)');
        if (!values['to-data-dir'] === !values['to-configured']) throw new BackupUsageError('backup restore needs exactly one of --to-data-dir DIR or --to-configured');
        return await restore(positionals[0]!, { dataDir: values['to-data-dir'], snapshot: values.snapshot }, json);
      }
      default:
        throw new BackupUsageError('backup needs a subcommand: create, verify or restore');
    }
  } catch (err) {
    if (err instanceof AppError && (err.code === 'ERR_BACKUP_INVALID' || err.code === 'ERR_BACKUP_TARGET_NOT_EMPTY')) {
      fail(json, err);
      return err.code === 'ERR_BACKUP_INVALID' ? EXIT_INVALID : EXIT_NOT_EMPTY;
    }
    if (json && err instanceof AppError) {
      fail(json, err);
      return 1;
    }
    throw err;
  }
}

function fail(json: boolean, err: AppError): void {
  process.stderr.write(json ? JSON.stringify({ error: { code: err.code, status: err.status, detail: err.publicMessage } }) + '\n' : `obscura: ${err.code}: ${err.publicMessage}\n`);
}

function out(json: boolean, value: unknown, text: () => string): void {
  process.stdout.write(json ? JSON.stringify(value, null, 2) + '\n' : text() + '\n');
}

/**
 * `obscura backup …` as bin/obscura.js runs it: the exit code, with errors reported as the CLI's
 * `run` reports them (2 usage; 1 configuration, a locked data dir, or another failure).
 */
export async function runBackup(argv: string[]): Promise<number> {
  try {
    return await backupCommand(argv);
  } catch (err) {
    if (err instanceof BackupUsageError || (err as { code?: string }).code?.startsWith?.('ERR_PARSE_ARGS')) {
      process.stderr.write(`obscura: ${(err as Error).message}\nRun "obscura help" for usage.\n`);
      return 2;
    }
    if (err instanceof ConfigError) process.stderr.write(`obscura: configuration error: ${err.message}\n`);
    else if (err instanceof DataDirLockedError || err instanceof DataDirPermissionsError) process.stderr.write(`obscura: ${err.message}\n`);
    else if (err instanceof AppError) process.stderr.write(`obscura: ${err.code}: ${err.publicMessage}\n`);
    else process.stderr.write(`obscura: unexpected error: ${(err as Error)?.message ?? String(err)}\n`);
    return 1;
  }
}

/** A count bar per phase on a TTY (nothing otherwise). */
async function progress(json: boolean): Promise<{ on: (p: Progress) => void; stop: () => void }> {
  if (!progressEnabled(json)) return { on: () => undefined, stop: () => undefined };
  const { default: cliProgress } = await import('cli-progress');
  const bar = new cliProgress.SingleBar({ stream: process.stderr, format: '{phase} [{bar}] {value}/{total}', hideCursor: true, clearOnComplete: true, barsize: 30, fps: 10 }, cliProgress.Presets.shades_classic);
  let phase = '';
  return {
    on(p) {
      if (p.phase !== phase) {
        if (phase) bar.stop();
        phase = p.phase;
        bar.start(Math.max(p.total, 1), p.done, { phase: p.phase.padEnd(8) });
      } else bar.update(p.done);
    },
    stop: () => phase && bar.stop(),
  };
}

/** `s3://bucket/prefix` through the configured S3 endpoint and credentials, or a directory. */
async function openArchive(spec: string, config: Config, mustExist: boolean): Promise<Archive> {
  const s3 = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:\/(.*))?$/.exec(spec);
  if (spec.startsWith('s3://')) {
    if (!s3) throw new BackupUsageError(`${spec} is not s3://BUCKET/PREFIX`);
    const c = config.storage.s3;
    const { S3Client } = await import('@aws-sdk/client-s3');
    const { createS3Store } = await import('../assets/stores/s3.js');
    const client = new S3Client({ region: c.region, endpoint: c.endpoint, forcePathStyle: c.forcePathStyle, requestHandler: { connectionTimeout: c.connectTimeoutMs, requestTimeout: c.requestTimeoutMs, throwOnRequestTimeout: true } });
    let store: BlobStore;
    try {
      store = createS3Store({ client, bucket: s3[1]!, prefix: s3[2]?.replace(/\/+$/, '') || undefined, serverSideEncryption: 'AES256' });
    } catch {
      throw new BackupUsageError(`${spec}: the prefix must be path segments of letters, digits, "_", "." and "-"`);
    }
    const archive = storeArchive(store, spec);
    return { ...archive, close: async () => client.destroy() };
  }
  const dir = resolve(spec);
  if (mustExist && !existsSync(dir)) throw new AppError('ERR_BACKUP_INVALID', `${dir} does not exist`);
  return dirArchive(dir);
}

/** The master keys when they exist (never generates a key file). */
function existingMasterKeys(config: Config): MasterKeys | null {
  if (config.masterKey || config.database.kind === 'postgres' || existsSync(masterKeyFile(config.dataDir))) return resolveMasterKey(config);
  return null;
}

/** A dump written by `dumpDatabase` as a byte stream (backpressure through `write`). */
async function dumpStream(db: DatabaseHandle): Promise<Readable> {
  const [{ dumpDatabase, masterIdColumns }, { WRAPPED_COLUMNS }] = await Promise.all([import('../backup/dump.js'), import('../main.js')]);
  const through = new PassThrough();
  void dumpDatabase(db, { masterIdColumns: masterIdColumns(WRAPPED_COLUMNS) }, async (line) => {
    if (!through.write(line + '\n')) await new Promise((r) => through.once('drain', r));
  }).then(
    () => through.end(),
    (err: unknown) => through.destroy(err as Error),
  );
  return through;
}

/**
 * TEST ONLY: `OBSCURA_TEST_BACKUP_PAUSE_MS` holds a backup just before its manifest, so a test can
 * kill -9 a real backup mid-way (as `OBSCURA_TEST_JOB_DELAY_MS` slows jobs). Unset in production.
 */
function testPause(): (() => Promise<void>) | undefined {
  const ms = Number(process.env.OBSCURA_TEST_BACKUP_PAUSE_MS ?? 0);
  return ms > 0 ? () => new Promise((r) => setTimeout(r, ms)) : undefined;
}

async function create(to: string, json: boolean): Promise<number> {
  const config = loadConfig(process.env);
  const masterKeys = existingMasterKeys(config);
  if (!masterKeys) throw new ConfigError('OBSCURA_DATA_DIR', `${config.dataDir} holds no Obscura data to back up (no master key, no database)`);
  const backupKey = openBackupKey(config.backup.key, masterKeys.all.values());
  let lock: DataDirLock | null = null;
  let db: DatabaseHandle | null = null;
  let dump: () => Promise<Readable>;
  if (config.database.kind === 'pglite') {
    if (!existsSync(join(config.dataDir, 'db'))) throw new ConfigError('OBSCURA_DATA_DIR', `${config.dataDir} holds no embedded database to back up`);
    try {
      lock = lockDataDir(config.dataDir);
    } catch (err) {
      // A running server holds the data dir: it takes the dump itself, over its socket.
      if (!(err instanceof DataDirLockedError)) throw err;
    }
    const { openDatabase } = await import('../db/database.js');
    if (lock) db = await openDatabase({ kind: 'pglite', dataDir: config.dataDir });
    dump = db ? () => dumpStream(db!) : () => dumpThroughServer(config.dataDir);
  } else {
    const { openDatabase } = await import('../db/database.js');
    db = await openDatabase({ kind: 'postgres', url: config.database.url, migrationUrl: config.database.migrationUrl, poolSize: 2, connectTimeoutMs: config.database.connectTimeoutMs });
    dump = () => dumpStream(db!);
  }
  const archive = await openArchive(to, config, false);
  const source = await openStore(config);
  const bar = await progress(json);
  try {
    const r = await createBackup({ dump, source, archive, backupKey, onProgress: bar.on, onWarning: (m) => process.stderr.write(`obscura: warning: ${m}\n`), beforeManifest: testPause() });
    bar.stop();
    out(json, r, () =>
      [
        `backup ${r.snapshot} written to ${r.where} in ${(r.ms / 1000).toFixed(1)} s`,
        `  database: ${r.database.rows} rows in ${r.database.tables} tables (${formatBytes(r.database.size)} sealed)`,
        `  blobs: ${r.blobs.total} (${r.blobs.copied} copied, ${formatBytes(r.blobs.bytes_copied)}; ${r.blobs.reused} already in the archive)${r.blobs.gone ? `; ${r.blobs.gone} deleted after the snapshot` : ''}`,
        `  erasures in the ledger: ${r.erasures_in_ledger}`,
      ].join('\n'),
    );
    return 0;
  } finally {
    bar.stop();
    await source.close?.();
    await archive.close();
    await db?.close();
    lock?.release();
  }
}

async function verify(from: string, snapshot: string | undefined, json: boolean): Promise<number> {
  const config = loadConfig(process.env);
  const masterKeys = existingMasterKeys(config);
  const backupKey = openBackupKey(config.backup.key, masterKeys ? masterKeys.all.values() : []);
  const archive = await openArchive(from, config, true);
  const bar = await progress(json);
  try {
    const { verifyBackup } = await import('../backup/verify.js');
    const r = await verifyBackup({ archive, backupKey, snapshot, onProgress: bar.on });
    bar.stop();
    if (json) out(true, r, () => '');
    else if (r.ok) out(false, r, () => `ok     ${r.snapshot}: manifest, database and ${r.blobs} blobs (${formatBytes(r.bytes)}) verified${r.incomplete.length ? `\n(interrupted, ignored: ${r.incomplete.join(', ')})` : ''}`);
    else process.stderr.write(r.problems.map((p) => `obscura: ERR_BACKUP_INVALID: ${p.file}: ${p.message}`).join('\n') + '\n');
    return r.ok ? 0 : EXIT_INVALID;
  } finally {
    bar.stop();
    await archive.close();
  }
}

/** Whether a directory is absent or has no entries. */
function emptyDir(dir: string): boolean {
  return !existsSync(dir) || readdirSync(dir).length === 0;
}

/**
 * A restore into an embedded data dir builds it beside the target, `.<name>.restoring-<random>` in
 * the same parent (same filesystem), and renames it onto the target only once everything is in and
 * checked: the commit point. A restore killed before leaves the target as it was (absent or empty),
 * so no server ever starts on a half-restored data dir; the staging directory it leaves is never
 * opened by anything and can be deleted.
 */
function stagingFor(target: string): string {
  return join(dirname(target), `.${basename(target)}.restoring-${randomBytes(6).toString('hex')}`);
}

/**
 * Makes the staged data dir durable where the product promises it, then renames it onto the target
 * (an absent or empty directory: rename(2) replaces an empty one atomically) and fsyncs the parent.
 * Blobs were fsynced as they were copied; the database files follow the embedded database's own
 * model (PGlite runs with fsync off: safe against kill -9, not against power loss; README.md), so
 * only the directories are fsynced here.
 */
async function commitStaged(staging: string, target: string): Promise<void> {
  const dirs = new PendingSync();
  dirs.add(join(staging, 'master.key'));
  await dirs.flush();
  try {
    renameSync(staging, target);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOTEMPTY' || code === 'EEXIST' || code === 'ENOTDIR') throw new AppError('ERR_BACKUP_TARGET_NOT_EMPTY', `the data dir ${target} was filled while the restore ran; restore only into an empty one (nothing was changed)`);
    throw err;
  }
  await fsyncPath(dirname(target));
}

async function restore(from: string, target: { dataDir?: string; snapshot?: string }, json: boolean): Promise<number> {
  const config = loadConfig(process.env);
  const notEmpty = (what: string) => new AppError('ERR_BACKUP_TARGET_NOT_EMPTY', `${what} is not empty; restore only into an empty one (nothing was changed)`);
  const embeddedDir = target.dataDir ? resolve(target.dataDir) : config.database.kind === 'pglite' ? config.dataDir : undefined;
  // The master keys come from OBSCURA_MASTER_KEY or the configured data dir's key file, never from
  // the target (which is empty) and never generated: a new key could open nothing of the backup.
  const masterKeys = embeddedDir && embeddedDir === config.dataDir && !config.masterKey ? null : existingMasterKeys(config);
  if (!masterKeys) throw new ConfigError('OBSCURA_MASTER_KEY', `restore needs the master key the backup's keys are wrapped with: set OBSCURA_MASTER_KEY, or point OBSCURA_DATA_DIR at the data dir whose master.key it is`);
  const backupKey = openBackupKey(config.backup.key, masterKeys.all.values());
  const archive = await openArchive(from, config, true);
  const bar = await progress(json);
  // Loaded while nothing else runs yet: the restore, the database driver and this version's migrations.
  const [{ restoreBackup }, { openDatabase }, { MIGRATIONS }, { requeueInterrupted }] = await Promise.all([
    import('../backup/restore.js'),
    import('../db/database.js'),
    import('../db/migrations.js'),
    import('../jobs/requeue.js'),
  ]);
  let lock: DataDirLock | null = null;
  let store: BlobStore;
  let openDb: () => Promise<DatabaseHandle>;
  let staging: string | undefined;
  try {
    if (embeddedDir) {
      if (!emptyDir(embeddedDir)) throw notEmpty(`the data dir ${embeddedDir}`);
      mkdirSync(dirname(embeddedDir), { recursive: true, mode: 0o700 });
      const dir = (staging = stagingFor(embeddedDir));
      lock = lockDataDir(dir);
      store = await createFsStore({ root: join(dir, 'blobs') });
      // A new database: a copy of the installation's migrated template when it matches (src/db/template.ts).
      openDb = () => openDatabase({ kind: 'pglite', dataDir: dir, ...(config.database.template ? {} : { template: false as const }) });
    } else {
      const [{ Kysely, PostgresDialect }, { default: pg }, { hasRows }] = await Promise.all([import('kysely'), import('pg'), import('../backup/load.js')]);
      const probe = new Kysely<unknown>({ dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: config.database.migrationUrl ?? config.database.url, max: 1, connectionTimeoutMillis: config.database.connectTimeoutMs }) }) });
      try {
        const table = await hasRows(probe);
        if (table) throw notEmpty(`the database (table ${table})`);
      } finally {
        await probe.destroy();
      }
      store = await openStore(config);
      for await (const key of store.list('')) {
        void key;
        await store.close?.();
        throw notEmpty(`the blob store (${config.storage.kind})`);
      }
      openDb = () => openDatabase({ kind: 'postgres', url: config.database.url, migrationUrl: config.database.migrationUrl, poolSize: 4, connectTimeoutMs: config.database.connectTimeoutMs });
    }
    try {
      const r = await restoreBackup({ archive, backupKey, snapshot: target.snapshot, masterKeys, knownMigrations: new Set(Object.keys(MIGRATIONS)), store, openDb, openDbEarly: staging !== undefined, onProgress: bar.on, requeueInterrupted });
      bar.stop();
      if (staging) {
        // The restored embedded data dir runs with the same master key file as the one it was taken from.
        if (masterKeys.source === 'file') writeFileSync(masterKeyFile(staging), masterKeys.current.toString('hex') + '\n', { mode: 0o600, flag: 'wx' });
        await testPause()?.();
        lock?.release();
        lock = null;
        await commitStaged(staging, embeddedDir!);
        staging = undefined;
      }
      out(json, r, () =>
        [
          `${r.ok ? 'restored' : 'restored, BUT CHECKS FAILED:'} ${r.snapshot} (taken ${r.snapshot_at}): ${r.rows} rows, ${r.blobs.restored} blobs (${formatBytes(r.blobs.bytes)})`,
          ...(r.erasures_reapplied.length ? [`  erasures re-applied: ${r.erasures_reapplied.join(', ')}`] : []),
          ...(r.blobs.gone ? [`  ${r.blobs.gone} assets deleted after the snapshot are marked deleted`] : []),
          ...(r.jobs_requeued ? [`  ${r.jobs_requeued} jobs that were running at the snapshot are queued again`] : []),
          `  audit: ${r.audit.ok ? `ok (${r.audit.chains} chains)` : `BROKEN: ${r.audit.problems.join('; ')}`}`,
          `  decrypt check: ${r.decrypt_check.checked - r.decrypt_check.failed.length}/${r.decrypt_check.checked} assets decrypted and matched${r.decrypt_check.failed.length ? `; FAILED: ${r.decrypt_check.failed.join(', ')}` : ''}`,
        ].join('\n'),
      );
      return r.ok ? 0 : 1;
    } finally {
      await store.close?.();
    }
  } catch (err) {
    // Leave the target as it was: the staged data dir goes (the target itself was never touched).
    lock?.release();
    lock = null;
    if (staging) rmSync(staging, { recursive: true, force: true });
    throw err;
  } finally {
    bar.stop();
    lock?.release();
    await archive.close();
  }
}
