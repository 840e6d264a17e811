/**
 * Reading assets back: decrypt a whole blob or only the segments a byte range needs.
 *
 * The first decrypted chunk is awaited before the caller sends headers, so a damaged first segment
 * or a shredded key becomes a clean `ERR_INTEGRITY` response; a failure later in the stream errors
 * the stream (the HTTP layer then cuts the connection rather than send unauthenticated bytes).
 */
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream';
import { decryptStream, openRange } from '../crypto/stream.js';
import type { Asset, AssetDeps } from './assets.js';

/** An inclusive plaintext byte range. */
export interface PlainRange {
  start: number;
  end: number;
}

/**
 * Parses a `Range` header (RFC 9110 §14.1.2) for a file of `size` bytes. Returns `null` to serve the
 * whole file (no header, another unit, a syntax we ignore, or several ranges — allowed by the RFC),
 * `'unsatisfiable'` for 416, or the single range.
 */
export function parseRange(header: string | undefined, size: number): PlainRange | null | 'unsatisfiable' {
  if (!header) return null;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return null;
  if (m[1] === '') {
    const suffix = Number(m[2]);
    if (suffix === 0 || size === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(m[1]);
  const end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  if (!Number.isSafeInteger(start) || start >= size) return 'unsatisfiable';
  if (end < start) return null;
  return { start, end };
}

/** Waits for the first chunk (or the end, or an error) and returns a stream replaying everything. */
async function primed(source: Readable): Promise<Readable> {
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
  if (range) {
    const { stream } = await openRange({ get: (r) => deps.store.get(asset.blobKey, r), plaintextSize: asset.size, start: range.start, end: range.end, keyFor, blobId: asset.id });
    return primed(stream);
  }
  const source = await deps.store.get(asset.blobKey);
  const plain = decryptStream({ keyFor, blobId: asset.id });
  pipeline(source, plain, () => undefined);
  return primed(plain);
}
