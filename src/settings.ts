/**
 * The kit a capability declares its settings with (issue 10, item 8): each field names its
 * `OBSCURA_*` variable once, with its default, range and doc; {@link defineSection} turns the fields
 * into a typed, frozen section that `config/` composes (it owns loading, the unknown-variable check
 * and `doctor`, nothing else). A value that cannot be used throws `ConfigError` naming the variable.
 */
import { ConfigError } from './errors.js';

/** The merged settings source: environment over file, raw strings. */
export type Source = Readonly<Record<string, string | undefined>>;

/** One documented setting. `read` sees the fields of its section read so far (for derived defaults). */
export interface Field<T> {
  readonly env: string;
  readonly doc: string;
  /** The default as documented (`"4 × OBSCURA_PROCESS_CONCURRENCY"`, `"443,80"`). */
  readonly defaultText: string;
  read(src: Source, earlier: Readonly<Record<string, unknown>>): T;
}

type Default<T> = T | ((earlier: Readonly<Record<string, unknown>>) => T);
const resolve = <T>(d: Default<T>, earlier: Readonly<Record<string, unknown>>): T => (typeof d === 'function' ? (d as (e: Readonly<Record<string, unknown>>) => T)(earlier) : d);

/** Reads a whole number in `[min, max]` (`def` when unset). @throws ConfigError naming the variable. */
export function readInt(src: Source, env: string, def: number, min: number, max: number): number {
  const raw = src[env];
  if (raw === undefined || raw === '') return def;
  if (!/^\d+$/.test(raw.trim())) throw new ConfigError(env, `must be a whole number, got "${raw}"`);
  const n = Number(raw);
  if (n < min || n > max) throw new ConfigError(env, `must be between ${min} and ${max}, got ${n}`);
  return n;
}

/** A whole number in `[min, max]`. */
export function int(o: { env: string; doc: string; default: Default<number>; defaultText?: string; min: number; max: number }): Field<number> {
  return {
    env: o.env,
    doc: o.doc,
    defaultText: o.defaultText ?? String(o.default),
    read(src, earlier) {
      const raw = src[o.env];
      return raw === undefined || raw === '' ? resolve(o.default, earlier) : readInt(src, o.env, 0, o.min, o.max);
    },
  };
}

/** A comma-separated list of TCP ports (1–65535). */
export function ports(o: { env: string; doc: string; default: number[] }): Field<readonly number[]> {
  return {
    env: o.env,
    doc: o.doc,
    defaultText: o.default.join(','),
    read(src) {
      const raw = (src[o.env] ?? '').split(',').map((s) => s.trim()).filter(Boolean);
      if (raw.length === 0) return o.default;
      return raw.map((p) => {
        const n = Number(p);
        if (!/^\d{1,5}$/.test(p) || n < 1 || n > 65535) throw new ConfigError(o.env, `"${p}" is not a port; use a comma-separated list such as 443,8443`);
        return n;
      });
    },
  };
}

/** A section: typed fields, read in declaration order. */
export interface Section<T> {
  /** Every variable the section owns (the unknown-variable check and the README check use them). */
  readonly envNames: readonly string[];
  /** The declared fields (absent for a section with a hand-written reader). */
  readonly fields?: { readonly [K in keyof T]: Field<T[K]> };
  /** Reads and freezes the section. @throws ConfigError naming the variable. */
  read(src: Source): Readonly<T>;
}

/**
 * Declares a section from its fields. `check` states rules between fields (it throws `ConfigError`
 * naming the variable to change).
 */
export function defineSection<T extends object>(fields: { readonly [K in keyof T]: Field<T[K]> }, check?: (section: Readonly<T>) => void): Section<T> {
  return {
    envNames: Object.freeze(Object.values<Field<unknown>>(fields).map((f) => f.env)),
    fields,
    read(src) {
      const out: Record<string, unknown> = {};
      for (const [k, f] of Object.entries<Field<unknown>>(fields)) out[k] = f.read(src, out);
      const section = Object.freeze(out) as Readonly<T>;
      check?.(section);
      return section;
    },
  };
}
