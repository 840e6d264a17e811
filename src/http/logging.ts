/**
 * Log hygiene: pino redacts credentials wherever they appear in a logged object, and the request
 * serializer strips signatures and tokens out of URLs (signed download and transform URLs carry them).
 */
import type { FastifyRequest } from 'fastify';

export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["x-api-key"]',
  'req.headers["proxy-authorization"]',
  'res.headers["set-cookie"]',
  'headers.authorization',
  'headers.cookie',
  '*.authorization',
  '*.password',
  '*.secret',
  '*.client_secret',
  '*.token',
];

const SECRET_PARAMS = /([?&](?:sig|signature|token|access_token|key|secret|client_secret|code|X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token)=)[^&#]*/gi;

/** Removes secrets from a URL before it is logged: query signatures/tokens and `/t/<signature>/` paths. */
export function redactUrl(url: string): string {
  return url.replace(SECRET_PARAMS, '$1[redacted]').replace(/^\/t\/[^/]+\//, '/t/[redacted]/').replace(/obs_(sk|pk|rk)_[0-9A-Za-z]+/g, 'obs_$1_[redacted]');
}

export const logSerializers = {
  req(req: FastifyRequest) {
    return { id: req.id, method: req.method, url: redactUrl(req.url), remoteAddress: req.ip };
  },
};
