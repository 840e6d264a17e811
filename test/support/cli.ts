/**
 * Runs the real `obscura` command (bin/obscura.js over the compiled build) as a child process.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { pgliteTemplate } from './db.js';

// Compiled to dist/test/support/cli.js: three levels up is the repository root.
export const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const BIN = join(ROOT, 'bin', 'obscura.js');

/** Only what the child needs: never leak the test runner's own OBSCURA_* settings into it. */
export function cliEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const base: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('OBSCURA_') && k !== 'DATABASE_URL') base[k] = v;
  // Event-loop shedding off unless a test asks for it: two CPUs shared by parallel test files stall
  // every process's loop now and then (see TEST_SERVER_ENV in server.ts).
  // Uploads keep their metadata, as in TEST_SERVER_ENV (server.ts) and for the same reason.
  return { ...base, OBSCURA_LOG_LEVEL: 'warn', OBSCURA_SHED_EVENT_LOOP_DELAY_MS: '0', OBSCURA_METADATA_POLICY: 'keep', ...extra };
}

/**
 * An embedded child finds the installation's migrated template in place (test/support/db.ts builds
 * it once if a build left none): the child's own `openDatabase` copies it into a new data dir, as in
 * production, instead of running initdb and every migration (10-40 s on 2 busy cores).
 */
async function seed(env: Record<string, string>): Promise<void> {
  if (env.OBSCURA_DATA_DIR && !env.DATABASE_URL && !env.OBSCURA_DATABASE_URL) await pgliteTemplate();
}

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

export async function runCli(args: string[], env: Record<string, string>, opts: { input?: string; timeoutMs?: number } = {}): Promise<CliResult> {
  await seed(env);
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: cliEnv(env), stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    // Bounded but generous: on 2 cores shared by parallel test files a cold start can take a minute.
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, ms: Date.now() - started });
    });
    child.stdin.end(opts.input ?? '');
  });
}

export interface ServerProcess {
  child: ChildProcess;
  url: string;
  output: () => string;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Starts `obscura serve` on an ephemeral port and waits for its listening line. */
export async function startServe(env: Record<string, string>, timeoutMs = 120_000): Promise<ServerProcess> {
  await seed(env);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, 'serve'], { env: cliEnv({ OBSCURA_PORT: '0', ...env }), stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`serve did not start: ${out}`));
    }, timeoutMs);
    const onData = (d: Buffer) => {
      out += d;
      const m = /OBSCURA_LISTENING (\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({
          child,
          url: m[1]!,
          output: () => out,
          stop: (signal = 'SIGTERM') =>
            new Promise((res) => {
              if (child.exitCode !== null || child.signalCode !== null) return res(child.exitCode);
              child.once('exit', (code) => res(code));
              child.kill(signal);
            }),
        });
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`serve exited with ${code}: ${out}`));
    });
  });
}

/** Starts `obscura serve` as a worker (no listener) and waits for its ready line. */
export async function startWorker(env: Record<string, string>): Promise<{ child: ChildProcess; output: () => string }> {
  await seed(env);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, 'serve'], { env: cliEnv({ ...env, OBSCURA_ROLE: 'worker' }), stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`worker did not start: ${out}`));
    }, 120_000);
    const onData = (d: Buffer) => {
      out += d;
      if (out.includes('OBSCURA_WORKER_READY')) {
        clearTimeout(timer);
        resolve({ child, output: () => out });
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`worker exited with ${code}: ${out}`));
    });
  });
}

export function exited(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
  });
}
