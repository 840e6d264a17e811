/**
 * `POST /v1/setup`: the first run on a running server. Only while the database has no org, and only
 * with the one-time setup token that `obscura serve` wrote owner-only into the data dir; `obscura
 * init` sends it for you when the server holds the data dir (src/auth/setup.ts).
 */
import type { FastifyInstance } from 'fastify';
import { Type, type Static } from 'typebox';
import type { DatabaseHandle } from '../../db/database.js';
import { AppError } from '../../errors.js';
import { createFirstOrg, SetupGate } from '../../auth/setup.js';
import { errorResponses } from './common.js';

/** What the composition root hands the route: the gate, and what to do once the org exists. */
export interface FirstRunDeps {
  gate: SetupGate;
  /** Called once after the first org was created (e.g. removes the token file). */
  onDone(): void;
}

const SetupBody = Type.Object(
  {
    org: Type.String({ minLength: 1, maxLength: 200, default: 'My Org', description: 'Name of the first org.' }),
    email: Type.String({ minLength: 3, maxLength: 254, default: 'owner@example.com', description: "The owner's email (console login)." }),
    app: Type.String({ minLength: 1, maxLength: 200, default: 'default', description: 'Name of the first app.' }),
    origins: Type.Optional(Type.Array(Type.String({ format: 'uri', maxLength: 2048 }), { maxItems: 20, description: 'Web origins for a publishable key.' })),
    password: Type.Optional(Type.String({ minLength: 1, maxLength: 1024, description: "The owner's password; generated and returned once when absent." })),
  },
  { additionalProperties: false },
);

const KeyOut = Type.Object({ id: Type.String(), key: Type.String(), scopes: Type.Array(Type.String()) });
const SetupResult = Type.Object({
  org: Type.Object({ id: Type.String(), name: Type.String() }),
  owner: Type.Object({ id: Type.String(), email: Type.String(), password: Type.Optional(Type.String()) }),
  app: Type.Object({ id: Type.String(), name: Type.String() }),
  secret_key: KeyOut,
  publishable_key: Type.Union([Type.Object({ id: Type.String(), key: Type.String(), allowed_origins: Type.Array(Type.String()) }), Type.Null()]),
});

export function setupRoutes(app: FastifyInstance, deps: { db: DatabaseHandle; firstRun?: FirstRunDeps }): void {
  app.post<{ Body: Static<typeof SetupBody> }>('/v1/setup', {
    schema: {
      tags: ['operations'],
      summary: 'Create the first org, owner, app and keys on a running server (one-time setup token)',
      description:
        'Only while the server has no org. Send `Authorization: Bearer obs_setup_…` with the token from `<data dir>/setup.json`; `obscura init` does this for you. The keys and the generated password appear in this response only.',
      body: SetupBody,
      response: {
        201: SetupResult,
        ...errorResponses({
          401: 'Missing or wrong setup token (ERR_AUTH_MISSING, ERR_TOKEN_INVALID).',
          404: 'No first-run setup is pending on this server (ERR_NOT_FOUND).',
          409: 'An org already exists (ERR_CONFLICT).',
        }),
      },
    },
    handler: async (req, reply) => {
      const firstRun = deps.firstRun;
      if (!firstRun?.gate.open) throw new AppError('ERR_NOT_FOUND', 'No first-run setup is pending on this server; it already has an org.');
      const auth = req.headers.authorization;
      if (!auth) throw new AppError('ERR_AUTH_MISSING', 'Send the setup token from <data dir>/setup.json as `Authorization: Bearer obs_setup_…` (or run `obscura init`).');
      const token = /^Bearer (\S+)$/.exec(auth)?.[1] ?? '';
      if (!firstRun.gate.accepts(token)) throw new AppError('ERR_TOKEN_INVALID', 'The setup token is not valid for this server.');
      const result = await createFirstOrg(deps.db, req.body, { actor: { type: 'system', id: 'first-run-setup' }, ip: req.ip, requestId: String(req.id) });
      firstRun.gate.close();
      firstRun.onDone();
      return reply.code(201).header('Cache-Control', 'no-store').send(result);
    },
  });
}
