#!/usr/bin/env node
// Builds the on-device SDK (packages/browser → dist/browser/): esbuild bundles the page module
// (obscura-device.js), its Web Worker's small bootstrap (obscura-device-worker.js, which starts
// compiling vips.wasm first) and the worker's engine half (obscura-device-engine.js, loaded by the
// bootstrap during the compile) with the server's own grammar,
// schemas and limits (src/media/…, imported, not copied), and copies the engine beside them
// unchanged: wasm-vips' ES module (vips-es6.js, which also starts libvips' own threads from its own
// URL) and libvips (vips.wasm). AVIF (vips-heif.wasm) and JPEG XL are not shipped (docs/device.md).
// Run by `npm run build`. Type checking is `tsc -p packages/browser`.
import { build } from 'esbuild';
import { copyFileSync, mkdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { gzipSync } from 'node:zlib';

const root = new URL('..', import.meta.url).pathname;
const src = join(root, 'packages', 'browser', 'src');
const out = join(root, 'dist', 'browser');
const vipsDir = dirname(createRequire(import.meta.url).resolve('wasm-vips/vips.wasm'));

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });

/** The worker imports wasm-vips (which must keep its own URL) and its engine half as the files served beside it. */
const engineBeside = {
  name: 'engine-beside',
  setup(b) {
    b.onResolve({ filter: /^wasm-vips$/ }, () => ({ path: './vips-es6.js', external: true }));
    b.onResolve({ filter: /^\.\/worker-engine\.js$/ }, () => ({ path: './obscura-device-engine.js', external: true }));
  },
};

await build({
  entryPoints: { 'obscura-device': join(src, 'index.ts'), 'obscura-device-worker': join(src, 'worker.ts'), 'obscura-device-engine': join(src, 'worker-engine.ts') },
  outdir: out,
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: ['es2022', 'chrome110', 'firefox110', 'safari16'],
  minify: true,
  sourcemap: false,
  legalComments: 'linked',
  plugins: [engineBeside],
  logLevel: 'warning',
});
for (const file of ['vips-es6.js', 'vips.wasm']) copyFileSync(join(vipsDir, file), join(out, file));

const files = ['obscura-device.js', 'obscura-device-worker.js', 'obscura-device-engine.js', 'vips-es6.js', 'vips.wasm'];
const raw = files.reduce((n, f) => n + statSync(join(out, f)).size, 0);
const gz = files.reduce((n, f) => n + gzipSync(readFileSync(join(out, f)), { level: 9 }).length, 0);
console.log(`browser: dist/browser/ ${files.join(', ')} (${(raw / 1048576).toFixed(2)} MiB, ${(gz / 1048576).toFixed(2)} MiB gzip)`);
