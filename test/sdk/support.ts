/**
 * SDK test helpers: a 127.0.0.1 proxy in front of a real server that can answer, delay or drop
 * chosen requests (to exercise retries), and fixture images.
 */
import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';

/** One request as the proxy saw it. */
export interface SeenRequest {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
}

/** What to do with a request: forward it, answer it, or cut the connection. */
export type ProxyAction = 'pass' | 'drop' | { status: number; headers?: Record<string, string>; body?: unknown };

export interface TestProxy {
  url: string;
  seen: SeenRequest[];
  /** Decides per request; default always 'pass'. */
  intercept: (req: SeenRequest, n: number) => ProxyAction;
  close(): Promise<void>;
}

/** A forwarding proxy on 127.0.0.1 in front of `target`. */
export async function startProxy(target: string): Promise<TestProxy> {
  const t = new URL(target);
  const proxy: TestProxy = { url: '', seen: [], intercept: () => 'pass', close: async () => undefined };
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const seen = { method: req.method ?? 'GET', url: req.url ?? '/', headers: req.headers };
    proxy.seen.push(seen);
    const action = proxy.intercept(seen, proxy.seen.length);
    if (action === 'drop') {
      req.socket.destroy();
      return;
    }
    if (action !== 'pass') {
      req.resume();
      const body = action.body === undefined ? '' : JSON.stringify(action.body);
      res.writeHead(action.status, { 'content-type': 'application/problem+json', ...(action.headers ?? {}) });
      res.end(body);
      return;
    }
    const upstream = httpRequest({ host: t.hostname, port: t.port, method: req.method, path: req.url, headers: { ...req.headers, host: t.host } }, (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
    });
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  proxy.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  proxy.close = () =>
    new Promise((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return proxy;
}

/** A PNG of random pixels (incompressible): `width`×`height`×3 bytes of noise, ~that size on disk. */
export async function noisyPng(width = 300, height = 300): Promise<Buffer> {
  return sharp(randomBytes(width * height * 3), { raw: { width, height, channels: 3 } }).png({ compressionLevel: 0 }).toBuffer();
}

/** A problem document for canned answers. */
export function problem(status: number, code: string): Record<string, unknown> {
  return { type: `urn:obscura:error:${code}`, title: 'canned', status, detail: 'canned by the test proxy', code, request_id: 'proxy' };
}

/** The repository root, whether a test runs from test/ (tsx) or dist/test/ (compiled). */
export function repoRoot(from: string = import.meta.url): string {
  let dir = dirname(fileURLToPath(from));
  while (!existsSync(join(dir, 'sdk', 'scripts', 'bundle.mjs'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('repository root not found');
    dir = up;
  }
  return dir;
}

/** A running example script (it prints `EXAMPLE_LISTENING <url>` when ready). */
export interface ExampleProcess {
  child: ChildProcess;
  url: string;
  output: () => string;
  stop(): Promise<void>;
}

/** Runs `node <script>` with only PATH and `env`, and waits for its listening line. */
export function startExampleProcess(script: string, env: Record<string, string>): Promise<ExampleProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script], { env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`example did not start: ${out}`));
    }, 15_000);
    const onData = (d: Buffer) => {
      out += d;
      const m = /EXAMPLE_LISTENING (\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({
          child,
          url: m[1]!,
          output: () => out,
          stop: () =>
            new Promise((res) => {
              if (child.exitCode !== null || child.signalCode !== null) return res();
              child.once('exit', () => res());
              child.kill('SIGTERM');
            }),
        });
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`example exited with ${code}: ${out}`));
    });
  });
}
