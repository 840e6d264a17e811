/**
 * Key wrapping: secrets at rest (tenant keys, URL signing keys, private JWKs, TOTP secrets) are stored
 * only encrypted under the master key.
 *
 * Format (one ASCII line, safe in a `text` column): `v1.<master key id>.<b64url nonce>.<b64url ct||tag>`
 * - AES-256-GCM (NIST SP 800-38D) with a fresh random 96-bit nonce per wrap. Each master key wraps at
 *   most a few thousand values in its life, far below the 2^32 random-nonce limit of SP 800-38D §8.3.
 * - The AAD binds the format version, the master key id and a caller-chosen context (the org id for a
 *   tenant key), each length-prefixed so no two (id, context) pairs encode alike. A wrapped value copied
 *   into another org's row, or relabelled with another master key id, fails to unwrap: the database
 *   cannot be used to move a key across tenants (the confused-deputy threat).
 * - The master key id is a public fingerprint (`masterKeyId`) so unwrapping picks the right key during
 *   a rotation, when previous master keys are still accepted.
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { AppError } from '../errors.js';

/** Size of a master key and of a tenant key, in bytes (AES-256). */
export const KEY_BYTES = 32;

const VERSION = 'v1';
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const AAD_LABEL = Buffer.from('obscura/keywrap/v1\0', 'utf8');
const ID_LABEL = Buffer.from('obscura/master-key-id/v1\0', 'utf8');
/** Ids appear between dots in the wrapped string; keep them to one unambiguous alphabet. */
const MASTER_ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;
const B64URL_PATTERN = /^[A-Za-z0-9_-]+$/;
/** Upper bound on a wrapped secret (a private JWK is a few KiB); rejects absurd inputs early. */
const MAX_PLAINTEXT_BYTES = 64 * 1024;

/** Which master keys may unwrap: a map by id (as `MasterKeys.all`), or a lookup function. */
export type MasterKeyLookup = ReadonlyMap<string, Buffer> | ((id: string) => Buffer | undefined);

/**
 * A new random 256-bit tenant key from the CSPRNG.
 *
 * Security: the caller must store it only wrapped (`wrapKey`) and zero it (`fill(0)`) when done.
 */
export function generateTenantKey(): Buffer {
  return randomBytes(KEY_BYTES);
}

function lengthPrefixed(text: string): Buffer {
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length > 0xffff) throw new RangeError('keywrap: context or key id longer than 65535 bytes');
  const out = Buffer.allocUnsafe(2 + bytes.length);
  out.writeUInt16BE(bytes.length, 0);
  bytes.copy(out, 2);
  return out;
}

function aad(masterId: string, context: string): Buffer {
  return Buffer.concat([AAD_LABEL, lengthPrefixed(masterId), lengthPrefixed(context)]);
}

function checkKey(key: Buffer, what: string): void {
  if (!Buffer.isBuffer(key) || key.length !== KEY_BYTES) throw new RangeError(`keywrap: ${what} must be ${KEY_BYTES} bytes`);
}

/**
 * Encrypts `secret` (usually a 32-byte tenant key; any 1 B–64 KiB value is accepted) under `master`,
 * bound to `masterId` and `context`.
 *
 * @param master - the current master key (32 bytes).
 * @param masterId - its public id, normally `masterKeyId(master)`; written into the output.
 * @param secret - the value to protect. Not modified; the caller zeroes it.
 * @param context - what the value belongs to (the org id for a tenant key, `url-signing:<kid>`, ...).
 *   Unwrapping must present the same context.
 * @returns `v1.<masterId>.<b64url nonce>.<b64url ciphertext||tag>`.
 *
 * Security: a fresh random nonce per call, so wrapping the same value twice gives unrelated strings.
 */
export function wrapKey(master: Buffer, masterId: string, secret: Buffer, context: string): string {
  checkKey(master, 'the master key');
  if (!MASTER_ID_PATTERN.test(masterId)) throw new RangeError('keywrap: the master key id must be 1-64 characters of [A-Za-z0-9_-]');
  if (!Buffer.isBuffer(secret) || secret.length === 0 || secret.length > MAX_PLAINTEXT_BYTES) throw new RangeError('keywrap: the secret must be 1 to 65536 bytes');
  const nonce = randomBytes(NONCE_BYTES);
  const cipher = createCipheriv('aes-256-gcm', master, nonce, { authTagLength: TAG_BYTES });
  cipher.setAAD(aad(masterId, context));
  const ct = Buffer.concat([cipher.update(secret), cipher.final(), cipher.getAuthTag()]);
  return `${VERSION}.${masterId}.${nonce.toString('base64url')}.${ct.toString('base64url')}`;
}

function integrity(reason: string, cause?: unknown): AppError {
  // One public message for every failure: which check failed is a server-side fact (no oracle).
  return new AppError('ERR_INTEGRITY', 'A stored key could not be unwrapped.', { cause, internal: { reason } });
}

/** Strict base64url decoding: Node's decoder silently skips invalid characters, which we must not. */
function b64url(text: string): Buffer | undefined {
  if (!B64URL_PATTERN.test(text)) return undefined;
  const bytes = Buffer.from(text, 'base64url');
  return bytes.toString('base64url') === text ? bytes : undefined;
}

/**
 * Decrypts a value produced by `wrapKey`.
 *
 * @param masters - every master key currently accepted (current and previous, by id), or a lookup.
 * @param wrapped - the stored string.
 * @param context - must equal the context given to `wrapKey` (the org id the row belongs to).
 * @returns the secret; the caller zeroes it when done.
 * @throws AppError `ERR_INTEGRITY` when the string is malformed, names an unknown master key, was
 *   wrapped for another context or under another key, or was modified in any way.
 */
export function unwrapKey(masters: MasterKeyLookup, wrapped: string, context: string): Buffer {
  const parts = typeof wrapped === 'string' ? wrapped.split('.') : [];
  if (parts.length !== 4) throw integrity('malformed');
  const [version, masterId, nonceText, ctText] = parts as [string, string, string, string];
  if (version !== VERSION) throw integrity('unsupported version');
  if (!MASTER_ID_PATTERN.test(masterId)) throw integrity('malformed master key id');
  const nonce = b64url(nonceText);
  const ct = b64url(ctText);
  if (!nonce || nonce.length !== NONCE_BYTES || !ct || ct.length <= TAG_BYTES) throw integrity('malformed');
  const master = typeof masters === 'function' ? masters(masterId) : masters.get(masterId);
  if (!master) throw integrity('unknown master key id');
  checkKey(master, 'a master key');
  try {
    const decipher = createDecipheriv('aes-256-gcm', master, nonce, { authTagLength: TAG_BYTES });
    decipher.setAAD(aad(masterId, context));
    decipher.setAuthTag(ct.subarray(ct.length - TAG_BYTES));
    return Buffer.concat([decipher.update(ct.subarray(0, ct.length - TAG_BYTES)), decipher.final()]);
  } catch (err) {
    throw integrity('authentication failed', err);
  }
}

const HEX_PATTERN = /^[0-9a-fA-F]{64}$/;
const B64_PATTERN = /^[A-Za-z0-9+/]{43}=?$/;
const B64URL_KEY_PATTERN = /^[A-Za-z0-9_-]{43}=?$/;

/**
 * Parses the master key setting: exactly 32 bytes written as 64 hex characters, or as base64 or
 * base64url (43 characters, optionally with one `=`). Surrounding whitespace is ignored.
 *
 * @throws Error whose message starts with `OBSCURA_MASTER_KEY:` (config turns it into a ConfigError)
 *   for anything else, and for a key whose 32 bytes are all equal (a placeholder such as `000…0`).
 *   The message never contains the value.
 */
export function parseMasterKey(text: string): Buffer {
  const t = typeof text === 'string' ? text.trim() : '';
  let key: Buffer | undefined;
  if (HEX_PATTERN.test(t)) key = Buffer.from(t, 'hex');
  else if (B64_PATTERN.test(t) || B64URL_KEY_PATTERN.test(t)) {
    const body = t.replace(/=$/, '');
    const url = body.replace(/\+/g, '-').replace(/\//g, '_');
    const bytes = Buffer.from(url, 'base64url');
    // Non-canonical encodings (non-zero padding bits) would let two strings name one key; refuse them.
    if (bytes.length === KEY_BYTES && bytes.toString('base64url') === url) key = bytes;
  }
  if (!key) {
    throw new Error(`OBSCURA_MASTER_KEY: must be 32 bytes written as 64 hex characters or as base64/base64url (got ${t.length} characters)`);
  }
  if (key.every((b) => b === key[0])) {
    throw new Error('OBSCURA_MASTER_KEY: is a placeholder (all bytes equal); generate a random key, e.g. `openssl rand -hex 32`');
  }
  return key;
}

/**
 * A short public fingerprint of a master key: hex of the first 8 bytes of
 * SHA-256("obscura/master-key-id/v1\0" || key), 16 characters.
 *
 * Safe to log and store: a hash of a 256-bit random key reveals nothing usable about it. The label
 * keeps this value unrelated to any other hash of the key.
 */
export function masterKeyId(master: Buffer): string {
  checkKey(master, 'the master key');
  return createHash('sha256').update(ID_LABEL).update(master).digest().subarray(0, 8).toString('hex');
}

/**
 * A column holding values wrapped by the master key, and how to rebuild each value's context. Each
 * capability that stores a wrapped secret exports its columns; the composition root lists them all
 * for `obscura keys rotate-master` (the rotation test checks no listed column keeps an old value).
 */
export interface WrappedColumn {
  table: string;
  /** Primary-key columns. */
  key: string[];
  column: string;
  /** Columns the context needs (besides the key). */
  fields?: string[];
  /** Optional column recording which master key wraps the value. */
  masterIdColumn?: string;
  context: (row: Record<string, unknown>) => string;
}
