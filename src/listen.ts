/**
 * Starting and stopping the small extra listeners (HTTP→HTTPS redirect, Prometheus metrics): bounded
 * against slow clients, listening before they resolve, and closing their idle connections on stop.
 */
import type { Server } from 'node:http';
import { createServer as createNetServer, type AddressInfo } from 'node:net';

export interface SideListener {
  port: number;
  close(): Promise<void>;
}

export async function listenSide(server: Server, opts: { port: number; host: string; requestTimeoutMs: number; keepAliveTimeoutMs: number }): Promise<SideListener> {
  server.headersTimeout = 10_000;
  server.requestTimeout = opts.requestTimeoutMs;
  server.keepAliveTimeout = opts.keepAliveTimeoutMs;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** A port that is free on `host` right now (for "port 0" setups that must know the port before listening). */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createNetServer();
    s.once('error', reject);
    s.listen(0, host, () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => resolve(port));
    });
  });
}
