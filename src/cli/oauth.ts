/**
 * `obscura oauth ...`: operator commands for OAuth2 clients and the JWT signing keys.
 *
 *   obscura oauth rotate-signing-key [--json]    a new key signs from now; the previous one stays in the
 *                                                JWKS until every token it signed has expired
 *   obscura oauth signing-keys [--json]          list published keys (current and not yet retired)
 *   obscura oauth clients create --app ID [--scope S ...] [--name N] [--json]
 *   obscura oauth clients list --app ID [--json]
 *   obscura oauth clients revoke CLIENT_ROW_ID [--json]
 *
 * Exit codes: 0 success, 2 usage error (message on stderr). Domain errors (AppError) propagate to the
 * caller, which prints their code.
 */
import { parseArgs } from 'node:util';
import { userInfo } from 'node:os';
import type { Runtime } from '../main.js';
import { AppError } from '../errors.js';
import { SigningKeyStore } from '../auth/jwt.js';
import { createClient, listClients, orgOfClient, revokeClient, type OAuthClientInfo } from '../auth/oauth.js';
import type { Ctx } from '../tenants/index.js';

/** Usage text of `obscura oauth`, for the main help. */
export const OAUTH_HELP = `  obscura oauth rotate-signing-key [--json]
                                        rotate the JWT signing key now (the previous key stays published
                                        until the tokens it signed have expired)
  obscura oauth signing-keys [--json]   list the published JWT signing keys
  obscura oauth clients create --app ID [--scope S ...] [--name N] [--json]
                                        create an OAuth2 client; print its secret once
  obscura oauth clients list --app ID [--json]
  obscura oauth clients revoke ID [--json]
                                        no new tokens from now; issued tokens expire on their TTL`;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

class Usage extends Error {}

function actor(): Ctx {
  let id = 'unknown';
  try {
    id = userInfo().username;
  } catch {
    /* no passwd entry (containers) */
  }
  return { actor: { type: 'cli', id } };
}

function uuidArg(v: string | undefined, name: string): string {
  if (!v || !UUID.test(v)) throw new Usage(`${name} must be an id (UUID)`);
  return v;
}

function print(json: boolean, value: unknown, text: () => string): void {
  process.stdout.write(json ? JSON.stringify(value, null, 2) + '\n' : text() + '\n');
}

const clientLine = (c: OAuthClientInfo) => `${c.id}  ${c.clientId}  ${c.revokedAt ? `revoked ${c.revokedAt}` : 'active'}  scopes=${c.scopes.join(',')}${c.name ? `  "${c.name}"` : ''}`;

async function orgOfApp(rt: Runtime, appId: string): Promise<string> {
  const row = await rt.db.system.selectFrom('apps').select('org_id').where('id', '=', appId).executeTakeFirst();
  if (!row) throw new AppError('ERR_NOT_FOUND', `No app ${appId}.`);
  return row.org_id;
}

function signingKeys(rt: Runtime): SigningKeyStore {
  return new SigningKeyStore(rt.db, rt.masterKeys, { tokenTtlSeconds: rt.config.oauth.accessTokenTtlSeconds, rotationDays: rt.config.oauth.signingKeyRotationDays });
}

/**
 * Runs `obscura oauth <argv...>` against an open runtime; returns the exit code.
 * Usage errors print to stderr and return 2; AppErrors are thrown for the caller to report.
 */
export async function oauthCommand(argv: string[], rt: Runtime): Promise<number> {
  try {
    return await run(argv, rt);
  } catch (err) {
    if (err instanceof Usage || (err as { code?: string }).code?.startsWith?.('ERR_PARSE_ARGS')) {
      process.stderr.write(`obscura oauth: ${(err as Error).message}\n${OAUTH_HELP}\n`);
      return 2;
    }
    throw err;
  }
}

async function run(argv: string[], rt: Runtime): Promise<number> {
  const [sub, ...rest] = argv;
  switch (sub) {
    case 'rotate-signing-key': {
      const { values } = parseArgs({ args: rest, options: { json: { type: 'boolean', default: false } }, strict: true });
      const r = await signingKeys(rt).rotate(actor().actor);
      print(values.json!, r, () => `new signing key: ${r.kid}${r.previousKid ? `\nprevious key ${r.previousKid} stays published until ${r.previousRetireAt}` : ''}`);
      return 0;
    }
    case 'signing-keys': {
      const { values } = parseArgs({ args: rest, options: { json: { type: 'boolean', default: false } }, strict: true });
      const keys = await signingKeys(rt).list();
      print(values.json!, keys, () => (keys.length ? keys.map((k) => `${k.kid}  ${k.alg}  ${k.current ? 'current' : `retires ${k.retireAt}`}  created ${k.createdAt}`).join('\n') : 'no signing keys yet (one is created on first use)'));
      return 0;
    }
    case 'clients':
      return clients(rest, rt);
    default:
      throw new Usage(sub ? `unknown subcommand "${sub}"` : 'needs a subcommand');
  }
}

async function clients(argv: string[], rt: Runtime): Promise<number> {
  const [sub, ...rest] = argv;
  const { values, positionals } = parseArgs({
    args: rest,
    options: { app: { type: 'string' }, scope: { type: 'string', multiple: true }, name: { type: 'string' }, json: { type: 'boolean', default: false } },
    allowPositionals: true,
    strict: true,
  });
  const json = values.json!;
  const ctx = actor();
  switch (sub) {
    case 'create': {
      const appId = uuidArg(values.app, '--app');
      const orgId = await orgOfApp(rt, appId);
      const r = await rt.db.withTenant(orgId, (trx) => createClient(trx, orgId, appId, { name: values.name, scopes: values.scope }, { ...ctx, granter: null }));
      print(json, { client: r.client, client_id: r.client.clientId, client_secret: r.secret }, () => `${clientLine(r.client)}\n\nclient_id:     ${r.client.clientId}\nclient_secret (shown once):\n  ${r.secret}`);
      return 0;
    }
    case 'list': {
      const appId = uuidArg(values.app, '--app');
      const orgId = await orgOfApp(rt, appId);
      const list = (await rt.db.withTenant(orgId, (trx) => listClients(trx, orgId, appId))).items;
      print(json, list, () => (list.length ? list.map(clientLine).join('\n') : 'no OAuth clients'));
      return 0;
    }
    case 'revoke': {
      const id = uuidArg(positionals[0], 'ID');
      const orgId = await orgOfClient(rt.db, id);
      const c = await rt.db.withTenant(orgId, (trx) => revokeClient(trx, orgId, id, { ...ctx, granter: null }));
      print(json, c, () => `revoked: ${clientLine(c)}\n(tokens already issued stay valid until they expire, at most ${rt.config.oauth.accessTokenTtlSeconds} s)`);
      return 0;
    }
    default:
      throw new Usage('clients needs a subcommand: create, list or revoke');
  }
}
