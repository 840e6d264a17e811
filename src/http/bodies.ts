/**
 * Optional JSON bodies. A POST whose fields are all optional must work with no body at all (`curl -X
 * POST`), with an empty body sent as `application/json`, and with `{}` — one rule for every route
 * instead of a `Type.Optional` here and a 400 there (issue 9, item 14).
 *
 * - An empty `application/json` body parses as "no body" (Fastify's default parser refuses it).
 *   Non-empty bodies go through Fastify's own parser, which keeps its prototype-poisoning protection.
 * - Before validation, a missing body becomes `{}` when the route's body schema is an object, so
 *   the schema's defaults apply, and a route with required fields answers "Missing required property
 *   …", which names what to send (rather than "body is invalid (type)").
 * - Fastify's built-in `text/plain` parser is removed: no route takes text, and a JSON route sent text
 *   must answer 415 naming `application/json`, not a confusing type error.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify';

interface BodySchema {
  type?: string;
}

function isObjectSchema(schema: unknown): boolean {
  return (schema as BodySchema | undefined)?.type === 'object';
}

/** Installs the empty-JSON parser and the optional-body hook on `app` (before routes are added). */
export function installOptionalBodies(app: FastifyInstance): void {
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser(['application/json', 'text/plain']);
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (req, body, done) => {
    if (body === '' || (typeof body === 'string' && body.trim() === '')) return done(null, undefined);
    return parseJson(req, body as string, done);
  });
  // Only on routes whose body schema is an object, decided once at registration (issue 12, item 4:
  // an app-level hook ran on every GET too).
  const emptyBody = (req: FastifyRequest, _reply: FastifyReply, done: HookHandlerDoneFunction) => {
    if (req.body === undefined || req.body === null) req.body = {};
    done();
  };
  app.addHook('onRoute', (route) => {
    if (!isObjectSchema(route.schema?.body)) return;
    const existing = route.preValidation;
    route.preValidation = existing === undefined ? [emptyBody] : Array.isArray(existing) ? [emptyBody, ...existing] : [emptyBody, existing as never];
  });
}
