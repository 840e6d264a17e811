/**
 * Builds the embedded database's template (template.ts) into the installation: `npm run build` runs
 * it through scripts/build-db-template.js, and the tests when a build left none.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, renameSync, rmSync } from 'node:fs';
import { chmod, mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { openDatabase } from './database.js';
import { installedTemplateDir, TEMPLATE_FORMAT, templateKey, usableTemplate } from './template.js';

/**
 * Makes sure `templateDir` holds a template with this installation's key: builds one (initdb and
 * every migration, then a clean close, which checkpoints) beside it and swaps it in. Parallel
 * builders each build their own; a current template found at the end wins. Returns whether it built.
 * Readable by every local user (it holds no secret), writable only by its owner.
 */
export async function ensureTemplate(templateDir = installedTemplateDir()): Promise<boolean> {
  const key = templateKey();
  if (await usableTemplate(templateDir, key)) return false;
  const building = `${templateDir}.building-${randomBytes(6).toString('hex')}`;
  await mkdir(building, { recursive: true, mode: 0o755 });
  try {
    const db = await openDatabase({ kind: 'pglite', dataDir: building, template: false });
    await db.close();
    await writeFile(join(building, 'template.json'), JSON.stringify({ format: TEMPLATE_FORMAT, key, built_at: new Date().toISOString() }) + '\n', { mode: 0o644 });
    await openToReaders(building);
    if (await usableTemplate(templateDir, key)) return false; // another builder was first
    const old = `${templateDir}.old-${randomBytes(6).toString('hex')}`;
    if (existsSync(templateDir)) renameSync(templateDir, old);
    renameSync(building, templateDir);
    rmSync(old, { recursive: true, force: true });
    return true;
  } finally {
    rmSync(building, { recursive: true, force: true });
  }
}

/** Directories 0755 and files 0644: a server running as another user than the installer may read it. */
async function openToReaders(dir: string): Promise<void> {
  await chmod(dir, 0o755);
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    if (entry.isDirectory()) await openToReaders(join(dir, entry.name));
    else await chmod(join(dir, entry.name), 0o644);
  }
}
