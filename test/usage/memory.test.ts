/**
 * Issue 12, item 6: an operator can see where the server's memory goes. A real `obscura serve`
 * (embedded database, API and workers in one process, as shipped) is scraped on its metrics listener
 * once idle and once after processing an image: `obscura_memory_bytes{part}` is there, its parts add up
 * to the resident size, and libvips' cache stays within OBSCURA_IMAGE_CACHE_BYTES.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { tempDir } from '../support/db.js';
import { runCli, startServe, type ServerProcess } from '../support/cli.js';
import { freePort } from '../support/server.js';
import { markedPng } from '../support/media.js';

const MIB = 1024 * 1024;

/** `obscura_memory_bytes{part="…"}` (and the other memory gauges) from one scrape. */
function memoryParts(text: string, metric = 'obscura_memory_bytes'): Map<string, number> {
  const out = new Map<string, number>();
  for (const m of text.matchAll(new RegExp(`^${metric}\\{part="([a-z0-9_]+)"\\} (\\S+)$`, 'gm'))) out.set(m[1]!, Number(m[2]));
  return out;
}

describe('memory breakdown on /metrics', () => {
  const dataDir = tempDir();
  let server: ServerProcess;
  let key: string;
  let metricsUrl: string;

  before(async () => {
    const metricsPort = await freePort();
    metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;
    const env = { OBSCURA_DATA_DIR: dataDir, OBSCURA_METRICS_PORT: String(metricsPort), OBSCURA_IMAGE_CACHE_BYTES: String(3 * MIB) };
    const init = await runCli(['init', '--json'], env, { timeoutMs: 120_000 });
    assert.equal(init.code, 0, init.stderr);
    key = JSON.parse(init.stdout).secret_key.key;
    server = await startServe(env, 120_000);
  });
  after(async () => {
    await server?.stop('SIGKILL');
  });

  const scrape = async () => {
    const res = await fetch(metricsUrl);
    assert.equal(res.status, 200);
    return res.text();
  };

  test('an idle server shows its memory by part, and rss is the sum of its anonymous, file and shared parts', async () => {
    const text = await scrape();
    const parts = memoryParts(text);
    for (const p of ['rss', 'rss_anon', 'rss_file', 'rss_shmem', 'v8_heap_total', 'v8_heap_used', 'external', 'array_buffers', 'image_cache']) {
      assert.ok(parts.has(p) && Number.isFinite(parts.get(p)), `part ${p} missing:\n${text.split('\n').filter((l) => l.startsWith('obscura_memory')).join('\n')}`);
    }
    // One reading of /proc/self/status: the kernel's split adds up exactly.
    assert.equal(parts.get('rss_anon')! + parts.get('rss_file')! + parts.get('rss_shmem')!, parts.get('rss'));
    assert.ok(parts.get('v8_heap_used')! <= parts.get('v8_heap_total')!);
    assert.ok(parts.get('v8_heap_total')! < parts.get('rss')!, 'the V8 heap is part of the resident size');
    // Generous on purpose (idle is ~240–360 MB here, see docs/performance.md): only a gross regression,
    // such as a cache without a bound filling at start, gets near it.
    assert.ok(parts.get('rss')! < 1536 * MIB, `rss ${parts.get('rss')! / MIB} MiB`);
    const peak = Number(/^obscura_memory_peak_rss_bytes (\S+)$/m.exec(text)?.[1]);
    assert.ok(peak >= parts.get('rss')!, 'the peak is at least the current size');
    assert.ok(Number(/^obscura_process_threads (\S+)$/m.exec(text)?.[1]) >= 2, 'main thread plus V8/libuv threads');
  });

  test('libvips cache is bounded by OBSCURA_IMAGE_CACHE_BYTES after processing an image', async () => {
    const res = await fetch(`${server.url}/v1/process?operations=resize:width=60/format:webp`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'image/png' },
      body: new Uint8Array(await markedPng('memory', 120, 90)),
    });
    assert.equal(res.status, 200, await res.clone().text());
    await res.arrayBuffer();
    const text = await scrape();
    const limit = memoryParts(text, 'obscura_memory_limit_bytes').get('image_cache');
    assert.equal(limit, 3 * MIB);
    assert.ok(memoryParts(text).get('image_cache')! <= limit!);
  });
});
