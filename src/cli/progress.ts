/**
 * Progress display for the client commands: a byte bar for uploads and downloads (cli-progress) and
 * a spinner for jobs. Both draw on stderr, and only when stdout and stderr are terminals and the
 * caller did not ask for `--json` (so pipes, files and scripts get clean output).
 */
import cliProgress from 'cli-progress';

/** A transfer progress display. */
export interface TransferBar {
  update(bytes: number, total?: number): void;
  /** Removes the bar (success or failure). */
  stop(): void;
}

/** A status display for long waits. */
export interface StatusSpinner {
  update(text: string): void;
  stop(): void;
}

/** Whether progress should be drawn: both streams are terminals and output is not JSON. */
export function progressEnabled(json: boolean, streams: { stdout: { isTTY?: boolean }; stderr: { isTTY?: boolean } } = process): boolean {
  return !json && streams.stdout.isTTY === true && streams.stderr.isTTY === true;
}

/** Human-readable bytes (KiB, MiB, GiB: powers of two). */
export function formatBytes(n: number): string {
  if (!Number.isFinite(n)) return '?';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(1)} ${units[i]}`;
}

const NOOP_BAR: TransferBar = { update: () => undefined, stop: () => undefined };
const NOOP_SPINNER: StatusSpinner = { update: () => undefined, stop: () => undefined };

/** A byte progress bar labelled `label` (no-op when disabled). */
export function transferBar(label: string, enabled: boolean, stream: NodeJS.WritableStream = process.stderr): TransferBar {
  if (!enabled) return NOOP_BAR;
  const bar = new cliProgress.SingleBar(
    {
      stream,
      format: `${label} [{bar}] {percentage}% | {done} / {size} | ETA {eta_formatted}`,
      hideCursor: true,
      clearOnComplete: true,
      barsize: 30,
      fps: 10,
    },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  return {
    update(bytes, total) {
      const t = total ?? Math.max(bytes, 1);
      if (!started) {
        bar.start(t, 0, { done: formatBytes(0), size: formatBytes(t) });
        started = true;
      }
      bar.setTotal(t);
      bar.update(bytes, { done: formatBytes(bytes), size: total === undefined ? '?' : formatBytes(total) });
    },
    stop() {
      if (started) bar.stop();
      started = false;
    },
  };
}

const FRAMES = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

/** A one-line spinner with elapsed time (no-op when disabled). */
export function statusSpinner(enabled: boolean, stream: NodeJS.WritableStream & { columns?: number } = process.stderr): StatusSpinner {
  if (!enabled) return NOOP_SPINNER;
  let text = '';
  let frame = 0;
  const started = Date.now();
  const draw = () => {
    const secs = Math.floor((Date.now() - started) / 1000);
    const line = `${FRAMES[frame++ % FRAMES.length]} ${text} (${secs}s)`;
    stream.write(`\r\x1b[2K${line.slice(0, (stream.columns ?? 80) - 1)}`);
  };
  const timer = setInterval(draw, 100);
  timer.unref();
  return {
    update(t) {
      text = t;
      draw();
    },
    stop() {
      clearInterval(timer);
      stream.write('\r\x1b[2K');
    },
  };
}

/** A job progress display (percent, speed and time left from a video job's `progress`); no-op when disabled. */
export interface PercentBar {
  update(p: { percent: number; fps: number; eta_seconds: number | null }, status: string): void;
  stop(): void;
}

/** A percent bar labelled `label` (no-op when disabled). */
export function percentBar(label: string, enabled: boolean, stream: NodeJS.WritableStream = process.stderr): PercentBar {
  if (!enabled) return { update: () => undefined, stop: () => undefined };
  const bar = new cliProgress.SingleBar(
    { stream, format: `${label} [{bar}] {percentage}% | {status} | {speed} fps | ETA {left}`, hideCursor: true, clearOnComplete: true, barsize: 30, fps: 10 },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  return {
    update(p, status) {
      const payload = { status, speed: p.fps.toFixed(0), left: p.eta_seconds === null ? '?' : `${p.eta_seconds}s` };
      if (!started) {
        bar.start(100, 0, payload);
        started = true;
      }
      bar.update(Math.min(100, Math.max(0, p.percent)), payload);
    },
    stop() {
      if (started) bar.stop();
      started = false;
    },
  };
}
