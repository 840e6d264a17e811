/**
 * Monthly quotas (route-level onRequest, after the rate limits): the app's quota headers on every
 * authenticated response, and 429 ERR_QUOTA_EXCEEDED on the media routes (scopes in `QUOTA_SCOPES`,
 * or `config.quota` set). Account management (apps, keys, usage, audit, webhooks) stays reachable so
 * an exhausted app can see why and raise its quota. Opt a route out with `config: { quota: false }`
 * or make it also check the export quota with `config: { quota: { exports: true } }`.
 */
import type { FastifyInstance, FastifyRequest, FastifyReply, HookHandlerDoneFunction } from 'fastify';
import fp from 'fastify-plugin';
import { QuotaGuard, exceededQuota, quotaExceededError, quotaHeaders, type QuotaKind } from '../usage/quota.js';
import type { ProcessMetrics } from '../usage/metrics.js';
import { routeScopes } from '../auth/scopes.js';
import { addAuthenticatedRouteHook, ROUTE_PHASE } from './route-hooks.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** `false`: the monthly quotas are not checked on this route; `{ exports: true }`: the export quota is checked too. */
    quota?: false | { exports?: boolean };
  }
}

/** Routes with these scopes are the metered product: monthly quotas are enforced on them. */
export const QUOTA_SCOPES: ReadonlySet<string> = new Set(['assets:read', 'assets:write', 'jobs:read', 'jobs:write']);

/** Options of the quota plugin and of {@link exportGuard}. */
export interface QuotaOptions {
  quotas: QuotaGuard;
  metrics: ProcessMetrics;
  now: () => number;
}

/** The quota plugin. */
export const quotaEnforcement = fp(
  async (app: FastifyInstance, opts: QuotaOptions) => {
    const { quotas, metrics, now } = opts;
    // Route phase `quotas`, on authenticated routes except those that opt out; whether the route
    // enforces, and which quotas, is read once from its config.
    addAuthenticatedRouteHook(app, ROUTE_PHASE.quotas, (route) => {
      const cfg = route.config;
      if (cfg?.quota === false) return null;
      const enforce = cfg?.quota !== undefined || routeScopes(cfg).some((s) => QUOTA_SCOPES.has(s));
      const kinds: QuotaKind[] = cfg?.quota?.exports ? ['requests', 'bytes', 'exports'] : ['requests', 'bytes'];
      const check = async (reply: FastifyReply, orgId: string, appId: string): Promise<void> => {
        const status = await quotas.status(orgId, appId);
        const headers = quotaHeaders(status, now());
        for (const [k, v] of Object.entries(headers)) reply.header(k, v);
        if (!enforce) return;
        const over = exceededQuota(status, kinds);
        if (over) {
          metrics.quotaExceeded.inc({ quota: over });
          throw quotaExceededError(status, over, now());
        }
      };
      return (req: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction) => {
        const principal = req.principal;
        // No quota set (as read within the refresh interval): no headers to send, nothing to refuse.
        if (!principal || quotas.unlimited(principal.orgId, principal.appId)) return done();
        check(reply, principal.orgId, principal.appId).then(() => done(), done);
      };
    });
  },
  { name: 'obscura-quotas' },
);

/**
 * The export-quota check for outputs no credential asked for (transform URLs have none for the route
 * hook): the processing service asks it before each export. Throws `ERR_QUOTA_EXCEEDED`.
 */
export function exportGuard(opts: QuotaOptions): (orgId: string, appId: string) => Promise<void> {
  return async (orgId, appId) => {
    const status = await opts.quotas.status(orgId, appId);
    const over = exceededQuota(status, ['exports', 'bytes']);
    if (over) {
      opts.metrics.quotaExceeded.inc({ quota: over });
      throw quotaExceededError(status, over, opts.now());
    }
  };
}
