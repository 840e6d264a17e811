/**
 * Where the client commands find the server and the credential.
 *
 * Order: `OBSCURA_URL` / `OBSCURA_API_KEY` from the environment, then a JSON credentials file
 * (`OBSCURA_CREDENTIALS_FILE`, default `$XDG_CONFIG_HOME/obscura/credentials.json`, i.e.
 * `~/.config/obscura/credentials.json`), field by field: the environment wins. The file is read only
 * when the environment does not already provide a credential.
 *
 * Security: like OpenSSH with private keys, a credentials file that is not a regular file owned by
 * the current user with no group/other permission bits (mode 0600 or 0400) is refused outright,
 * before a byte of it is used: a key that others can read must be considered leaked. The file is
 * opened once with O_NOFOLLOW and checked with fstat on that descriptor, so it cannot be swapped
 * between the check and the read.
 */
import { constants, openSync, fstatSync, readSync, closeSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { CLIENT_ENV } from '../config/client-settings.js';

/** Default server when nothing says otherwise (`obscura serve`'s default listener). */
export const DEFAULT_URL = 'http://127.0.0.1:8080';

/** Resolved client settings. The secret stays in this object, in memory. */
export interface ClientCredentials {
  url: string;
  apiKey?: string | undefined;
  clientId?: string | undefined;
  clientSecret?: string | undefined;
  /** Where the credential came from (for messages; never the secret). */
  source: 'env' | 'file' | 'none';
  file?: string | undefined;
}

/** Why credentials could not be used. `insecure` and `invalid` are refusals; `missing` means none given. */
export class CredentialsError extends Error {
  constructor(
    readonly reason: 'insecure' | 'invalid' | 'missing' | 'unreadable',
    message: string,
  ) {
    super(message);
    this.name = 'CredentialsError';
  }
}

/** The credentials file path for an environment. */
export function credentialsPath(env: NodeJS.ProcessEnv): { path: string; explicit: boolean } {
  const named = env[CLIENT_ENV.credentialsFile];
  if (named) return { path: named, explicit: true };
  const base = env.XDG_CONFIG_HOME || join(env.HOME || homedir(), '.config');
  return { path: join(base, 'obscura', 'credentials.json'), explicit: false };
}

const MAX_FILE_BYTES = 64 * 1024;

/**
 * Reads and checks a credentials file. Returns undefined when it does not exist (and was not named
 * explicitly). Throws {@link CredentialsError} when it is unsafe or malformed.
 */
export function readCredentialsFile(path: string, explicit: boolean, uid: number | undefined = process.getuid?.()): Record<string, unknown> | undefined {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | (constants.O_NOFOLLOW ?? 0));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' && !explicit) return undefined;
    if (code === 'ENOENT') throw new CredentialsError('missing', `credentials file ${path} does not exist (OBSCURA_CREDENTIALS_FILE)`);
    if (code === 'ELOOP') throw new CredentialsError('insecure', `refusing credentials file ${path}: it is a symbolic link; point OBSCURA_CREDENTIALS_FILE at the file itself`);
    throw new CredentialsError('unreadable', `cannot open credentials file ${path} (${code ?? 'error'})`);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new CredentialsError('insecure', `refusing credentials file ${path}: not a regular file`);
    if (uid !== undefined && st.uid !== uid) throw new CredentialsError('insecure', `refusing credentials file ${path}: owned by uid ${st.uid}, not by you (uid ${uid})`);
    if ((st.mode & 0o077) !== 0) {
      const mode = (st.mode & 0o777).toString(8).padStart(4, '0');
      throw new CredentialsError('insecure', `refusing credentials file ${path}: mode ${mode} lets other users read it; run: chmod 600 ${path}`);
    }
    if (st.size > MAX_FILE_BYTES) throw new CredentialsError('invalid', `credentials file ${path} is too large`);
    const buf = Buffer.alloc(Number(st.size));
    let off = 0;
    while (off < buf.length) {
      const n = readSync(fd, buf, off, buf.length - off, off);
      if (n === 0) break;
      off += n;
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(buf.subarray(0, off).toString('utf8'));
    } catch {
      // Never echo the parser's message: it may quote the secret.
      throw new CredentialsError('invalid', `credentials file ${path} is not valid JSON`);
    } finally {
      buf.fill(0);
    }
    if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new CredentialsError('invalid', `credentials file ${path} must hold a JSON object`);
    return parsed as Record<string, unknown>;
  } finally {
    closeSync(fd);
  }
}

function str(doc: Record<string, unknown>, key: string, path: string): string | undefined {
  const v = doc[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string' || v === '') throw new CredentialsError('invalid', `credentials file ${path}: "${key}" must be a non-empty string`);
  return v;
}

/**
 * Resolves the client settings from the environment and, when needed, the credentials file:
 * `{ "url": "https://media.example.com", "api_key": "obs_sk_…" }` or, for OAuth2,
 * `{ "url": …, "client_id": "obs_client_…", "client_secret": "obs_cs_…" }`.
 */
export function resolveCredentials(env: NodeJS.ProcessEnv, uid?: number): ClientCredentials {
  const envUrl = env[CLIENT_ENV.url] || undefined;
  const envKey = env[CLIENT_ENV.apiKey] || undefined;
  if (envKey) return { url: envUrl ?? DEFAULT_URL, apiKey: envKey, source: 'env' };
  const { path, explicit } = credentialsPath(env);
  const doc = readCredentialsFile(path, explicit, uid ?? process.getuid?.());
  if (!doc) return { url: envUrl ?? DEFAULT_URL, source: 'none' };
  const url = envUrl ?? str(doc, 'url', path) ?? DEFAULT_URL;
  const apiKey = str(doc, 'api_key', path);
  const clientId = str(doc, 'client_id', path);
  const clientSecret = str(doc, 'client_secret', path);
  if (apiKey && (clientId || clientSecret)) throw new CredentialsError('invalid', `credentials file ${path}: give either api_key or client_id + client_secret, not both`);
  if (!apiKey && (!clientId || !clientSecret)) throw new CredentialsError('invalid', `credentials file ${path}: needs "api_key", or "client_id" and "client_secret"`);
  return { url, apiKey, clientId, clientSecret, source: 'file', file: path };
}
