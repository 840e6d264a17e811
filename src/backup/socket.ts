/**
 * How `obscura backup create` gets a consistent dump of an embedded database that a running server
 * holds (the data dir is locked by that server: src/db/lock.ts, and a second process opening PGlite
 * loses writes). The server listens on a Unix socket inside its data dir, `<data dir>/backup.sock`,
 * and answers one request, `POST /v1/dump`, with the dump's lines (dump.ts), taken in its own
 * repeatable-read transaction while it keeps serving requests.
 *
 * Authentication is the filesystem's, as for the data dir itself: the data dir is 0700 (the server
 * refuses anything wider) and the socket 0600, so only the user running the server can connect, and
 * that user can already read every file of the data dir. Nothing else is served on it; there is no
 * TCP port. The dump is plaintext on the socket and sealed by the CLI before it touches the archive.
 */
import { once } from 'node:events';
import { chmodSync, rmSync } from 'node:fs';
import { createServer, request } from 'node:http';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { AppError } from '../errors.js';

/** The socket's path. */
export const dumpSocketPath = (dataDir: string): string => join(dataDir, 'backup.sock');

/** Longest Unix socket path Linux accepts (sun_path is 108 bytes with its NUL). */
const MAX_SOCKET_PATH = 107;

export interface DumpSocket {
  readonly path: string;
  close(): Promise<void>;
}

/**
 * Serves dumps on the data dir's socket. `dump` writes the lines (awaiting `write` is backpressure).
 * Returns null (and says why through `onWarning`) when the path is too long for a Unix socket.
 */
export async function startDumpSocket(dataDir: string, dump: (write: (line: string) => Promise<void>) => Promise<unknown>, onWarning?: (message: string) => void): Promise<DumpSocket | null> {
  const path = dumpSocketPath(dataDir);
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH) {
    onWarning?.(`${path} is too long for a Unix socket: \`obscura backup create\` cannot reach this server; use a shorter OBSCURA_DATA_DIR`);
    return null;
  }
  const server = createServer((req, res) => {
    if (req.method !== 'POST' || req.url !== '/v1/dump') {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/x-ndjson' });
    const write = async (line: string) => {
      if (res.destroyed) throw new Error('backup client went away');
      if (!res.write(line + '\n')) await once(res, 'drain');
    };
    dump(write).then(
      () => res.end(),
      (err: unknown) => res.destroy(err as Error),
    );
  });
  // The lock is ours (the caller holds the data dir), so a socket file left by a killed server is stale.
  rmSync(path, { force: true });
  server.listen(path);
  await once(server, 'listening');
  chmodSync(path, 0o600);
  return {
    path,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      rmSync(path, { force: true });
    },
  };
}

/** Asks the server holding `dataDir` for a dump; resolves with the response's byte stream. */
export function dumpThroughServer(dataDir: string): Promise<Readable> {
  const path = dumpSocketPath(dataDir);
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: path, method: 'POST', path: '/v1/dump' }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        reject(new AppError('ERR_UNAVAILABLE', `The running server answered ${res.statusCode} on ${path}.`));
        return;
      }
      resolve(res);
    });
    req.on('error', () => reject(new AppError('ERR_UNAVAILABLE', `The data dir is held by a running server, but its backup socket ${path} does not answer (is the server an older version, or still starting?).`)));
    req.end();
  });
}
