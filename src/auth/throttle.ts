/**
 * Login throttling: exponential backoff per account and per source address, with the state in the
 * database (`login_attempts`) so that it holds across every node of a fleet.
 *
 * Each login attempt is *charged* before the password is checked, in a transaction that locks the
 * account's and the address's rows (`SELECT ... FOR UPDATE`, in key order so two logins cannot
 * deadlock). That makes the bound exact under concurrency: N parallel guesses cannot all slip past
 * the check while the first ones are still running argon2. A success vindicates the attempt: the
 * account's row is cleared and the address's charge is refunded.
 *
 * Once a key holds `threshold` unvindicated attempts, each further attempt locks it for
 * `baseMs * 2^(n - threshold)`, capped at `capMs`. While locked, attempts are refused without
 * running argon2 (cheap refusal) and without being charged, so waiting out the lock is enough.
 * A key's count starts over once it has seen no attempt for `resetAfterMs`.
 *
 * The account key is a SHA-256 of the lowercased email, whether or not the account exists, so the
 * throttle's behaviour reveals nothing about which accounts exist. IPv6 addresses are keyed by their
 * /64, the block one subscriber typically holds.
 */
import ipaddr from 'ipaddr.js';
import type { DatabaseHandle, Tx } from '../db/database.js';
import { sha256Hex } from '../crypto/random.js';
import './console-schema.js';

/** How one kind of key backs off. */
export interface ThrottlePolicy {
  /** Unvindicated attempts allowed before locking starts. */
  readonly threshold: number;
  /** The first lock's length (ms). */
  readonly baseMs: number;
  /** The longest lock (ms). */
  readonly capMs: number;
  /** A key with no attempt for this long starts over (ms). */
  readonly resetAfterMs: number;
}

/** Per account: 5 attempts, then 1 s, 2 s, 4 s … up to 15 min; forgotten after 1 h of quiet. */
export const ACCOUNT_POLICY: ThrottlePolicy = Object.freeze({ threshold: 5, baseMs: 1000, capMs: 15 * 60_000, resetAfterMs: 3_600_000 });
/**
 * Per address: 20 attempts (an office behind one NAT shares it), then the same backoff. Successes
 * refund their charge, so colleagues logging in correctly never lock each other out.
 */
export const IP_POLICY: ThrottlePolicy = Object.freeze({ threshold: 20, baseMs: 1000, capMs: 15 * 60_000, resetAfterMs: 3_600_000 });

/** One key's state. */
export interface AttemptState {
  failures: number;
  lockedUntil: number | null;
  lastAttemptAt: number;
}

/** The lock length after the n-th unvindicated attempt (0 below the threshold). */
export function backoffMs(failures: number, policy: ThrottlePolicy): number {
  if (failures < policy.threshold) return 0;
  const exp = Math.min(failures - policy.threshold, 40);
  return Math.min(policy.baseMs * 2 ** exp, policy.capMs);
}

/** Milliseconds the key stays locked at `now` (0 when not locked). */
export function lockRemainingMs(state: AttemptState | undefined, now: number): number {
  if (!state?.lockedUntil) return 0;
  return Math.max(0, state.lockedUntil - now);
}

/** The state after charging one attempt at `now` (pure). */
export function chargeAttempt(state: AttemptState | undefined, now: number, policy: ThrottlePolicy): AttemptState {
  const stale = !state || now - state.lastAttemptAt >= policy.resetAfterMs;
  const failures = (stale ? 0 : state.failures) + 1;
  const lock = backoffMs(failures, policy);
  return { failures, lockedUntil: lock > 0 ? now + lock : null, lastAttemptAt: now };
}

/** The throttle key of an account: a hash, so the table never holds an email address. */
export function accountKey(email: string): string {
  return `acct:${sha256Hex(`obscura-login\n${email.trim().toLowerCase()}`)}`;
}

/** The throttle key of a source address: IPv4 as is, IPv4-mapped IPv6 as IPv4, other IPv6 by /64. */
export function ipKey(ip: string): string {
  try {
    let addr = ipaddr.parse(ip);
    if (addr.kind() === 'ipv6' && (addr as ipaddr.IPv6).isIPv4MappedAddress()) addr = (addr as ipaddr.IPv6).toIPv4Address();
    if (addr.kind() === 'ipv4') return `ip:${addr.toString()}`;
    const parts = (addr as ipaddr.IPv6).parts.slice(0, 4).map((p) => p.toString(16));
    return `ip:${parts.join(':')}::/64`;
  } catch {
    return `ip:${ip.slice(0, 64)}`;
  }
}

/** A refusal: how long to wait and which kind of key is locked. */
export interface Throttled {
  ok: false;
  retryAfterMs: number;
  scope: 'account' | 'ip';
}

export interface ThrottleOptions {
  account?: ThrottlePolicy;
  ip?: ThrottlePolicy;
  now?: () => number;
}

/**
 * Called inside the charging transaction the first time a given lock refuses an attempt (once per
 * lock, however often it is hit), to audit it atomically with the state change.
 */
export type OnThrottled = (trx: Tx, info: Throttled) => Promise<void>;

type Row = { key: string; failures: number; locked_until: Date | null; last_attempt_at: Date; notified_until: Date | null };

const toState = (r: Row): AttemptState => ({
  failures: Number(r.failures),
  lockedUntil: r.locked_until ? new Date(r.locked_until).getTime() : null,
  lastAttemptAt: new Date(r.last_attempt_at).getTime(),
});

/** The database-backed throttle. One instance per process; all state lives in the database. */
export class LoginThrottle {
  private readonly account: ThrottlePolicy;
  private readonly ip: ThrottlePolicy;
  private readonly clock: () => number;

  constructor(
    private readonly db: DatabaseHandle,
    opts: ThrottleOptions = {},
  ) {
    this.account = opts.account ?? ACCOUNT_POLICY;
    this.ip = opts.ip ?? IP_POLICY;
    this.clock = opts.now ?? Date.now;
  }

  /**
   * Charges one attempt for `email` from `ip`, or refuses it while either key is locked (nothing is
   * charged then). Cheap: two indexed rows, no argon2.
   */
  async attempt(email: string, ip: string, onThrottled?: OnThrottled): Promise<{ ok: true } | Throttled> {
    const now = this.clock();
    const keys = [
      { key: accountKey(email), policy: this.account, scope: 'account' as const },
      { key: ipKey(ip), policy: this.ip, scope: 'ip' as const },
    ].sort((a, b) => (a.key < b.key ? -1 : 1));
    return this.db.withSystem(async (trx) => {
      const rows = new Map<string, Row>();
      for (const k of keys) {
        await trx
          .insertInto('login_attempts')
          .values({ key: k.key, failures: 0, last_attempt_at: new Date(now) })
          .onConflict((oc) => oc.column('key').doNothing())
          .execute();
        const row = await trx.selectFrom('login_attempts').selectAll().where('key', '=', k.key).forUpdate().executeTakeFirstOrThrow();
        rows.set(k.key, row as Row);
      }
      let refusal: (Throttled & { key: string; until: number }) | undefined;
      for (const k of keys) {
        const remaining = lockRemainingMs(toState(rows.get(k.key)!), now);
        if (remaining > 0 && (!refusal || remaining > refusal.retryAfterMs)) {
          refusal = { ok: false, retryAfterMs: remaining, scope: k.scope, key: k.key, until: now + remaining };
        }
      }
      if (refusal) {
        const row = rows.get(refusal.key)!;
        const lockedUntil = row.locked_until ? new Date(row.locked_until).getTime() : 0;
        const notified = row.notified_until ? new Date(row.notified_until).getTime() : 0;
        if (notified !== lockedUntil) {
          await trx.updateTable('login_attempts').set({ notified_until: new Date(lockedUntil) }).where('key', '=', refusal.key).execute();
          await onThrottled?.(trx, { ok: false, retryAfterMs: refusal.retryAfterMs, scope: refusal.scope });
        }
        return { ok: false, retryAfterMs: refusal.retryAfterMs, scope: refusal.scope };
      }
      for (const k of keys) {
        const next = chargeAttempt(toState(rows.get(k.key)!), now, k.policy);
        // A fresh row was inserted with last_attempt_at = now and 0 failures: not stale, so 0 + 1.
        await trx
          .updateTable('login_attempts')
          .set({ failures: next.failures, locked_until: next.lockedUntil === null ? null : new Date(next.lockedUntil), last_attempt_at: new Date(now) })
          .where('key', '=', k.key)
          .execute();
      }
      return { ok: true as const };
    });
  }

  /**
   * Vindicates a charged attempt after a full success (password and, when enrolled, TOTP): clears
   * the account's record and refunds the address's charge (lifting its lock if it falls below the
   * threshold).
   */
  async succeeded(email: string, ip: string): Promise<void> {
    const key = ipKey(ip);
    await this.db.withSystem(async (trx) => {
      await trx.deleteFrom('login_attempts').where('key', '=', accountKey(email)).execute();
      const row = await trx.selectFrom('login_attempts').selectAll().where('key', '=', key).forUpdate().executeTakeFirst();
      if (!row) return;
      const failures = Math.max(0, Number(row.failures) - 1);
      await trx
        .updateTable('login_attempts')
        .set({ failures, ...(failures < this.ip.threshold ? { locked_until: null } : {}) })
        .where('key', '=', key)
        .execute();
    });
  }

  /** Forgets an account's record (after a password reset proves control of the mailbox). */
  async clearAccount(trx: Tx, email: string): Promise<void> {
    await trx.deleteFrom('login_attempts').where('key', '=', accountKey(email)).execute();
  }

  /** Deletes records that have been quiet for longer than their reset period and are not locked. */
  async sweep(): Promise<number> {
    const now = this.clock();
    const horizon = new Date(now - Math.max(this.account.resetAfterMs, this.ip.resetAfterMs));
    const r = await this.db.system
      .deleteFrom('login_attempts')
      .where('last_attempt_at', '<', horizon)
      .where((eb) => eb.or([eb('locked_until', 'is', null), eb('locked_until', '<', new Date(now))]))
      .executeTakeFirst();
    return Number(r.numDeletedRows);
  }
}
