#!/usr/bin/env node
// Builds the embedded database's migrated template into the installation (dist/db-template) when it
// is missing or stale for this PGlite and these migrations: a new embedded data dir is then a copy
// instead of initdb and every migration (src/db/template.ts, docs/performance.md). Runs after tsc in
// `npm run build` (so at `npm install` too); up to date, it only compares keys. Failing to build it
// fails nothing: Obscura falls back to initdb.
const started = Date.now();
try {
  const [{ ensureTemplate }, { installedTemplateDir }] = await Promise.all([import('../dist/src/db/template-build.js'), import('../dist/src/db/template.js')]);
  if (await ensureTemplate()) console.log(`db template: built ${installedTemplateDir()} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
} catch (err) {
  console.warn(`db template: not built (${err?.message ?? err}); new embedded data dirs run initdb instead`);
}
