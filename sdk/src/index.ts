/**
 * `@obscura/sdk`: the typed client of the Obscura API, for browsers and Node.js.
 *
 * This entry is browser-safe: it uses only `fetch`, `URL`, WebCrypto (`crypto.randomUUID`) and
 * tus-js-client (whose bundler-selected build is XHR-based in browsers). Node-only helpers (webhook
 * verification with node:crypto, signed transform URLs, files on disk) are in `@obscura/sdk/node`.
 *
 * Security: the credential is kept in memory only (a private field), sent only to `baseUrl`'s origin,
 * never written to disk, `localStorage` or cookies, and never logged. In a browser, use a publishable
 * key (`obs_pk_…`): the client refuses secret keys and client credentials there.
 */
export { Obscura, AppsResource, KeysResource, OAuthResource, AssetsResource, UploadsResource, AuditResource, withProgress, readAll } from './client.js';
export type { ObscuraOptions, CallOptions, Download, DownloadOptions, AuditVerification } from './client.js';
export { JobsResource, ProcessResource, WebhooksResource, UsageResource, TransformResource } from './processing.js';
export { OrgsResource, type OrgExport, type ExportStatus, type ExportWaitOptions } from './client.js';
export type {
  Job,
  JobListQuery,
  JobStatus,
  ProcessSource,
  ProcessRequest,
  ProcessedImage,
  WaitOptions,
  WebhookEvent,
  WebhookEndpoint,
  WebhookEndpointInput,
  WebhookWithSecret,
  WebhookDelivery,
  UsageFigures,
  UsageReport,
  UsageDays,
  DataReport,
  TransformKey,
  TransformKeyWithSecret,
  TransformPreset,
} from './processing.js';
export { ObscuraError, isObscuraError } from './errors.js';
export { LicensesResource } from './licenses.js';
export type { SessionLicenceReply, OfflineLicenceInput, OfflineLicenceReply, LicenceJwk } from './licenses.js';
export type { ClientErrorCode, Problem } from './errors.js';
export type { ClientCredentials, CredentialOptions, TokenResponse } from './auth.js';
export type { FetchLike, RetryOptions } from './http.js';
export { parseRetryAfter, backoffDelay, DEFAULT_RETRY } from './http.js';
export { ASSET_ID_HEADER } from './tus.js';
export { API_OPERATIONS, NOT_IN_SDK } from './routes.js';
export {
  verifyLicence,
  armourLicence,
  dearmourLicence,
  startLicenceSession,
  sendTelemetry,
  fetchLicenceKeys,
  LicenceError,
  LicenceRequestError,
  LICENCE_ALGORITHMS,
  LICENCE_FEATURES,
  LICENCE_TYP,
  MAX_TELEMETRY_EVENTS,
} from './licence.js';
export type { Licence, LicenceErrorCode, LicenceAlgorithm, VerifyLicenceOptions, StartLicenceSessionOptions, LicenceSession, TelemetryEvent, SendTelemetryOptions } from './licence.js';
export { eachItem, allItems, MAX_PAGE_LIMIT } from './pages.js';
export type { UploadSource, TransferProgress, TusUploadOptions, TusUploadResult } from './tus.js';
export type * from './types.js';
