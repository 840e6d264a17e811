/**
 * The client commands (`obscura upload|process|download|jobs`) run as real processes (the built CLI)
 * against a real server on 127.0.0.1: exit codes, `--json`, credentials from the environment or a
 * 0600 file (and the refusal of a file others can read), and an upload/download round trip.
 * Run `npm run build` first (test/support/cli.ts runs the compiled code).
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { chmodSync, chownSync, mkdirSync, readFileSync, readdirSync, writeFileSync, existsSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { tempDir, type TestDb } from '../support/db.js';
import { mintKey, api, type TestServer, type Tenant } from '../support/server.js';
import { startHarness, startTestWorkers, type Harness } from '../jobs/support.js';
import { runCli, type CliResult } from '../support/cli.js';
import { quadrants } from '../fixtures/make.js';
import { clip, probe, videoStream } from '../support/video.js';
import { resolveCredentials, CredentialsError } from '../../src/cli/credentials.js';
import { progressEnabled } from '../../src/cli/progress.js';

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

describe('obscura client commands', () => {
  let h: Harness;
  let workers: Awaited<ReturnType<typeof startTestWorkers>>;
  let t: TestDb;
  let s: TestServer;
  let a: Tenant;
  let dir: string;
  let home: string;
  let png: Buffer;
  let pngPath: string;

  /** A clean environment: no credential unless given, HOME in a temp dir. */
  const env = (extra: Record<string, string> = {}) => ({ HOME: home, XDG_CONFIG_HOME: join(home, '.config'), ...extra });
  const withKey = (extra: Record<string, string> = {}) => env({ OBSCURA_URL: s.url, OBSCURA_API_KEY: a.key, ...extra });
  const cli = (args: string[], e: Record<string, string>) => runCli(args, e, { timeoutMs: 60_000 });
  const stderrJson = (r: CliResult) => JSON.parse(r.stderr.trim().split('\n').at(-1)!) as { error: { code: string; status?: number } };

  before(async () => {
    // A server with job workers in this process (as `obscura serve` runs them).
    h = await startHarness('pglite');
    workers = await startTestWorkers(h);
    ({ t, srv: s, a } = h);
    dir = tempDir('obscura-cli-client-');
    home = join(dir, 'home');
    mkdirSync(home, { recursive: true });
    png = await quadrants(120, 80);
    pngPath = join(dir, 'in.png');
    writeFileSync(pngPath, png);
  });
  after(async () => {
    await workers.stop();
    await h.close();
  });

  test('upload then download round-trips the bytes, with --json output for scripts', async () => {
    const up = await cli(['upload', pngPath, '--json'], withKey());
    assert.equal(up.code, 0, up.stderr);
    const asset = JSON.parse(up.stdout);
    assert.match(asset.id, /^ast_[0-9A-Za-z]{22}$/);
    assert.equal(asset.sha256, sha256(png));
    assert.equal(asset.content_type, 'image/png');
    assert.equal(asset.filename, 'in.png');

    const outPath = join(dir, 'back.png');
    const down = await cli(['download', asset.id, '-o', outPath, '--json'], withKey());
    assert.equal(down.code, 0, down.stderr);
    assert.equal(JSON.parse(down.stdout).size, png.length);
    assert.equal(sha256(readFileSync(outPath)), sha256(png));
    assert.deepEqual(readdirSync(dir).filter((n) => n.startsWith('.back.png')), [], 'no temporary file left behind');

    // Never overwrites without --force.
    const again = await cli(['download', asset.id, '-o', outPath], withKey());
    assert.equal(again.code, 2);
    assert.match(again.stderr, /--force/);
  });

  test('without a terminal, upload prints only the asset id and draws no progress bar', async () => {
    const up = await cli(['upload', pngPath], withKey());
    assert.equal(up.code, 0, up.stderr);
    assert.match(up.stdout, /^ast_[0-9A-Za-z]{22}\n$/);
    assert.ok(!up.stderr.includes('\r') && !up.stderr.includes('\x1b['), 'no bar drawn on a pipe');
    assert.equal(progressEnabled(false, { stdout: { isTTY: true }, stderr: { isTTY: true } }), true);
    assert.equal(progressEnabled(false, { stdout: { isTTY: false }, stderr: { isTTY: true } }), false);
    assert.equal(progressEnabled(true, { stdout: { isTTY: true }, stderr: { isTTY: true } }), false);
  });

  test('an API refusal exits 1 and prints the problem code on stderr (JSON with --json)', async () => {
    const missing = 'ast_0000000000000000000000';
    const [r, j] = await Promise.all([
      cli(['download', missing, '-o', join(dir, 'nope.png')], withKey()),
      cli(['download', missing, '-o', join(dir, 'nope2.png'), '--json'], withKey()),
    ]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /ERR_NOT_FOUND/);
    assert.equal(r.stdout, '');
    assert.ok(!existsSync(join(dir, 'nope.png')), 'no partial output file');
    assert.equal(j.code, 1);
    assert.equal(stderrJson(j).error.code, 'ERR_NOT_FOUND');
    assert.equal(stderrJson(j).error.status, 404);
  });

  test('usage errors exit 2 before any request: unknown flag, missing file, bad operation, missing output, bad id', async () => {
    const cases: string[][] = [
      ['upload', join(dir, 'does-not-exist.png')],
      ['upload', pngPath, '--bogus'],
      ['process', pngPath, '--op', 'resiz:width=10', '-o', join(dir, 'x.webp')],
      ['process', pngPath, '--op', 'resize:width=10'],
      ['download', 'not-an-asset-id'],
    ];
    // A key the server would refuse: had any of these reached it, the exit code would be 3, not 2.
    const results = await Promise.all(cases.map((args) => cli(args, env({ OBSCURA_URL: s.url, OBSCURA_API_KEY: 'obs_sk_invalid' }))));
    results.forEach((r, i) => {
      assert.equal(r.code, 2, `${cases[i]!.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /^obscura: /);
    });
    assert.match(results[2]!.stderr, /resiz/);
  });

  test('credential problems exit 3: none configured, or a key the server refuses', async () => {
    const k = await mintKey(t.db, a, { kind: 'secret', name: 'cli revoke' });
    assert.equal((await api(s.url, 'DELETE', `/v1/keys/${k.id}`, { key: a.key })).status, 200);
    const [none, revoked] = await Promise.all([
      cli(['upload', pngPath], env()),
      cli(['upload', pngPath, '--json'], env({ OBSCURA_URL: s.url, OBSCURA_API_KEY: k.secret })),
    ]);
    assert.equal(none.code, 3);
    assert.match(none.stderr, /OBSCURA_API_KEY/);
    assert.equal(revoked.code, 3, revoked.stderr);
    assert.equal(stderrJson(revoked).error.code, 'ERR_KEY_REVOKED');
  });

  test('reads a 0600 credentials file and refuses one that group or others can read', async () => {
    const fileWith = (name: string, mode: number) => {
      const f = join(dir, name);
      writeFileSync(f, JSON.stringify({ url: s.url, api_key: a.key }), { mode });
      chmodSync(f, mode);
      return f;
    };
    const good = fileWith('creds-600.json', 0o600);
    const world = fileWith('creds-644.json', 0o644);
    const group = fileWith('creds-640.json', 0o640);
    const [ok, refusedWorld, refusedGroup] = await Promise.all([
      cli(['upload', pngPath], env({ OBSCURA_CREDENTIALS_FILE: good })),
      cli(['upload', pngPath, '--json'], env({ OBSCURA_CREDENTIALS_FILE: world })),
      cli(['upload', pngPath], env({ OBSCURA_CREDENTIALS_FILE: group })),
    ]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /^ast_/);
    assert.equal(refusedWorld.code, 3);
    assert.equal(stderrJson(refusedWorld).error.code, 'ERR_CREDENTIALS_INSECURE');
    assert.equal(refusedWorld.stdout, '');
    assert.equal(refusedGroup.code, 3);
    assert.match(refusedGroup.stderr, /mode 0640.*chmod 600/);
    for (const r of [refusedWorld, refusedGroup]) assert.ok(!r.stderr.includes(a.key), 'the key is never echoed');
    // The same rules in-process for every other permission bit (no process needed).
    for (const mode of [0o604, 0o660, 0o606, 0o620, 0o602, 0o610, 0o601]) {
      chmodSync(good, mode);
      assert.throws(() => resolveCredentials({ OBSCURA_CREDENTIALS_FILE: good }), (e: unknown) => e instanceof CredentialsError && e.reason === 'insecure', mode.toString(8));
    }
    chmodSync(good, 0o400);
    assert.equal(resolveCredentials({ OBSCURA_CREDENTIALS_FILE: good }).apiKey, a.key);
  });

  test('the default location ~/.config/obscura/credentials.json is checked the same way', async () => {
    const defaultFile = join(home, '.config', 'obscura', 'credentials.json');
    mkdirSync(join(home, '.config', 'obscura'), { recursive: true });
    writeFileSync(defaultFile, JSON.stringify({ url: s.url, api_key: a.key }), { mode: 0o644 });
    chmodSync(defaultFile, 0o644);
    assert.equal((await cli(['upload', pngPath], env())).code, 3);
    chmodSync(defaultFile, 0o600);
    assert.equal(resolveCredentials(env()).apiKey, a.key);
    assert.equal(resolveCredentials(env()).url, s.url);
  });

  test('refuses a credentials file owned by someone else, a symlink, or malformed JSON', () => {
    const file = join(dir, 'other.json');
    writeFileSync(file, JSON.stringify({ url: 'http://127.0.0.1:1', api_key: 'obs_sk_x' }), { mode: 0o600 });
    const uid = process.getuid!();
    const code = (fn: () => unknown) => {
      try {
        fn();
        return 'accepted';
      } catch (e) {
        assert.ok(e instanceof CredentialsError);
        return e.reason;
      }
    };
    assert.equal(code(() => resolveCredentials({ OBSCURA_CREDENTIALS_FILE: file }, uid)), 'accepted');
    assert.equal(code(() => resolveCredentials({ OBSCURA_CREDENTIALS_FILE: file }, uid + 1)), 'insecure');
    if (uid === 0) {
      chownSync(file, 65534, 65534);
      assert.equal(code(() => resolveCredentials({ OBSCURA_CREDENTIALS_FILE: file }, 0)), 'insecure');
    }
    const link = join(dir, 'link.json');
    symlinkSync(file, link);
    assert.equal(code(() => resolveCredentials({ OBSCURA_CREDENTIALS_FILE: link }, uid)), 'insecure');
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, '{"api_key": obs_sk_secret', { mode: 0o600 });
    assert.equal(code(() => resolveCredentials({ OBSCURA_CREDENTIALS_FILE: bad }, uid)), 'invalid');
    assert.equal(code(() => resolveCredentials({ OBSCURA_CREDENTIALS_FILE: join(dir, 'missing.json') }, uid)), 'missing');
    // The environment wins and the file is then not even opened.
    assert.equal(resolveCredentials({ OBSCURA_API_KEY: 'obs_sk_env', OBSCURA_CREDENTIALS_FILE: bad }, uid).apiKey, 'obs_sk_env');
  });

  test('process FILE --op resize --op format:webp -o out.webp writes the processed image', async () => {
    const outPath = join(dir, 'out.webp');
    const r = await cli(['process', pngPath, '--op', 'resize:width=60', '--op', 'format:webp', '-o', outPath, '--json'], withKey());
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).content_type, 'image/webp');
    const meta = await sharp(readFileSync(outPath)).metadata();
    assert.equal(meta.format, 'webp');
    assert.equal(meta.width, 60);
    assert.equal(meta.height, 40);
  });

  test('process --async runs a job, waits for it and downloads the output; jobs get/wait follow a job by id', async () => {
    const outPath = join(dir, 'async.png');
    const r = await cli(['process', pngPath, '--op', 'resize:width=30', '--op', 'format:png', '--async', '-o', outPath, '--json'], withKey());
    assert.equal(r.code, 0, r.stderr);
    const job = JSON.parse(r.stdout) as { id: string; status: string; output: { asset_id: string } };
    assert.equal(job.status, 'succeeded');
    assert.equal((await sharp(readFileSync(outPath)).metadata()).width, 30);

    const [got, waited, missing] = await Promise.all([
      cli(['jobs', 'get', job.id, '--json'], withKey()),
      cli(['jobs', 'wait', job.id, '-o', join(dir, 'again.png')], withKey()),
      cli(['jobs', 'wait', 'job_0000000000000000000000', '--json'], withKey()),
    ]);
    assert.equal(got.code, 0, got.stderr);
    assert.equal(JSON.parse(got.stdout).output.asset_id, job.output.asset_id);
    assert.equal(waited.code, 0, waited.stderr);
    assert.match(waited.stdout, new RegExp(`^${job.id} succeeded`));
    assert.equal(sha256(readFileSync(join(dir, 'again.png'))), sha256(readFileSync(outPath)));
    assert.equal(missing.code, 1);
    assert.equal(stderrJson(missing).error.code, 'ERR_NOT_FOUND');
  });

  test('process clip.mp4 runs a video job and downloads the transcode; a bad video operation exits 2 before upload; jobs cancel stops a running job and a second cancel exits 1', async () => {
    const clipPath = join(dir, 'clip.mp4');
    writeFileSync(clipPath, await clip({ width: 160, height: 120, seconds: 2 }));
    const outPath = join(dir, 'clip-out.mp4');
    const r = await cli(['process', clipPath, '--op', 'scale:height=60', '--op', 'format:mp4,codec=h264,preset=ultrafast', '-o', outPath], withKey());
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^job_\S+ succeeded output ast_\S+ -> /);
    const v = videoStream(await probe(readFileSync(outPath)));
    assert.equal(v.codec_name, 'h264');
    assert.equal(Number(v.height), 60);
    // The video registry checks the operations locally: trim takes no "end".
    const bad = await cli(['process', clipPath, '--op', 'trim:end=3', '-o', join(dir, 'never.mp4')], withKey());
    assert.equal(bad.code, 2, bad.stderr);
    assert.match(bad.stderr, /trim/);
    // A long job, cancelled from the CLI while it runs.
    const up = await fetch(`${s.url}/v1/assets`, { method: 'POST', headers: { authorization: `Bearer ${a.key}` }, body: new Uint8Array(await clip({ width: 640, height: 480, seconds: 20 })) });
    const assetId = ((await up.json()) as { id: string }).id;
    const job = await api(s.url, 'POST', '/v1/jobs', { key: a.key, body: { input: { asset_id: assetId }, operations: 'denoise:nlmeans/format:webm,codec=vp9,preset=veryslow' } });
    assert.equal(job.status, 202);
    const cancel = await cli(['jobs', 'cancel', job.body.id, '--json'], withKey());
    assert.equal(cancel.code, 0, cancel.stderr);
    assert.equal(JSON.parse(cancel.stdout).status, 'cancelled');
    const again = await cli(['jobs', 'cancel', job.body.id], withKey());
    assert.equal(again.code, 1);
    assert.match(again.stderr, /ERR_CONFLICT/);
  });

  test('assets list and jobs list page through what the org has: --limit prints the next command, --all follows every cursor, --json for scripts', async () => {
    for (let i = 0; i < 3; i++) assert.equal((await cli(['upload', pngPath, '--json'], withKey())).code, 0);
    const page = await cli(['assets', 'list', '--limit', '2'], withKey());
    assert.equal(page.code, 0, page.stderr);
    assert.equal(page.stdout.trim().split('\n').length, 2, page.stdout);
    assert.match(page.stderr, /obscura assets list .*--cursor /, 'says how to get the next page');
    const all = await cli(['assets', 'list', '--all', '--json'], withKey());
    assert.equal(all.code, 0, all.stderr);
    const ids = JSON.parse(all.stdout).map((x: { id: string }) => x.id);
    assert.ok(ids.length >= 3);
    assert.equal(new Set(ids).size, ids.length);
    const jobs = await cli(['jobs', 'list', '--json', '--all'], withKey());
    assert.equal(jobs.code, 0, jobs.stderr);
    assert.ok(Array.isArray(JSON.parse(jobs.stdout)));
    const bad = await cli(['assets', 'list', '--limit', '0'], withKey());
    assert.equal(bad.code, 2, 'a usage error, before any request');
  });

  test('assets label tags an asset, assets list --tag finds it, assets delete is a dry run until --yes', async () => {
    const up = await cli(['upload', pngPath, '--json'], withKey());
    assert.equal(up.code, 0, up.stderr);
    const id = JSON.parse(up.stdout).id as string;
    const label = await cli(['assets', 'label', id, '--tags', 'cli-batch,keep-me', '--set', 'owner=ana', '--json'], withKey());
    assert.equal(label.code, 0, label.stderr);
    assert.deepEqual(JSON.parse(label.stdout).tags, ['cli-batch', 'keep-me']);
    assert.deepEqual(JSON.parse(label.stdout).metadata, { owner: 'ana' });
    const found = await cli(['assets', 'list', '--tag', 'cli-batch', '--all', '--json'], withKey());
    assert.deepEqual(JSON.parse(found.stdout).map((a: { id: string }) => a.id), [id]);
    const dry = await cli(['assets', 'delete', '--tag', 'cli-batch'], withKey());
    assert.equal(dry.code, 0, dry.stderr);
    assert.equal(dry.stdout.trim(), id);
    assert.match(dry.stderr, /1 asset\(s\) match; nothing was deleted \(dry run\)\. Run again with --yes/);
    assert.equal((await cli(['assets', 'list', '--tag', 'cli-batch', '--all', '--json'], withKey())).stdout.includes(id), true, 'still there');
    const refused = await cli(['assets', 'delete'], withKey());
    assert.equal(refused.code, 1, 'the server refuses an empty filter');
    assert.match(refused.stderr, /ERR_VALIDATION/);
    const bad = await cli(['assets', 'label', id, '--set', 'novalue'], withKey());
    assert.equal(bad.code, 2, 'a usage error, before any request');
    const real = await cli(['assets', 'delete', '--tag', 'cli-batch', '--yes'], withKey());
    assert.equal(real.code, 0, real.stderr);
    assert.match(real.stderr, /1 asset\(s\) deleted/);
    assert.equal(JSON.parse((await cli(['assets', 'list', '--tag', 'cli-batch', '--all', '--json'], withKey())).stdout).length, 0);
  });
});

