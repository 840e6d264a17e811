/** Appending a route-level hook to every authenticated route registered after the plugin. */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

/**
 * Appends `hook` to the `onRequest` hooks of every authenticated route (`config.auth`) registered
 * after this call. Route-level hooks run after every app-level one (so the principal is known), in
 * the order the plugins that append them were registered.
 */
export function appendRouteHook(app: FastifyInstance, hook: (req: FastifyRequest, reply: FastifyReply) => Promise<void>): void {
  app.addHook('onRoute', (route) => {
    if (!route.config?.auth) return;
    const existing = route.onRequest;
    route.onRequest = existing === undefined ? [hook] : Array.isArray(existing) ? [...existing, hook] : [existing as never, hook];
  });
}
