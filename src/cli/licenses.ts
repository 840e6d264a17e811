/**
 * `obscura licenses ...`: offline licence files and the licence signing keys (issue 15; docs/licensing.md).
 *
 *   obscura licenses issue --licensee NAME [--domain D ...] [--app-id ID ...] [--features F,F]
 *                          --expires DATE [--alg RS256|EdDSA] [--app APP_UUID] -o FILE [--json]
 *   obscura licenses verify FILE [--keys JWKS_FILE] [--origin URL] [--app-id ID] [--json]
 *   obscura licenses public-key [--alg RS256|EdDSA] [--json]
 *   obscura licenses keys [--json]
 *   obscura licenses rotate-key [--alg RS256|EdDSA] [--json]
 *   obscura licenses remove-key KID [--json]
 *
 * Exit codes: 0 success, 1 a defective licence or a refused operation (code on stderr), 2 usage error.
 * `verify --keys FILE` checks a licence exactly as a device does (the SDK's verifier, the keys the
 * device ships with, no database and no network); without `--keys` it uses this deployment's
 * published keys.
 */
import { parseArgs } from 'node:util';
import { userInfo } from 'node:os';
import { readFileSync, writeFileSync } from 'node:fs';
import type { JWK } from 'jose';
import type { Runtime } from '../main.js';
import { AppError } from '../errors.js';
import { LicenceKeyStore, isLicenceAlgorithm } from '../licensing/keys.js';
import { LicensingService } from '../licensing/service.js';
import { LICENCE_FEATURES, LicenceError, verifyLicence, type Licence, type LicenceAlgorithm } from '../../sdk/src/licence.js';

/** Usage text of `obscura licenses`, for the main help. */
export const LICENSES_HELP = `  obscura licenses issue --licensee NAME [--domain HOST ...] [--app-id ID ...] [--features F,F]
                         --expires DATE [--alg RS256|EdDSA] [--app APP_ID] -o FILE [--json]
                                        write an offline licence file (features: ${LICENCE_FEATURES.join(', ')})
  obscura licenses verify FILE [--keys JWKS_FILE] [--origin URL] [--app-id ID] [--json]
                                        check a licence file; exit 1 on any defect
  obscura licenses public-key [--alg RS256|EdDSA] [--json]
                                        print the public keys (JWKS) a device ships with
  obscura licenses keys [--json]        list the licence signing keys
  obscura licenses rotate-key [--alg RS256|EdDSA] [--json]
                                        a new key signs from now; the old one stays published until removed
  obscura licenses remove-key KID [--json]
                                        stop publishing a rotated key (its licences stop verifying here)`;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

class Usage extends Error {}

function cliActor(): { type: 'cli'; id: string } {
  let id = 'unknown';
  try {
    id = userInfo().username;
  } catch {
    /* no passwd entry (containers) */
  }
  return { type: 'cli', id };
}

function print(json: boolean, value: unknown, text: () => string): void {
  process.stdout.write(json ? JSON.stringify(value, null, 2) + '\n' : text() + '\n');
}

function algArg(v: string | undefined): LicenceAlgorithm {
  const alg = v ?? 'RS256';
  if (!isLicenceAlgorithm(alg)) throw new Usage('--alg must be RS256 or EdDSA');
  return alg;
}

/**
 * `--expires`: an ISO 8601 date-time, or a date (`2027-12-31`), which means the end of that UTC day
 * (a licence "until 31 December" works on 31 December).
 */
export function parseExpiry(v: string | undefined): Date {
  if (!v) throw new Usage('--expires is required (an ISO date such as 2027-12-31, or a date-time)');
  const d = /^\d{4}-\d{2}-\d{2}$/.test(v) ? new Date(`${v}T23:59:59Z`) : new Date(v);
  if (Number.isNaN(d.getTime())) throw new Usage(`--expires "${v.slice(0, 40)}" is not a date`);
  return d;
}

function licenceSummary(l: Licence): string {
  return [
    `valid ${l.kind} licence for "${l.licensee}" (app ${l.app_id})`,
    `  origins:   ${l.origins.join(', ') || '-'}`,
    `  app ids:   ${l.app_ids.join(', ') || '-'}`,
    `  features:  ${l.features.join(', ') || '-'} (telemetry ${l.telemetry ? 'on' : 'off'})`,
    `  expires:   ${new Date(l.exp * 1000).toISOString()}`,
    `  signed by: ${l.kid} (${l.alg}); id ${l.jti}`,
  ].join('\n');
}

function service(rt: Runtime): LicensingService {
  return new LicensingService({ db: rt.db, keys: new LicenceKeyStore(rt.db, rt.masterKeys), settings: rt.config.licensing, issuer: rt.config.publicUrl });
}

/** The app an offline licence counts into: `--app`, or the only app of the deployment. */
async function appOf(rt: Runtime, app: string | undefined): Promise<{ orgId: string; appId: string }> {
  if (app !== undefined) {
    if (!UUID.test(app)) throw new Usage('--app must be an app id (UUID)');
    const row = await rt.db.system.selectFrom('apps').select(['id', 'org_id']).where('id', '=', app).executeTakeFirst();
    if (!row) throw new AppError('ERR_NOT_FOUND', `No app ${app}.`);
    return { orgId: row.org_id, appId: row.id };
  }
  const rows = await rt.db.system.selectFrom('apps').select(['id', 'org_id']).limit(2).execute();
  if (rows.length !== 1) throw new Usage(rows.length === 0 ? 'there is no app yet (obscura init)' : 'several apps exist: name one with --app APP_ID');
  return { orgId: rows[0]!.org_id, appId: rows[0]!.id };
}

/** Reads a JWKS (`{ "keys": [...] }`), a JWK list or one JWK from a file. */
function readKeys(file: string): JWK[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch {
    throw new Usage(`--keys ${file}: not a readable JSON key file (a JWKS as printed by "obscura licenses public-key")`);
  }
  const list = Array.isArray(parsed) ? parsed : parsed && typeof parsed === 'object' && Array.isArray((parsed as { keys?: unknown }).keys) ? (parsed as { keys: unknown[] }).keys : [parsed];
  return list.filter((k): k is JWK => !!k && typeof k === 'object');
}

/**
 * Runs `obscura licenses <argv...>`; returns the exit code. `withRuntime` opens the database only for
 * the subcommands that need it (`verify --keys` runs offline, as a device does).
 */
export async function licensesCommand(argv: string[], withRuntime: <T>(fn: (rt: Runtime) => Promise<T>) => Promise<T>): Promise<number> {
  try {
    return await run(argv, withRuntime);
  } catch (err) {
    if (err instanceof Usage || (err as { code?: string }).code?.startsWith?.('ERR_PARSE_ARGS')) {
      process.stderr.write(`obscura licenses: ${(err as Error).message}\n${LICENSES_HELP}\n`);
      return 2;
    }
    if (err instanceof LicenceError) {
      process.stderr.write(`obscura licenses: ${err.code}: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
}

async function run(argv: string[], withRuntime: <T>(fn: (rt: Runtime) => Promise<T>) => Promise<T>): Promise<number> {
  const [sub, ...rest] = argv;
  switch (sub) {
    case 'issue': {
      const { values } = parseArgs({
        args: rest,
        options: {
          licensee: { type: 'string' },
          domain: { type: 'string', multiple: true },
          'app-id': { type: 'string', multiple: true },
          features: { type: 'string', multiple: true },
          expires: { type: 'string' },
          alg: { type: 'string' },
          app: { type: 'string' },
          output: { type: 'string', short: 'o' },
          json: { type: 'boolean', default: false },
        },
        strict: true,
      });
      if (!values.licensee) throw new Usage('--licensee is required');
      if (!values.output) throw new Usage('-o FILE is required (where to write the licence file)');
      const domains = (values.domain ?? []).flatMap((d) => d.split(',')).filter(Boolean);
      const appIds = (values['app-id'] ?? []).flatMap((d) => d.split(',')).filter(Boolean);
      if (domains.length === 0 && appIds.length === 0) throw new Usage('name at least one --domain or --app-id to pin the licence to');
      const features = (values.features ?? []).flatMap((f) => f.split(',')).map((f) => f.trim()).filter(Boolean);
      const expiresAt = parseExpiry(values.expires);
      const alg = algArg(values.alg);
      const out = values.output;
      const { file, claims } = await withRuntime(async (rt) => {
        const { orgId, appId } = await appOf(rt, values.app);
        return service(rt).issueOffline(orgId, appId, { licensee: values.licensee!, domains, appIds, features, expiresAt, alg }, cliActor());
      });
      // Not a secret (it is signed, not encrypted), but never overwrite an existing file by accident.
      try {
        writeFileSync(out, file, { flag: 'wx', mode: 0o644 });
      } catch (err) {
        if ((err as { code?: string }).code === 'EEXIST') throw new Usage(`${out} exists; choose another -o FILE`);
        throw err;
      }
      print(values.json!, { file: out, jti: claims.jti, kid: claims.kid, alg: claims.alg, expires_at: new Date(claims.exp * 1000).toISOString() }, () => `wrote ${out}\n${licenceSummary(claims)}`);
      return 0;
    }
    case 'verify': {
      const { values, positionals } = parseArgs({
        args: rest,
        options: { keys: { type: 'string' }, origin: { type: 'string' }, 'app-id': { type: 'string' }, json: { type: 'boolean', default: false } },
        allowPositionals: true,
        strict: true,
      });
      if (positionals.length !== 1) throw new Usage('verify needs exactly one FILE');
      let text: string;
      try {
        text = readFileSync(positionals[0]!, 'utf8');
      } catch {
        throw new Usage(`cannot read ${positionals[0]}`);
      }
      const pin = { ...(values.origin !== undefined ? { origin: values.origin } : {}), ...(values['app-id'] !== undefined ? { appId: values['app-id'] } : {}) };
      const licence = values.keys
        ? await verifyLicence(text, { keys: readKeys(values.keys), ...pin })
        : await withRuntime(async (rt) => {
            try {
              return await verifyLicence(text, { keys: await service(rt).publicKeys(), ...pin });
            } catch (err) {
              // Reported with its code (exit 1) after the runtime is closed.
              if (err instanceof LicenceError) return err;
              throw err;
            }
          });
      if (licence instanceof LicenceError) throw licence;
      print(values.json!, licence, () => licenceSummary(licence));
      return 0;
    }
    case 'public-key': {
      const { values } = parseArgs({ args: rest, options: { alg: { type: 'string' }, json: { type: 'boolean', default: false } }, strict: true });
      const alg = values.alg === undefined ? undefined : algArg(values.alg);
      const keys = await withRuntime(async (rt) => {
        // Make sure the asked-for algorithm has a key (the first licence would create it anyway).
        if (alg) await new LicenceKeyStore(rt.db, rt.masterKeys).signer(alg);
        return service(rt).publicKeys();
      });
      // Always JSON (a JWKS is what a device ships with); --json is accepted for symmetry.
      process.stdout.write(JSON.stringify({ keys: alg ? keys.filter((k) => k.alg === alg) : keys }, null, 2) + '\n');
      return 0;
    }
    case 'keys': {
      const { values } = parseArgs({ args: rest, options: { json: { type: 'boolean', default: false } }, strict: true });
      const keys = await withRuntime((rt) => new LicenceKeyStore(rt.db, rt.masterKeys).list());
      print(values.json!, keys, () => (keys.length ? keys.map((k) => `${k.kid}  ${k.alg}  ${k.current ? 'current' : `rotated ${k.rotatedAt}`}  created ${k.createdAt}`).join('\n') : 'no licence keys yet (one is created on first use)'));
      return 0;
    }
    case 'rotate-key': {
      const { values } = parseArgs({ args: rest, options: { alg: { type: 'string' }, json: { type: 'boolean', default: false } }, strict: true });
      const alg = algArg(values.alg);
      const r = await withRuntime((rt) => new LicenceKeyStore(rt.db, rt.masterKeys).rotate(alg, cliActor()));
      print(values.json!, { alg, ...r }, () => `new ${alg} licence key: ${r.kid}${r.previousKid ? `\nprevious key ${r.previousKid} stays published until "obscura licenses remove-key ${r.previousKid}"` : ''}`);
      return 0;
    }
    case 'remove-key': {
      const { values, positionals } = parseArgs({ args: rest, options: { json: { type: 'boolean', default: false } }, allowPositionals: true, strict: true });
      if (positionals.length !== 1) throw new Usage('remove-key needs exactly one KID');
      await withRuntime((rt) => new LicenceKeyStore(rt.db, rt.masterKeys).remove(positionals[0]!, cliActor()));
      print(values.json!, { removed: positionals[0] }, () => `removed ${positionals[0]}`);
      return 0;
    }
    default:
      throw new Usage(sub ? `unknown subcommand "${sub}"` : 'needs a subcommand');
  }
}
