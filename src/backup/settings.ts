/**
 * The backup section of the configuration (issue 14, items 1 and 4): the key every backup archive is
 * encrypted and authenticated under (read only by `obscura backup`; the server never needs it), and
 * how long a tenant export is kept.
 */
import { defineSection, int, str } from '../settings.js';

/** Settings of `obscura backup create | verify | restore`. */
export interface BackupSettings {
  /**
   * The backup key (`OBSCURA_BACKUP_KEY`): 32 random bytes as 64 hex characters or base64, from the
   * operator's secret manager, and never the master key (refused when equal). It encrypts and
   * authenticates the database dump, the manifest and the erasure ledger of every archive; blobs are
   * copied as they are stored (ciphertext under tenant keys). Unset: backup commands refuse to run.
   * Security: keep it where the backups are not (a thief of the archive needs it, and the master key,
   * to read anything). Never logged.
   */
  readonly key: string | undefined;
  /**
   * How long a finished tenant export (`POST /v1/orgs/{id}/export`) is kept and downloadable
   * (`OBSCURA_EXPORT_TTL_SECONDS`, default 3 days, 5 minutes to 7 days). Then its archive is deleted.
   * Privacy: the archive holds every record and media file of the org; keep it short.
   */
  readonly exportTtlSeconds: number;
}

export const BACKUP_SETTINGS = defineSection<BackupSettings>({
  key: str({ env: 'OBSCURA_BACKUP_KEY', doc: '32 bytes as 64 hex chars or base64; encrypts and authenticates backup archives (not the master key).', defaultText: 'unset (backups refused)' }),
  exportTtlSeconds: int({ env: 'OBSCURA_EXPORT_TTL_SECONDS', doc: 'How long a tenant export archive is kept and downloadable (seconds), then deleted.', default: 3 * 86400, min: 300, max: 7 * 86400 }),
});
