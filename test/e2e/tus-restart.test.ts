/**
 * The real `obscura serve` process is SIGKILLed in the middle of a tus upload: nothing becomes an
 * asset, no plaintext is left anywhere in the data dir, and after a restart the same upload resumes
 * (real tus-js-client) and completes with exactly the original bytes.
 */
import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import * as tus from 'tus-js-client';
import { tempDir } from '../support/db.js';
import { runCli, startServe, type ServerProcess } from '../support/cli.js';
import { api } from '../support/server.js';
import { markedPng } from '../support/media.js';

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

function walkFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    const st = statSync(p, { throwIfNoEntry: false });
    if (!st) continue;
    if (st.isDirectory()) out.push(...walkFiles(p));
    else if (st.isFile()) out.push(p);
  }
  return out;
}

/** Every file under `dir` that contains any of `needles`. */
function filesContaining(dir: string, needles: Buffer[]): string[] {
  return walkFiles(dir).filter((f) => {
    const buf = readFileSync(f);
    return needles.some((n) => buf.includes(n));
  });
}

describe('tus upload across a SIGKILLed and restarted `obscura serve`', () => {
  const dataDir = tempDir('obscura-tus-e2e-');
  const env = { OBSCURA_DATA_DIR: dataDir };
  let server: ServerProcess | undefined;
  after(async () => {
    await server?.stop('SIGKILL');
  });

  test('no asset and no plaintext after the kill; the upload resumes after restart and the asset has the exact bytes', async () => {
    const init = await runCli(['init', '--json', '--org', 'Acme', '--email', 'owner@acme.test'], env);
    assert.equal(init.code, 0, init.stderr);
    const key: string = JSON.parse(init.stdout).secret_key.key;

    const marker = `obscura-marker-${randomBytes(12).toString('hex')}`;
    const png = await markedPng(marker, 1024, 1024);
    // Needles: the marker, and a run of pixel bytes from the middle (plaintext of any part, not just the first).
    const needles = [Buffer.from(marker), png.subarray(png.length >> 1, (png.length >> 1) + 48)];
    assert.ok(png.includes(needles[0]!) && png.length > 3 * 1024 * 1024);

    server = await startServe(env);
    const first = server;
    let uploadUrl: string | undefined;
    let killed = false;
    const failed = await new Promise<Error>((resolve, reject) => {
      const upload = new tus.Upload(png, {
        endpoint: `${first.url}/v1/uploads`,
        headers: { authorization: `Bearer ${key}` },
        metadata: { filename: 'marked.png' },
        chunkSize: 512 * 1024,
        retryDelays: [],
        onUploadUrlAvailable: () => {
          uploadUrl = upload.url ?? undefined;
        },
        onProgress: (sent) => {
          // Past two whole chunks and inside the third PATCH: kill the server with the body in flight.
          if (!killed && sent > 2.5 * 512 * 1024) {
            killed = true;
            void first.stop('SIGKILL');
          }
        },
        onSuccess: () => reject(new Error('the upload should not have finished')),
        onError: resolve,
      });
      upload.start();
    });
    assert.ok(failed instanceof Error);
    assert.ok(uploadUrl, 'the upload was created before the kill');
    await first.stop('SIGKILL');
    server = undefined;

    // Nothing became an asset, and nothing readable is on disk: parts (and any interrupted part's
    // temporary file) are ciphertext, and the database holds no file bytes.
    // (One-pass uploads: the parts are written under the asset they become, orgs/<org>/parts/<asset>/.)
    assert.equal(existsSync(join(dataDir, 'blobs', 'orgs')) ? walkFiles(join(dataDir, 'blobs', 'orgs')).filter((f) => f.includes('/assets/')).length : 0, 0, 'no asset blob');
    const partFiles = walkFiles(join(dataDir, 'blobs')).filter((f) => f.includes('/parts/') || f.includes('uploads'));
    assert.ok(partFiles.length >= 2, `the received chunks are kept (encrypted): ${partFiles.length}`);
    assert.deepEqual(filesContaining(dataDir, needles), [], 'no plaintext anywhere in the data dir');

    server = await startServe(env);
    const second = server;
    const head = await fetch(uploadUrl!.replace(first.url, second.url), { method: 'HEAD', headers: { authorization: `Bearer ${key}`, 'tus-resumable': '1.0.0' } });
    assert.equal(head.status, 200);
    const offset = Number(head.headers.get('upload-offset'));
    assert.ok(offset >= 2 * 512 * 1024 && offset < png.length, `resumable from ${offset}`);
    assert.equal(head.headers.get('obscura-asset-id'), null, 'not an asset yet');

    let assetId: string | undefined;
    let resumedFrom = -1;
    await new Promise<void>((resolve, reject) => {
      const upload = new tus.Upload(png, {
        endpoint: `${second.url}/v1/uploads`,
        uploadUrl: uploadUrl!.replace(first.url, second.url),
        headers: { authorization: `Bearer ${key}` },
        chunkSize: 1024 * 1024,
        retryDelays: [],
        onProgress: (sent) => {
          if (resumedFrom < 0) resumedFrom = sent;
        },
        onAfterResponse: (_req, res) => {
          assetId = res.getHeader('Obscura-Asset-Id') ?? assetId;
        },
        onSuccess: () => resolve(),
        onError: reject,
      });
      upload.start();
    });
    assert.ok(resumedFrom >= offset, 'continued from the server offset, not from zero');
    assert.ok(assetId, 'the completing PATCH names the asset');

    const meta = await api(second.url, 'GET', `/v1/assets/${assetId}`, { key });
    assert.equal(meta.status, 200);
    assert.equal(meta.body.sha256, sha256(png));
    assert.equal(meta.body.size, png.length);
    assert.equal(meta.body.content_type, 'image/png');
    assert.equal(meta.body.width, 1024);
    const link = await api(second.url, 'POST', `/v1/assets/${assetId}/url`, { key, body: {} });
    assert.equal(link.status, 201);
    const download = Buffer.from(await (await fetch(link.body.url)).arrayBuffer());
    assert.equal(sha256(download), sha256(png), 'the downloaded bytes are the original bytes');

    // At rest after completion: the asset is its encrypted parts (completion wrote no other blob).
    assert.deepEqual(filesContaining(dataDir, needles), [], 'still no plaintext in the data dir');
    assert.deepEqual(walkFiles(join(dataDir, 'blobs')).filter((f) => f.includes('uploads') || f.includes('/assets/')), []);
    assert.equal(await second.stop('SIGTERM'), 0);
    server = undefined;
  });
});
