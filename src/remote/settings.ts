/** The unsafe switches of outbound requests (issue 10, item 8): development only, each reported by `obscura doctor`. */
import { bool, defineSection } from '../settings.js';

export interface RemoteUnsafeSettings {
  /** Remote inputs, presigned PUTs and webhooks may use plain `http:` (development only). Default false. */
  readonly remoteAllowHttp: boolean;
  /** Remote URLs may point at private/loopback addresses, never cloud metadata (development only: an SSRF primitive). Default false. */
  readonly remoteAllowPrivate: boolean;
}

export const REMOTE_UNSAFE_SETTINGS = defineSection<RemoteUnsafeSettings>({
  remoteAllowHttp: bool({ env: 'OBSCURA_UNSAFE_REMOTE_ALLOW_HTTP', doc: 'Development only: remote inputs, PUTs and webhooks may use plain http.', default: false }),
  remoteAllowPrivate: bool({ env: 'OBSCURA_UNSAFE_REMOTE_ALLOW_PRIVATE', doc: 'Development only: remote URLs may reach private and loopback addresses (cloud metadata stays refused).', default: false }),
});
