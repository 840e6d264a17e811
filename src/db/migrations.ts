/**
 * Versioned migrations, applied in order at start (Kysely's Migrator takes a lock so that several
 * nodes starting at once apply each migration once). One file per migration in `migrations/`;
 * add a line to MIGRATIONS for each. Never edit a released migration; add a new one.
 */
import { Kysely, Migrator, type Migration, type MigrationProvider } from 'kysely';
import { foundation } from './migrations/0001_foundation.js';
import { assets } from './migrations/0002_assets.js';
import { oauth } from './migrations/0003_oauth.js';
import { consoleAccounts } from './migrations/0004_console.js';
import { usage } from './migrations/0005_usage.js';
import { tus } from './migrations/0006_tus.js';
import { jobs } from './migrations/0007_jobs.js';
import { auditKeyed } from './migrations/0009_audit_keyed.js';
import { uploadIdentity } from './migrations/0010_upload_identity.js';
import { listing } from './migrations/0012_listing.js';
import { scopes } from './migrations/0011_scopes.js';
import { usageOutputs } from './migrations/0013_usage_outputs.js';
import { erasure } from './migrations/0014_erasure.js';
import { video } from './migrations/0015_video.js';
import { assetParts } from './migrations/0016_asset_parts.js';
import { usageDays } from './migrations/0019_usage_days.js';
import { licensing } from './migrations/0020_licensing.js';
import { orgExports } from './migrations/0017_org_exports.js';
import { assetLabels } from './migrations/0021_asset_labels.js';
import { legalHold } from './migrations/0022_legal_hold.js';

export { TENANT_ROLE } from './migrations/helpers.js';

export const MIGRATIONS: Record<string, Migration> = {
  '0001_foundation': foundation,
  '0002_assets': assets,
  '0003_oauth': oauth,
  '0004_console': consoleAccounts,
  '0005_usage': usage,
  '0006_tus': tus,
  '0007_jobs': jobs,
  '0009_audit_keyed': auditKeyed,
  '0010_upload_identity': uploadIdentity,
  '0011_scopes': scopes,
  '0012_listing': listing,
  '0013_usage_outputs': usageOutputs,
  '0014_erasure': erasure,
  '0015_video': video,
  '0016_asset_parts': assetParts,
  '0019_usage_days': usageDays,
  '0020_licensing': licensing,
  '0017_org_exports': orgExports,
  '0021_asset_labels': assetLabels,
  '0022_legal_hold': legalHold,
};

class StaticProvider implements MigrationProvider {
  async getMigrations(): Promise<Record<string, Migration>> {
    return MIGRATIONS;
  }
}

/** Applies every pending migration; returns the names applied. */
export async function migrate(db: Kysely<any>): Promise<string[]> {
  // Numbers are handed out before the work lands, so a database may have applied 0011 before 0008
  // exists: apply every pending migration instead of refusing to start ("corrupted migrations").
  // Migrations are written to be independent of one another for exactly this reason.
  const migrator = new Migrator({ db, provider: new StaticProvider(), allowUnorderedMigrations: true });
  const { error, results } = await migrator.migrateToLatest();
  if (error) {
    const failed = results?.find((r) => r.status === 'Error');
    throw new Error(`database migration ${failed?.migrationName ?? '?'} failed: ${(error as Error).message}`, { cause: error });
  }
  return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
}
