import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadConfig, doctor } from '../../src/config/index.js';
import { ConfigError } from '../../src/errors.js';
import { tempDir } from '../support/db.js';

const refuses = (env: Record<string, string>, setting: string) =>
  assert.throws(() => loadConfig(env), (e: unknown) => e instanceof ConfigError && e.setting === setting, JSON.stringify(env));

test('defaults are the safe ones: loopback listener, embedded database, ./data', () => {
  const c = loadConfig({}, '/srv/app');
  assert.equal(c.host, '127.0.0.1');
  assert.equal(c.dataDir, '/srv/app/data');
  assert.equal(c.database.kind, 'pglite');
  assert.equal(c.unsafe.allowPlainHttp, false);
  assert.ok(c.auth.keyCacheTtlMs <= 5000);
  assert.ok(Object.isFrozen(c) && Object.isFrozen(c.database));
});

test('bad values are refused with an error naming the setting', () => {
  refuses({ OBSCURA_PORT: 'eighty' }, 'OBSCURA_PORT');
  refuses({ OBSCURA_PORT: '70000' }, 'OBSCURA_PORT');
  refuses({ OBSCURA_KEY_CACHE_TTL_MS: '60000' }, 'OBSCURA_KEY_CACHE_TTL_MS');
  refuses({ OBSCURA_ROLE: 'boss' }, 'OBSCURA_ROLE');
  refuses({ DATABASE_URL: 'mysql://x' }, 'DATABASE_URL');
  refuses({ OBSCURA_TLS_CERT_FILE: '/x.pem' }, 'OBSCURA_TLS_KEY_FILE');
  refuses({ OBSCURA_UNSAFE_ALLOW_PLAIN_HTTP: 'maybe' }, 'OBSCURA_UNSAFE_ALLOW_PLAIN_HTTP');
});

test('a misspelt OBSCURA_ variable is refused rather than silently ignored', () => {
  refuses({ OBSCURA_MASTERKEY: 'x' }, 'OBSCURA_MASTERKEY');
});

test('plain HTTP on a public address is refused unless TLS, a trusted proxy or an explicit unsafe switch', () => {
  refuses({ OBSCURA_HOST: '0.0.0.0' }, 'OBSCURA_HOST');
  assert.equal(loadConfig({ OBSCURA_HOST: '0.0.0.0', OBSCURA_TRUST_PROXY: '10.0.0.0/8' }).host, '0.0.0.0');
  const unsafe = loadConfig({ OBSCURA_HOST: '0.0.0.0', OBSCURA_UNSAFE_ALLOW_PLAIN_HTTP: 'true' });
  const findings = doctor(unsafe, { masterKeyInDataDir: false });
  assert.ok(findings.some((f) => f.level === 'unsafe' && f.setting === 'OBSCURA_UNSAFE_ALLOW_PLAIN_HTTP'));
  assert.ok(findings.some((f) => f.level === 'unsafe' && f.setting === 'OBSCURA_TLS_CERT_FILE'));
});

test('doctor reports a master key kept in the data dir, and nothing unsafe for a safe setup', () => {
  const c = loadConfig({});
  assert.ok(doctor(c, { masterKeyInDataDir: true }).some((f) => f.level === 'unsafe' && f.setting === 'OBSCURA_MASTER_KEY'));
  assert.ok(!doctor(c, { masterKeyInDataDir: false }).some((f) => f.level === 'unsafe'));
});

test('a config file supplies settings, the environment overrides it, and unknown keys in it are refused', () => {
  const dir = tempDir();
  const file = join(dir, 'obscura.json');
  writeFileSync(file, JSON.stringify({ OBSCURA_PORT: 9001, OBSCURA_LOG_LEVEL: 'warn' }));
  const c = loadConfig({ OBSCURA_CONFIG_FILE: file, OBSCURA_LOG_LEVEL: 'error' });
  assert.equal(c.port, 9001);
  assert.equal(c.log.level, 'error');
  writeFileSync(file, JSON.stringify({ OBSCURA_PROT: 9001 }));
  refuses({ OBSCURA_CONFIG_FILE: file }, 'OBSCURA_PROT');
  writeFileSync(file, '{not json');
  refuses({ OBSCURA_CONFIG_FILE: file }, 'OBSCURA_CONFIG_FILE');
});

test('the media limits are operator settings: defaults are the media defaults, values are read, bad ones name the variable', async () => {
  const { DEFAULT_MEDIA_LIMITS } = await import('../../src/media/limits.js');
  const d = loadConfig({}).media;
  assert.deepEqual({ ...d }, { maxInputPixels: DEFAULT_MEDIA_LIMITS.maxInputPixels, maxOutputDimension: DEFAULT_MEDIA_LIMITS.maxOutputDimension, maxFrames: DEFAULT_MEDIA_LIMITS.maxFrames, timeoutMs: DEFAULT_MEDIA_LIMITS.timeoutMs });
  const c = loadConfig({ OBSCURA_MAX_INPUT_PIXELS: '1000', OBSCURA_MAX_OUTPUT_DIMENSION: '2048', OBSCURA_MAX_FRAMES: '5', OBSCURA_PROCESS_TIMEOUT_MS: '5000' }).media;
  assert.deepEqual({ ...c }, { maxInputPixels: 1000, maxOutputDimension: 2048, maxFrames: 5, timeoutMs: 5000 });
  refuses({ OBSCURA_MAX_INPUT_PIXELS: 'lots' }, 'OBSCURA_MAX_INPUT_PIXELS');
  refuses({ OBSCURA_MAX_OUTPUT_DIMENSION: '20000' }, 'OBSCURA_MAX_OUTPUT_DIMENSION');
  refuses({ OBSCURA_MAX_FRAMES: '0' }, 'OBSCURA_MAX_FRAMES');
  refuses({ OBSCURA_PROCESS_TIMEOUT_MS: '10' }, 'OBSCURA_PROCESS_TIMEOUT_MS');
});

test('a rule between the fields of a section names the variable to change', () => {
  refuses({ OBSCURA_URL_TTL_SECONDS: '7200', OBSCURA_URL_MAX_TTL_SECONDS: '3600' }, 'OBSCURA_URL_TTL_SECONDS');
  const d = loadConfig({ OBSCURA_URL_TTL_SECONDS: '600', OBSCURA_URL_MAX_TTL_SECONDS: '3600' }).downloads;
  assert.deepEqual([d.defaultTtlSeconds, d.maxTtlSeconds], [600, 3600]);
});

test('derived defaults in a capability section follow the values they derive from', () => {
  const c = loadConfig({ OBSCURA_PROCESS_CONCURRENCY: '6', OBSCURA_WORKER_CONCURRENCY: '5' });
  assert.equal(c.processing.maxQueued, 24);
  assert.equal(c.processing.concurrencyPerOrg, 3);
  assert.equal(c.processing.maxQueuedPerOrg, 12);
  assert.equal(c.jobs.workerOrgConcurrency, 3);
  assert.deepEqual([...c.processing.remoteAllowedPorts], [443, 80]);
  refuses({ OBSCURA_REMOTE_ALLOWED_PORTS: '443,http' }, 'OBSCURA_REMOTE_ALLOWED_PORTS');
});

test('every variable a capability section declares is in the README configuration table', async () => {
  const { readFileSync } = await import('node:fs');
  const { fileURLToPath } = await import('node:url');
  const root = fileURLToPath(new URL(import.meta.url.includes('/dist/') ? '../../../' : '../../', import.meta.url));
  const readme = readFileSync(`${root}README.md`, 'utf8');
  const table = readme.slice(readme.indexOf('## Configuration'), readme.indexOf('\n## ', readme.indexOf('## Configuration') + 5));
  const { SECTIONS } = await import('../../src/config/index.js');
  const declared = SECTIONS.flatMap((s) => [...s.envNames]);
  // Each variable is declared by exactly one section (written once).
  assert.deepEqual(declared.filter((n, i) => declared.indexOf(n) !== i), []);
  const missing = declared.filter((n) => !table.includes(`\`${n}\``));
  assert.deepEqual(missing, []);
  // And every variable of the table is one the server knows (a documented typo would be refused at boot).
  const documented = [...new Set(table.match(/`(OBSCURA_[A-Z0-9_]+)`/g)?.map((m) => m.slice(1, -1)) ?? [])];
  assert.ok(documented.length > 50);
  const unknown = documented.filter((n) => {
    try {
      loadConfig({ [n]: '' });
      return false;
    } catch {
      return true;
    }
  });
  assert.deepEqual(unknown, []);
});

test('every section refuses a bad value with an error naming its variable, and the client variables are accepted and ignored', () => {
  refuses({ OBSCURA_STORE: 'gcs' }, 'OBSCURA_STORE');
  refuses({ OBSCURA_STORE: 's3' }, 'OBSCURA_S3_BUCKET');
  refuses({ OBSCURA_S3_ENDPOINT: 'minio' }, 'OBSCURA_S3_ENDPOINT');
  refuses({ OBSCURA_S3_FORCE_PATH_STYLE: 'sometimes' }, 'OBSCURA_S3_FORCE_PATH_STYLE');
  refuses({ OBSCURA_UPLOAD_SEGMENT_BYTES: '10' }, 'OBSCURA_UPLOAD_SEGMENT_BYTES');
  refuses({ OBSCURA_MAX_OPEN_UPLOADS_PER_ORG: '0' }, 'OBSCURA_MAX_OPEN_UPLOADS_PER_ORG');
  refuses({ OBSCURA_UNSAFE_REMOTE_ALLOW_PRIVATE: 'sure' }, 'OBSCURA_UNSAFE_REMOTE_ALLOW_PRIVATE');
  refuses({ OBSCURA_LOG_LEVEL: 'loud' }, 'OBSCURA_LOG_LEVEL');
  refuses({ OBSCURA_PUBLIC_URL: 'ftp://media.example.com' }, 'OBSCURA_PUBLIC_URL');
  refuses({ OBSCURA_MIGRATION_DATABASE_URL: 'postgres://owner@db/obscura' }, 'OBSCURA_MIGRATION_DATABASE_URL');
  refuses({ OBSCURA_DATABASE_POOL_SIZE: '0' }, 'OBSCURA_DATABASE_POOL_SIZE');
  // A missing secret must not silently mean "use a fresh embedded database".
  refuses({ DATABASE_URL: '' }, 'DATABASE_URL');
  const c = loadConfig({ OBSCURA_URL: 'https://media.example.com', OBSCURA_API_KEY: 'obs_sk_x', OBSCURA_CREDENTIALS_FILE: '/nowhere', OBSCURA_STORE: 's3', OBSCURA_S3_BUCKET: 'b', OBSCURA_PREVIOUS_MASTER_KEYS: 'a, b,,c' });
  assert.equal(c.publicUrl, 'http://127.0.0.1:8080');
  assert.deepEqual([c.storage.kind, c.storage.s3.bucket, c.storage.s3.region], ['s3', 'b', 'us-east-1']);
  assert.deepEqual([...c.previousMasterKeys], ['a', 'b', 'c']);
  assert.ok(Object.isFrozen(c.storage.s3) && Object.isFrozen(c.uploads.limits));
});
