/** UTC calendar months, the unit of every usage counter and quota. Pure. */

const MONTH_RE = /^(\d{4})-(0[1-9]|1[0-2])$/;

/** The UTC month (`YYYY-MM`) containing `ms` (epoch milliseconds). */
export function monthOf(ms: number): string {
  const d = new Date(ms);
  return `${String(d.getUTCFullYear()).padStart(4, '0')}-${String(d.getUTCMonth() + 1).padStart(2, '0')}`;
}

/** True when `s` is a well-formed `YYYY-MM` month. */
export function isMonth(s: string): boolean {
  return MONTH_RE.test(s);
}

/** The first instant of `month`. */
export function monthStart(month: string): Date {
  const m = MONTH_RE.exec(month);
  if (!m) throw new RangeError(`monthStart: not a YYYY-MM month: ${month}`);
  return new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, 1));
}

/** The first instant of the month after `month`: when that month's quotas reset. */
export function monthEnd(month: string): Date {
  const m = MONTH_RE.exec(month);
  if (!m) throw new RangeError(`monthEnd: not a YYYY-MM month: ${month}`);
  return new Date(Date.UTC(Number(m[1]), Number(m[2]), 1));
}

/** Whole seconds from `nowMs` until the month containing it ends (at least 1). */
export function secondsUntilMonthEnd(nowMs: number): number {
  return Math.max(1, Math.ceil((monthEnd(monthOf(nowMs)).getTime() - nowMs) / 1000));
}
