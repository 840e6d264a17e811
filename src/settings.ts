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

/** A whole number in `[min, max]`, or `undefined` when unset (an optional port, an optional limit). */
export function optionalInt(o: { env: string; doc: string; defaultText?: string; min: number; max: number }): Field<number | undefined> {
  return {
    env: o.env,
    doc: o.doc,
    defaultText: o.defaultText ?? 'unset',
    read: (src) => (src[o.env] === undefined || src[o.env] === '' ? undefined : readInt(src, o.env, 0, o.min, o.max)),
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

/** Reads a boolean (`true/false`, `1/0`, `yes/no`, `on/off`; `def` when unset). @throws ConfigError naming the variable. */
export function readBool(src: Source, env: string, def: boolean): boolean {
  const raw = src[env];
  if (raw === undefined || raw === '') return def;
  const v = raw.trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(v)) return true;
  if (['0', 'false', 'no', 'off'].includes(v)) return false;
  throw new ConfigError(env, `must be true or false, got "${raw}"`);
}

/** Reads a comma-separated list (empty when unset). */
export function readList(src: Source, env: string): string[] {
  const raw = src[env];
  if (!raw) return [];
  return raw.split(',').map((s) => s.trim()).filter(Boolean);
}

/** A boolean switch (`true/false`, `1/0`, `yes/no`, `on/off`). */
export function bool(o: { env: string; doc: string; default: boolean }): Field<boolean> {
  return { env: o.env, doc: o.doc, defaultText: String(o.default), read: (src) => readBool(src, o.env, o.default) };
}

/** A comma-separated list of strings (default: empty). */
export function list(o: { env: string; doc: string; defaultText?: string }): Field<readonly string[]> {
  return { env: o.env, doc: o.doc, defaultText: o.defaultText ?? 'none', read: (src) => readList(src, o.env) };
}

/** A string; unset gives `default` (absent: `undefined`). `check` returns why a value is refused. */
export function str(o: { env: string; doc: string; defaultText?: string; check?: (value: string) => string | undefined }): Field<string | undefined>;
export function str(o: { env: string; doc: string; default: Default<string>; defaultText?: string; check?: (value: string) => string | undefined }): Field<string>;
export function str(o: { env: string; doc: string; default?: Default<string>; defaultText?: string; check?: (value: string) => string | undefined }): Field<string | undefined> {
  return {
    env: o.env,
    doc: o.doc,
    defaultText: o.defaultText ?? (typeof o.default === 'string' ? o.default : 'unset'),
    read(src, earlier) {
      const raw = src[o.env];
      if (raw === undefined) return o.default === undefined ? undefined : resolve(o.default, earlier);
      const why = o.check?.(raw);
      if (why !== undefined) throw new ConfigError(o.env, why);
      return raw;
    },
  };
}

/** One of a closed set of words; anything else is refused with `must be a, b or c`. */
export function oneOf<const W extends string>(o: { env: string; doc: string; values: readonly W[]; default: W; message?: string }): Field<W> {
  const words = o.values.length > 1 ? `${o.values.slice(0, -1).join(', ')} or ${o.values[o.values.length - 1]}` : String(o.values[0]);
  return {
    env: o.env,
    doc: o.doc,
    defaultText: o.default,
    read(src) {
      const raw = src[o.env] ?? o.default;
      if (!(o.values as readonly string[]).includes(raw)) throw new ConfigError(o.env, o.message ?? `must be ${words}`);
      return raw as W;
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
