/**
 * Failed authentication → audit trail, without letting an attacker flood the trail.
 *
 * - A failure that identifies a key (revoked, expired, rolled, wrong IP, wrong origin, missing scope)
 *   is audited to that key's org, at most once per key and reason per `dedupeMs` (default 60 s).
 * - Every failure counts towards its source IP; when an IP reaches `threshold` failures within
 *   `windowMs`, one `auth.failure_burst` event goes to the system chain (once per window per IP).
 *   This is how guessing with unknown or malformed keys becomes visible.
 */
import type { DatabaseHandle } from '../db/database.js';
import { appendAudit } from '../audit/log.js';
import type { AuthFailure } from './keys.js';

export interface FailureTrackerOptions {
  threshold: number;
  windowMs: number;
  dedupeMs?: number;
  now?: () => number;
  maxTracked?: number;
}

export class FailureTracker {
  private readonly perIp = new Map<string, { count: number; windowStart: number; reported: boolean }>();
  private readonly recent = new Map<string, number>();

  constructor(
    private readonly db: DatabaseHandle,
    private readonly opts: FailureTrackerOptions,
  ) {}

  private now() {
    return this.opts.now ? this.opts.now() : Date.now();
  }

  private bound<K, V>(m: Map<K, V>) {
    // Bounded memory under a flood from many addresses: forget the oldest entries.
    const max = this.opts.maxTracked ?? 50_000;
    while (m.size > max) m.delete(m.keys().next().value as K);
  }

  /** Records one failure; writes whatever audit events it calls for. Never throws. */
  async record(ip: string, code: string, failure: AuthFailure | undefined, requestId: string | undefined): Promise<void> {
    const now = this.now();
    try {
      if (failure?.orgId && failure.keyId) {
        const k = `${failure.keyId}:${failure.code}`;
        const last = this.recent.get(k);
        if (last === undefined || now - last >= (this.opts.dedupeMs ?? 60_000)) {
          this.recent.set(k, now);
          this.bound(this.recent);
          await this.db.withTenant(failure.orgId, (trx) =>
            appendAudit(trx, { orgId: failure.orgId, actor: { type: 'key', id: failure.keyId! }, action: 'auth.failure', target: { key: failure.keyId }, data: { code: failure.code }, ip, requestId }),
          );
        }
      }
      let s = this.perIp.get(ip);
      if (!s || now - s.windowStart >= this.opts.windowMs) {
        s = { count: 0, windowStart: now, reported: false };
        this.perIp.delete(ip);
        this.perIp.set(ip, s);
        this.bound(this.perIp);
      }
      s.count++;
      if (s.count >= this.opts.threshold && !s.reported) {
        s.reported = true;
        await this.db.withSystem((trx) =>
          appendAudit(trx, { orgId: null, actor: { type: 'anonymous' }, action: 'auth.failure_burst', target: { ip }, data: { failures: s!.count, window_ms: this.opts.windowMs, last_code: code }, ip, requestId }),
        );
      }
    } catch {
      // Auditing a failure must never turn a 401 into a 500; the caller logs at warn.
    }
  }
}
