/**
 * Reading assets back: decrypt a whole blob or only the segments a byte range needs.
 *
 * The first decrypted chunk is awaited before the caller sends headers, so a damaged first segment
 * or a shredded key becomes a clean `ERR_INTEGRITY` response; a failure later in the stream errors
 * the stream (the HTTP layer then cuts the connection rather than send unauthenticated bytes).
 */
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream';
import { decryptStream, openParts, openRange } from '../crypto/stream.js';
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
