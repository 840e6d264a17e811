/**
 * The master key: wraps every tenant key (see keywrap.ts). Comes from `OBSCURA_MASTER_KEY` (a secret
 * manager should inject it). In embedded mode only, when unset, a random key is generated into
 * `<dataDir>/master.key` (mode 0600) so that the one-command quickstart works — `obscura doctor` flags
 * this, because a copy of the data dir then carries its own key. On PostgreSQL (a fleet) the key must be
 * set explicitly: nodes cannot share a file.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, openSync, writeSync, closeSync, readFileSync, statSync, fsyncSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError } from '../errors.js';
import { parseMasterKey, masterKeyId } from './keywrap.js';

export interface MasterKeys {
  /** The current master key id (a fingerprint, not secret). */
  readonly currentId: string;
  readonly current: Buffer;
  /** Every accepted key by id: current and previous (during rotation). */
  readonly all: ReadonlyMap<string, Buffer>;
  readonly source: 'env' | 'file';
  readonly file: string | undefined;
}

export const masterKeyFile = (dataDir: string) => join(dataDir, 'master.key');
/** A rotation in progress (embedded mode): the new key is written here before anything is re-wrapped. */
export const nextMasterKeyFile = (dataDir: string) => join(dataDir, 'master.key.next');

function writePrivateFile(path: string, text: string): void {
  const fd = openSync(path, 'wx', 0o600);
  writeSync(fd, text);
  fsyncSync(fd);
  closeSync(fd);
}

function readKeyFile(path: string): Buffer {
  const mode = statSync(path).mode & 0o777;
  if (mode & 0o077) throw new ConfigError('OBSCURA_MASTER_KEY', `${path} is readable by other users (mode ${mode.toString(8)}); chmod 600 it`);
  return parseSetting(readFileSync(path, 'utf8'), 'OBSCURA_MASTER_KEY');
}

function parseSetting(text: string, setting: string): Buffer {
  try {
    return parseMasterKey(text.trim());
  } catch (err) {
    throw new ConfigError(setting, (err as Error).message.replace(/^OBSCURA_MASTER_KEY:?\s*/, ''));
  }
}

/** The settings {@link resolveMasterKey} reads (a slice of the server's configuration). */
export interface MasterKeySettings {
  readonly masterKey: string | undefined;
  readonly previousMasterKeys: readonly string[];
  readonly dataDir: string;
  readonly database: { readonly kind: 'pglite' | 'postgres' };
}

/** Loads (or, embedded only, creates) the master keys. Throws ConfigError naming the setting. */
export function resolveMasterKey(config: MasterKeySettings): MasterKeys {
  let current: Buffer;
  let source: 'env' | 'file';
  let file: string | undefined;
  const previous: Buffer[] = [];
  if (config.masterKey) {
    current = parseSetting(config.masterKey, 'OBSCURA_MASTER_KEY');
    source = 'env';
  } else if (config.database.kind === 'pglite') {
    file = masterKeyFile(config.dataDir);
    if (!existsSync(file)) writePrivateFile(file, randomBytes(32).toString('hex') + '\n');
    current = readKeyFile(file);
    source = 'file';
    // An interrupted rotation: the next key may already wrap some keys. Use it for new wraps and
    // keep accepting the old one; `obscura keys rotate-master` finishes the job.
    const next = nextMasterKeyFile(config.dataDir);
    if (existsSync(next)) {
      previous.push(current);
      current = readKeyFile(next);
    }
  } else {
    throw new ConfigError('OBSCURA_MASTER_KEY', 'is required with DATABASE_URL (generate one with: node -e "console.log(require(\'crypto\').randomBytes(32).toString(\'hex\'))")');
  }
  const currentId = masterKeyId(current);
  const all = new Map<string, Buffer>([[currentId, current]]);
  for (const k of previous) all.set(masterKeyId(k), k);
  for (const prev of config.previousMasterKeys) {
    const k = parseSetting(prev, 'OBSCURA_PREVIOUS_MASTER_KEYS');
    all.set(masterKeyId(k), k);
  }
  return { currentId, current, all, source, file };
}

/**
 * Embedded mode, step 1 of a rotation: writes a new random key to `master.key.next` (0600, fsynced)
 * unless one is already there. From then on `resolveMasterKey` wraps with it and still accepts the old.
 */
export function beginFileRotation(dataDir: string): void {
  const next = nextMasterKeyFile(dataDir);
  if (!existsSync(next)) writePrivateFile(next, randomBytes(32).toString('hex') + '\n');
}

/** Embedded mode, last step: after every key is re-wrapped under the next key, it becomes `master.key`. */
export function finishFileRotation(dataDir: string): void {
  renameSync(nextMasterKeyFile(dataDir), masterKeyFile(dataDir));
  const dir = openSync(dataDir, 'r');
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
}
