/**
 * `@obscura/sdk/node`: everything in the main entry plus Node.js-only helpers for backends:
 * webhook verification (node:crypto), signed transform URLs, and files on disk (upload from a path
 * with tus, download to a path atomically).
 *
 * Webhook verification lives in the SDK (`sdk/src/webhook-signature.ts`, node:crypto only, no
 * imports) and the server signs with the same module, so the signer and the verifier cannot drift
 * apart; the SDK imports nothing from the server. It is not offered in the browser entry on purpose: a webhook secret
 * must never be shipped to a browser.
 */
import { createReadStream } from 'node:fs';
import { mkdtemp, open, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import type { ReadableStream as NodeWebReadableStream } from 'node:stream/web';
import { verifyWebhook, WebhookVerificationError, type VerifyWebhookOptions } from './webhook-signature.js';
import type { DownloadOptions, Obscura } from './client.js';
import type { TusUploadOptions, TusUploadResult } from './tus.js';

export * from './index.js';
export {
  verifyWebhook,
  signWebhook,
  WebhookVerificationError,
  WEBHOOK_SIGNATURE_HEADER,
  DEFAULT_WEBHOOK_TOLERANCE_SECONDS,
  type VerifyWebhookOptions,
  type WebhookErrorCode,
} from './webhook-signature.js';
export { buildTransformUrl, signTransformPath, type TransformUrlOptions, type TransformSigningKey } from './transform.js';

/** A webhook event as delivered (`job.completed`, `job.failed`). */
export interface WebhookEventPayload {
  id: string;
  type: string;
  created_at?: string;
  data: Record<string, unknown>;
  [member: string]: unknown;
}

/**
 * Verifies a delivery, then parses it: `constructWebhookEvent(rawBody, req.headers['obscura-signature'], secret)`.
 * Throws {@link WebhookVerificationError} (`ERR_WEBHOOK_HEADER`, `ERR_WEBHOOK_SIGNATURE`,
 * `ERR_WEBHOOK_TIMESTAMP`) before anything is parsed. Pass the raw body bytes exactly as received,
 * and every secret valid during a rotation.
 */
export function constructWebhookEvent(
  rawBody: string | Uint8Array,
  signatureHeader: string | string[] | undefined,
  secret: string | readonly string[],
  options?: VerifyWebhookOptions,
): WebhookEventPayload {
  const header = Array.isArray(signatureHeader) ? signatureHeader.join(',') : (signatureHeader ?? '');
  verifyWebhook(rawBody, header, secret, options);
  const text = typeof rawBody === 'string' ? rawBody : new TextDecoder().decode(rawBody);
  const event = JSON.parse(text) as WebhookEventPayload;
  if (!event || typeof event !== 'object' || typeof event.type !== 'string') {
    throw new WebhookVerificationError('ERR_WEBHOOK_HEADER', 'The delivery is not an Obscura event.');
  }
  return event;
}

/** Uploads a file from disk with tus (streamed, resumable, with progress). */
export async function uploadFile(client: Obscura, path: string, opts: TusUploadOptions = {}): Promise<TusUploadResult> {
  const info = await stat(path);
  if (!info.isFile()) throw new TypeError(`${path} is not a regular file`);
  // A path-backed ReadStream lets tus-js-client re-read any range on resume (no buffering).
  const stream = createReadStream(path);
  try {
    return await client.uploads.upload(stream, { filename: basename(path), ...opts, size: info.size });
  } finally {
    stream.destroy();
  }
}

/**
 * Downloads an asset to `path` atomically: written to a temporary file in the same directory
 * (mode 0600), then renamed, so a failed or interrupted download never leaves a partial file under
 * the final name.
 */
export async function downloadToFile(client: Obscura, assetId: string, path: string, opts: DownloadOptions = {}): Promise<{ bytes: number; contentType: string }> {
  const dl = await client.assets.download(assetId, opts);
  return writeStreamAtomically(dl.body, path).then((bytes) => ({ bytes, contentType: dl.contentType }));
}

/** Writes a web stream (or bytes) to `path` atomically (temp file, fsync, rename). Returns bytes written. */
export async function writeStreamAtomically(body: ReadableStream<Uint8Array> | Uint8Array, path: string): Promise<number> {
  const dir = await mkdtemp(join(dirname(path), `.${basename(path)}.`));
  const tmp = join(dir, 'part');
  let bytes = 0;
  try {
    const fh = await open(tmp, 'wx', 0o600);
    try {
      if (body instanceof Uint8Array) {
        await fh.write(body);
        bytes = body.byteLength;
      } else {
        for await (const chunk of Readable.fromWeb(body as unknown as NodeWebReadableStream<Uint8Array>)) {
          await fh.write(chunk as Uint8Array);
          bytes += (chunk as Uint8Array).byteLength;
        }
      }
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
    return bytes;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
