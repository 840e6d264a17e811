/**
 * Client commands of the `obscura` CLI, built on the SDK: `upload`, `process`, `download`, `assets`, `jobs`.
 * They talk to a running server over HTTP with `OBSCURA_URL` + `OBSCURA_API_KEY` (or a 0600
 * credentials file; see credentials.ts), draw progress on stderr when attached to a terminal, and
 * print JSON with `--json`.
 *
 * Exit codes (documented in docs/cli.md):
 *   0 success
 *   1 the API refused or processing failed (the problem `code` is printed on stderr), network error
 *   2 usage error (bad arguments, unreadable input, invalid operations), checked before any request
 *   3 credentials: none configured, refused by the server (401/403), or an unsafe credentials file
 *   130 interrupted (Ctrl-C); an interrupted upload prints how to resume it
 */
import { parseArgs } from 'node:util';
import { stat, access, constants as fsConstants, readFile, rm } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { basename } from 'node:path';
import { Obscura, ObscuraError, type Asset, type Job, type Page, type ProcessRequest } from '../../sdk/src/index.js';
import { downloadToFile, uploadFile, writeStreamAtomically } from '../../sdk/src/node.js';
import { OPERATIONS, parseOperations } from '../media/image/operations/registry.js';
import { compileVideoOperations, VIDEO_OPERATION_NAMES } from '../media/video/operations.js';
import { isVideoType } from '../media/video/probe.js';
import { sniff, SNIFF_SAMPLE_BYTES } from '../media/sniff.js';
import { open } from 'node:fs/promises';
import { AppError } from '../errors.js';
import { CredentialsError, resolveCredentials } from './credentials.js';
import { progressEnabled, percentBar, statusSpinner, transferBar, formatBytes } from './progress.js';
import { CLIENT_HELP } from './client-help.js';

export { CLIENT_HELP };

/** The first bytes of a file (for sniffing its type), or null when it cannot be read. */
async function readHead(path: string): Promise<Buffer | null> {
  try {
    const fh = await open(path, 'r');
    try {
      const buf = Buffer.alloc(SNIFF_SAMPLE_BYTES);
      const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
      return buf.subarray(0, bytesRead);
    } finally {
      await fh.close();
    }
  } catch {
    return null;
  }
}

/** Exit codes of the client commands. */
export const EXIT = Object.freeze({ OK: 0, FAILURE: 1, USAGE: 2, CREDENTIALS: 3, INTERRUPTED: 130 });

class UsageError extends Error {}
class Interrupted extends Error {}

const ASSET_ID = /^ast_[0-9A-Za-z]{22}$/;
const JOB_ID = /^job_[0-9A-Za-z]{22}$/;
/** Files up to this size are sent in the process request itself; larger ones are uploaded with tus first. */
const INLINE_PROCESS_BYTES = 8 * 1024 * 1024;

interface Io {
  stdout: NodeJS.WriteStream;
  stderr: NodeJS.WriteStream;
  env: NodeJS.ProcessEnv;
}

function out(io: Io, json: boolean, value: unknown, text: string): void {
  io.stdout.write(json ? JSON.stringify(value, null, 2) + '\n' : text + '\n');
}

function client(io: Io): Obscura {
  const c = resolveCredentials(io.env);
  if (c.source === 'none') {
    throw new CredentialsError('missing', 'no credentials: set OBSCURA_URL and OBSCURA_API_KEY, or create ~/.config/obscura/credentials.json (mode 0600)');
  }
  return c.apiKey
    ? new Obscura({ baseUrl: c.url, apiKey: c.apiKey, userAgent: 'obscura-cli/0.1.0' })
    : new Obscura({ baseUrl: c.url, clientCredentials: { clientId: c.clientId!, clientSecret: c.clientSecret! }, userAgent: 'obscura-cli/0.1.0' });
}

async function assertWritable(path: string, force: boolean): Promise<void> {
  if (path === '-') return;
  const exists = await access(path, fsConstants.F_OK).then(
    () => true,
    () => false,
  );
  if (exists && !force) throw new UsageError(`${path} exists; pass --force to overwrite it`);
}

const EXT: Record<string, string> = { 'image/jpeg': '.jpg', 'image/png': '.png', 'image/webp': '.webp', 'image/avif': '.avif', 'image/gif': '.gif', 'image/tiff': '.tiff', 'image/svg+xml': '.svg' };

async function cmdUpload(argv: string[], io: Io, signal: AbortSignal): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: { json: { type: 'boolean', default: false }, filename: { type: 'string' }, resume: { type: 'string' }, 'chunk-size': { type: 'string' } },
    allowPositionals: true,
    strict: true,
  });
  const [file, ...extra] = positionals;
  if (!file || extra.length) throw new UsageError('upload needs exactly one FILE');
  const info = await stat(file).catch(() => undefined);
  if (!info?.isFile()) throw new UsageError(`${file} is not a readable file`);
  const chunk = values['chunk-size'] === undefined ? undefined : Number(values['chunk-size']);
  if (chunk !== undefined && (!Number.isInteger(chunk) || chunk < 64 * 1024)) throw new UsageError('--chunk-size must be a whole number of bytes >= 65536');
  const json = values.json!;
  const obscura = client(io);
  const bar = transferBar(`upload ${basename(file)}`, progressEnabled(json, io));
  let uploadUrl = values.resume;
  try {
    const r = await uploadFile(obscura, file, {
      filename: values.filename ?? basename(file),
      uploadUrl: values.resume,
      chunkSize: chunk,
      signal,
      onUploadUrl: (u) => (uploadUrl = u),
      onProgress: (p) => bar.update(p.bytes, p.total),
    });
    bar.stop();
    let asset: Asset | { id: string; size: number } = { id: r.assetId, size: r.size };
    try {
      asset = await obscura.assets.get(r.assetId);
    } catch (err) {
      // A key limited to assets:write (e.g. an uploader key) cannot read the metadata back; the id is enough.
      if (!(err instanceof ObscuraError && err.status === 403)) throw err;
    }
    out(io, json, asset, json ? '' : `${r.assetId}`);
    if (!json && 'content_type' in asset) io.stderr.write(`uploaded ${formatBytes(asset.size)} as ${asset.content_type} (sha256 ${asset.sha256})\n`);
    return EXIT.OK;
  } catch (err) {
    bar.stop();
    if (err instanceof ObscuraError && err.code === 'ERR_ABORTED' && uploadUrl) {
      io.stderr.write(`obscura: upload interrupted; resume with:\n  obscura upload ${file} --resume ${uploadUrl}\n`);
      throw new Interrupted();
    }
    throw err;
  }
}

function parseInput(arg: string): { kind: 'asset'; id: string } | { kind: 'url'; url: string } | { kind: 'file'; path: string } {
  if (ASSET_ID.test(arg)) return { kind: 'asset', id: arg };
  if (/^https?:\/\//i.test(arg)) return { kind: 'url', url: arg };
  return { kind: 'file', path: arg };
}

async function writeOutput(io: Io, path: string, data: Uint8Array): Promise<void> {
  if (path === '-') {
    await new Promise<void>((resolve, reject) => io.stdout.write(data, (e) => (e ? reject(e) : resolve())));
    return;
  }
  await writeStreamAtomically(data, path);
}

async function cmdProcess(argv: string[], io: Io, signal: AbortSignal): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: {
      op: { type: 'string', multiple: true },
      output: { type: 'string', short: 'o' },
      store: { type: 'boolean', default: false },
      async: { type: 'boolean', default: false },
      preview: { type: 'boolean', default: false },
      'keep-metadata': { type: 'boolean', default: false },
      ttl: { type: 'string' },
      force: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
    },
    allowPositionals: true,
    strict: true,
  });
  const [source, ...extra] = positionals;
  if (!source || extra.length) throw new UsageError('process needs exactly one input: FILE, ASSET_ID or URL');
  const ops = values.op ?? [];
  if (ops.length === 0) throw new UsageError('give at least one --op, e.g. --op resize:width=400 --op format:webp');
  const input = parseInput(source);
  // Same registries as the server: a typo fails here, before any upload, naming the operation. The
  // media kind comes from the file's first bytes; for an asset id or URL, from the operations' names.
  // Presets (`preset:NAME`) are the app's, known only to the server: it expands and checks them.
  const written = ops.filter((op) => !op.startsWith('preset:'));
  let kind: 'image' | 'video' = written.some((op) => !OPERATIONS.has(op.split(':', 1)[0]!) && VIDEO_OPERATION_NAMES.has(op.split(':', 1)[0]!)) ? 'video' : 'image';
  if (input.kind === 'file') {
    const head = await readHead(input.path);
    const type = head ? await sniff(head) : null;
    if (type) kind = isVideoType(type.mime) ? 'video' : 'image';
  }
  try {
    if (kind === 'video') compileVideoOperations(written);
    else parseOperations(written);
  } catch (err) {
    if (err instanceof AppError) {
      // The registry's message names the operation and what is allowed (values, range, parameters).
      const d = err.details as { errors?: Array<{ message: string }> } | undefined;
      const more = (d?.errors ?? []).slice(1).map((e) => `; ${e.message}`).join('');
      throw new UsageError(`invalid --op: ${err.publicMessage}${more}`);
    }
    throw err;
  }
  const json = values.json!;
  const outPath = values.output;
  if (!values.async && !values.store && outPath === undefined) throw new UsageError('give -o FILE (or -o - for stdout), --store, or --async');
  if (values.store && outPath !== undefined) throw new UsageError('--store and -o are exclusive (use --async -o FILE to store and download)');
  if (outPath !== undefined) await assertWritable(outPath, values.force!);
  let ttl: number | undefined;
  if (values.ttl !== undefined) {
    if (!/^\d+$/.test(values.ttl)) throw new UsageError('--ttl must be a number of seconds');
    ttl = Number(values.ttl);
  }
  let fileSize = 0;
  if (input.kind === 'file') {
    const info = await stat(input.path).catch(() => undefined);
    if (!info?.isFile()) throw new UsageError(`${input.path} is not a readable file (or an asset id ast_…, or an https URL)`);
    fileSize = info.size;
  }

  const obscura = client(io);
  const showProgress = progressEnabled(json, io);
  // A whole video is a job (the server refuses it in a request); a preview or a poster frame is not.
  const asJob = values.async || (kind === 'video' && !values.preview && !written.some((op) => /^(poster|thumbnail|animate)(:|$)/.test(op)));
  let req: ProcessRequest;
  if (input.kind === 'asset') req = { input: { assetId: input.id }, operations: ops };
  else if (input.kind === 'url') req = { input: { url: input.url }, operations: ops };
  else if (fileSize <= INLINE_PROCESS_BYTES && !asJob) req = { input: { bytes: await readFile(input.path) }, operations: ops };
  else {
    const bar = transferBar(`upload ${basename(input.path)}`, showProgress);
    try {
      const r = await uploadFile(obscura, input.path, { signal, onProgress: (p) => bar.update(p.bytes, p.total) });
      req = { input: { assetId: r.assetId }, operations: ops };
    } finally {
      bar.stop();
    }
  }
  if (values.preview) req.preview = true;
  if (values['keep-metadata']) req.keep_metadata = true;
  if (ttl !== undefined) req.output = { ttl_seconds: ttl };

  if (asJob) {
    if (values.store) throw new UsageError('a video is processed as a job, whose output is always stored: use -o FILE to download it too, or --async');
    const job = await obscura.processing.start(req, { signal });
    return finishJob(io, obscura, job.id, { json, outPath, force: values.force!, timeoutMs: undefined, signal });
  }
  if (values.store) {
    const asset = await obscura.processing.store(req, { signal });
    out(io, json, asset, asset.id);
    return EXIT.OK;
  }
  const spinner = statusSpinner(showProgress);
  spinner.update('processing');
  let result;
  try {
    result = await obscura.processing.run(req, { signal, timeoutMs: 300_000 });
  } finally {
    spinner.stop();
  }
  await writeOutput(io, outPath!, result.data);
  if (outPath !== '-') out(io, json, { output: outPath, content_type: result.contentType, size: result.data.byteLength }, `${outPath}: ${result.contentType}, ${formatBytes(result.data.byteLength)}`);
  return EXIT.OK;
}

async function finishJob(io: Io, obscura: Obscura, id: string, o: { json: boolean; outPath: string | undefined; force: boolean; timeoutMs: number | undefined; signal: AbortSignal }): Promise<number> {
  const enabled = progressEnabled(o.json, io);
  const spinner = statusSpinner(enabled);
  // A video job reports progress: a percent bar replaces the spinner once the first report arrives.
  const bar = percentBar(`job ${id}`, enabled);
  let job: Job;
  let barShown = false;
  try {
    spinner.update(`job ${id}: waiting`);
    job = await obscura.jobs.wait(id, {
      signal: o.signal,
      timeoutMs: o.timeoutMs,
      allowFailure: true,
      maxIntervalMs: 2000,
      onPoll: (j) => {
        const status = `${j.status}${j.attempts > 1 ? ` (attempt ${j.attempts})` : ''}`;
        if (j.progress && j.status === 'running') {
          if (!barShown) spinner.stop();
          barShown = true;
          bar.update(j.progress, status);
        } else if (!barShown) spinner.update(`job ${id}: ${status}`);
      },
    });
  } finally {
    bar.stop();
    if (!barShown) spinner.stop();
  }
  if (job.status === 'failed' || job.status === 'cancelled') {
    if (o.json) io.stdout.write(JSON.stringify(job, null, 2) + '\n');
    throw new ObscuraError({ code: job.error?.code ?? 'ERR_JOB_FAILED', detail: `job ${id} ${job.status}: ${job.error?.message ?? 'no reason given'}` });
  }
  if (o.outPath !== undefined && job.output.asset_id) {
    await assertWritable(o.outPath, o.force);
    if (o.outPath === '-') {
      const dl = await obscura.assets.download(job.output.asset_id, { signal: o.signal });
      await writeOutput(io, '-', await dl.bytes());
    } else {
      const bar = transferBar('download', progressEnabled(o.json, io));
      try {
        await downloadToFile(obscura, job.output.asset_id, o.outPath, { signal: o.signal, onProgress: (p) => bar.update(p.bytes, p.total) });
      } finally {
        bar.stop();
      }
    }
  }
  if (o.outPath !== '-') out(io, o.json, job, `${job.id} ${job.status}${job.output.asset_id ? ` output ${job.output.asset_id}` : ''}${o.outPath ? ` -> ${o.outPath}` : ''}`);
  return EXIT.OK;
}

async function cmdDownload(argv: string[], io: Io, signal: AbortSignal): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: { output: { type: 'string', short: 'o' }, force: { type: 'boolean', default: false }, json: { type: 'boolean', default: false } },
    allowPositionals: true,
    strict: true,
  });
  const [id, ...extra] = positionals;
  if (!id || extra.length || !ASSET_ID.test(id)) throw new UsageError('download needs one ASSET_ID (ast_…)');
  const json = values.json!;
  const obscura = client(io);
  if (values.output === '-') {
    const dl = await obscura.assets.download(id, { signal });
    await writeOutput(io, '-', await dl.bytes());
    return EXIT.OK;
  }
  let path = values.output;
  if (path === undefined) {
    // Never a name chosen by the server or the uploader (path traversal): the id plus the sniffed type's extension.
    const asset = await obscura.assets.get(id, { signal });
    path = `${id}${EXT[asset.content_type] ?? ''}`;
  }
  await assertWritable(path, values.force!);
  const bar = transferBar(`download ${id}`, progressEnabled(json, io));
  let r;
  try {
    r = await downloadToFile(obscura, id, path, { signal, onProgress: (p) => bar.update(p.bytes, p.total) });
  } finally {
    bar.stop();
  }
  out(io, json, { id, output: path, content_type: r.contentType, size: r.bytes }, `${path}: ${r.contentType}, ${formatBytes(r.bytes)}`);
  return EXIT.OK;
}

/** The options every `… list` command takes (page and creation-time filters). */
const LIST_OPTIONS = {
  json: { type: 'boolean', default: false },
  limit: { type: 'string' },
  cursor: { type: 'string' },
  all: { type: 'boolean', default: false },
  'created-after': { type: 'string' },
  'created-before': { type: 'string' },
} as const;

interface ListValues {
  json?: boolean;
  limit?: string;
  cursor?: string;
  all?: boolean;
  'created-after'?: string;
  'created-before'?: string;
}

/** Page and time-filter options of a list command, checked before any request. */
function listQuery(values: ListValues): { limit?: number; cursor?: string; created_after?: string; created_before?: string } {
  if (values.all && values.cursor !== undefined) throw new UsageError('--all and --cursor cannot be combined');
  let limit: number | undefined;
  if (values.limit !== undefined) {
    if (!/^\d+$/.test(values.limit) || Number(values.limit) < 1 || Number(values.limit) > 500) throw new UsageError('--limit must be a whole number from 1 to 500');
    limit = Number(values.limit);
  }
  for (const flag of ['created-after', 'created-before'] as const) {
    const v = values[flag];
    if (v !== undefined && Number.isNaN(Date.parse(v))) throw new UsageError(`--${flag} must be a date-time such as 2026-12-01T00:00:00Z`);
  }
  const q: { limit?: number; cursor?: string; created_after?: string; created_before?: string } = {};
  if (limit !== undefined) q.limit = limit;
  if (values.cursor !== undefined) q.cursor = values.cursor;
  if (values['created-after'] !== undefined) q.created_after = new Date(values['created-after']).toISOString();
  if (values['created-before'] !== undefined) q.created_before = new Date(values['created-before']).toISOString();
  return q;
}

/**
 * Prints a list: one line per item (or JSON), then — when there is more — how to get the next page
 * (on stderr, so stdout stays the items). `--all` follows every cursor.
 */
async function printList<T>(io: Io, values: ListValues, command: string, fetchPage: (cursor: string | undefined) => Promise<Page<T>>, line: (item: T) => string, first: string | undefined): Promise<number> {
  if (values.all) {
    const items: T[] = [];
    let cursor: string | undefined;
    do {
      const page = await fetchPage(cursor);
      if (values.json) items.push(...page.data);
      else for (const item of page.data) io.stdout.write(line(item) + '\n');
      cursor = page.next_cursor ?? undefined;
    } while (cursor);
    if (values.json) out(io, true, items, '');
    return EXIT.OK;
  }
  const page = await fetchPage(first);
  if (values.json) out(io, true, page, '');
  else for (const item of page.data) io.stdout.write(line(item) + '\n');
  if (!values.json && page.next_cursor) io.stderr.write(`more: ${command} --cursor ${page.next_cursor}\n`);
  return EXIT.OK;
}

const ASSET_FILTER_OPTIONS = {
  type: { type: 'string' },
  kind: { type: 'string' },
  tag: { type: 'string' },
  'min-size': { type: 'string' },
  'max-size': { type: 'string' },
  filename: { type: 'string' },
} as const;

/** The asset filters of `assets list` and `assets delete`, checked before anything is sent. */
function assetFilters(values: { type?: string | undefined; kind?: string | undefined; tag?: string | undefined; 'min-size'?: string | undefined; 'max-size'?: string | undefined; filename?: string | undefined }) {
  if (values.kind !== undefined && !['upload', 'original', 'output'].includes(values.kind)) throw new UsageError('--kind must be upload (or original) or output');
  if (values.type !== undefined && !/^[a-z]+(\/([a-z0-9.+-]+|\*))?$/.test(values.type)) throw new UsageError('--type must be a media type (image/png) or a family (image, video)');
  for (const k of ['min-size', 'max-size'] as const) if (values[k] !== undefined && !/^\d+$/.test(values[k]!)) throw new UsageError(`--${k} must be a number of bytes`);
  return {
    ...(values.type !== undefined ? { type: values.type } : {}),
    ...(values.kind !== undefined ? { kind: values.kind as 'upload' | 'original' | 'output' } : {}),
    ...(values.tag !== undefined ? { tag: values.tag } : {}),
    ...(values['min-size'] !== undefined ? { min_size: Number(values['min-size']) } : {}),
    ...(values['max-size'] !== undefined ? { max_size: Number(values['max-size']) } : {}),
    ...(values.filename !== undefined ? { filename: values.filename } : {}),
  };
}

const ASSETS_USAGE = 'assets needs a subcommand: assets list [filters] | assets label ASSET_ID [--tags a,b] [--set k=v …] [--unset k …] [--hold | --release] | assets delete [filters] [--created-before ISO] [--all] [--yes]';

async function cmdAssets(argv: string[], io: Io, signal: AbortSignal): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === 'label') return cmdAssetLabel(rest, io, signal);
  if (sub === 'delete') return cmdAssetDelete(rest, io, signal);
  const { values, positionals } = parseArgs({ args: rest, options: { ...LIST_OPTIONS, ...ASSET_FILTER_OPTIONS }, allowPositionals: true, strict: true });
  if (sub !== 'list' || positionals.length) throw new UsageError(ASSETS_USAGE);
  const { cursor, ...query } = listQuery(values);
  const filters = { ...query, ...assetFilters(values) };
  const obscura = client(io);
  const again = ['obscura assets list', ...rest.filter((a, i) => a !== '--cursor' && rest[i - 1] !== '--cursor' && !a.startsWith('--cursor='))].join(' ');
  return printList(io, values, again, (c) => obscura.assets.list({ ...filters, cursor: c }, { signal }), (a) => `${a.id} ${a.kind} ${a.content_type} ${a.size} ${a.created_at}${a.filename ? ` ${a.filename}` : ''}${a.tags?.length ? ` [${a.tags.join(',')}]` : ''}`, cursor);
}

/** `obscura assets label ASSET_ID --tags a,b --set k=v --unset k`: PATCH /v1/assets/{id}. */
async function cmdAssetLabel(rest: string[], io: Io, signal: AbortSignal): Promise<number> {
  const { values, positionals } = parseArgs({
    args: rest,
    options: { json: { type: 'boolean', default: false }, tags: { type: 'string' }, set: { type: 'string', multiple: true }, unset: { type: 'string', multiple: true }, hold: { type: 'boolean' }, release: { type: 'boolean' } },
    allowPositionals: true,
    strict: true,
  });
  const [id, ...extra] = positionals;
  if (!id || extra.length || !/^ast_[0-9A-Za-z]{22}$/.test(id)) throw new UsageError('assets label needs one ASSET_ID (ast_…): assets label ASSET_ID [--tags a,b] [--set key=value …] [--unset key …] [--hold | --release]');
  const metadata: Record<string, string | null> = {};
  for (const kv of values.set ?? []) {
    const eq = kv.indexOf('=');
    if (eq < 1) throw new UsageError(`--set takes key=value, not "${kv}"`);
    metadata[kv.slice(0, eq)] = kv.slice(eq + 1);
  }
  for (const k of values.unset ?? []) metadata[k] = null;
  if (values.hold && values.release) throw new UsageError('--hold and --release exclude each other');
  const change = {
    ...(values.tags !== undefined ? { tags: values.tags.split(',').map((t) => t.trim()).filter(Boolean) } : {}),
    ...(Object.keys(metadata).length ? { metadata } : {}),
    ...(values.hold ? { legal_hold: true } : values.release ? { legal_hold: false } : {}),
  };
  if (!Object.keys(change).length) throw new UsageError('assets label changes nothing without --tags, --set, --unset, --hold or --release');
  const asset = await client(io).assets.update(id, change, { signal });
  out(io, values.json!, asset, `${asset.id} [${asset.tags.join(',')}] ${JSON.stringify(asset.metadata)}${asset.legal_hold ? ' legal-hold' : ''}`);
  return EXIT.OK;
}

/**
 * `obscura assets delete [filters] [--yes]`: POST /v1/assets/bulk-delete. Without --yes it is a dry run
 * that prints what would go; with --yes it deletes batch after batch until nothing matches.
 */
async function cmdAssetDelete(rest: string[], io: Io, signal: AbortSignal): Promise<number> {
  const { values, positionals } = parseArgs({
    args: rest,
    options: { ...ASSET_FILTER_OPTIONS, 'created-after': { type: 'string' }, 'created-before': { type: 'string' }, all: { type: 'boolean', default: false }, yes: { type: 'boolean', default: false }, json: { type: 'boolean', default: false } },
    allowPositionals: true,
    strict: true,
  });
  if (positionals.length) throw new UsageError('assets delete takes filters, not ids: use DELETE /v1/assets/{id} (obscura-sdk assets.delete) for one asset');
  const filters = {
    ...assetFilters(values),
    ...(values['created-after'] !== undefined ? { created_after: values['created-after'] } : {}),
    ...(values['created-before'] !== undefined ? { created_before: values['created-before'] } : {}),
    ...(values.all ? { all: true } : {}),
  };
  const obscura = client(io);
  if (!values.yes) {
    const r = await obscura.assets.bulkDelete({ ...filters, dry_run: true, limit: 1000 }, { signal });
    if (values.json) out(io, true, r, '');
    else {
      for (const id of r.ids) io.stdout.write(`${id}\n`);
      io.stderr.write(`${r.matched} asset(s) match${r.held ? ` (and ${r.held} under legal hold, which stay)` : ''}; nothing was deleted (dry run). Run again with --yes to delete them.\n`);
    }
    return EXIT.OK;
  }
  let deleted = 0;
  for (;;) {
    const r = await obscura.assets.bulkDelete({ ...filters, dry_run: false, limit: 1000 }, { signal });
    deleted += r.ids.length;
    if (!values.json) for (const id of r.ids) io.stdout.write(`${id}\n`);
    if (!r.has_more || r.ids.length === 0) break;
  }
  if (values.json) out(io, true, { deleted }, '');
  else io.stderr.write(`${deleted} asset(s) deleted.\n`);
  return EXIT.OK;
}

/**
 * `obscura orgs export [-o FILE] [--force] [--no-wait] [--json]`: exports everything the credential's
 * org owns (docs/export.md). Waits for the export (or for the one already running), downloads the
 * archive atomically and checks it against the SHA-256 the server recorded.
 */
async function cmdOrgsExport(argv: string[], io: Io, signal: AbortSignal): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: { output: { type: 'string', short: 'o' }, force: { type: 'boolean', default: false }, 'no-wait': { type: 'boolean', default: false }, timeout: { type: 'string' }, json: { type: 'boolean', default: false } },
    allowPositionals: true,
    strict: true,
  });
  if (positionals.length) throw new UsageError('orgs export takes no arguments: it exports the org of the credential');
  const json = values.json!;
  const timeoutMs = values.timeout === undefined ? undefined : Number(values.timeout) * 1000;
  if (timeoutMs !== undefined && !(timeoutMs > 0)) throw new UsageError('--timeout needs a number of seconds');
  const obscura = client(io);
  const { org_id: orgId } = await obscura.whoami({ signal });
  let exportId: string;
  try {
    exportId = (await obscura.orgs.export(orgId, { signal })).id;
  } catch (err) {
    // One export at a time per org: wait for the one already running rather than fail.
    const running = err instanceof ObscuraError && err.code === 'ERR_EXPORT_IN_PROGRESS' ? (err.problem as { export_id?: unknown } | undefined)?.export_id : undefined;
    if (typeof running !== 'string') throw err;
    if (!json) io.stderr.write(`an export of this org is already running (${running}): waiting for it\n`);
    exportId = running;
  }
  if (values['no-wait']) {
    out(io, json, await obscura.orgs.getExport(orgId, exportId, { signal }), `export ${exportId} queued; poll it with obscura orgs export --json or GET /v1/orgs/${orgId}/exports/${exportId}`);
    return EXIT.OK;
  }
  const path = values.output ?? `obscura-export-${exportId}.tar`;
  await assertWritable(path, values.force!);
  const spinner = statusSpinner(progressEnabled(json, io));
  spinner.update(`export ${exportId}: building the archive`);
  let done;
  try {
    done = await obscura.orgs.waitForExport(orgId, exportId, { signal, ...(timeoutMs ? { timeoutMs } : {}) });
  } finally {
    spinner.stop();
  }
  const dl = await obscura.orgs.downloadExport(done.download_url!, { signal });
  const hash = createHash('sha256');
  const hashed = dl.body.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, ctl) {
        hash.update(chunk);
        ctl.enqueue(chunk);
      },
    }),
  );
  const bytes = await writeStreamAtomically(hashed, path);
  const sha256 = hash.digest('hex');
  if (sha256 !== done.sha256 || bytes !== done.size) {
    await rm(path, { force: true });
    throw new ObscuraError({ code: 'ERR_INTEGRITY', detail: 'The downloaded archive does not match the SHA-256 the server recorded; nothing was kept. Run the command again.' });
  }
  out(io, json, { id: exportId, output: path, size: bytes, sha256, counts: done.counts, expires_at: done.expires_at }, `${path}: ${formatBytes(bytes)}, sha256 ${sha256} (the server keeps it until ${done.expires_at})`);
  return EXIT.OK;
}

async function cmdJobs(argv: string[], io: Io, signal: AbortSignal): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === 'list') {
    const { values, positionals } = parseArgs({ args: rest, options: { ...LIST_OPTIONS, status: { type: 'string' } }, allowPositionals: true, strict: true });
    if (positionals.length) throw new UsageError('jobs list takes no positional argument');
    if (values.status !== undefined && !['queued', 'running', 'succeeded', 'failed', 'cancelled'].includes(values.status)) throw new UsageError('--status must be queued, running, succeeded, failed or cancelled');
    const { cursor, ...query } = listQuery(values);
    const filters = { ...query, ...(values.status !== undefined ? { status: values.status as Job['status'] } : {}) };
    const obscura = client(io);
    const again = ['obscura jobs list', ...rest.filter((a, i) => a !== '--cursor' && rest[i - 1] !== '--cursor' && !a.startsWith('--cursor='))].join(' ');
    return printList(io, values, again, (c) => obscura.jobs.list({ ...filters, cursor: c }, { signal }), (j) => `${j.id} ${j.status} ${j.created_at}${j.output.asset_id ? ` output ${j.output.asset_id}` : ''}${j.error ? ` error ${j.error.code}` : ''}`, cursor);
  }
  const { values, positionals } = parseArgs({
    args: rest,
    options: { json: { type: 'boolean', default: false }, timeout: { type: 'string' }, output: { type: 'string', short: 'o' }, force: { type: 'boolean', default: false } },
    allowPositionals: true,
    strict: true,
  });
  const [id, ...extra] = positionals;
  if ((sub !== 'get' && sub !== 'wait' && sub !== 'cancel') || !id || extra.length) throw new UsageError('jobs needs a subcommand: jobs list | jobs get JOB_ID | jobs wait JOB_ID | jobs cancel JOB_ID');
  if (!JOB_ID.test(id)) throw new UsageError('JOB_ID must look like job_…');
  let timeoutMs: number | undefined;
  if (values.timeout !== undefined) {
    if (!/^\d+$/.test(values.timeout)) throw new UsageError('--timeout must be a number of seconds');
    timeoutMs = Number(values.timeout) * 1000;
  }
  if (values.output !== undefined) await assertWritable(values.output, values.force!);
  const obscura = client(io);
  if (sub === 'get' || sub === 'cancel') {
    const job = sub === 'cancel' ? await obscura.jobs.cancel(id, { signal }) : await obscura.jobs.get(id, { signal });
    out(io, values.json!, job, `${job.id} ${job.status}${job.output.asset_id ? ` output ${job.output.asset_id}` : ''}${job.error ? ` error ${job.error.code}` : ''}`);
    return EXIT.OK;
  }
  return finishJob(io, obscura, id, { json: values.json!, outPath: values.output, force: values.force!, timeoutMs, signal });
}

function report(io: Io, json: boolean, err: unknown): number {
  const line = (s: string) => io.stderr.write(`obscura: ${s}\n`);
  if (err instanceof Interrupted) return EXIT.INTERRUPTED;
  if (err instanceof UsageError || (err as { code?: string })?.code?.startsWith?.('ERR_PARSE_ARGS')) {
    line(`${(err as Error).message}\nRun "obscura help" for usage.`);
    return EXIT.USAGE;
  }
  if (err instanceof CredentialsError) {
    if (json) io.stderr.write(JSON.stringify({ error: { code: `ERR_CREDENTIALS_${err.reason.toUpperCase()}`, detail: err.message } }) + '\n');
    else line(err.message);
    return EXIT.CREDENTIALS;
  }
  if (err instanceof ObscuraError) {
    if (err.code === 'ERR_ABORTED') {
      line('interrupted');
      return EXIT.INTERRUPTED;
    }
    if (json) io.stderr.write(JSON.stringify({ error: { code: err.code, status: err.status, detail: err.detail, request_id: err.requestId ?? null } }) + '\n');
    else line(`${err.code}: ${err.detail}${err.requestId ? ` (request ${err.requestId})` : ''}`);
    if (err.code === 'ERR_SDK_USAGE') return EXIT.USAGE;
    return err.status === 401 || err.status === 403 ? EXIT.CREDENTIALS : EXIT.FAILURE;
  }
  line(`unexpected error: ${(err as Error)?.message ?? String(err)}`);
  return EXIT.FAILURE;
}

/**
 * Runs one client command (`upload`, `process`, `download`, `assets`, `jobs`) and returns its exit code.
 * Never throws; errors are reported on stderr (as JSON with `--json`).
 */
export async function clientCommand(cmd: string, argv: string[], io: Io = { stdout: process.stdout, stderr: process.stderr, env: process.env }): Promise<number> {
  const ctl = new AbortController();
  const onSigint = () => ctl.abort(new Error('SIGINT'));
  process.once('SIGINT', onSigint);
  const json = argv.includes('--json');
  try {
    if (argv.includes('--help') || argv.includes('-h')) {
      io.stdout.write(CLIENT_HELP + '\n');
      return EXIT.OK;
    }
    switch (cmd) {
      case 'upload':
        return await cmdUpload(argv, io, ctl.signal);
      case 'process':
        return await cmdProcess(argv, io, ctl.signal);
      case 'download':
        return await cmdDownload(argv, io, ctl.signal);
      case 'jobs':
        return await cmdJobs(argv, io, ctl.signal);
      case 'assets':
        return await cmdAssets(argv, io, ctl.signal);
      case 'orgs-export':
        return await cmdOrgsExport(argv, io, ctl.signal);
      default:
        throw new UsageError(`unknown client command "${cmd}"`);
    }
  } catch (err) {
    return report(io, json, err);
  } finally {
    process.off('SIGINT', onSigint);
  }
}
