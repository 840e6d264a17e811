/**
 * Tenant export (issue 14, item 4; docs/export.md): `POST /v1/orgs/{id}/export` queues an export of
 * everything the org owns, `GET /v1/orgs/{id}/exports/{export_id}` polls it and, once it is ready,
 * hands out a signed URL, and `GET /v1/exports/{export_id}/archive?exp&kid&sig` serves the decrypted
 * archive through that URL. The work runs on the durable queue (`exportQueues`, registered by the
 * composition root beside the other workers); the archive's records are the API's own list answers
 * (`exportRecords`, built from the same list functions and mappers as the list routes).
 *
 * Who may ask: a credential holding every scope whose data the archive contains — `apps:read`,
 * `keys:manage`, `assets:read`, `jobs:read`, `webhooks:manage`, `audit:read`, `usage:read` — that is
 * an owner's or admin's console session (with its CSRF token on the POST), or a secret/restricted key
 * or access token granted all of them. A developer (no `audit:read`) or a viewer cannot; publishable
 * keys never can.
 */
import type { FastifyInstance } from 'fastify';
import { PassThrough } from 'node:stream';
import { Type, type Static } from 'typebox';
import type { DatabaseHandle } from '../../db/database.js';
import type { BlobStore } from '../../assets/stores/types.js';
import type { MetadataPolicy } from '../../assets/retention.js';
import type { Keyring } from '../../crypto/keyring.js';
import type { UrlSigner } from '../../assets/signing.js';
import type { Scope } from '../../auth/scopes.js';
import { notFound } from '../../errors.js';
import { listApps } from '../../tenants/index.js';
import { listMembers } from '../../tenants/members.js';
import { listKeys } from '../../auth/keys.js';
import { listAudit } from '../../audit/log.js';
import { usageReport } from '../../usage/report.js';
import { listEndpoints } from '../../jobs/webhooks.js';
import { QUEUES } from '../../jobs/boss.js';
import type { JobRuntime } from '../../jobs/runtime.js';
import type { ExtraQueue } from '../../jobs/worker.js';
import type { Page, PageRequest } from '../../db/pagination.js';
import { expireExport, failExport, getExport, openExportDownload, requestExport, runExport, type ExportDeps, type ExportRecords, type OrgExport } from '../../backup/export.js';
import { principalOf, SERVER_CREDENTIALS } from '../auth.js';
import { out as appOut } from './apps.js';
import { out as keyOut } from './keys.js';
import { out as webhookOut } from './webhooks.js';
import { out as memberOut } from './console-members.js';
import { auditOut } from './audit.js';
import { usageOut } from './usage.js';
import { assetOut } from './assets.js';
import { DateTime, Uuid, bearer, ctxOf, errorResponses } from './common.js';

/** Every scope whose data the archive holds (see the module comment). */
export const EXPORT_SCOPES: readonly Scope[] = ['apps:read', 'keys:manage', 'assets:read', 'jobs:read', 'webhooks:manage', 'audit:read', 'usage:read'];

/** Rows per page while reading records for an archive. */
const PAGE = 200;

/** Every item of a keyset-paginated list, one page (one short transaction) at a time. */
async function* paged<T>(read: (page: PageRequest) => Promise<Page<T>>): AsyncIterable<T> {
  let after: readonly string[] | null = null;
  for (;;) {
    const page = await read({ limit: PAGE, after });
    yield* page.items;
    if (!page.next) return;
    after = page.next;
  }
}

/**
 * The archive's records, in the API's shapes, read with the list routes' own functions. Keys and
 * webhook endpoints are listed per app (their routes are per app); usage is one report per month.
 */
export function exportRecords(deps: { db: DatabaseHandle; runtime: JobRuntime; defaultMetadataPolicy?: MetadataPolicy | undefined }): ExportRecords {
  const { db } = deps;
  const apps = (orgId: string) => paged((page) => db.withTenant(orgId, (trx) => listApps(trx, orgId, page)));
  return {
    asset: assetOut,
    sections: [
      { name: 'apps', records: async function* (orgId) {
        for await (const a of apps(orgId)) yield appOut(a, deps.defaultMetadataPolicy);
      } },
      { name: 'keys', records: async function* (orgId) {
        for await (const a of apps(orgId)) for await (const k of paged((page) => db.withTenant(orgId, (trx) => listKeys(trx, orgId, a.id, page)))) yield keyOut(k);
      } },
      { name: 'members', records: async function* (orgId) {
        for (const m of await db.withTenant(orgId, (trx) => listMembers(trx, orgId))) yield memberOut(m);
      } },
      { name: 'jobs', records: async function* (orgId) {
        yield* paged((page) => deps.runtime.jobs.list(orgId, {}, page));
      } },
      { name: 'webhooks', records: async function* (orgId) {
        for await (const a of apps(orgId)) for await (const e of paged((page) => listEndpoints(deps.runtime.webhookDeps, orgId, a.id, page))) yield webhookOut(e);
      } },
      { name: 'usage', records: async function* (orgId) {
        const months = await db.withTenant(orgId, (trx) => trx.selectFrom('usage_counters').select('month').distinct().where('org_id', '=', orgId).orderBy('month').execute());
        for (const { month } of months) yield usageOut(month, await db.withTenant(orgId, (trx) => usageReport(trx, orgId, month)));
      } },
      { name: 'audit', records: async function* (orgId) {
        for await (const e of paged((page) => db.withTenant(orgId, (trx) => listAudit(trx, orgId, page)))) yield auditOut(e);
      } },
    ],
  };
}

/** pg-boss options of an export attempt: long, heartbeating, retried twice. */
const SEND = { expireInSeconds: 6 * 3600, heartbeatSeconds: 30, retryLimit: 2, retryDelay: 10, retryBackoff: true } as const;

/**
 * The export queues for the workers of a process: writing an archive (and, once written, a job
 * delayed to its expiry that deletes it), and the dead letters (attempts that timed out).
 */
export function exportQueues(deps: Omit<ExportDeps, 'ttlSeconds'> & { ttlSeconds: number; runtime: JobRuntime; defaultMetadataPolicy?: MetadataPolicy | undefined }): ExtraQueue[] {
  const records = exportRecords({ db: deps.db, runtime: deps.runtime, defaultMetadataPolicy: deps.defaultMetadataPolicy });
  const now = () => deps.now?.() ?? Date.now();
  return [
    {
      queue: QUEUES.orgExport,
      concurrency: 1,
      async handle(ref, job) {
        const expiresAt = await runExport(deps, records, { orgId: ref.org, id: ref.id }, { lastAttempt: job.lastAttempt });
        const boss = await deps.runtime.boss();
        if (expiresAt) {
          await boss.send(QUEUES.orgExport, { org: ref.org, id: ref.id }, { startAfter: expiresAt, retryLimit: 5, retryDelay: 60, retryBackoff: true });
          return;
        }
        // Already final: this is the delayed expiry job (or a repeat of a finished attempt).
        if (await expireExport(deps, ref.org, ref.id)) return;
        const e = await getExport(deps, ref.org, ref.id).catch(() => null);
        // Woken early (clocks of two nodes disagree): wait for the expiry again.
        if (e?.status === 'succeeded' && e.expiresAt && new Date(e.expiresAt).getTime() > now()) {
          await boss.send(QUEUES.orgExport, { org: ref.org, id: ref.id }, { startAfter: new Date(e.expiresAt), retryLimit: 5, retryDelay: 60, retryBackoff: true });
        }
      },
    },
    {
      queue: QUEUES.orgExportDead,
      concurrency: 1,
      handle: (ref) => failExport(deps, ref.org, ref.id, 'ERR_JOB_TIMEOUT', 'The export did not finish in time, including retries.'),
    },
  ];
}

const OrgParams = Type.Object({ id: Uuid }, { additionalProperties: false });
const ExportId = Type.String({ pattern: '^exp_[0-9A-Za-z]{22}$', description: 'An export id.', examples: ['exp_4Yq0bW2nR8sLkT1vZc9XaQ'] });
const ExportParams = Type.Object({ id: Uuid, export_id: ExportId }, { additionalProperties: false });
const ArchiveParams = Type.Object({ export_id: ExportId }, { additionalProperties: false });
const SignedQuery = Type.Object({ exp: Type.Optional(Type.String()), kid: Type.Optional(Type.String()), sig: Type.Optional(Type.String()), dl: Type.Optional(Type.Literal('1')) }, { additionalProperties: false });
const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(t: T) => Type.Union([t, Type.Null()]);

const ExportSchema = Type.Object(
  {
    id: ExportId,
    org_id: Uuid,
    status: Type.Union(['queued', 'running', 'succeeded', 'failed', 'expired'].map((s) => Type.Literal(s)), { description: '`succeeded`: ready to download until `expires_at`; `expired`: deleted.' }),
    requested_by: Type.Object({ type: Type.String(), id: Type.Optional(Type.String()) }, { additionalProperties: false }),
    size: Nullable(Type.Integer({ description: 'Bytes of the archive (a tar file).' })),
    sha256: Nullable(Type.String({ description: "SHA-256 (hex) of the archive's bytes." })),
    counts: Nullable(Type.Record(Type.String(), Type.Integer(), { description: 'Records per kind, and `media` files.' })),
    attempts: Type.Integer(),
    error: Nullable(Type.Object({ code: Type.String(), message: Type.String() }, { additionalProperties: false })),
    created_at: DateTime,
    started_at: Nullable(DateTime),
    finished_at: Nullable(DateTime),
    expires_at: Nullable(DateTime),
    download_url: Nullable(Type.String({ description: 'Signed URL of the archive while it is ready (no credential needed; expires at `download_url_expires_at`, never after the export). Ask again for a fresh one.' })),
    download_url_expires_at: Nullable(DateTime),
  },
  { additionalProperties: false },
);

/** What the export routes need. */
export interface ExportRouteDeps {
  db: DatabaseHandle;
  store: BlobStore;
  keyring: Keyring;
  signer: UrlSigner;
  runtime: JobRuntime;
  publicUrl: string;
  /** `OBSCURA_URL_TTL_SECONDS` / `OBSCURA_URL_MAX_TTL_SECONDS`. */
  downloads: { defaultTtlSeconds: number; maxTtlSeconds: number };
  ttlSeconds: number;
  now?: (() => number) | undefined;
}

export function exportRoutes(app: FastifyInstance, deps: ExportRouteDeps): void {
  const now = () => deps.now?.() ?? Date.now();
  const view = async (e: OrgExport) => {
    let url: string | null = null;
    let urlExpires: string | null = null;
    if (e.status === 'succeeded' && e.expiresAt) {
      const nowS = Math.floor(now() / 1000);
      // A link never outlives the export it names.
      const exp = Math.min(nowS + Math.min(deps.downloads.defaultTtlSeconds, deps.downloads.maxTtlSeconds), Math.floor(new Date(e.expiresAt).getTime() / 1000));
      // The signed name is the export id, which no asset can have: a signature for one never opens the other.
      url = `${deps.publicUrl}/v1/exports/${e.id}/archive?${await deps.signer.sign({ assetId: e.id, exp, disposition: 'attachment' })}`;
      urlExpires = new Date(exp * 1000).toISOString();
    }
    return {
      id: e.id,
      org_id: e.orgId,
      status: e.status,
      requested_by: e.requestedBy,
      size: e.size,
      sha256: e.sha256,
      counts: e.counts,
      attempts: e.attempts,
      error: e.error,
      created_at: e.createdAt,
      started_at: e.startedAt,
      finished_at: e.finishedAt,
      expires_at: e.expiresAt,
      download_url: url,
      download_url_expires_at: urlExpires,
    };
  };
  const exportDeps = { db: deps.db, store: deps.store, keyring: deps.keyring, now: deps.now, ttlSeconds: deps.ttlSeconds };

  app.post<{ Params: Static<typeof OrgParams> }>('/v1/orgs/:id/export', {
    config: { auth: true, scopes: EXPORT_SCOPES, keyKinds: SERVER_CREDENTIALS, quota: false },
    schema: {
      tags: ['orgs'],
      summary: 'Export everything the org owns (GDPR access and portability): one archive of its records and decrypted media, built in the background',
      description:
        "Queues an export (one at a time per org) and answers 202 with it; poll `GET /v1/orgs/{id}/exports/{export_id}` (the `Location` header) until `status` is `succeeded`, then download `download_url`. The archive is a tar file whose layout docs/export.md describes: the org's records as JSON lines (apps, keys without secrets, members, assets with their labels and legal hold, jobs, webhooks without secrets, usage, audit) and every asset's original bytes. It is stored encrypted under the org's key and deleted after OBSCURA_EXPORT_TTL_SECONDS. Console sessions: owner or admin, with X-CSRF-Token.",
      security: bearer,
      params: OrgParams,
      response: { 202: ExportSchema, ...errorResponses({ 409: 'An export of this org is already queued or running (ERR_EXPORT_IN_PROGRESS; details.export_id names it).' }) },
    },
    handler: async (req, reply) => {
      const p = principalOf(req);
      // Another org's id is the same answer as one that does not exist.
      if (req.params.id !== p.orgId) throw notFound('org');
      const e = await requestExport(exportDeps, p.orgId, ctxOf(req));
      try {
        const boss = await deps.runtime.boss();
        await boss.send(QUEUES.orgExport, { org: p.orgId, id: e.id }, SEND);
      } catch (err) {
        // Not queued: the export must not block the next request as "in progress".
        await failExport(exportDeps, p.orgId, e.id, 'ERR_UNAVAILABLE', 'The export could not be queued; ask again.').catch(() => undefined);
        throw err;
      }
      reply.header('Location', `/v1/orgs/${p.orgId}/exports/${e.id}`);
      return reply.code(202).send(await view(e));
    },
  });

  app.get<{ Params: Static<typeof ExportParams> }>('/v1/orgs/:id/exports/:export_id', {
    config: { auth: true, scopes: EXPORT_SCOPES, keyKinds: SERVER_CREDENTIALS, quota: false },
    schema: {
      tags: ['orgs'],
      summary: "An export's status; once it succeeded, a fresh signed download URL",
      security: bearer,
      params: ExportParams,
      response: { 200: ExportSchema, ...errorResponses() },
    },
    handler: async (req, reply) => {
      const p = principalOf(req);
      if (req.params.id !== p.orgId) throw notFound('export');
      reply.header('Cache-Control', 'no-store');
      return view(await getExport(exportDeps, p.orgId, req.params.export_id));
    },
  });

  app.get<{ Params: Static<typeof ArchiveParams>; Querystring: Static<typeof SignedQuery> }>('/v1/exports/:export_id/archive', {
    schema: {
      tags: ['orgs'],
      summary: "Download an export's archive through its signed URL (a tar file)",
      description: 'No credential: the signed URL is the capability, and it expires. Every download is recorded in the org audit log (`export.download`).',
      params: ArchiveParams,
      querystring: SignedQuery,
      response: {
        200: { type: 'string', format: 'binary', description: 'The archive (application/x-tar).' },
        ...errorResponses({ 403: 'Bad signature (ERR_SIGNATURE_INVALID).', 404: 'No such export, not finished, expired or erased (ERR_NOT_FOUND).', 410: 'The link expired (ERR_URL_EXPIRED); ask for a new one.' }),
      },
    },
    handler: async (req, reply) => {
      const id = req.params.export_id;
      await deps.signer.verify({ assetId: id, exp: req.query.exp, kid: req.query.kid, sig: req.query.sig, disposition: 'attachment' }, Math.floor(now() / 1000));
      const { export: e, stream } = await openExportDownload(exportDeps, id, { actor: { type: 'anonymous', id: 'signed-url', kid: req.query.kid }, ip: req.ip, requestId: String(req.id) });
      // Errors after the headers cut the connection (never unauthenticated bytes); a client that goes
      // away stops the decryption.
      const body = new PassThrough();
      body.once('close', () => {
        if (!stream.destroyed) stream.destroy();
      });
      stream.on('error', (err) => {
        req.log.error({ err, export: id }, 'export archive failed while streaming');
        stream.unpipe(body);
        body.destroy(err);
      });
      stream.pipe(body);
      reply.header('X-Robots-Tag', 'noindex, nofollow');
      reply.header('Referrer-Policy', 'no-referrer');
      reply.header('Content-Security-Policy', "default-src 'none'; sandbox");
      reply.header('X-Content-Type-Options', 'nosniff');
      reply.header('Cache-Control', 'private, no-store');
      reply.header('Content-Disposition', `attachment; filename="obscura-export-${id}.tar"`);
      reply.header('Content-Length', String(e.size));
      return reply.code(200).type('application/x-tar').send(body);
    },
  });
}
