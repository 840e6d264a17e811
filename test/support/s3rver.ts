/**
 * Starts a throwaway s3rver for tests that need the S3 wire protocol.
 *
 * s3rver stands in for AWS S3 / MinIO: it speaks the same REST API (path-style buckets, multipart
 * upload, ranged GET, ListObjectsV2), so the SDK calls our S3 store makes are real HTTP requests.
 * It is a fake, though: it does NOT verify SigV4 signatures (header or presigned query), does not
 * enforce signed Content-Length/Content-Type, and writes objects non-atomically. Tests that need
 * signature binding assert on the URL's `X-Amz-SignedHeaders` instead of relying on the server.
 * Other known gaps (s3rver 3.7 on Node 20 / OpenSSL 3): truncated listings fail with InternalError
 * (its continuation tokens use DES), AbortMultipartUpload is not implemented, `Range: bytes=0-0`
 * returns the whole object, and file names carry a suffix, so key segments near 255 chars fail.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { S3Client } from '@aws-sdk/client-s3';

interface S3rverOptions {
  address: string;
  port: number;
  silent: boolean;
  directory: string;
  vhostBuckets: boolean;
  configureBuckets: { name: string }[];
}
interface S3rverInstance {
  run(): Promise<{ address: string; port: number }>;
  close(): Promise<void>;
}
type S3rverCtor = new (options: S3rverOptions) => S3rverInstance;

// s3rver is CommonJS without type declarations.
const S3rver = createRequire(import.meta.url)('s3rver') as S3rverCtor;

export interface S3rverHandle {
  /** `http://127.0.0.1:<port>` */
  endpoint: string;
  bucket: string;
  /** Path-style client with s3rver's built-in credentials (S3RVER/S3RVER). */
  client: S3Client;
  /** Destroys the client, stops the server and removes its directory. */
  stop(): Promise<void>;
}

/** Starts s3rver on 127.0.0.1 (random free port) in a fresh temp dir with one bucket. */
export async function startS3rver(bucket = 'obscura-test'): Promise<S3rverHandle> {
  const directory = await mkdtemp(join(tmpdir(), 'obscura-s3rver-'));
  const server = new S3rver({
    address: '127.0.0.1',
    port: 0,
    silent: true,
    directory,
    vhostBuckets: false,
    configureBuckets: [{ name: bucket }],
  });
  const { port } = await server.run();
  const endpoint = `http://127.0.0.1:${port}`;
  const client = new S3Client({
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
  });
  return {
    endpoint,
    bucket,
    client,
    async stop() {
      client.destroy();
      await server.close();
      await rm(directory, { recursive: true, force: true });
    },
  };
}
