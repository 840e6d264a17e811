/**
 * ffmpeg and ffprobe on a short leash (issue 11, item 6). Every run:
 *
 * - is spawned with an argument array, never a shell, with `-nostdin` and stdin closed;
 * - runs under `prlimit` (util-linux) with an address-space limit (RLIMIT_AS), a CPU-time limit
 *   (RLIMIT_CPU) and a small file-descriptor limit; `prlimit` execs the tool, so the pid we kill is
 *   the tool's own;
 * - dies with us: `setpriv --pdeathsig KILL` (util-linux) asks the kernel to SIGKILL the tool when
 *   the process that started it ends, however it ends (a SIGKILLed worker included). Without it an
 *   orphaned ffmpeg keeps transcoding what it has already read until its CPU limit (it ignores
 *   SIGPIPE, and a short input may sit whole in its socket buffer);
 * - is killed (SIGKILL) when its wall-clock limit passes, when the caller's AbortSignal fires (cancel,
 *   shutdown, a lost job lease), or when its output exceeds what we read;
 * - has its stderr kept only as a bounded tail, for the server log; clients see our own words.
 *
 * What ffmpeg may open is decided by the caller's arguments (pipeline.ts, probe.ts): the input demuxer
 * is forced from the sniffed container and the protocol whitelist names only what the input needs.
 */
import { spawn, execFileSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, isAbsolute, join } from 'node:path';
import { AppError } from '../../errors.js';

/** The leash of one run. */
export interface Leash {
  /** Wall-clock limit, ms. */
  timeoutMs: number;
  /** RLIMIT_CPU, seconds. */
  cpuSeconds: number;
  /** RLIMIT_AS, bytes. */
  memoryBytes: number;
}

/** The installed tools, found once per process. */
export interface VideoTools {
  readonly ffmpeg: string;
  readonly ffprobe: string;
  /** `ffmpeg -version`'s first line (for doctor and the reference). */
  readonly version: string;
  /** Encoders this ffmpeg has, by name (`libx264`, `libvpx-vp9`, …). */
  readonly encoders: ReadonlySet<string>;
  /** Absolute path of `prlimit`, or null when util-linux is missing (then the leash is time-only; doctor warns). */
  readonly prlimit: string | null;
  /** Absolute path of a `setpriv` that has `--pdeathsig`, or null (then an orphaned tool lives until its limits; doctor warns). */
  readonly setpriv: string | null;
}

/**
 * `setpriv` when it can set a parent-death signal (util-linux 2.33 and later have `--pdeathsig`),
 * tried once on `true`; null otherwise, so an older setpriv never makes every run fail.
 */
function deathSignalTool(): string | null {
  const setpriv = which('setpriv') ?? which('/usr/bin/setpriv');
  const truth = which('true') ?? which('/bin/true') ?? which('/usr/bin/true');
  if (!setpriv || !truth) return null;
  try {
    execFileSync(setpriv, ['--pdeathsig', 'KILL', '--', truth], { timeout: 10_000, stdio: 'ignore' });
    return setpriv;
  } catch {
    return null;
  }
}

/** Resolves a binary name on PATH (or checks an absolute path); null when it is not executable. */
export function which(name: string, path = process.env.PATH ?? ''): string | null {
  const candidates = isAbsolute(name) ? [name] : name.includes('/') ? [] : path.split(delimiter).filter(Boolean).map((d) => join(d, name));
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK);
      return c;
    } catch {
      // next
    }
  }
  return null;
}

/** How long "not found" is remembered before the binaries are looked for again. */
export const MISSING_TOOLS_RECHECK_MS = 30_000;

const found = new Map<string, { tools: VideoTools | null; at: number }>();

/**
 * Finds ffmpeg and ffprobe (absolute paths or names on PATH) and what the ffmpeg can encode. Cached per
 * pair of paths; null when either is missing or does not run. A miss is remembered for `recheckMs` only,
 * so an operator who installs ffmpeg on a running server gets video within that time, without a
 * restart (the cache holds at most one entry per configured pair of paths).
 */
export function findVideoTools(paths: { ffmpegPath: string; ffprobePath: string }, opts: { recheckMs?: number; now?: number } = {}): VideoTools | null {
  const cacheKey = `${paths.ffmpegPath}\0${paths.ffprobePath}`;
  const now = opts.now ?? Date.now();
  const hit = found.get(cacheKey);
  if (hit && (hit.tools || now - hit.at < (opts.recheckMs ?? MISSING_TOOLS_RECHECK_MS))) return hit.tools;
  let tools: VideoTools | null = null;
  const ffmpeg = which(paths.ffmpegPath);
  const ffprobe = which(paths.ffprobePath);
  if (ffmpeg && ffprobe) {
    try {
      const first = execFileSync(ffmpeg, ['-hide_banner', '-version'], { encoding: 'utf8', timeout: 10_000, stdio: ['ignore', 'pipe', 'ignore'] }).split('\n')[0]!;
      const version = `ffmpeg ${/version (\S+)/.exec(first)?.[1] ?? 'unknown'}`;
      const list = execFileSync(ffmpeg, ['-hide_banner', '-encoders'], { encoding: 'utf8', timeout: 10_000, stdio: ['ignore', 'pipe', 'ignore'], maxBuffer: 4 * 1024 * 1024 });
      const encoders = new Set<string>();
      for (const line of list.split('\n')) {
        const m = /^\s[VAS][F.][S.][X.][B.][D.]\s+(\S+)/.exec(line);
        if (m) encoders.add(m[1]!);
      }
      execFileSync(ffprobe, ['-hide_banner', '-version'], { timeout: 10_000, stdio: 'ignore' });
      tools = Object.freeze({ ffmpeg, ffprobe, version, encoders, prlimit: which('prlimit') ?? which('/usr/bin/prlimit'), setpriv: deathSignalTool() });
    } catch {
      tools = null;
    }
  }
  found.set(cacheKey, { tools, at: now });
  return tools;
}

/** The tools, or 503 `ERR_VIDEO_UNAVAILABLE` naming the settings (images keep working). */
export function requireVideoTools(paths: { ffmpegPath: string; ffprobePath: string }): VideoTools {
  const tools = findVideoTools(paths);
  if (!tools) {
    throw new AppError('ERR_VIDEO_UNAVAILABLE', 'Video processing is not available on this server: ffmpeg and ffprobe were not found. The operator installs them (Debian: apt-get install ffmpeg) or sets OBSCURA_FFMPEG_PATH and OBSCURA_FFPROBE_PATH.', {
      details: { settings: ['OBSCURA_FFMPEG_PATH', 'OBSCURA_FFPROBE_PATH'] },
      headers: { 'retry-after': String(MISSING_TOOLS_RECHECK_MS / 1000) },
    });
  }
  return tools;
}

/** Options of {@link runTool}. */
export interface RunToolOptions {
  leash: Leash;
  signal?: AbortSignal | undefined;
  /** Called with each complete stdout line (ffmpeg `-progress pipe:1`). Otherwise stdout is collected. */
  onLine?: ((line: string) => void) | undefined;
  /** Most stdout bytes collected (ffprobe's JSON); beyond, the tool is killed. Default 4 MiB. */
  maxStdoutBytes?: number;
  /** Called with the child's pid once it runs (tests use it to inspect the process). */
  onSpawn?: ((pid: number) => void) | undefined;
}

/** How a run ended. */
export interface ToolResult {
  stdout: string;
  /** The last few KiB of stderr (server log only). */
  stderrTail: string;
}

/** Why a run was stopped, when we stopped it. */
export class ToolStopped extends Error {
  constructor(readonly reason: 'timeout' | 'aborted' | 'output_too_large') {
    super(`tool stopped: ${reason}`);
  }
}

/** Why a run failed on its own (non-zero exit or a signal such as SIGXCPU / SIGSEGV). */
export class ToolFailed extends Error {
  constructor(
    readonly exitCode: number | null,
    readonly signalName: string | null,
    readonly stderrTail: string,
  ) {
    super(`tool failed (${signalName ?? `exit ${exitCode}`})`);
  }
}

/**
 * Whether a failed run never started: the dynamic loader could not map ffmpeg's libraries, which is
 * what an address-space limit below ffmpeg's own footprint (a few hundred MiB) does. The file is not
 * at fault, so callers answer with {@link leashTooTight} instead of blaming it.
 */
export function neverStarted(err: ToolFailed): boolean {
  return /error while loading shared libraries/.test(err.stderrTail);
}

/** 503 `ERR_VIDEO_UNAVAILABLE`: ffmpeg cannot even load within OBSCURA_VIDEO_MEMORY_BYTES. */
export function leashTooTight(memoryBytes: number): AppError {
  return new AppError('ERR_VIDEO_UNAVAILABLE', `Video processing is not available on this server: ffmpeg cannot start within its memory limit (${Math.round(memoryBytes / 1024 ** 2)} MiB). The operator raises OBSCURA_VIDEO_MEMORY_BYTES (1 GiB or more).`, {
    details: { settings: ['OBSCURA_VIDEO_MEMORY_BYTES'], limit: memoryBytes },
    headers: { 'retry-after': String(MISSING_TOOLS_RECHECK_MS / 1000) },
  });
}

/**
 * Runs `bin args` under the leash. Resolves on exit 0; rejects with {@link ToolStopped} (we killed it)
 * or {@link ToolFailed}. The child is always dead when the promise settles.
 */
export function runTool(tools: Pick<VideoTools, 'prlimit' | 'setpriv'>, bin: string, args: readonly string[], o: RunToolOptions): Promise<ToolResult> {
  return new Promise((resolve, reject) => {
    if (o.signal?.aborted) {
      reject(new ToolStopped('aborted'));
      return;
    }
    const limits = [`--as=${o.leash.memoryBytes}`, `--cpu=${Math.max(1, Math.ceil(o.leash.cpuSeconds))}`, '--nofile=64', '--core=0'];
    const [leashed, leashedArgs] = tools.prlimit ? [tools.prlimit, [...limits, '--', bin, ...args]] : [bin, [...args]];
    // setpriv and prlimit each exec the next program: the pid we kill is still the tool's own. The
    // death signal is tied to the thread that forks, the event loop's, which lives as long as we do.
    const [cmd, argv] = tools.setpriv ? [tools.setpriv, ['--pdeathsig', 'KILL', '--', leashed, ...leashedArgs]] : [leashed, leashedArgs];
    const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: '/usr/bin:/bin', LC_ALL: 'C' }, detached: false });
    let stopped: ToolStopped | undefined;
    const kill = (reason: ToolStopped['reason']): void => {
      stopped ??= new ToolStopped(reason);
      child.kill('SIGKILL');
    };
    const timer = setTimeout(() => kill('timeout'), o.leash.timeoutMs);
    const onAbort = (): void => kill('aborted');
    o.signal?.addEventListener('abort', onAbort, { once: true });
    if (child.pid !== undefined) o.onSpawn?.(child.pid);

    const maxStdout = o.maxStdoutBytes ?? 4 * 1024 * 1024;
    const out: Buffer[] = [];
    let outBytes = 0;
    let partial = '';
    child.stdout.on('data', (chunk: Buffer) => {
      if (o.onLine) {
        const text = partial + chunk.toString('utf8');
        const lines = text.split('\n');
        partial = lines.pop() ?? '';
        if (partial.length > 4096) partial = '';
        for (const line of lines) o.onLine(line.trim());
        return;
      }
      outBytes += chunk.length;
      if (outBytes > maxStdout) kill('output_too_large');
      else out.push(chunk);
    });
    let tail = '';
    child.stderr.on('data', (chunk: Buffer) => {
      tail = (tail + chunk.toString('utf8')).slice(-4096);
    });
    child.once('error', (err) => {
      clearTimeout(timer);
      o.signal?.removeEventListener('abort', onAbort);
      reject(new ToolFailed(null, null, String(err.message)));
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      o.signal?.removeEventListener('abort', onAbort);
      if (stopped) reject(stopped);
      else if (code === 0) resolve({ stdout: Buffer.concat(out).toString('utf8'), stderrTail: tail });
      else reject(new ToolFailed(code, signal, tail));
    });
  });
}
