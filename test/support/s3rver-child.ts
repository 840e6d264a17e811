/**
 * s3rver as a separate process, so a test can freeze it (SIGSTOP) or kill it like a real S3 endpoint
 * that hangs or goes away. Usage: node s3rver-child.js PORT DIRECTORY BUCKET — prints `S3RVER_READY`.
 * (s3rver is a fake: see test/support/s3rver.ts for what it does not check.)
 */
import { createRequire } from 'node:module';

const [port, directory, bucket] = process.argv.slice(2);
const S3rver = createRequire(import.meta.url)('s3rver') as new (o: Record<string, unknown>) => { run(): Promise<{ port: number }> };
const server = new S3rver({ address: '127.0.0.1', port: Number(port), silent: true, directory, vhostBuckets: false, configureBuckets: [{ name: bucket }] });
await server.run();
process.stdout.write('S3RVER_READY\n');
