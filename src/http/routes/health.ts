/** Liveness, readiness and robots. */
import type { FastifyInstance } from 'fastify';
import { sql } from 'kysely';
import { Type } from 'typebox';
import type { DatabaseHandle } from '../../db/database.js';
import { AppError } from '../../errors.js';

export function healthRoutes(app: FastifyInstance, db: DatabaseHandle): void {
  app.get('/healthz', {
    schema: { tags: ['operations'], summary: 'Liveness: the process is up', response: { 200: Type.Object({ status: Type.Literal('ok') }) } },
    handler: async () => ({ status: 'ok' as const }),
  });
  app.get('/readyz', {
    schema: {
      tags: ['operations'],
      summary: 'Readiness: the database answers',
      response: { 200: Type.Object({ status: Type.Literal('ready') }), 503: { $ref: 'Problem#', description: 'The database does not answer (ERR_UNAVAILABLE).' } },
    },
    handler: async () => {
      try {
        await sql`select 1`.execute(db.system);
      } catch (err) {
        throw new AppError('ERR_UNAVAILABLE', 'The database is not reachable.', { cause: err, headers: { 'Retry-After': '5' } });
      }
      return { status: 'ready' as const };
    },
  });
  app.get('/robots.txt', {
    schema: { tags: ['operations'], summary: 'Disallow all crawling', response: { 200: Type.String() } },
    handler: async (_req, reply) => reply.type('text/plain; charset=utf-8').send('User-agent: *\nDisallow: /\n'),
  });
}
