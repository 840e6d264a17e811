/**
 * Key-wrap contexts of the secrets this capability stores wrapped by the master key (keywrap.ts AAD).
 * Each binds the value to its org and row, so a wrapped value copied to another row or org fails to
 * unwrap. The columns holding them are listed here for master-key rotation (`keys rotate-master`).
 */
import type { WrappedColumn } from '../crypto/keywrap.js';

/** A webhook endpoint's signing secret (current and previous). */
export const webhookSecretContext = (orgId: string, endpointId: string): string => `webhook:${orgId}:${endpointId}`;

/** A transform-URL signing key. */
export const transformKeyContext = (orgId: string, kid: string): string => `transform-key:${orgId}:${kid}`;

/** A job's presigned PUT URL (a customer credential). */
export const putUrlContext = (orgId: string, jobId: string): string => `job-put:${orgId}:${jobId}`;

/** Transform-URL keys, webhook secrets (current and previous) and presigned PUT URLs of jobs. */
export const JOBS_COLUMNS: readonly WrappedColumn[] = [
  { table: 'transform_keys', key: ['id'], fields: ['org_id'], column: 'wrapped', masterIdColumn: 'master_key_id', context: (r) => transformKeyContext(String(r.org_id), String(r.id)) },
  { table: 'webhook_endpoints', key: ['id'], fields: ['org_id'], column: 'secret_wrapped', context: (r) => webhookSecretContext(String(r.org_id), String(r.id)) },
  { table: 'webhook_endpoints', key: ['id'], fields: ['org_id'], column: 'previous_secret_wrapped', context: (r) => webhookSecretContext(String(r.org_id), String(r.id)) },
  { table: 'jobs', key: ['id'], fields: ['org_id'], column: 'put_url_wrapped', context: (r) => putUrlContext(String(r.org_id), String(r.id)) },
];
