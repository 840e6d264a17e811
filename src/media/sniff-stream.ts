/** Sniffing an upload in progress (a Node stream) without losing a byte; see sniff.ts for the rules. */
import { Readable } from 'node:stream';
import { sniff, SNIFF_SAMPLE_BYTES, type SniffResult } from './sniff.js';

/** Result of {@link sniffStream}: the sniffed type and a stream that replays every byte. */
export interface SniffedStream {
  type: SniffResult | null;
  /** Yields the peeked bytes first, then the rest of the source, unchanged. */
  stream: Readable;
}

/**
 * Peeks at the first {@link SNIFF_SAMPLE_BYTES} bytes of a stream (an upload in progress) and sniffs
 * them, without losing any byte.
 *
 * Destroying the returned stream destroys the source. Errors from the source surface on the returned
 * stream. Memory: at most one sample plus one chunk is buffered.
 */
export async function sniffStream(source: Readable, sampleBytes = SNIFF_SAMPLE_BYTES): Promise<SniffedStream> {
  const iterator = source[Symbol.asyncIterator]() as AsyncIterator<Buffer | string>;
  const chunks: Buffer[] = [];
  let total = 0;
  let ended = false;
  while (total < sampleBytes) {
    const next = await iterator.next();
    if (next.done) {
      ended = true;
      break;
    }
    const chunk = typeof next.value === 'string' ? Buffer.from(next.value) : next.value;
    chunks.push(chunk);
    total += chunk.length;
  }
  const head = Buffer.concat(chunks, total);
  const type = await sniff(head.subarray(0, sampleBytes));
  async function* replay(): AsyncGenerator<Buffer> {
    if (head.length > 0) yield head;
    if (ended) return;
    for (;;) {
      const next = await iterator.next();
      if (next.done) return;
      yield typeof next.value === 'string' ? Buffer.from(next.value) : next.value;
    }
  }
  const stream = Readable.from(replay(), { objectMode: false });
  // A generator that never started is not returned on destroy, so release the source explicitly
  // (a client that is refused after sniffing must not keep its socket's data flowing into memory).
  stream.once('close', () => {
    if (!source.destroyed && !source.readableEnded) source.destroy();
  });
  return { type, stream };
}
