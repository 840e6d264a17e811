/**
 * Issue 9, item 20: blobs without a row (left by a process killed between writing a blob and
 * committing its row) are swept by the maintenance of a real `obscura serve`, in both stores, after
 * a safety window; blobs with a row, an upload in progress and keys of unknown shape are untouched.
 * The orphans are planted with the store adapters themselves, exactly where a killed ingest leaves
 * them (`orgs/<org>/assets/<id>`, `uploads/<org>/<id>/...`, `staging/<org>/<id>`).
 */
import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { S3Client } from '@aws-sdk/client-s3';
import { runCli, startServe, type ServerProcess } from '../support/cli.js';
import { createEmptyDatabase, tempDir } from '../support/db.js';
import { api, freePort } from '../support/server.js';
import { markedPng } from '../support/media.js';
import { createFsStore } from '../../src/assets/stores/fs.js';
import { createS3Store } from '../../src/assets/stores/s3.js';
import type { BlobStore } from '../../src/assets/stores/types.js';

const S3_CHILD = fileURLToPath(new URL('../support/s3rver-child.js', import.meta.url));
const BUCKET = 'orphans';

async function startS3Child(port: number, dir: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, [S3_CHILD, String(port), dir, BUCKET], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d) => {
      out += d;
      if (out.includes('S3RVER_READY')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`s3rver exited ${code}`)));
  });
  return child;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const keysOf = async (store: BlobStore): Promise<string[]> => {
  const out: string[] = [];
  for await (const k of store.list('')) out.push(k);
  return out.sort();
};

describe('orphaned blobs are swept by maintenance', () => {
  const cleanup: Array<() => Promise<unknown> | unknown> = [];
  after(async () => {
    for (const c of cleanup.reverse()) await c();
  });

  for (const kind of ['fs', 's3'] as const) {
    test(`${kind} store: an orphan older than OBSCURA_ORPHAN_GRACE_MS is deleted; a blob with a row, an open upload and foreign keys stay`, async () => {
      const dataDir = tempDir();
      let env: Record<string, string> = { OBSCURA_DATA_DIR: dataDir, OBSCURA_MAINTENANCE_INTERVAL_MS: '500', OBSCURA_ORPHAN_GRACE_MS: '2000' };
      let store: BlobStore;
      if (kind === 's3') {
        const port = await freePort();
        const s3 = await startS3Child(port, tempDir('obscura-s3-'));
        cleanup.push(() => s3.kill('SIGKILL'));
        const { url } = await createEmptyDatabase('postgres');
        env = {
          ...env,
          DATABASE_URL: url!,
          OBSCURA_MASTER_KEY: randomBytes(32).toString('hex'),
          OBSCURA_STORE: 's3',
          OBSCURA_S3_ENDPOINT: `http://127.0.0.1:${port}`,
          OBSCURA_S3_BUCKET: BUCKET,
          OBSCURA_S3_FORCE_PATH_STYLE: 'true',
          AWS_ACCESS_KEY_ID: 'S3RVER',
          AWS_SECRET_ACCESS_KEY: 'S3RVER',
          AWS_REGION: 'us-east-1',
        };
        const client = new S3Client({ endpoint: `http://127.0.0.1:${port}`, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } });
        cleanup.push(() => client.destroy());
        store = createS3Store({ client, bucket: BUCKET });
      } else {
        store = await createFsStore({ root: join(dataDir, 'blobs') });
      }
      const init = await runCli(['init', '--json'], env);
      assert.equal(init.code, 0, init.stderr);
      const { org, secret_key } = JSON.parse(init.stdout);
      const server: ServerProcess = await startServe(env);
      cleanup.push(() => server.stop('SIGKILL'));

      // A real asset (blob + row) and an upload in progress (row + first segment).
      const up = await fetch(`${server.url}/v1/assets`, { method: 'POST', headers: { authorization: `Bearer ${secret_key.key}` }, body: new Uint8Array(await markedPng('keep', 40, 30)) });
      assert.equal(up.status, 201);
      const asset = (await up.json()) as { id: string };
      const png = await markedPng('partial', 64, 64);
      const tus = await fetch(`${server.url}/v1/uploads`, {
        method: 'POST',
        headers: { authorization: `Bearer ${secret_key.key}`, 'tus-resumable': '1.0.0', 'upload-length': String(png.length), 'upload-metadata': `filename ${Buffer.from('p.png').toString('base64')}` },
      });
      assert.equal(tus.status, 201, await tus.text());
      const uploadUrl = new URL(tus.headers.get('location')!, server.url).toString();
      const patch = await fetch(uploadUrl, {
        method: 'PATCH',
        headers: { authorization: `Bearer ${secret_key.key}`, 'tus-resumable': '1.0.0', 'upload-offset': '0', 'content-type': 'application/offset+octet-stream' },
        body: new Uint8Array(png.subarray(0, 100)),
      });
      assert.equal(patch.status, 204, await patch.text());
      const before = await keysOf(store);
      // An upload's parts are written under the asset it becomes (one-pass uploads, format version 2).
      const uploadKeys = before.filter((k) => k.startsWith(`uploads/${org.id}/`) || k.startsWith(`orgs/${org.id}/parts/`));
      assert.equal(uploadKeys.length, 1, 'the open upload has its first part');

      // What a kill between blob and row leaves: an asset blob, an upload segment and a staged
      // object without rows. And a key this code does not own.
      const orphans = [
        `orgs/${org.id}/assets/ast_orphan${randomBytes(6).toString('hex')}`,
        `uploads/${org.id}/upl_gone/000000`,
        `staging/${org.id}/int_gone`,
        // A part of an upload whose row is gone (and which never became an asset).
        `orgs/${org.id}/parts/ast_gone${randomBytes(6).toString('hex')}/0000000000000000-gone`,
      ];
      for (const k of [...orphans, 'elsewhere/not-ours']) await store.put(k, Readable.from([randomBytes(64)]));

      // Swept once seen twice, at least 2 s apart (passes every 500 ms here; default 1 h and 1 min).
      const deadline = Date.now() + 20_000;
      let now = await keysOf(store);
      while (Date.now() < deadline && orphans.some((k) => now.includes(k))) {
        await sleep(500);
        now = await keysOf(store);
      }
      for (const k of orphans) assert.ok(!now.includes(k), `${k} was not swept: ${now.join(', ')}`);
      assert.ok(now.includes('elsewhere/not-ours'), 'a key of unknown shape is never touched');
      assert.ok(now.includes(`orgs/${org.id}/assets/${asset.id}`), 'a blob with a row stays');
      for (const k of uploadKeys) assert.ok(now.includes(k), `the open upload's ${k} stays`);
      // The asset still downloads and the upload still resumes.
      const link = await api(server.url, 'POST', `/v1/assets/${asset.id}/url`, { key: secret_key.key, body: {} });
      assert.equal((await fetch(link.body.url)).status, 200);
      const head = await fetch(uploadUrl, { method: 'HEAD', headers: { authorization: `Bearer ${secret_key.key}`, 'tus-resumable': '1.0.0' } });
      assert.equal(head.headers.get('upload-offset'), '100');
      await server.stop();
    });
  }
});
