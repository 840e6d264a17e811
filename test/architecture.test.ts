/**
 * The rooms and the import direction (issue 10; docs/architecture.md). Reads every import of `src/`
 * and `sdk/src/` (type-only imports too: a type cycle is still a tangle for the reader) and checks:
 * 1. no import cycle between files;
 * 2. every import between top-level rooms of `src/` is one the map below allows, and the map itself
 *    is acyclic (so an allowed edge cannot reintroduce a loop between rooms);
 * 3. the lower layers (db, crypto, media, remote, assets) never import a higher one (jobs,
 *    processing, http, cli, the composition root);
 * 4. a shared room never imports one of its kinds (`media/` never imports `media/image/`), and the
 *    SDK imports nothing from the server.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL(import.meta.url.includes('/dist/') ? '../../' : '../', import.meta.url));

/**
 * Which rooms each room may import (besides itself). `errors.ts` and `listen.ts` are leaves every
 * room may use. The composition roots (app, main) and the CLI may import anything.
 */
const ALLOWED: Record<string, readonly string[]> = {
  errors: [],
  listen: [],
  cache: [],
  settings: ['errors'],
  db: ['errors', 'settings'],
  crypto: ['errors', 'settings', 'db', 'cache'],
  remote: ['errors', 'settings'],
  media: ['errors', 'settings'],
  audit: ['errors', 'settings', 'db', 'crypto'],
  tenants: ['errors', 'settings', 'db', 'crypto', 'audit'],
  auth: ['errors', 'settings', 'db', 'crypto', 'audit', 'tenants'],
  usage: ['errors', 'settings', 'listen', 'db', 'crypto'],
  assets: ['errors', 'settings', 'db', 'crypto', 'audit', 'tenants', 'auth', 'media'],
  erasure: ['errors', 'settings', 'db', 'crypto', 'audit', 'tenants', 'assets'],
  backup: ['errors', 'settings', 'db', 'crypto', 'audit', 'assets', 'erasure'],
  processing: ['errors', 'settings', 'db', 'crypto', 'audit', 'tenants', 'assets', 'media', 'remote', 'usage'],
  // Licences for on-device processing (issue 15): the verifier is the SDK's, so signer and verifier cannot drift.
  licensing: ['errors', 'settings', 'db', 'crypto', 'audit', 'tenants', 'auth', 'usage', 'sdk'],
  jobs: ['errors', 'settings', 'db', 'crypto', 'audit', 'tenants', 'assets', 'media', 'remote', 'usage', 'processing', 'sdk'],
  perimeter: ['errors', 'settings', 'listen', 'db', 'crypto', 'audit', 'tenants', 'auth', 'usage'],
  http: ['errors', 'settings', 'listen', 'db', 'crypto', 'audit', 'tenants', 'auth', 'usage', 'assets', 'erasure', 'backup', 'media', 'remote', 'processing', 'jobs', 'perimeter', 'licensing', 'sdk'],
  // config/ composes the sections capabilities declare (src/<room>/settings.ts); those rooms must
  // not import config/ (the map would then have a cycle). The client commands' variables are config/'s own.
  config: ['errors', 'settings', 'db', 'crypto', 'remote', 'auth', 'assets', 'media', 'processing', 'jobs', 'perimeter', 'http', 'backup', 'licensing'],
  app: ['*'],
  main: ['*'],
  cli: ['*'],
};
const LOWER = ['db', 'crypto', 'media', 'remote', 'assets'];
const HIGHER = ['jobs', 'processing', 'http', 'perimeter', 'cli', 'app', 'main'];

interface Edge {
  from: string;
  to: string;
}

function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...filesUnder(p));
    else if (p.endsWith('.ts') && !p.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

/** Every relative import of a file (static, dynamic, type-only, side-effect), resolved to a .ts path. */
function importsOf(file: string): string[] {
  const src = readFileSync(file, 'utf8');
  const specs = [
    ...src.matchAll(/^\s*(?:import|export)\s[^;]*?\sfrom\s+'([^']+)'/gms),
    ...src.matchAll(/^\s*import\s+'([^']+)'/gm),
    ...src.matchAll(/\bimport\(\s*'([^']+)'\s*\)/g),
  ].map((m) => m[1]!);
  return specs.filter((s) => s.startsWith('.')).map((s) => resolve(dirname(file), s.replace(/\.js$/, '.ts')));
}

function graph(): Map<string, string[]> {
  const g = new Map<string, string[]>();
  for (const dir of ['src', 'sdk/src']) for (const f of filesUnder(join(ROOT, dir))) g.set(f, importsOf(f));
  return g;
}

/** The top-level room of a file under src/ (`processing`, `errors`, …), or `sdk` for the SDK. */
function roomOf(file: string): string {
  const rel = relative(ROOT, file);
  if (rel.startsWith('sdk/')) return 'sdk';
  return rel.split('/')[1]!.replace(/\.ts$/, '');
}

/** Strongly connected components with more than one file (Tarjan). */
function cycles(g: Map<string, string[]>): string[][] {
  let index = 0;
  const stack: string[] = [];
  const on = new Set<string>();
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const out: string[][] = [];
  const visit = (v: string): void => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    on.add(v);
    for (const w of g.get(v) ?? []) {
      if (!g.has(w)) continue;
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (on.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
    }
    if (low.get(v) === idx.get(v)) {
      const c: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        on.delete(w);
        c.push(relative(ROOT, w));
      } while (w !== v);
      if (c.length > 1) out.push(c.sort());
    }
  };
  for (const v of g.keys()) if (!idx.has(v)) visit(v);
  return out;
}

describe('rooms and import direction', () => {
  const g = graph();
  const edges: Array<Edge & { file: string; target: string }> = [];
  for (const [file, deps] of g) {
    for (const d of deps) {
      const from = roomOf(file);
      const to = relative(ROOT, d).startsWith('sdk/') ? 'sdk' : roomOf(d);
      if (from !== to) edges.push({ from, to, file: relative(ROOT, file), target: relative(ROOT, d) });
    }
  }

  test('reads the whole source tree (the parser finds the imports it should)', () => {
    assert.ok(g.size > 150, `only ${g.size} files found`);
    assert.ok(edges.some((e) => e.from === 'processing' && e.to === 'media'), 'processing imports media');
    assert.ok(edges.some((e) => e.from === 'app' && e.to === 'http'), 'app imports http');
  });

  test('no import cycle between files', () => {
    assert.deepEqual(cycles(g), []);
  });

  test('every import between rooms is one the map allows, and the map has no cycle', () => {
    const bad = edges.filter((e) => e.from !== 'sdk' && !(ALLOWED[e.from] ?? []).includes('*') && !(ALLOWED[e.from] ?? []).includes(e.to));
    assert.deepEqual(bad.map((e) => `${e.file} -> ${e.target}`), [], 'add the room to ALLOWED only if the direction is right (docs/architecture.md)');
    const mapGraph = new Map(Object.entries(ALLOWED).map(([k, v]) => [k, v.filter((x) => x !== '*')]));
    assert.deepEqual(cycles(mapGraph as Map<string, string[]>), []);
    // Rooms allowed everything ('*': the CLI, the composition root) could still close a loop with a
    // room that imports them; the rooms' real import graph must be acyclic too.
    const roomGraph = new Map<string, string[]>();
    for (const e of edges) roomGraph.set(e.from, [...(roomGraph.get(e.from) ?? []), e.to]);
    for (const e of edges) if (!roomGraph.has(e.to)) roomGraph.set(e.to, []);
    assert.deepEqual(cycles(roomGraph), [], 'two rooms import each other');
  });

  test('a lower layer (db, crypto, media, remote, assets) never imports a higher one', () => {
    const bad = edges.filter((e) => LOWER.includes(e.from) && HIGHER.includes(e.to));
    assert.deepEqual(bad.map((e) => `${e.file} -> ${e.target}`), []);
  });

  test('media/ never imports one of its kinds, and the SDK imports nothing from the server', () => {
    const kindImports = [...g].flatMap(([f, ds]) => {
      const rel = relative(ROOT, f);
      if (!rel.startsWith('src/media/') || rel.split('/').length !== 3) return [];
      return ds.filter((d) => relative(ROOT, d).split('/').length > 3).map((d) => `${rel} -> ${relative(ROOT, d)}`);
    });
    assert.deepEqual(kindImports, []);
    const sdkImports = edges.filter((e) => e.from === 'sdk');
    assert.deepEqual(sdkImports.map((e) => `${e.file} -> ${e.target}`), []);
  });

  test('the browser SDK (packages/browser) imports only media, errors and the SDK from the server, and nothing it reaches loads sharp or a Node built-in', () => {
    const reach = (follow: (file: string) => string[]): Set<string> => {
      const seen = new Set<string>();
      const queue = filesUnder(join(ROOT, 'packages', 'browser', 'src'));
      while (queue.length) {
        const file = queue.pop()!;
        if (seen.has(file)) continue;
        seen.add(file);
        queue.push(...follow(file));
      }
      return seen;
    };
    const seen = reach(importsOf);
    // What the bundle actually loads: value imports only (`import type` is erased).
    const loaded = reach((file) => {
      const src = readFileSync(file, 'utf8');
      return [...src.matchAll(/^\s*(?:import|export)\s+(?!type\b)[^;]*?\sfrom\s+'(\.[^']+)'/gms), ...src.matchAll(/^\s*import\s+'(\.[^']+)'/gm)].map((m) => resolve(dirname(file), m[1]!.replace(/\.js$/, '.ts')));
    });
    const reached = [...seen].map((f) => relative(ROOT, f));
    const outside = reached.filter((f) => !f.startsWith('packages/browser/') && !f.startsWith('sdk/src/') && !f.startsWith('src/media/') && f !== 'src/errors.ts');
    assert.deepEqual(outside, [], 'the device shares the grammar and limits, not the server');
    // A value import (not `import type`) of sharp or node:* would not run in a browser.
    const engineBound = [...loaded].filter((f) => /^\s*import\s+(?!type\b)[^;]*?\sfrom\s+'(?:sharp|node:[^']+)'/m.test(readFileSync(f, 'utf8'))).map((f) => relative(ROOT, f));
    assert.deepEqual(engineBound, []);
    assert.ok(reached.includes('src/media/image/operations/registry.ts') && reached.includes('src/media/limits.ts'), 'the registry and the limits are shared');
  });
});
