/**
 * How ffmpeg reads an encrypted asset without a decrypted copy on disk (issue 11, item 6): a
 * loopback range server, one per run. It listens on 127.0.0.1 on a port the kernel picks, answers
 * only `GET`/`HEAD` of one path made of 32 random bytes, and serves byte ranges by decrypting just
 * the segments they need (the caller's `open`). ffmpeg reads it with `-protocol_whitelist http,tcp`
 * and a forced demuxer; MP4s whose index (`moov`) is at the end need seeking, which a pipe cannot
 * give, so a pipe was not enough. The server closes when the run ends; nothing is written anywhere.
 *
 * Why not a temporary plaintext file: a crash or a kill -9 would leave customer media in clear on
 * disk; with this server the plaintext exists only in the two processes' memory.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream';
import { parseRange } from '../range.js';

/** The bytes behind a source: its size and a way to open any inclusive range of it. */
export interface SourceBytes {
  size: number;
  open(range?: { start: number; end: number }): Promise<Readable>;
}

/** A running source server. */
export interface SourceServer {
  /** The one URL it answers (`http://127.0.0.1:<port>/<token>`). */
  readonly url: string;
  /** Requests it refused (wrong path or method): a test can check that ffmpeg asked for nothing else. */
  readonly refused: number;
  close(): Promise<void>;
}

/** Starts a source server for `bytes`; close it when the run ends (also on failure). */
export async function serveSource(bytes: SourceBytes): Promise<SourceServer> {
  const token = randomBytes(32).toString('base64url');
  let refused = 0;
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    if ((req.method !== 'GET' && req.method !== 'HEAD') || req.url !== `/${token}`) {
      refused++;
      res.writeHead(404, { connection: 'close' }).end();
      return;
    }
    const range = parseRange(req.headers.range, bytes.size);
    if (range === 'unsatisfiable') {
      res.writeHead(416, { 'content-range': `bytes */${bytes.size}` }).end();
      return;
    }
    const headers: Record<string, string | number> = { 'accept-ranges': 'bytes', 'content-type': 'application/octet-stream' };
    if (range) {
      headers['content-range'] = `bytes ${range.start}-${range.end}/${bytes.size}`;
      headers['content-length'] = range.end - range.start + 1;
    } else headers['content-length'] = bytes.size;
    res.writeHead(range ? 206 : 200, headers);
    if (req.method === 'HEAD' || bytes.size === 0) {
      res.end();
      return;
    }
    const stream = await bytes.open(range ?? undefined);
    // ffmpeg drops a connection when it seeks: that is a normal end here, not an error to report.
    pipeline(stream, res, () => undefined);
  };
  const server = createServer((req, res) => {
    handle(req, res).catch(() => {
      if (!res.headersSent) res.writeHead(500).end();
      else res.destroy();
    });
  });
  server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0 }, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/${token}`,
    get refused() {
      return refused;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
