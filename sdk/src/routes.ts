/**
 * Which SDK method covers each API operation (`METHOD /path` as in the OpenAPI document). The SDK's
 * test compares this table with `/docs/json` on a live server, so an endpoint added to the API
 * without an SDK method (or a method pointing nowhere) fails the build.
 */
export const API_OPERATIONS: Readonly<Record<string, string>> = Object.freeze({
  'GET /healthz': 'health',
  'GET /readyz': 'ready',
  'GET /v1/whoami': 'whoami',
  'GET /v1/operations': 'operations',
  'GET /v1/apps': 'apps.list',
  'POST /v1/apps': 'apps.create',
  'GET /v1/apps/{id}': 'apps.get',
  'PATCH /v1/apps/{id}': 'apps.update',
  'GET /v1/apps/{id}/keys': 'keys.list',
  'POST /v1/apps/{id}/keys': 'keys.create',
  'GET /v1/keys/{id}': 'keys.get',
  'POST /v1/keys/{id}/roll': 'keys.roll',
  'DELETE /v1/keys/{id}': 'keys.revoke',
  'POST /v1/apps/{id}/oauth-clients': 'oauth.createClient',
  'GET /v1/apps/{id}/oauth-clients': 'oauth.listClients',
  'DELETE /v1/oauth-clients/{id}': 'oauth.revokeClient',
  'POST /v1/oauth/token': 'oauth.token',
  'GET /.well-known/oauth-authorization-server': 'oauth.metadata',
  'GET /.well-known/jwks.json': 'oauth.jwks',
  'POST /v1/assets': 'assets.upload',
  'POST /v1/assets/upload-url': 'assets.createUploadUrl',
  'PUT /v1/uploads/direct/{id}': 'assets.putToUploadUrl',
  'POST /v1/assets/upload-url/{id}/complete': 'assets.putToUploadUrl',
  'GET /v1/assets': 'assets.list',
  'GET /v1/assets/{id}': 'assets.get',
  'DELETE /v1/assets/{id}': 'assets.delete',
  'POST /v1/assets/{id}/url': 'assets.signedUrl',
  'GET /v1/files/{id}': 'assets.fetchSignedUrl',
  'OPTIONS /v1/uploads': 'uploads.upload',
  'POST /v1/uploads': 'uploads.upload',
  'OPTIONS /v1/uploads/{id}': 'uploads.upload',
  'HEAD /v1/uploads/{id}': 'uploads.upload',
  'PATCH /v1/uploads/{id}': 'uploads.upload',
  'DELETE /v1/uploads/{id}': 'uploads.cancel',
  'POST /v1/process': 'processing.run',
  'POST /v1/jobs': 'jobs.create',
  'GET /v1/jobs': 'jobs.list',
  'GET /v1/jobs/{id}': 'jobs.get',
  'POST /v1/jobs/{id}/cancel': 'jobs.cancel',
  'POST /v1/webhooks': 'webhooks.create',
  'GET /v1/webhooks': 'webhooks.list',
  'GET /v1/webhooks/{id}': 'webhooks.get',
  'PATCH /v1/webhooks/{id}': 'webhooks.update',
  'DELETE /v1/webhooks/{id}': 'webhooks.delete',
  'POST /v1/webhooks/{id}/rotate-secret': 'webhooks.rotateSecret',
  'GET /v1/webhooks/{id}/deliveries': 'webhooks.deliveries',
  'POST /v1/apps/{id}/transform-keys': 'transforms.createKey',
  'GET /v1/apps/{id}/transform-keys': 'transforms.listKeys',
  'DELETE /v1/apps/{id}/transform-keys/{kid}': 'transforms.deleteKey',
  'GET /v1/apps/{id}/transform-presets': 'transforms.listPresets',
  'PUT /v1/apps/{id}/transform-presets/{name}': 'transforms.putPreset',
  'DELETE /v1/apps/{id}/transform-presets/{name}': 'transforms.deletePreset',
  'GET /t/{*}': 'node:buildTransformUrl',
  'GET /v1/usage': 'usage.get',
  'GET /v1/audit': 'audit.list',
});

/**
 * Operations the SDK deliberately does not wrap, with the reason. Console routes authenticate people
 * with session cookies and CSRF tokens (a browser UI), not API credentials.
 */
export const NOT_IN_SDK: Readonly<Record<string, string>> = Object.freeze({
  'GET /robots.txt': 'for crawlers',
  'POST /v1/setup': 'first-run setup with a one-time token from the data dir, used by `obscura init`, not by API clients',
  '/v1/console/': 'console sessions (cookies + CSRF) for the web console, not for API clients',
  'DELETE /v1/orgs/{id}': 'org erasure needs the console session of an owner and password, never an API credential (`obscura orgs erase` for operators)',
});
