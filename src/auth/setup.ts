/**
 * The first run: creating the first org, its owner, an app and the app's keys.
 *
 * Two ways in, one function: `obscura init` calls `createFirstOrg` on the database directly, and when
 * the embedded data dir is locked by a running server, it asks that server instead (`POST /v1/setup`)
 * with a one-time setup token the server wrote owner-only into the data dir (issue 9, item 13). So a
 * new user never has to stop the server, and the keys are still printed exactly once.
 *
 * The setup token is a bearer secret with the power to create the first owner; it is held in memory
 * only as a SHA-256 digest, compared in constant time, single-use, and useless once any org exists.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { sql } from 'kysely';
import type { DatabaseHandle } from '../db/database.js';
import { AppError } from '../errors.js';
import { assertPasswordPolicy, generatePassword } from '../tenants/password-policy.js';
import { createKey } from './keys.js';
import { createApp, createOrg, createUser, type Ctx } from '../tenants/index.js';

export interface FirstOrgInput {
  org: string;
  email: string;
  app: string;
  /** Origins for a publishable key; none = no publishable key. */
  origins?: string[];
  /** The owner's password; generated (and returned once) when absent. */
  password?: string;
}

/** What `obscura init --json` prints and `POST /v1/setup` answers: every secret appears here once. */
export interface FirstOrgResult {
  org: { id: string; name: string };
  owner: { id: string; email: string; password?: string };
  app: { id: string; name: string };
  secret_key: { id: string; key: string; scopes: string[] };
  publishable_key: { id: string; key: string; allowed_origins: string[] } | null;
}

/** True when the database holds no org yet (a first run). */
export async function hasNoOrg(db: DatabaseHandle): Promise<boolean> {
  return !(await db.system.selectFrom('orgs').select('id').limit(1).executeTakeFirst());
}

/**
 * Creates the first org, owner, app, secret key and (with origins) publishable key. Refuses with
 * `ERR_CONFLICT` when an org exists; concurrent first runs are serialised by an advisory lock so
 * only one of them creates an org.
 */
export async function createFirstOrg(db: DatabaseHandle, input: FirstOrgInput, ctx: Ctx): Promise<FirstOrgResult> {
  const generated = input.password === undefined;
  const password = input.password ?? generatePassword({ email: input.email, orgName: input.org });
  // Checked before anything is written, so a refused password leaves no half-made org behind.
  assertPasswordPolicy(password, { email: input.email, orgName: input.org });
  const org = await db.withSystem(async (trx) => {
    await sql`select pg_advisory_xact_lock(hashtext('obscura:first-org'))`.execute(trx);
    const existing = await trx.selectFrom('orgs').select('id').limit(1).executeTakeFirst();
    if (existing) throw new AppError('ERR_CONFLICT', 'This server already has an org; create keys with `obscura keys create` or the API instead.');
    return createOrg(trx, input.org, ctx);
  });
  const rest = await db.withTenant(org.id, async (trx) => {
    const user = await createUser(trx, org.id, { email: input.email, password, role: 'owner' }, ctx);
    const app = await createApp(trx, org.id, { name: input.app, settings: input.origins?.length ? { allow_browser_uploads: true } : {} }, ctx);
    const secret = await createKey(trx, org.id, app.id, { kind: 'secret', name: 'initial secret key' }, { ...ctx, granter: null });
    const publishable = input.origins?.length
      ? await createKey(trx, org.id, app.id, { kind: 'publishable', name: 'initial publishable key', allowedOrigins: input.origins }, { ...ctx, granter: null })
      : null;
    return { user, app, secret, publishable };
  });
  return {
    org: { id: org.id, name: org.name },
    owner: { id: rest.user.id, email: rest.user.email, password: generated ? password : undefined },
    app: { id: rest.app.id, name: rest.app.name },
    secret_key: { id: rest.secret.key.id, key: rest.secret.secret, scopes: rest.secret.key.scopes },
    publishable_key: rest.publishable ? { id: rest.publishable.key.id, key: rest.publishable.secret, allowed_origins: rest.publishable.key.allowedOrigins } : null,
  };
}

/** Prefix of setup tokens, so a leaked one is recognisable. */
export const SETUP_TOKEN_PREFIX = 'obs_setup_';

/**
 * The running server's side of the first run: accepts one setup token, once. Created by `serve`
 * when the database has no org; closed as soon as an org exists.
 */
export class SetupGate {
  #digest: Buffer | null;

  private constructor(digest: Buffer) {
    this.#digest = digest;
  }

  /** A new gate and its token (the caller writes the token owner-only and forgets it). */
  static issue(): { gate: SetupGate; token: string } {
    const token = SETUP_TOKEN_PREFIX + randomBytes(32).toString('base64url');
    return { gate: new SetupGate(sha256(token)), token };
  }

  /** Whether a token is still accepted at all. */
  get open(): boolean {
    return this.#digest !== null;
  }

  /** Constant-time check of a presented token. */
  accepts(token: string): boolean {
    if (!this.#digest || !token.startsWith(SETUP_TOKEN_PREFIX)) return false;
    return timingSafeEqual(sha256(token), this.#digest);
  }

  /** Stops accepting any token (after the first org is created, by whatever path). */
  close(): void {
    this.#digest = null;
  }
}

function sha256(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}
