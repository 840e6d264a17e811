/**
 * The blob store a configuration names: `<dataDir>/blobs` on disk (default), or S3 (credentials from
 * the AWS default chain). The one place stores are constructed; adding a store adds its file in this
 * folder, one branch here, and a test file that calls the shared conformance suite
 * (test/assets/stores/conformance.ts).
 */
import { join } from 'node:path';
import type { StoreSettings } from '../settings.js';
import { createFsStore } from './fs.js';
import type { BlobStore } from './types.js';

/** Opens the configured store. */
export async function openStore(config: StoreSettings): Promise<BlobStore> {
  if (config.storage.kind === 's3') {
    // Loaded only when configured: the AWS SDK costs ~20 MB of resident memory that a server on the
    // local disk store never uses (issue 12, item 6).
    const [{ S3Client }, { createS3Store }] = await Promise.all([import('@aws-sdk/client-s3'), import('./s3.js')]);
    const s3 = config.storage.s3;
    const client = new S3Client({
      region: s3.region,
      endpoint: s3.endpoint,
      forcePathStyle: s3.forcePathStyle,
      // A hung or unreachable store must answer 503 in bounded time, never hold a request forever.
      requestHandler: { connectionTimeout: s3.connectTimeoutMs, requestTimeout: s3.requestTimeoutMs, throwOnRequestTimeout: true },
    });
    // SSE on top of our own encryption: staged presigned uploads are plaintext until finalised.
    return createS3Store({ client, bucket: s3.bucket!, prefix: s3.prefix || undefined, serverSideEncryption: 'AES256' });
  }
  return createFsStore({ root: join(config.dataDir, 'blobs') });
}
