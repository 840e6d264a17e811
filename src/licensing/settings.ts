/** The licensing section of the configuration (issue 15). */
import { defineSection, int } from '../settings.js';

export interface LicensingSettings {
  /** Lifetime of a session licence, seconds (default 4 h): how long a device keeps working after its key is revoked. */
  readonly sessionTtlSeconds: number;
}

export const LICENSING_SETTINGS = defineSection<LicensingSettings>({
  sessionTtlSeconds: int({
    env: 'OBSCURA_LICENSE_SESSION_TTL_SECONDS',
    doc: 'Lifetime of an on-device session licence, seconds; also how long a device keeps working after its publishable key is revoked (it refreshes after three quarters).',
    default: 14_400,
    min: 300,
    max: 86_400,
  }),
});
