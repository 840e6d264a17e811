/**
 * Route-level perimeter hooks, decided once per route at registration (issue 12, item 4).
 *
 * An app-level hook runs on every request and must ask `req.routeOptions` (a getter that builds a
 * fresh options object each time) whether it applies. A route-level hook is attached only to the
 * routes it applies to, with their config read once, here; a hook that cannot apply costs nothing.
 *
 * The phases keep the request order the app-level hooks had: the failed-auth throttle, then
 * authentication, then hooks a route declared itself, then the rate limits (the principal known),
 * the `Obscura-End-User` header and the quotas. Every route-level hook runs after every app-level
 * one (drain, security headers, shedding, CORS).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest, HookHandlerDoneFunction, RouteOptions } from 'fastify';

/** Where a route-level hook runs among the others (lower first). */
export const ROUTE_PHASE = { authFailures: 10, auth: 20, own: 25, rateLimits: 30, endUser: 40, quotas: 50 } as const;

/** A route-level onRequest hook: async, or a callback hook (no promise when it has nothing to wait for). */
export type RouteHook = ((req: FastifyRequest, reply: FastifyReply) => Promise<void>) | ((req: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction) => void);

const phases = new WeakMap<object, number>();

/**
 * For every route registered after this call, `hookFor(route)` decides once whether the route gets a
 * hook (null: none) and it is inserted among the route's onRequest hooks at `phase`.
 */
export function addRouteHook(app: FastifyInstance, phase: number, hookFor: (route: RouteOptions) => RouteHook | null): void {
  app.addHook('onRoute', (route) => {
    const hook = hookFor(route);
    if (!hook) return;
    phases.set(hook, phase);
    const existing = route.onRequest;
    const list: unknown[] = existing === undefined ? [] : Array.isArray(existing) ? [...existing] : [existing];
    // After every hook of this phase or an earlier one (a route's own hooks count as `own`).
    let at = list.length;
    while (at > 0 && (phases.get(list[at - 1] as object) ?? ROUTE_PHASE.own) > phase) at--;
    list.splice(at, 0, hook);
    route.onRequest = list as never;
  });
}

/** {@link addRouteHook} for the authenticated routes (`config.auth`) only. */
export function addAuthenticatedRouteHook(app: FastifyInstance, phase: number, hookFor: (route: RouteOptions) => RouteHook | null): void {
  addRouteHook(app, phase, (route) => (route.config?.auth ? hookFor(route) : null));
}
