/**
 * Reading assets back: decrypt a whole blob or only the segments a byte range needs.
 *
 * The first decrypted chunk is awaited before the caller sends headers, so a damaged first segment
 * or a shredded key becomes a clean `ERR_INTEGRITY` response; a failure later in the stream errors
 * the stream (the HTTP layer then cuts the connection rather than send unauthenticated bytes).
 */
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream';
import { AppError } from '../errors.js';
import { checkManifest, decryptBlob, decryptStream, HEADER_MAX_LENGTH, openParts, openRange, SEGMENT_SIZE, TAG_LENGTH, type KeyLookup } from '../crypto/stream.js';
import type { Asset, AssetDeps } from './assets.js';
import { parseRange, type PlainRange } from '../media/range.js';

export { parseRange, type PlainRange };

/** Waits for the first chunk (or the end, or an error) and returns a stream replaying everything. */
export async function primed(source: Readable): Promise<Readable> {
  const it = source[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  const first = await it.next();
  async function* replay(): AsyncGenerator<Buffer> {
    if (first.done) return;
    yield first.value;
    for (;;) {
      const next = await it.next();
      if (next.done) return;
      yield next.value;
    }
  }
  const out = Readable.from(replay(), { objectMode: false });
  out.once('close', () => {
    if (!source.destroyed) source.destroy();
  });
  return out;
}

/** The decrypted bytes of an asset (or of `range`), authenticated segment by segment. */
export async function openAssetStream(deps: AssetDeps, asset: Asset, range?: PlainRange): Promise<Readable> {
  const keyFor = (keyId: string) => deps.keyring.get(asset.orgId, keyId);
  if (asset.parts) {
    // Version 2: a sequence of parts (a tus upload stored as it arrived); only the touched parts are read.
    const parts = asset.parts.map((p) => ({ id: p.id, offset: p.offset, size: p.size, get: (r?: { start: number; end: number }) => deps.store.get(p.key, r) }));
    const { stream } = openParts({ parts, plaintextSize: asset.size, ...(range ? { start: range.start, end: range.end } : {}), keyFor, blobId: asset.id });
    return primed(stream);
  }
  if (range) {
    const { stream } = await openRange({ get: (r) => deps.store.get(asset.blobKey, r), plaintextSize: asset.size, start: range.start, end: range.end, keyFor, blobId: asset.id });
    return primed(stream);
  }
  const source = await deps.store.get(asset.blobKey);
  const plain = decryptStream({ keyFor, blobId: asset.id });
  pipeline(source, plain, () => undefined);
  return primed(plain);
}

/**
 * Assets up to this plaintext size are served from memory: read whole in one store call and
 * decrypted in one pass (`readWholeAsset`), not streamed (issue 12, item 3: for a 16 KiB file the
 * stream machinery cost more than the bytes). Four 64 KiB segments; memory per request is bounded by it.
 */
export const SMALL_ASSET_BYTES = 256 * 1024;

/**
 * The most ciphertext a stored object of `plaintext` bytes takes as Obscura writes it (64 KiB
 * segments, the longest header): a memory bound, not a check. An object over it (a blob written with
 * smaller segments, as test vectors are) is simply streamed instead.
 */
function ciphertextBound(plaintext: number): number {
  return HEADER_MAX_LENGTH + plaintext + TAG_LENGTH * (Math.ceil(plaintext / SEGMENT_SIZE) + 1);
}

/** A stored object, or null when it is longer than the bound (the caller streams the asset instead). */
async function readObject(deps: AssetDeps, key: string, plaintext: number): Promise<Buffer | null> {
  try {
    return await deps.store.read(key, ciphertextBound(plaintext));
  } catch (err) {
    if (err instanceof AppError && err.code === 'ERR_PAYLOAD_TOO_LARGE') return null;
    throw err;
  }
}

/**
 * The decrypted bytes of a small asset (at most {@link SMALL_ASSET_BYTES}), in memory only: every
 * stored object read in one call, every segment authenticated before any byte is returned; nothing is
 * written anywhere. Null when a stored object is longer than this path reads (then stream it with
 * `openAssetStream`, which checks everything itself). Throws `ERR_NOT_FOUND` when the (version-1) blob
 * is missing and `ERR_INTEGRITY` for any damage, a missing part included.
 */
export async function readWholeAsset(deps: AssetDeps, asset: Asset): Promise<Buffer | null> {
  if (asset.size > SMALL_ASSET_BYTES) return null;
  const keyFor: KeyLookup = (keyId) => deps.keyring.get(asset.orgId, keyId);
  const damaged = (reason: string, cause?: unknown) => new AppError('ERR_INTEGRITY', 'The stored media failed its integrity check.', { cause, internal: { reason, asset: asset.id } });
  if (asset.parts) {
    checkManifest(asset.parts, asset.size);
    const out: Buffer[] = [];
    for (let k = 0; k < asset.parts.length; k++) {
      const part = asset.parts[k]!;
      let ciphertext: Buffer | null;
      try {
        ciphertext = await readObject(deps, part.key, part.size);
      } catch (err) {
        // A part the manifest lists must exist: a missing one is damage (as in `openParts`).
        if (err instanceof AppError && err.code === 'ERR_NOT_FOUND') throw damaged('a listed part is missing', err);
        throw err;
      }
      if (!ciphertext) return null;
      const plain = await decryptBlob(ciphertext, { keyFor, blobId: asset.id, part: { id: part.id, offset: part.offset, final: k === asset.parts.length - 1 } });
      if (plain.length !== part.size) throw damaged('part length differs from its manifest entry');
      out.push(plain);
    }
    return out.length === 1 ? out[0]! : Buffer.concat(out, asset.size);
  }
  const ciphertext = await readObject(deps, asset.blobKey, asset.size);
  if (!ciphertext) return null;
  const plain = await decryptBlob(ciphertext, { keyFor, blobId: asset.id });
  // The STREAM ends where the blob was sealed; this catches a row whose size disagrees with it.
  if (plain.length !== asset.size) throw damaged('blob length differs from the asset size');
  return plain;
}
