/**
 * The embedded database's template: an empty PGlite data dir on which every migration has run,
 * built once into the installation (`npm run build` writes `dist/db-template/`) and copied into a new
 * data dir in place of initdb and the migrations. initdb and 21 migrations in WebAssembly took 6-40 s
 * on 2 shared cores (docs/performance.md); a copy of the template's 40 MB takes a fraction of a
 * second. Used by every new embedded data dir: `obscura init`, the first `obscura serve`, the
 * restore's staging data dir, and the tests.
 *
 * When it is used (anything else falls back to initdb, as before it existed):
 * - its `template.json` names the key of this installation: SHA-256 over PGlite's package.json (its
 *   version) and the compiled migration files' names and contents, so a PGlite upgrade or a new or
 *   changed migration makes the template stale until the next build;
 * - it lives in the installation, next to the code that runs it: whoever can change it can already
 *   change Obscura itself. It is still refused when any of it, or the directory it is in, is writable
 *   by group or others, is owned by a user other than root or the one running, or is not a plain file
 *   or directory (a symlink could point a copy anywhere). Never a shared location such as /tmp, where
 *   another local user could plant a database.
 *
 * After the copy, `migrate` applies only migrations newer than the template (none when the key
 * matches, since the key covers the migration files). The copy is made in a directory beside `db`
 * and renamed onto it when complete, so a process killed mid-copy leaves no half database (the
 * leftover is removed by the next seeding; the caller holds the data-dir lock). Every seeded data
 * dir shares the template's PostgreSQL system identifier (pg_control); nothing in Obscura uses it,
 * and the template holds no secret (no rows, no passwords: the data dir itself is the credential).
 */
import { createHash, randomBytes } from 'node:crypto';
import { constants, existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { chmod, copyFile, lstat, mkdir, readdir, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** `template.json`'s format. */
export const TEMPLATE_FORMAT = 'obscura-db-template/1';

/** The installation's template: `dist/db-template/` (this file is compiled to dist/src/db/template.js). */
export function installedTemplateDir(): string {
  return fileURLToPath(new URL('../../db-template/', import.meta.url)).replace(/\/$/, '');
}

/** The compiled migrations this key covers: `migrations.js` and every `migrations/*.js`, sorted. */
function migrationFiles(dbDir: string): string[] {
  const dir = join(dbDir, 'migrations');
  return ['migrations.js', ...readdirSync(dir).filter((f) => f.endsWith('.js')).sort().map((f) => `migrations/${f}`)];
}

/**
 * The key a template must carry to be used by this installation: PGlite's package.json and the
 * compiled migrations' names and contents. `dbDir` (default: this folder) is where those live.
 */
export function templateKey(dbDir = fileURLToPath(new URL('.', import.meta.url))): string {
  const hash = createHash('sha256').update(TEMPLATE_FORMAT);
  const pglite = fileURLToPath(import.meta.resolve('@electric-sql/pglite'));
  hash.update(readFileSync(join(dirname(pglite), '..', 'package.json')));
  for (const file of migrationFiles(dbDir)) hash.update(`\0${file}\0`).update(readFileSync(join(dbDir, file)));
  return hash.digest('hex');
}

/** Why a path may not be copied from: group/other-writable, a foreign owner, or not a file or directory. */
function unsafeEntry(mode: number, uid: number, isFileOrDir: boolean): boolean {
  const me = process.getuid?.() ?? 0;
  return !isFileOrDir || (mode & 0o022) !== 0 || (uid !== 0 && uid !== me);
}

/**
 * The template's database directory when `templateDir` holds a complete template with this key and
 * nothing in its top levels is open to other users; else null. (Each file is checked again as it is
 * copied.)
 */
export async function usableTemplate(templateDir: string, key = templateKey()): Promise<string | null> {
  try {
    for (const dir of [dirname(templateDir), templateDir]) {
      const st = await lstat(dir);
      if (unsafeEntry(st.mode, st.uid, st.isDirectory())) return null;
    }
    const meta = JSON.parse(readFileSync(join(templateDir, 'template.json'), 'utf8')) as { format?: string; key?: string };
    if (meta.format !== TEMPLATE_FORMAT || meta.key !== key) return null;
    return existsSync(join(templateDir, 'db', 'PG_VERSION')) ? join(templateDir, 'db') : null;
  } catch {
    return null;
  }
}

/** Copies the tree `from` into the new directory `to` (dirs 0700, files 0600), refusing unsafe entries. */
async function copyTree(from: string, to: string): Promise<void> {
  await mkdir(to, { mode: 0o700 });
  const entries = await readdir(from);
  const files: string[] = [];
  for (const name of entries) {
    const st = await lstat(join(from, name));
    if (unsafeEntry(st.mode, st.uid, st.isFile() || st.isDirectory())) throw new Error(`template entry ${join(from, name)} is not safe to copy`);
    if (st.isDirectory()) await copyTree(join(from, name), join(to, name));
    else files.push(name);
  }
  // Small files, many of them: a few copies in flight keep the thread pool busy.
  for (let i = 0; i < files.length; i += 16) {
    await Promise.all(
      files.slice(i, i + 16).map(async (name) => {
        await copyFile(join(from, name), join(to, name), constants.COPYFILE_EXCL | constants.COPYFILE_FICLONE);
        await chmod(join(to, name), 0o600);
      }),
    );
  }
}

/**
 * Puts a copy of the template into `<dataDir>/db` when the data dir holds no database yet and the
 * template is usable; returns whether it did. Never throws for the template's sake: on any problem
 * with it, nothing is left behind and the caller's initdb runs as before. The caller holds the data
 * dir's lock (nothing else may be creating `db` meanwhile).
 */
export async function seedFromTemplate(dataDir: string, templateDir = installedTemplateDir()): Promise<boolean> {
  const target = join(dataDir, 'db');
  if (existsSync(target)) return false;
  const from = await usableTemplate(templateDir);
  if (!from) return false;
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  // A copy interrupted by a crash earlier: never opened by anything, removed now (we hold the lock).
  for (const name of readdirSync(dataDir)) if (name.startsWith('.db-seeding-')) rmSync(join(dataDir, name), { recursive: true, force: true });
  const staging = join(dataDir, `.db-seeding-${randomBytes(6).toString('hex')}`);
  try {
    await copyTree(from, staging);
    await rename(staging, target);
    return true;
  } catch {
    await rm(staging, { recursive: true, force: true });
    return false;
  }
}
