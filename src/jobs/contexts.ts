/**
 * Key-wrap contexts of the secrets this capability stores wrapped by the master key (keywrap.ts AAD).
 * Each binds the value to its org and row, so a wrapped value copied to another row or org fails to
 * unwrap. Dependency-free so that `crypto/keyring.ts` can list them for master-key rotation.
 */

/** A webhook endpoint's signing secret (current and previous). */
export const webhookSecretContext = (orgId: string, endpointId: string): string => `webhook:${orgId}:${endpointId}`;

/** A transform-URL signing key. */
export const transformKeyContext = (orgId: string, kid: string): string => `transform-key:${orgId}:${kid}`;

/** A job's presigned PUT URL (a customer credential). */
export const putUrlContext = (orgId: string, jobId: string): string => `job-put:${orgId}:${jobId}`;
