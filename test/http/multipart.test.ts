/**
 * Issue 9, item 9: `multipart/form-data` (curl -F, HTML forms, FormData) on POST /v1/assets and
 * POST /v1/process, through the real server. The file part is sniffed, limited, validated and
 * encrypted like a raw body; hostile forms (no file, two files, a field after the file, unknown,
 * repeated or oversized fields, too many parts, a malformed body, an oversized or undecodable file)
 * get a clear 4xx with a stable code and store nothing. Real `curl -F` is used when curl is installed.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { DB_KINDS, openTestDb, superQuery, tempDir, type TestDb } from '../support/db.js';
import { api, createTenant, startServer, type Tenant, type TestServer } from '../support/server.js';
import { markedPng } from '../support/media.js';

const run = promisify(execFile);
const MAX_SIMPLE = 400_000;

async function hasCurl(): Promise<boolean> {
  try {
    await run('curl', ['--version']);
    return true;
  } catch {
    return false;
  }
}

/** A multipart body built by hand, for forms FormData cannot express (part order, raw framing). */
function rawForm(parts: Array<{ name: string; filename?: string; type?: string; data: Buffer | string }>, boundary = 'obscuraTestBoundary7MA4YWxk'): { body: Buffer; type: string } {
  const chunks: Buffer[] = [];
  for (const p of parts) {
    const disp = `form-data; name="${p.name}"${p.filename !== undefined ? `; filename="${p.filename}"` : ''}`;
    const head = `--${boundary}\r\nContent-Disposition: ${disp}\r\n${p.type ? `Content-Type: ${p.type}\r\n` : ''}\r\n`;
    chunks.push(Buffer.from(head), Buffer.isBuffer(p.data) ? p.data : Buffer.from(p.data), Buffer.from('\r\n'));
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return { body: Buffer.concat(chunks), type: `multipart/form-data; boundary=${boundary}` };
}

async function jpegOf(width: number, height: number): Promise<Buffer> {
  const raw = Buffer.alloc(width * height * 3);
  for (let i = 0; i < raw.length; i++) raw[i] = (i * 2654435761) >>> 24;
  return sharp(raw, { raw: { width, height, channels: 3 } }).jpeg({ quality: 85 }).toBuffer();
}

for (const kind of DB_KINDS) {
  describe(`multipart/form-data uploads (${kind})`, () => {
    let t: TestDb;
    let s: TestServer;
    let a: Tenant;
    let jpeg: Buffer;
    let png: Buffer;
    const marker = `multipart-marker-${Math.random().toString(36).slice(2)}`;

    before(async () => {
      t = await openTestDb(kind);
      s = await startServer(t.db, { env: { OBSCURA_MAX_SIMPLE_UPLOAD_BYTES: String(MAX_SIMPLE), OBSCURA_PROCESS_MAX_BODY_BYTES: String(MAX_SIMPLE) } });
      a = await createTenant(t.db, 'Forms');
      jpeg = await jpegOf(320, 240);
      png = await markedPng(marker, 120, 90);
    });
    after(async () => {
      await s.close();
      await t.close();
    });

    const auth = () => ({ authorization: `Bearer ${a.key}` });

    async function assetCount(): Promise<number> {
      const rows = await superQuery(t, 'select count(*)::int as n from assets where org_id = $1', [a.orgId]);
      return Number(rows[0]!.n);
    }
    async function blobCount(): Promise<number> {
      let n = 0;
      for await (const k of s.store.list(`orgs/${a.orgId}/`)) if (!k.includes('/uploads/')) n++;
      return n;
    }
    async function post(path: string, body: BodyInit, headers: Record<string, string> = {}): Promise<{ status: number; body: any; headers: Headers }> {
      const r = await fetch(`${s.url}${path}`, { method: 'POST', headers: { ...auth(), ...headers }, body });
      const text = await r.text();
      let parsed: unknown = text;
      try {
        parsed = JSON.parse(text);
      } catch {
        /* bytes */
      }
      return { status: r.status, body: parsed, headers: r.headers };
    }

    test('POST /v1/assets takes a FormData upload: the type is sniffed, the part filename kept, the blob encrypted', async () => {
      const form = new FormData();
      // A lying part type: the bytes decide.
      form.append('file', new Blob([new Uint8Array(png)], { type: 'text/plain' }), 'holiday.png');
      const r = await post('/v1/assets', form);
      assert.equal(r.status, 201, JSON.stringify(r.body));
      assert.equal(r.body.content_type, 'image/png');
      assert.equal(r.body.filename, 'holiday.png');
      assert.equal(r.body.width, 120);
      assert.equal(r.body.size, png.length);
      // Stored encrypted: the plaintext marker is in no blob.
      for await (const k of s.store.list(`orgs/${a.orgId}/`)) {
        const chunks: Buffer[] = [];
        for await (const c of await s.store.get(k)) chunks.push(c as Buffer);
        assert.ok(!Buffer.concat(chunks).includes(marker), `plaintext in ${k}`);
      }
      // And the bytes come back exactly through a signed URL.
      const url = await api(s.url, 'POST', `/v1/assets/${r.body.id}/url`, { key: a.key });
      const dl = await fetch(url.body.url);
      assert.deepEqual(Buffer.from(await dl.arrayBuffer()), png);
      assert.equal((await api(s.url, 'DELETE', `/v1/assets/${r.body.id}`, { key: a.key })).status, 204);
    });

    test('a filename field before the file names the asset', async () => {
      const form = new FormData();
      form.append('filename', 'cover.jpg');
      form.append('file', new Blob([new Uint8Array(jpeg)]), 'ignored.bin');
      const r = await post('/v1/assets', form);
      assert.equal(r.status, 201, JSON.stringify(r.body));
      assert.equal(r.body.filename, 'cover.jpg');
      assert.equal(r.body.content_type, 'image/jpeg');
      assert.equal((await api(s.url, 'DELETE', `/v1/assets/${r.body.id}`, { key: a.key })).status, 204);
    });

    test('real curl -F uploads a file and a filename field; hostile files sent the same way are refused with 422', async (ctx) => {
      if (!(await hasCurl())) return ctx.skip('curl is not installed');
      const dir = tempDir('obscura-curl-');
      writeFileSync(join(dir, 'photo.jpg'), jpeg);
      writeFileSync(join(dir, 'fake.gif'), 'GIF89a this is just a text file\nwith a few lines\n');
      writeFileSync(join(dir, 'cut.jpg'), jpeg.subarray(0, Math.floor(jpeg.length * 0.38)));
      const curl = async (...args: string[]) => {
        const { stdout } = await run('curl', ['-sS', '-w', '\n%{http_code}', '-H', `Authorization: Bearer ${a.key}`, ...args, `${s.url}/v1/assets`]);
        const at = stdout.lastIndexOf('\n');
        return { status: Number(stdout.slice(at + 1)), body: JSON.parse(stdout.slice(0, at)) };
      };
      const ok = await curl('-F', 'filename=from-curl.jpg', '-F', `file=@${join(dir, 'photo.jpg')}`);
      assert.equal(ok.status, 201, JSON.stringify(ok.body));
      assert.equal(ok.body.filename, 'from-curl.jpg');
      assert.equal(ok.body.content_type, 'image/jpeg');
      assert.equal(ok.body.width, 320);
      assert.equal((await api(s.url, 'DELETE', `/v1/assets/${ok.body.id}`, { key: a.key })).status, 204);
      for (const name of ['fake.gif', 'cut.jpg']) {
        const r = await curl('-F', `file=@${join(dir, name)}`);
        assert.equal(r.status, 422, `${name}: ${JSON.stringify(r.body)}`);
        assert.equal(r.body.code, 'ERR_MEDIA_INVALID');
      }
      assert.equal(await assetCount(), 0);
      assert.equal(await blobCount(), 0);
    });

    test('the hostile files of item 5 are refused through a form with 422 ERR_MEDIA_INVALID and nothing is stored', async () => {
      const ftyp = Buffer.from('0000001866747970697a6f6d00000200697a6f6d6d703431', 'hex');
      const hostile = {
        'text disguised as GIF': Buffer.from('GIF89a this is just a text file\n'),
        'truncated JPEG': jpeg.subarray(0, Math.floor(jpeg.length * 0.38)),
        'ftyp header followed by zeros': Buffer.concat([ftyp, Buffer.alloc(20_000)]),
      };
      for (const [name, bytes] of Object.entries(hostile)) {
        const form = new FormData();
        form.append('file', new Blob([new Uint8Array(bytes)]), 'x');
        const r = await post('/v1/assets', form);
        assert.equal(r.status, 422, `${name}: ${JSON.stringify(r.body)}`);
        assert.equal(r.body.code, 'ERR_MEDIA_INVALID', name);
      }
      assert.equal(await assetCount(), 0);
      assert.equal(await blobCount(), 0);
    });

    test('hostile forms on POST /v1/assets each get a clear 4xx with a stable code, and nothing is stored', async () => {
      const file = { name: 'file', filename: 'a.jpg', type: 'image/jpeg', data: jpeg };
      const cases: Array<[string, { body: Buffer; type: string }, number, string]> = [
        ['no file part', rawForm([{ name: 'filename', data: 'x.jpg' }]), 400, 'ERR_BAD_REQUEST'],
        ['an empty form', rawForm([]), 400, 'ERR_BAD_REQUEST'],
        ['two file parts', rawForm([file, { ...file, filename: 'b.jpg' }]), 400, 'ERR_VALIDATION'],
        ['a field after the file', rawForm([file, { name: 'filename', data: 'late.jpg' }]), 400, 'ERR_VALIDATION'],
        ['an unknown field', rawForm([{ name: 'owner', data: 'mallory' }, file]), 400, 'ERR_VALIDATION'],
        ['a repeated field (too many fields)', rawForm([{ name: 'filename', data: 'a' }, { name: 'filename', data: 'b' }, file]), 400, 'ERR_VALIDATION'],
        ['many parts', rawForm([...Array.from({ length: 50 }, (_, i) => ({ name: `f${i}`, data: 'x' })), file]), 400, 'ERR_VALIDATION'],
        ['an oversized field', rawForm([{ name: 'filename', data: 'n'.repeat(20_000) }, file]), 400, 'ERR_VALIDATION'],
        ['a field named file instead of a file', rawForm([{ name: 'file', data: 'not a file' }]), 400, 'ERR_VALIDATION'],
        ['the file in a part with another name', rawForm([{ ...file, name: 'image' }]), 400, 'ERR_VALIDATION'],
        ['an oversized file part', rawForm([{ ...file, data: Buffer.concat([jpeg, Buffer.alloc(MAX_SIMPLE)]) }]), 413, 'ERR_PAYLOAD_TOO_LARGE'],
        ['no boundary in the Content-Type', { body: rawForm([file]).body, type: 'multipart/form-data' }, 400, 'ERR_BAD_REQUEST'],
        ['a body cut before its closing boundary', { body: rawForm([file]).body.subarray(0, 400), type: rawForm([file]).type }, 400, 'ERR_BAD_REQUEST'],
      ];
      for (const [name, form, status, code] of cases) {
        const r = await post('/v1/assets', new Uint8Array(form.body), { 'content-type': form.type });
        assert.equal(r.status, status, `${name}: ${JSON.stringify(r.body)}`);
        assert.equal(r.body.code, code, name);
        assert.ok(typeof r.body.detail === 'string' && !/busboy|FST_|stack/i.test(r.body.detail), `${name}: ${r.body.detail}`);
      }
      assert.equal(await assetCount(), 0, 'no asset row');
      assert.equal(await blobCount(), 0, 'no blob');
      // The legitimate twin of the same shape is accepted.
      const ok = await post('/v1/assets', new Uint8Array(rawForm([{ name: 'filename', data: 'ok.jpg' }, file]).body), { 'content-type': rawForm([]).type });
      assert.equal(ok.status, 201, JSON.stringify(ok.body));
      assert.equal((await api(s.url, 'DELETE', `/v1/assets/${ok.body.id}`, { key: a.key })).status, 204);
    });

    test('POST /v1/process takes a form: the image in "file", the options as fields; the output is processed', async () => {
      const form = new FormData();
      form.append('operations', 'resize:width=100/format:webp');
      form.append('file', new Blob([new Uint8Array(jpeg)]), 'photo.jpg');
      const r = await fetch(`${s.url}/v1/process`, { method: 'POST', headers: auth(), body: form });
      assert.equal(r.status, 200, await r.clone().text());
      assert.equal(r.headers.get('content-type'), 'image/webp');
      const meta = await sharp(Buffer.from(await r.arrayBuffer())).metadata();
      assert.equal(meta.width, 100);
      assert.equal(meta.format, 'webp');

      // store=true (a string field, coerced like the query string) stores the output.
      const stored = new FormData();
      stored.append('operations', 'resize:width=64');
      stored.append('store', 'true');
      stored.append('file', new Blob([new Uint8Array(png)]), 'p.png');
      const st = await post('/v1/process', stored);
      assert.equal(st.status, 201, JSON.stringify(st.body));
      assert.equal(st.body.kind, 'output');
      assert.equal(st.body.width, 64);
      assert.equal((await api(s.url, 'DELETE', `/v1/assets/${st.body.id}`, { key: a.key })).status, 204);
    });

    test('real curl -F works on POST /v1/process', async (ctx) => {
      if (!(await hasCurl())) return ctx.skip('curl is not installed');
      const dir = tempDir('obscura-curl-');
      writeFileSync(join(dir, 'photo.jpg'), jpeg);
      const out = join(dir, 'out.png');
      const { stdout } = await run('curl', ['-sS', '-o', out, '-w', '%{http_code} %{content_type}', '-H', `Authorization: Bearer ${a.key}`, '-F', 'operations=resize:width=80/format:png', '-F', `file=@${join(dir, 'photo.jpg')}`, `${s.url}/v1/process`]);
      assert.equal(stdout, '200 image/png');
      assert.equal((await sharp(out).metadata()).width, 80);
    });

    test('hostile forms on POST /v1/process get a clear 4xx with a stable code and store nothing', async () => {
      const file = { name: 'file', filename: 'a.jpg', data: jpeg };
      const ops = { name: 'operations', data: 'resize:width=50' };
      const cases: Array<[string, { body: Buffer; type: string }, number, string, string?]> = [
        ['no file part', rawForm([ops]), 400, 'ERR_BAD_REQUEST'],
        ['two file parts', rawForm([ops, file, file]), 400, 'ERR_VALIDATION'],
        ['a field after the file', rawForm([file, { name: 'store', data: 'true' }]), 400, 'ERR_VALIDATION'],
        ['an unknown field', rawForm([{ name: 'input', data: '{"url":"http://169.254.169.254/"}' }, file]), 400, 'ERR_VALIDATION'],
        ['a field of the wrong type', rawForm([ops, { name: 'ttl_seconds', data: 'forever' }, { name: 'store', data: 'true' }, file]), 400, 'ERR_VALIDATION'],
        ['an invalid operation', rawForm([{ name: 'operations', data: 'explode:now' }, file]), 400, 'ERR_VALIDATION'],
        ['an empty file part', rawForm([ops, { ...file, data: Buffer.alloc(0) }]), 400, 'ERR_BAD_REQUEST'],
        ['an oversized file part', rawForm([ops, { ...file, data: Buffer.concat([jpeg, Buffer.alloc(MAX_SIMPLE)]) }]), 413, 'ERR_PAYLOAD_TOO_LARGE'],
        ['a text file in the file part', rawForm([ops, { ...file, data: 'hello, not an image' }]), 415, 'ERR_UNSUPPORTED_MEDIA_TYPE'],
      ];
      for (const [name, form, status, code] of cases) {
        const r = await post('/v1/process', new Uint8Array(form.body), { 'content-type': form.type });
        assert.equal(r.status, status, `${name}: ${JSON.stringify(r.body)}`);
        assert.equal(r.body.code, code, name);
      }
      // Options in the query string with a form are refused (one place for options).
      const q = new FormData();
      q.append('file', new Blob([new Uint8Array(jpeg)]), 'a.jpg');
      const withQuery = await post('/v1/process?store=true', q);
      assert.equal(withQuery.status, 400);
      assert.equal(withQuery.body.code, 'ERR_VALIDATION');
      assert.equal(await assetCount(), 0);
      assert.equal(await blobCount(), 0);
    });

    test('a JSON-only route sent a form still answers 415 naming application/json; POST /v1/process names the form among its types', async () => {
      const form = new FormData();
      form.append('name', 'x');
      const r = await post('/v1/apps', form);
      assert.equal(r.status, 415);
      assert.equal(r.body.code, 'ERR_UNSUPPORTED_MEDIA_TYPE');
      assert.deepEqual(r.body.accepted, ['application/json']);
      const p = await post('/v1/process', 'text', { 'content-type': 'text/csv' });
      assert.equal(p.status, 415);
      assert.ok(p.body.accepted.includes('multipart/form-data'), JSON.stringify(p.body));
    });

    test('OpenAPI documents both form bodies with a binary file part (Swagger UI shows a file picker), and the raw body of POST /v1/assets', async () => {
      const doc = (await (await fetch(`${s.url}/docs/json`)).json()) as { paths: Record<string, Record<string, { requestBody?: { content: Record<string, { schema: any }> } }>> };
      for (const path of ['/v1/assets', '/v1/process']) {
        const content = doc.paths[path]!.post!.requestBody?.content;
        assert.ok(content, `${path} has a requestBody`);
        const schema = content['multipart/form-data']?.schema;
        assert.equal(schema?.type, 'object', path);
        assert.equal(schema.properties.file.type, 'string');
        assert.equal(schema.properties.file.format, 'binary');
        assert.deepEqual(schema.required, ['file']);
      }
      const assets = doc.paths['/v1/assets']!.post!.requestBody!.content;
      assert.ok(assets['application/octet-stream'], 'raw body documented');
      assert.ok(doc.paths['/v1/process']!.post!.requestBody!.content['application/json'], 'JSON body still documented');
    });
  });
}
