/**
 * HTTP byte ranges (RFC 9110 §14), shared by signed downloads (assets/read.ts) and the loopback source
 * that feeds ffmpeg (media/video/source.ts).
 */

/** An inclusive plaintext byte range. */
export interface PlainRange {
  start: number;
  end: number;
}

/**
 * Parses a `Range` header (RFC 9110 §14.1.2) for a file of `size` bytes. Returns `null` to serve the
 * whole file (no header, another unit, a syntax we ignore, or several ranges — allowed by the RFC),
 * `'unsatisfiable'` for 416, or the single range.
 */
export function parseRange(header: string | undefined, size: number): PlainRange | null | 'unsatisfiable' {
  if (!header) return null;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return null;
  if (m[1] === '') {
    const suffix = Number(m[2]);
    if (suffix === 0 || size === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(m[1]);
  const end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  if (!Number.isSafeInteger(start) || start >= size) return 'unsatisfiable';
  if (end < start) return null;
  return { start, end };
}
