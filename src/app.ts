/**
 * `buildApp(config, deps)`: assembles the HTTP application from already-built adapters. It never
 * listens and never reads the environment (fastify's testing guide); `main.ts` does both.
 */
import { randomUUID } from 'node:crypto';
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { Config } from './config/index.js';
import type { DatabaseHandle } from './db/database.js';
import type { MasterKeys } from './crypto/master.js';
import type { BlobStore } from './assets/stores/types.js';
import { Keyring } from './crypto/keyring.js';
import { openAuditKey } from './audit/keys.js';
import { ErasedOrgs } from './erasure/erasure.js';
import { UrlSigner } from './assets/signing.js';
import { assetRoutes } from './http/routes/assets.js';
import { ResolvedDownloads } from './assets/downloads.js';
import { processRoutes } from './http/routes/process.js';
import { jobRoutes } from './http/routes/jobs.js';
import { webhookRoutes } from './http/routes/webhooks.js';
import { transformRoutes } from './http/routes/transform.js';
import { createProcessingService } from './processing/service.js';
import { videoProbeFor } from './media/video/probe.js';
import { JobRuntime } from './jobs/runtime.js';
import { uploadRoutes } from './http/routes/uploads.js';
import { hkdfSync } from 'node:crypto';
import { KeyVerifier } from './auth/keys.js';
import { FailureTracker } from './auth/failures.js';
import { installProblemHandlers, frameworkProblem, PROBLEM_SCHEMA } from './http/problem.js';
import { credentialInMemory, declareRouteScopes, installAuth, type TokenVerifier } from './http/auth.js';
import { installOptionalBodies } from './http/bodies.js';
import { installCursors } from './http/pagination.js';
import { installDrain, type Drain } from './http/drain.js';
import { addProblemExamples } from './http/openapi-examples.js';
import { addOperationSchemas } from './http/openapi-operations.js';
import { logSerializers, REDACT_PATHS } from './http/logging.js';
import { healthRoutes } from './http/routes/health.js';
import { operationRoutes } from './http/routes/operations.js';
import { setupRoutes, type FirstRunDeps } from './http/routes/setup.js';
import { appRoutes } from './http/routes/apps.js';
import { keyRoutes } from './http/routes/keys.js';
import { auditRoutes } from './http/routes/audit.js';
import { serverTlsOptions } from './perimeter/tls.js';
import { HELMET_OPTIONS, securityHeaders } from './perimeter/headers.js';
import { loadShedding, slowClientTimeouts } from './perimeter/shedding.js';
import { BrowserOrigins, strictCors } from './perimeter/cors.js';
import { rateLimits } from './perimeter/rate-limits.js';
import { metering } from './perimeter/metering.js';
import { exportGuard, quotaEnforcement } from './perimeter/quotas.js';
import { UsageMeter } from './usage/meter.js';
import { QuotaGuard } from './usage/quota.js';
import { createProcessMetrics, type ProcessMetrics } from './usage/metrics.js';
import { usageRoutes } from './http/routes/usage.js';
import { dataReportRoutes } from './http/routes/data-report.js';
import { exportRoutes } from './http/routes/export.js';
import { consoleRoutes } from './http/routes/console.js';
import { sessionVerifier } from './http/session-auth.js';
import { consoleUiRoutes } from './http/routes/console-ui.js';
import type { ResetMailer } from './auth/console.js';
import { oauthRoutes } from './http/routes/oauth.js';
import { licensingRoutes } from './http/routes/licensing.js';
import { LicenceKeyStore } from './licensing/keys.js';
import { LicensingService } from './licensing/service.js';

export interface AppDeps {
  db: DatabaseHandle;
  /** The master key(s) wrapping tenant keys and server signing keys. */
  masterKeys: MasterKeys;
  /** Where encrypted blobs live (fs or S3). */
  store: BlobStore;
  /** Wall clock, injectable for expiry tests. */
  now?: () => number;
  /** Extra bearer-token verifier (OAuth2 access tokens). */
  tokens?: TokenVerifier;
  /** `false` silences logging (tests); a stream receives the (redacted) JSON log lines instead of stdout. */
  logger?: false | { stream: NodeJS.WritableStream; level?: string };
  /** HTTPS options when TLS is terminated natively. */
  https?: { key: Buffer; cert: Buffer };
  /** UNSAFE, tests/development only: remote-URL policy overrides (e.g. `unsafeTestAllow` for a 127.0.0.1 test server). */
  remote?: import('./remote/remote.js').RemotePolicy;
  /** First run: the one-time setup gate while the database has no org (`serve` creates it). */
  firstRun?: FirstRunDeps;
  /**
   * Delivers console password-reset tokens (default: log that a reset was requested, send nothing,
   * never log the token). Operators wire SMTP or a transactional mail API here.
   */
  resetMailer?: ResetMailer;
}

/** What the perimeter plugins share, and what `main.ts` needs to start the side listeners. */
export interface Perimeter {
  readonly meter: UsageMeter;
  readonly quotas: QuotaGuard;
  readonly metrics: ProcessMetrics;
  readonly origins: BrowserOrigins;
  /** Throws `ERR_QUOTA_EXCEEDED` when the app's export (or byte) quota for this month is used up. */
  readonly exportAllowed: (orgId: string, appId: string) => Promise<void>;
}

export interface BuiltApp {
  app: FastifyInstance;
  keys: KeyVerifier;
  /** Usage meter, quotas, metrics and CORS origins (main.ts starts the metrics/redirect listeners from it). */
  perimeter: Perimeter;
  keyring: Keyring;
  signer: UrlSigner;
  /** Graceful shutdown: refuse new requests, let running ones finish (src/http/drain.ts). */
  drain: Drain;
  /** Licence sessions, offline licences and device telemetry (src/licensing/). */
  licensing: LicensingService;
}

export const API_VERSION = '0.1.0';

/** Registers the perimeter plugins (docs/architecture.md, "A request, from route to blob"). */
async function installPerimeter(app: FastifyInstance, config: Config, deps: AppDeps, keys: KeyVerifier): Promise<Perimeter> {
  const now = deps.now ?? Date.now;
  const metrics = createProcessMetrics();
  const meter = new UsageMeter({
    db: deps.db,
    masterKey: deps.masterKeys.current,
    now: deps.now,
    onError: (err) => {
      metrics.usageFlushFailures.inc();
      app.log.warn({ err }, 'usage flush failed; counts kept for the next attempt');
    },
    onRecord: (e) => {
      if (e.exports) metrics.exports.inc(e.exports);
      if (e.processingMs) metrics.processingSeconds.inc(e.processingMs / 1000);
    },
  });
  app.addHook('onClose', async () => {
    await meter.close();
  });
  // Settings and origins are cached exactly as long as keys are (the same staleness promise).
  const quotas = new QuotaGuard(deps.db, meter, { ttlMs: config.auth.keyCacheTtlMs, now: deps.now });
  const origins = new BrowserOrigins(deps.db, { ttlMs: config.auth.keyCacheTtlMs, now: deps.now });
  await app.register(slowClientTimeouts, { settings: config.perimeter });
  await app.register(loadShedding, { settings: config.perimeter, metrics });
  await app.register(strictCors, { origins });
  await app.register(rateLimits, { settings: config.perimeter, metrics, credentialInMemory: credentialInMemory(keys) });
  await app.register(metering, { meter, metrics, metricsToken: config.perimeter.metricsToken });
  await app.register(quotaEnforcement, { quotas, metrics, now });
  return { meter, quotas, metrics, origins, exportAllowed: exportGuard({ quotas, metrics, now }) };
}

export async function buildApp(config: Config, deps: AppDeps): Promise<BuiltApp> {
  const logger: FastifyServerOptions['logger'] =
    deps.logger === false
      ? false
      : { level: deps.logger?.level ?? config.log.level, redact: { paths: REDACT_PATHS, censor: '[redacted]' }, serializers: logSerializers, ...(deps.logger?.stream ? { stream: deps.logger.stream } : {}) };
  const app = Fastify({
    logger,
    // Never trust a client-supplied request id; generate our own and return it.
    genReqId: () => randomUUID(),
    requestIdHeader: false,
    trustProxy: config.http.trustProxy.length ? [...config.http.trustProxy] : false,
    bodyLimit: config.http.bodyLimit,
    // Slow clients must not hold sockets forever (slowloris): bound headers and whole requests.
    requestTimeout: config.perimeter.requestTimeoutMs,
    connectionTimeout: 0,
    keepAliveTimeout: config.perimeter.keepAliveTimeoutMs,
    return503OnClosing: true,
    // Router errors (malformed percent-encoding, an over-long path parameter) are problem+json too.
    frameworkErrors: frameworkProblem,
    ajv: {
      // Reject unknown properties instead of silently dropping them (no mass assignment, and the caller
      // learns about their typo).
      customOptions: { removeAdditional: false, allErrors: false, coerceTypes: 'array', useDefaults: true, allowUnionTypes: true },
      plugins: [(await import('ajv-formats')).default as never],
    },
    // TLS >= 1.2 with forward-secret AEAD suites only (src/perimeter/tls.ts).
    ...(deps.https ? { https: serverTlsOptions(deps.https) } : {}),
  }) as unknown as FastifyInstance;

  app.addSchema(PROBLEM_SCHEMA);
  installProblemHandlers(app);
  // First hook of all: while shutting down, new requests are refused before any other work.
  const drain = installDrain(app);
  installOptionalBodies(app);
  // helmet's headers, computed once at boot, and X-Request-Id (src/perimeter/headers.ts).
  await app.register(securityHeaders, { helmet: HELMET_OPTIONS });

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Obscura API',
        version: API_VERSION,
        description: 'Self-hosted, security-first media processing. Errors are RFC 9457 problem+json with a stable `code`.',
      },
      servers: [{ url: config.publicUrl }],
      components: {
        securitySchemes: {
          bearerAuth: { type: 'http', scheme: 'bearer', description: 'An API key (obs_sk_…, obs_rk_…, obs_pk_…) or an OAuth2 access token.' },
          consoleSession: {
            type: 'apiKey',
            in: 'cookie',
            name: '__Host-obscura_session',
            description: "The web console's session cookie (POST /v1/console/login), acting with the member's role. State-changing methods also need the session's X-CSRF-Token (GET /v1/console/session). Ignored when Authorization is sent.",
          },
        },
      },
    },
    // Each error response gets an example with a code that route really returns (src/http/openapi-examples.ts).
    transformObject: (doc) => addOperationSchemas(addProblemExamples((doc as { openapiObject: Record<string, any> }).openapiObject)),
    refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => String(json.$id ?? `def-${i}`) },
  });
  await app.register(swaggerUi, {
    routePrefix: '/docs',
    // Assets are served from the installed package: no CDN, nothing fetched from elsewhere.
    staticCSP: true,
    uiConfig: { deepLinking: false },
  });

  // Before any route: every authenticated route must declare its scopes (published in OpenAPI).
  declareRouteScopes(app);
  // The perimeter (src/perimeter/), one plugin per concern, in request order. First: their app-level
  // onRequest hooks (shedding, CORS, failed-auth throttle) must run before auth's, and their onRoute
  // hooks must see every route registered below.
  const keys = new KeyVerifier(deps.db, { ttlMs: config.auth.keyCacheTtlMs, now: deps.now });
  const perimeter = await installPerimeter(app, config, deps, keys);
  const failures = new FailureTracker(deps.db, { threshold: config.auth.burstThreshold, windowMs: config.auth.burstWindowMs, now: deps.now });
  // Access tokens are stateless: those of an org whose erasure has begun are refused (within the
  // key-cache bound on every node), as its API keys are by their deletion.
  const erasedOrgs = new ErasedOrgs(deps.db, { ttlMs: config.auth.keyCacheTtlMs, now: deps.now });
  // Our own access tokens' verifier comes from the OAuth routes, which must be registered after
  // installAuth (its hook reaches only routes registered after it; it refuses to boot otherwise).
  let verifyToken: TokenVerifier | undefined = deps.tokens;
  const tokens: TokenVerifier = async (token, req) => {
    const principal = await verifyToken!(token, req);
    await erasedOrgs.assertLive(principal.orgId);
    return principal;
  };
  // Console session cookies on /v1/* (with CSRF on unsafe methods), acting with the member's role.
  const authDeps = { keys, failures, tokens, sessions: sessionVerifier({ db: deps.db, now: deps.now, publicUrl: config.publicUrl }) };
  installAuth(app, authDeps);
  const oauth = oauthRoutes(app, config, { db: deps.db, masterKeys: deps.masterKeys, failures, now: deps.now });
  verifyToken ??= oauth.tokens;
  const keyring = new Keyring(deps.db, deps.masterKeys, { ttlMs: config.auth.keyCacheTtlMs, now: deps.now });
  // Uploaded videos are probed (ffprobe) before they are stored (issue 11, item 2).
  const videoProbe = videoProbeFor(config.video);
  await openAuditKey(deps.db, deps.masterKeys); // every audit entry is keyed (src/audit/keys.ts); idempotent
  const signer = new UrlSigner(deps.db, deps.masterKeys);
  // Direct-upload URLs (local store) are short-lived; a key derived from the master key is enough.
  const directUploadKey = Buffer.from(hkdfSync('sha256', deps.masterKeys.current, Buffer.alloc(0), 'obscura/direct-upload/v1', 32));
  // Every list pages with opaque, tamper-safe cursors (src/http/pagination.ts).
  installCursors(app, deps.masterKeys.current);

  healthRoutes(app, deps.db);
  consoleUiRoutes(app);
  operationRoutes(app, config.video);
  setupRoutes(app, { db: deps.db, firstRun: deps.firstRun });
  let appChanged: (orgId: string, appId: string) => void = () => undefined;
  appRoutes(app, deps.db, (orgId, appId) => appChanged(orgId, appId), config.uploads.metadataPolicy);
  keyRoutes(app, deps.db, keys);
  auditRoutes(app, deps.db, deps.masterKeys);
  usageRoutes(app, { db: deps.db, meter: perimeter.meter, now: deps.now });
  dataReportRoutes(app, { db: deps.db, now: deps.now, metadataPolicy: config.uploads.metadataPolicy });
  let orgGone: (orgId: string) => void = () => undefined;
  await app.register(consoleRoutes, { publicUrl: config.publicUrl, db: deps.db, masterKeys: deps.masterKeys, store: deps.store, now: deps.now, resetMailer: deps.resetMailer, orgGone: (orgId: string) => orgGone(orgId) });
  // Per-process caches of asset rows and decrypted sources forget a deleted asset at once (other
  // nodes within the key-cache bound), and an erased org's entries with its keys (issue 12, item 3).
  const downloadCache = new ResolvedDownloads({ ttlMs: config.auth.keyCacheTtlMs, maxBytes: config.downloads.cacheBytes });
  const assetGone = (orgId: string, assetId: string): void => {
    downloadCache.forget(assetId);
    processing.transformKeys.forgetAsset(orgId, assetId);
    processing.sources.forgetAsset(orgId, assetId);
  };
  orgGone = (orgId: string): void => {
    downloadCache.forgetOrg(orgId);
    processing.transformKeys.invalidate();
    processing.sources.clear();
    // Not keyring.forget(): it zeroes every org's cached keys, which other orgs' streams may be using;
    // the erased org's key rows are gone, so its cached keys lapse within the key-cache bound.
  };
  // An app's settings changed on this node (require_authorized_urls): its cached downloads go at once.
  appChanged = (_orgId: string, appId: string): void => {
    downloadCache.forgetApp(appId);
    processing.transformKeys.invalidate();
  };
  assetRoutes(app, { db: deps.db, store: deps.store, keyring, signer, auth: authDeps, config, directUploadKey, now: deps.now, maxInputPixels: config.media.maxInputPixels, metadataPolicy: config.uploads.metadataPolicy, videoProbe, downloadCache, assetGone });
  // The processing surface: one processing service and one job queue per process, shared by the
  // sync route, jobs, webhooks and transform URLs (and by the workers when this process runs them).
  const processing = createProcessingService({ db: deps.db, store: deps.store, keyring, masterKeys: deps.masterKeys, config, now: deps.now, remote: deps.remote, meter: perimeter.meter, exportAllowed: perimeter.exportAllowed });
  const runtime = new JobRuntime({ processing, config, masterKeys: deps.masterKeys });
  app.addHook('onClose', async () => {
    await runtime.close();
  });
  processRoutes(app, processing, runtime);
  jobRoutes(app, processing, runtime);
  webhookRoutes(app, runtime);
  // Tenant export (issue 14, item 4): queued on the runtime, served through signed URLs.
  exportRoutes(app, { db: deps.db, store: deps.store, keyring, signer, runtime, publicUrl: config.publicUrl, downloads: config.downloads, ttlSeconds: config.backup.exportTtlSeconds, now: deps.now });
  transformRoutes(app, processing, authDeps);
  uploadRoutes(app, { db: deps.db, store: deps.store, keyring, signer, auth: authDeps, config, directUploadKey, now: deps.now, maxInputPixels: config.media.maxInputPixels, metadataPolicy: config.uploads.metadataPolicy, videoProbe });
  // On-device processing: licence sessions, offline licences, telemetry into the same meter (issue 15).
  const licensing = new LicensingService({ db: deps.db, keys: new LicenceKeyStore(deps.db, deps.masterKeys, deps.now), settings: config.licensing, issuer: config.publicUrl, now: deps.now, keysTtlMs: config.auth.keyCacheTtlMs });
  licensingRoutes(app, { licensing, meter: perimeter.meter });

  return { app, keys, keyring, signer, perimeter, drain, licensing };
}
