/** The master-key section of the configuration (issue 10, item 8); {@link resolveMasterKey} reads it. */
import { defineSection, list, str } from '../settings.js';

export interface MasterKeySection {
  /**
   * The master key (32 bytes) wrapping every tenant key (64 hex chars or base64). When unset in
   * embedded mode a key file is generated in the data dir (mode 0600), which `doctor` reports: anyone
   * with a copy of the data dir then has the key too. Never logged.
   */
  readonly masterKey: string | undefined;
  /** Previous master keys still accepted for unwrapping during rotation (comma-separated). */
  readonly previousMasterKeys: readonly string[];
}

export const MASTER_KEY_SETTINGS = defineSection<MasterKeySection>({
  masterKey: str({ env: 'OBSCURA_MASTER_KEY', doc: '32 bytes as 64 hex chars or base64; wraps every tenant key.', defaultText: 'generated file in the data dir (embedded only)' }),
  previousMasterKeys: list({ env: 'OBSCURA_PREVIOUS_MASTER_KEYS', doc: 'Old master keys still accepted while a rotation runs.' }),
});
