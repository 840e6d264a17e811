/**
 * The tenant export archive (issue 14, item 4): one POSIX tar (ustar, pax where a name needs it) of
 * the org's records as JSON lines and its decrypted media, written as a stream. The layout is
 * documented in docs/export.md; in short, under `obscura-export/`:
 *
 * - `README.txt`: what the archive is and how to read it;
 * - `org.json`: the org;
 * - `records/<kind>/NNNNN.jsonl`: the org's records of one kind, one JSON object per line in the
 *   form the API lists them, split into files of at most {@link RECORDS_PER_FILE} lines;
 * - `media/<asset id>.<ext>`: every live asset's original bytes (decrypted), next to its record in
 *   `records/assets/` (which carries its size and SHA-256);
 * - `manifest.json`, last: the format version, counts, and the size and SHA-256 of every records file.
 *
 * Nothing is held whole in memory: records are read page by page (keyset pagination) and at most one
 * records file is buffered at a time; media bytes flow from the decrypting reader into the tar entry
 * with backpressure. The tar writer is tar-stream (MIT), loaded when an export runs.
 */
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { Readable } from 'node:stream';
import { AppError } from '../errors.js';

/** Version of the layout above (in `manifest.json`). */
export const EXPORT_FORMAT_VERSION = 1;
/** The one top-level directory of the archive. */
export const ARCHIVE_ROOT = 'obscura-export';
/** Lines per records file (a file is also closed early past {@link MAX_RECORDS_FILE_BYTES}). */
export const RECORDS_PER_FILE = 1000;
/** Bytes a records file may reach before it is closed (bounds what is buffered). */
export const MAX_RECORDS_FILE_BYTES = 4 * 1024 * 1024;

/** One media file: the asset's decrypted bytes. */
export interface ExportMedia {
  /** The asset id (the file is `media/<id>.<ext>`). */
  id: string;
  ext: string;
  /** Plaintext bytes, as recorded. */
  size: number;
  /** SHA-256 (hex) of the plaintext, as recorded: checked while the bytes are copied. */
  sha256: string;
  /** Opens the decrypted bytes; rejects with `ERR_NOT_FOUND` when the asset went away meanwhile. */
  open(): Promise<Readable>;
}

/** What goes into an archive (the composition root builds the record readers from the API's own list functions). */
export interface ExportContent {
  exportId: string;
  orgId: string;
  generatedAt: string;
  org: Record<string, unknown>;
  /** Record kinds other than assets, each read page by page. */
  sections: ReadonlyArray<{ name: string; records: () => AsyncIterable<unknown> }>;
  /** The org's live assets page by page, each with its record (API form) and its media. */
  assets: () => AsyncIterable<{ record: unknown; media: ExportMedia }>;
}

/** A records file as the manifest lists it. */
export interface ManifestFile {
  path: string;
  records: number;
  bytes: number;
  sha256: string;
}

/** What an archive holds, as `manifest.json` says and the export row keeps. */
export interface ArchiveSummary {
  counts: Record<string, number>;
  /** Assets listed whose media could not be copied because they were deleted while the export ran. */
  mediaSkipped: string[];
}

const README = `This is an export of one organisation's data from Obscura (format version ${EXPORT_FORMAT_VERSION}).

org.json                      the organisation
records/<kind>/NNNNN.jsonl    its records, one JSON object per line, as the API lists them
                              (apps, keys, members, assets, jobs, webhooks, usage, audit);
                              no secret is included: API keys, webhook secrets and password
                              hashes are never exported, only their descriptions
media/<asset id>.<ext>        every asset's original bytes; records/assets/ gives each one's
                              size and sha256
manifest.json                 counts, and the size and sha256 of every records file

Read the records with any JSON-lines tool, e.g.  cat records/assets/*.jsonl | jq .
Check a media file with  sha256sum media/<file>  against its record.
`;

type TarPack = import('tar-stream').Pack;

/** Writes one entry from a buffer and waits until the archive has taken it. */
function putBuffer(pack: TarPack, name: string, data: Buffer, mtime: Date): Promise<void> {
  return new Promise((resolve, reject) => {
    pack.entry({ name: `${ARCHIVE_ROOT}/${name}`, size: data.length, mtime, mode: 0o644 }, data, (err) => (err ? reject(err) : resolve()));
  });
}

/** Copies a media stream into one entry of exactly `media.size` bytes, checking its digest. */
async function putMedia(pack: TarPack, media: ExportMedia, source: Readable, mtime: Date): Promise<void> {
  const hash = createHash('sha256');
  let written = 0;
  let settle: (err: Error | null) => void = () => undefined;
  const finished = new Promise<void>((resolve, reject) => {
    settle = (err) => (err ? reject(err) : resolve());
  });
  // Observed through `finished` below; a failure before that point is reported by the throw instead.
  finished.catch(() => undefined);
  const entry = pack.entry({ name: `${ARCHIVE_ROOT}/media/${media.id}.${media.ext}`, size: media.size, mtime, mode: 0o644 }, (err) => settle(err));
  try {
    for await (const chunk of source as AsyncIterable<Buffer>) {
      written += chunk.length;
      // A tar entry's size is written before its bytes: more or fewer bytes than recorded is corruption.
      if (written > media.size) throw new AppError('ERR_INTEGRITY', 'An asset has more bytes than its record says.', { internal: { asset: media.id } });
      hash.update(chunk);
      if (!entry.write(chunk)) await once(entry, 'drain');
    }
    if (written !== media.size) throw new AppError('ERR_INTEGRITY', 'An asset has fewer bytes than its record says.', { internal: { asset: media.id } });
    if (hash.digest('hex') !== media.sha256) throw new AppError('ERR_INTEGRITY', "An asset's bytes do not match its recorded SHA-256.", { internal: { asset: media.id } });
  } catch (err) {
    source.destroy();
    entry.destroy(err as Error);
    throw err;
  }
  entry.end();
  await finished;
}

/** Buffers the lines of one records kind and writes them as numbered files. */
class RecordsWriter {
  private lines: Buffer[] = [];
  private bytes = 0;
  private fileNo = 0;
  count = 0;

  constructor(
    private readonly pack: TarPack,
    private readonly kind: string,
    private readonly mtime: Date,
    private readonly files: ManifestFile[],
  ) {}

  async add(record: unknown): Promise<void> {
    const line = Buffer.from(JSON.stringify(record) + '\n', 'utf8');
    this.lines.push(line);
    this.bytes += line.length;
    this.count += 1;
    if (this.lines.length >= RECORDS_PER_FILE || this.bytes >= MAX_RECORDS_FILE_BYTES) await this.flush();
  }

  async flush(): Promise<void> {
    if (this.lines.length === 0) return;
    const data = Buffer.concat(this.lines);
    const path = `records/${this.kind}/${String(++this.fileNo).padStart(5, '0')}.jsonl`;
    this.files.push({ path, records: this.lines.length, bytes: data.length, sha256: createHash('sha256').update(data).digest('hex') });
    this.lines = [];
    this.bytes = 0;
    await putBuffer(this.pack, path, data, this.mtime);
  }
}

/**
 * Starts writing the archive of `content`. Read `stream` (tar bytes) to drive it; `summary` resolves
 * once the last entry is written, and both fail together on any error (the stream is destroyed).
 */
export async function exportArchive(content: ExportContent): Promise<{ stream: Readable; summary: Promise<ArchiveSummary> }> {
  const tar = await import('tar-stream');
  const pack = tar.pack();
  const stream = Readable.from(pack, { objectMode: false });
  const mtime = new Date(content.generatedAt);
  const files: ManifestFile[] = [];
  const counts: Record<string, number> = {};
  const mediaSkipped: string[] = [];

  const write = async (): Promise<ArchiveSummary> => {
    await putBuffer(pack, 'README.txt', Buffer.from(README, 'utf8'), mtime);
    await putBuffer(pack, 'org.json', Buffer.from(JSON.stringify(content.org, null, 2) + '\n', 'utf8'), mtime);
    for (const section of content.sections) {
      const w = new RecordsWriter(pack, section.name, mtime, files);
      for await (const record of section.records()) await w.add(record);
      await w.flush();
      counts[section.name] = w.count;
    }
    const assets = new RecordsWriter(pack, 'assets', mtime, files);
    let media = 0;
    for await (const { record, media: m } of content.assets()) {
      await assets.add(record);
      let source: Readable;
      try {
        source = await m.open();
      } catch (err) {
        // Deleted after its page was read: its record stays (it existed when listed), its bytes are gone.
        if (err instanceof AppError && err.code === 'ERR_NOT_FOUND') {
          mediaSkipped.push(m.id);
          continue;
        }
        throw err;
      }
      await putMedia(pack, m, source, mtime);
      media += 1;
    }
    await assets.flush();
    counts.assets = assets.count;
    counts.media = media;
    const manifest = {
      format: 'obscura-export',
      version: EXPORT_FORMAT_VERSION,
      export_id: content.exportId,
      org_id: content.orgId,
      generated_at: content.generatedAt,
      counts,
      media_skipped: mediaSkipped,
      files,
    };
    await putBuffer(pack, 'manifest.json', Buffer.from(JSON.stringify(manifest, null, 2) + '\n', 'utf8'), mtime);
    pack.finalize();
    return { counts, mediaSkipped };
  };
  const summary = write();
  summary.catch((err: unknown) => {
    pack.destroy(err as Error);
    stream.destroy(err as Error);
  });
  return { stream, summary };
}
