#!/usr/bin/env node
// Builds the web console (console/ → dist/console/): esbuild bundles the Preact + TSX source and the
// stylesheet into content-hashed files under dist/console/assets/, then writes dist/console/index.html
// naming them. No inline script or style anywhere (the server's CSP forbids both), nothing from a CDN.
// Run by `npm run build` (and so by `npm ci` through `prepare`). Type checking is `tsc -p console`.
import { build } from 'esbuild';
import { mkdirSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { createHash } from 'node:crypto';

const root = new URL('..', import.meta.url).pathname;
const src = join(root, 'console');
const out = join(root, 'dist', 'console');

rmSync(out, { recursive: true, force: true });
mkdirSync(join(out, 'assets'), { recursive: true });

const result = await build({
  entryPoints: { app: join(src, 'src', 'main.tsx'), style: join(src, 'src', 'style.css') },
  outdir: join(out, 'assets'),
  entryNames: '[name]-[hash]',
  assetNames: '[name]-[hash]',
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: ['es2022', 'chrome110', 'firefox110', 'safari16'],
  // tus-js-client's and qrcode's "browser" maps swap their Node builds for the browser ones.
  mainFields: ['browser', 'module', 'main'],
  jsx: 'automatic',
  jsxImportSource: 'preact',
  minify: true,
  sourcemap: false,
  legalComments: 'linked',
  metafile: true,
  logLevel: 'warning',
});

const outputs = Object.entries(result.metafile.outputs);
const named = (entry) => {
  const found = outputs.find(([, o]) => o.entryPoint && o.entryPoint.endsWith(entry));
  if (!found) throw new Error(`build-console: no output for ${entry}`);
  return basename(found[0]);
};
const js = named('main.tsx');
const css = named('style.css');
const icon = readFileSync(join(src, 'icon.svg'));
const iconName = `icon-${createHash('sha256').update(icon).digest('hex').slice(0, 8)}.svg`;
writeFileSync(join(out, 'assets', iconName), icon);
const html = readFileSync(join(src, 'index.html'), 'utf8')
  .replace('%APP_JS%', `/console/assets/${js}`)
  .replace('%APP_CSS%', `/console/assets/${css}`)
  .replace('%ICON%', `/console/assets/${iconName}`);
writeFileSync(join(out, 'index.html'), html);
const size = outputs.reduce((n, [, o]) => n + o.bytes, 0);
console.log(`console: dist/console/index.html, assets ${js} ${css} (${Math.round(size / 1024)} KiB)`);
