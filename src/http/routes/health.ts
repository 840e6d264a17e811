/** Liveness, readiness and robots. */
import type { FastifyInstance } from 'fastify';
import { sql } from 'kysely';
import { Type } from 'typebox';
import type { DatabaseHandle } from '../../db/database.js';
import { AppError } from '../../errors.js';

/** How long /readyz waits for the database. */
const READY_TIMEOUT_MS = 2000;

export function healthRoutes(app: FastifyInstance, db: DatabaseHandle): void {
  app.get('/healthz', {
    schema: { tags: ['operations'], summary: 'Liveness: the process is up', response: { 200: Type.Object({ status: Type.Literal('ok') }) } },
    handler: async () => ({ status: 'ok' as const }),
  });
  app.get('/readyz', {
    schema: {
      tags: ['operations'],
      summary: 'Readiness: the database answers',
      response: { 200: Type.Object({ status: Type.Literal('ready') }), 503: { $ref: 'Problem#', description: 'The database does not answer within 2 s (ERR_DEPENDENCY_UNAVAILABLE).' } },
    },
    handler: async () => {
      // A probe must answer promptly even when the database hangs: 2 s, then "not ready".
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([
          sql`select 1`.execute(db.system),
          new Promise((_, reject) => (timer = setTimeout(() => reject(new Error('readiness probe timed out')), READY_TIMEOUT_MS))),
        ]);
      } catch (err) {
        throw new AppError('ERR_DEPENDENCY_UNAVAILABLE', 'The database is not reachable.', { cause: err, details: { dependency: 'database' }, headers: { 'Retry-After': '5' } });
      } finally {
        clearTimeout(timer);
      }
      return { status: 'ready' as const };
    },
  });
  app.get('/robots.txt', {
    schema: { tags: ['operations'], summary: 'Disallow all crawling', response: { 200: Type.String() } },
    handler: async (_req, reply) => reply.type('text/plain; charset=utf-8').send('User-agent: *\nDisallow: /\n'),
  });
}
