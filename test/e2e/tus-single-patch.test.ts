/**
 * Issue 9, item 18: a client that sends a whole file in ONE tus PATCH (tus-js-client's default, no
 * chunkSize) loses at most one segment when the connection, or the server, dies mid-PATCH: the server
 * commits the body every `OBSCURA_UPLOAD_SEGMENT_BYTES`. The real `obscura serve` process is SIGKILLed
 * with the PATCH body in flight; after a restart the HEAD offset is the last segment boundary the
 * server received, and the upload resumes from there and completes with exactly the original bytes.
 */
import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { request } from 'node:http';
import { tempDir } from '../support/db.js';
import { runCli, startServe, type ServerProcess } from '../support/cli.js';
import { api } from '../support/server.js';
import { pngOfSize } from '../support/media.js';

const MiB = 1024 * 1024;
const SEGMENT = MiB;
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('a single-PATCH tus upload across a SIGKILLed server', () => {
  const env = { OBSCURA_DATA_DIR: tempDir('obscura-tus-seg-'), OBSCURA_UPLOAD_SEGMENT_BYTES: String(SEGMENT) };
  let server: ServerProcess | undefined;
  after(async () => {
    await server?.stop('SIGKILL');
  });

  test('the upload resumes from the last committed segment, not from 0, and completes with the exact bytes', async () => {
    const init = await runCli(['init', '--json'], env);
    assert.equal(init.code, 0, init.stderr);
    const key: string = JSON.parse(init.stdout).secret_key.key;
    const file = await pngOfSize(5 * MiB + 12345);
    server = await startServe(env);
    const first = server;

    const created = await fetch(`${first.url}/v1/uploads`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'tus-resumable': '1.0.0', 'upload-length': String(file.length), 'upload-metadata': `filename ${Buffer.from('big.png').toString('base64')}` },
    });
    assert.equal(created.status, 201);
    const path = created.headers.get('location')!;

    // One PATCH for the whole file: send 3.5 segments, keep the connection open, then kill the server.
    const sent = Math.floor(3.5 * SEGMENT);
    const url = new URL(path, first.url);
    const req = request(url, {
      method: 'PATCH',
      headers: { authorization: `Bearer ${key}`, 'tus-resumable': '1.0.0', 'upload-offset': '0', 'content-type': 'application/offset+octet-stream', 'content-length': String(file.length) },
    });
    req.on('error', () => undefined);
    await new Promise<void>((resolve) => req.write(file.subarray(0, sent), () => resolve()));
    // Let the server read, encrypt, store and commit what it received.
    await new Promise((r) => setTimeout(r, 2500));
    await first.stop('SIGKILL');
    req.destroy();

    server = await startServe(env);
    const head = await fetch(new URL(path, server.url), { method: 'HEAD', headers: { authorization: `Bearer ${key}`, 'tus-resumable': '1.0.0' } });
    assert.equal(head.status, 200);
    const offset = Number(head.headers.get('upload-offset'));
    // Every whole segment received was committed; only the one in flight is lost.
    assert.equal(offset, 3 * SEGMENT, `resumed at ${offset}, sent ${sent}`);

    const rest = await fetch(new URL(path, server.url), {
      method: 'PATCH',
      headers: { authorization: `Bearer ${key}`, 'tus-resumable': '1.0.0', 'upload-offset': String(offset), 'content-type': 'application/offset+octet-stream' },
      body: new Uint8Array(file.subarray(offset)),
    });
    assert.equal(rest.status, 204, await rest.text());
    assert.equal(rest.headers.get('upload-offset'), String(file.length));
    const assetId = rest.headers.get('obscura-asset-id')!;
    const asset = await api(server.url, 'GET', `/v1/assets/${assetId}`, { key });
    assert.equal(asset.body.size, file.length);
    assert.equal(asset.body.sha256, sha256(file));
    const link = await api(server.url, 'POST', `/v1/assets/${assetId}/url`, { key, body: {} });
    const back = Buffer.from(await (await fetch(link.body.url)).arrayBuffer());
    assert.equal(sha256(back), sha256(file), 'exactly the original bytes');
  });
});
