/**
 * Strict CORS (app-level onRequest): preflights are answered here; `Access-Control-Allow-Origin`
 * reflects the Origin only when an active publishable key allows it (never `*`, never with
 * credentials). A browser-side relaxation only: the server-side wall is the per-key origin check in
 * `KeyVerifier`.
 */
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import cors from '@fastify/cors';
import type { DatabaseHandle } from '../db/database.js';

/** Request headers a browser may send cross-origin (tus 1.0 included: tus-js-client, Uppy). */
export const CORS_ALLOWED_HEADERS = [
  'Authorization', 'Content-Type', 'Prefer', 'Idempotency-Key', 'Obscura-End-User',
  'Tus-Resumable', 'Upload-Length', 'Upload-Offset', 'Upload-Metadata', 'Upload-Defer-Length', 'Upload-Concat', 'Upload-Checksum',
  'X-HTTP-Method-Override', 'X-Requested-With',
] as const;

/** Response headers a browser script may read cross-origin. */
export const CORS_EXPOSED_HEADERS = [
  'Location', 'Retry-After', 'X-Request-Id', 'RateLimit-Limit', 'RateLimit-Remaining', 'RateLimit-Reset',
  'Obscura-Quota-Limit', 'Obscura-Quota-Remaining', 'Obscura-Quota-Reset',
  'Upload-Offset', 'Upload-Length', 'Upload-Metadata', 'Upload-Expires', 'Upload-Defer-Length', 'Upload-Concat',
  'Tus-Resumable', 'Tus-Version', 'Tus-Extension', 'Tus-Max-Size', 'Tus-Checksum-Algorithm',
] as const;

/**
 * The origins some active publishable key allows, re-read after `ttlMs` (the key cache TTL, so a
 * revoked key's origin stops being reflected as fast as the key stops working). A browser-side
 * relaxation only: the server-side wall is the per-key origin check in `KeyVerifier`.
 */
export class BrowserOrigins {
  private origins = new Set<string>();
  private fetchedAt = -Infinity;
  private loading: Promise<void> | null = null;

  constructor(
    private readonly db: DatabaseHandle,
    private readonly opts: { ttlMs: number; now?: () => number },
  ) {}

  private now(): number {
    return this.opts.now ? this.opts.now() : Date.now();
  }

  private async refresh(): Promise<void> {
    const now = new Date(this.now());
    const rows = await this.db.system
      .selectFrom('api_keys')
      .select('allowed_origins')
      .where('kind', '=', 'publishable')
      .where('revoked_at', 'is', null)
      .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', now)]))
      .where((eb) => eb.or([eb('grace_ends_at', 'is', null), eb('grace_ends_at', '>', now)]))
      .execute();
    const next = new Set<string>();
    for (const r of rows) for (const o of r.allowed_origins) next.add(o);
    this.origins = next;
    this.fetchedAt = now.getTime();
  }

  /** True when `origin` (a serialised origin such as `https://shop.example`) may make CORS requests. */
  async allows(origin: string | undefined): Promise<boolean> {
    if (!origin || origin === 'null') return false;
    if (this.now() - this.fetchedAt >= this.opts.ttlMs) {
      if (!this.loading) this.loading = this.refresh().finally(() => (this.loading = null));
      try {
        await this.loading;
      } catch {
        // Database unreachable: keep answering from the last known set (requests fail at auth anyway).
      }
    }
    return this.origins.has(origin);
  }
}

/** The CORS plugin: origins from {@link BrowserOrigins}, our allowed and exposed headers. */
export const strictCors = fp(
  async (app: FastifyInstance, opts: { origins: BrowserOrigins }) => {
    await app.register(cors, {
      origin: async (origin: string | undefined) => opts.origins.allows(origin),
      credentials: false,
      methods: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'],
      allowedHeaders: [...CORS_ALLOWED_HEADERS],
      exposedHeaders: [...CORS_EXPOSED_HEADERS],
      maxAge: 600,
      strictPreflight: true,
    });
  },
  { name: 'obscura-cors' },
);
