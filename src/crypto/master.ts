/**
 * The master key: wraps every tenant key (see keywrap.ts). Comes from `OBSCURA_MASTER_KEY` (a secret
 * manager should inject it). In embedded mode only, when unset, a random key is generated into
 * `<dataDir>/master.key` (mode 0600) so that the one-command quickstart works — `obscura doctor` flags
 * this, because a copy of the data dir then carries its own key. On PostgreSQL (a fleet) the key must be
 * set explicitly: nodes cannot share a file.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, openSync, writeSync, closeSync, readFileSync, statSync, fsyncSync } from 'node:fs';
import { join } from 'node:path';
import type { Config } from '../config/index.js';
import { ConfigError } from '../config/index.js';
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

function parseSetting(text: string, setting: string): Buffer {
  try {
    return parseMasterKey(text.trim());
  } catch (err) {
    throw new ConfigError(setting, (err as Error).message.replace(/^OBSCURA_MASTER_KEY:?\s*/, ''));
  }
}

/** Loads (or, embedded only, creates) the master keys. Throws ConfigError naming the setting. */
export function resolveMasterKey(config: Config): MasterKeys {
  let current: Buffer;
  let source: 'env' | 'file';
  let file: string | undefined;
  if (config.masterKey) {
    current = parseSetting(config.masterKey, 'OBSCURA_MASTER_KEY');
    source = 'env';
  } else if (config.database.kind === 'pglite') {
    file = masterKeyFile(config.dataDir);
    if (!existsSync(file)) {
      const fd = openSync(file, 'wx', 0o600);
      writeSync(fd, randomBytes(32).toString('hex') + '\n');
      fsyncSync(fd);
      closeSync(fd);
    }
    const mode = statSync(file).mode & 0o777;
    if (mode & 0o077) throw new ConfigError('OBSCURA_MASTER_KEY', `${file} is readable by other users (mode ${mode.toString(8)}); chmod 600 it`);
    current = parseSetting(readFileSync(file, 'utf8'), 'OBSCURA_MASTER_KEY');
    source = 'file';
  } else {
    throw new ConfigError('OBSCURA_MASTER_KEY', 'is required with DATABASE_URL (generate one with: node -e "console.log(require(\'crypto\').randomBytes(32).toString(\'hex\'))")');
  }
  const currentId = masterKeyId(current);
  const all = new Map<string, Buffer>([[currentId, current]]);
  for (const prev of config.previousMasterKeys) {
    const k = parseSetting(prev, 'OBSCURA_PREVIOUS_MASTER_KEYS');
    all.set(masterKeyId(k), k);
  }
  return { currentId, current, all, source, file };
}
