/**
 * Password policy for console accounts (pure: values in, a verdict out; no network).
 *
 * Follows NIST SP 800-63B §5.1.1.2 rather than composition rules: a long minimum, a generous
 * maximum, and a refusal of passwords that appear in breach corpora or are trivially derived from
 * context. Concretely a password is refused when it
 * - is shorter than 12 or longer than 1024 characters (Unicode code points after NFKC),
 * - contains the local part of the account's email or the org's name,
 * - normalises to an entry of the bundled common-password list (`common-passwords.ts`):
 *   case, leetspeak, leading/trailing digits and symbols and doubling are undone first, so
 *   `P@ssw0rd2024!` counts as `password`,
 * - is made of one short unit repeated (`abababababab`, `passwordpassword`),
 * - is mostly runs, alphabetic/numeric sequences or keyboard walks (`aaaaaaaaaaaa`,
 *   `123456789012`, `qwertyuiop12`): fewer than 8 characters remain once each such stretch counts
 *   as one.
 *
 * Security note: this is an offline list of a few thousand base words, not a breach database; it
 * stops the guesses an online attacker tries first, and the login throttle bounds the rest.
 */
import { randomBytes } from 'node:crypto';
import { AppError } from '../errors.js';
import { COMMON_PASSWORDS_TEXT } from './common-passwords.js';

/** Minimum length in code points (NIST SP 800-63B asks for at least 8; we ask 12). */
export const PASSWORD_MIN_LENGTH = 12;
/** Maximum length in code points: long passphrases are welcome, unbounded input is not (argon2 cost). */
export const PASSWORD_MAX_LENGTH = 1024;
/** Fewer "effective" characters than this, once runs and sequences collapse, is refused. */
const MIN_EFFECTIVE_LENGTH = 8;

/** Why a password was refused; sent to the client as `reason` in the ERR_VALIDATION problem. */
export type PasswordRejection =
  | 'too_short'
  | 'too_long'
  | 'contains_email'
  | 'contains_org_name'
  | 'common_password'
  | 'repeated_pattern'
  | 'sequence';

/** Facts about the account that a password must not contain. */
export interface PasswordContext {
  email?: string | undefined;
  orgName?: string | undefined;
}

let common: ReadonlySet<string> | undefined;
function commonSet(): ReadonlySet<string> {
  common ??= new Set(COMMON_PASSWORDS_TEXT.split(/\s+/).filter(Boolean));
  return common;
}

const LEET: Record<string, string> = { '0': 'o', '1': 'i', '3': 'e', '4': 'a', '5': 's', '7': 't', '8': 'b', '9': 'g', '@': 'a', $: 's', '!': 'i', '|': 'l', '+': 't' };
const deLeet = (s: string, one: 'i' | 'l') => [...s].map((c) => (c === '1' ? one : (LEET[c] ?? c))).join('');
const stripAffixes = (s: string) => s.replace(/^[^\p{L}]+/u, '').replace(/[^\p{L}]+$/u, '');

/** The shortest unit whose repetition (at least twice) makes up `s` exactly, or undefined. */
function repeatedUnit(s: string): string | undefined {
  const cps = [...s];
  for (let len = 1; len <= cps.length / 2; len++) {
    if (cps.length % len !== 0) continue;
    const unit = cps.slice(0, len).join('');
    if (unit.repeat(cps.length / len) === s) return unit;
  }
  return undefined;
}

function isCommon(candidate: string): boolean {
  const set = commonSet();
  const lower = candidate.toLowerCase();
  const forms = new Set<string>([lower, stripAffixes(lower)]);
  for (const one of ['i', 'l'] as const) {
    const d = deLeet(lower, one);
    forms.add(d);
    // Digits kept as digits at the ends (Summer2024!) but leet in the middle (P@ssw0rd): both.
    forms.add(stripAffixes(deLeet(stripAffixes(lower) || lower, one)));
    forms.add(stripAffixes(d));
  }
  for (const f of forms) {
    if (!f) continue;
    if (set.has(f)) return true;
    const unit = repeatedUnit(f);
    if (unit && set.has(unit)) return true;
  }
  return false;
}

const KEYBOARD_ROWS = ['1234567890', 'qwertyuiop', 'asdfghjkl', 'zxcvbnm', 'qwertzuiop', 'yxcvbnm', 'azertyuiop', 'qsdfghjklm', 'wxcvbn'];

/** True when b follows a on a keyboard row (either direction). */
function keyboardAdjacent(a: string, b: string): boolean {
  for (const row of KEYBOARD_ROWS) {
    const i = row.indexOf(a);
    if (i < 0) continue;
    if (row[i + 1] === b || (i > 0 && row[i - 1] === b)) return true;
  }
  return false;
}

/**
 * Collapses every run of one character (length >= 3), every ascending or descending sequence of
 * code points and every keyboard walk (length >= 3) to one character; returns the remaining length
 * and which kind of pattern saved the most.
 */
function effectiveLength(pw: string): { length: number; dominant: 'repeated_pattern' | 'sequence' } {
  const c = [...pw.toLowerCase()];
  let effective = 0;
  let savedRuns = 0;
  let savedSeq = 0;
  let i = 0;
  while (i < c.length) {
    // Longest run of one character starting at i.
    let run = 1;
    while (i + run < c.length && c[i + run] === c[i]) run++;
    // Longest sequence (constant step of +1 or -1 code point) or keyboard walk starting at i.
    let seq = 1;
    if (i + 1 < c.length) {
      const step = c[i + 1]!.codePointAt(0)! - c[i]!.codePointAt(0)!;
      if (step === 1 || step === -1) {
        while (i + seq < c.length && c[i + seq]!.codePointAt(0)! - c[i + seq - 1]!.codePointAt(0)! === step) seq++;
      }
      let walk = 1;
      while (i + walk < c.length && keyboardAdjacent(c[i + walk - 1]!, c[i + walk]!) && (walk < 2 || c[i + walk] !== c[i + walk - 2])) walk++;
      seq = Math.max(seq, walk);
    }
    if (run >= 3 && run >= seq) {
      savedRuns += run - 1;
      i += run;
    } else if (seq >= 3) {
      savedSeq += seq - 1;
      i += seq;
    } else {
      i += 1;
    }
    effective++;
  }
  return { length: effective, dominant: savedRuns >= savedSeq ? 'repeated_pattern' : 'sequence' };
}

/** The local part of an email without a `+tag`, lowercased; undefined when too short to matter. */
function emailLocal(email: string | undefined): string | undefined {
  if (!email) return undefined;
  const local = email.trim().toLowerCase().split('@')[0]?.split('+')[0] ?? '';
  return local.length >= 3 ? local : undefined;
}

/**
 * Checks a password against the policy. Returns the first reason it is refused, or null when it is
 * acceptable. Pure and synchronous.
 */
export function checkPassword(password: string, ctx: PasswordContext = {}): PasswordRejection | null {
  const pw = password.normalize('NFKC');
  const length = [...pw].length;
  if (length < PASSWORD_MIN_LENGTH) return 'too_short';
  if (length > PASSWORD_MAX_LENGTH) return 'too_long';
  const lower = pw.toLowerCase();
  const squash = (s: string) => s.replace(/[\s._\-]+/g, '');
  const local = emailLocal(ctx.email);
  if (local && (lower.includes(local) || squash(lower).includes(squash(local)))) return 'contains_email';
  const org = ctx.orgName?.trim().toLowerCase();
  if (org && org.length >= 3 && (lower.includes(org) || squash(lower).includes(squash(org)))) return 'contains_org_name';
  if (isCommon(pw)) return 'common_password';
  const unit = repeatedUnit(lower);
  // A unit repeated three times or more, or twice when the unit itself is weak, adds nothing.
  if (unit && ([...unit].length * 3 <= length || effectiveLength(unit).length < MIN_EFFECTIVE_LENGTH / 2)) return 'repeated_pattern';
  const eff = effectiveLength(pw);
  if (eff.length < MIN_EFFECTIVE_LENGTH) return eff.dominant;
  return null;
}

/**
 * A random password for a new account (144 random bits, base64url) that this policy accepts for
 * `ctx`: a random draw can, rarely, contain the org's name or the email's local part, so it draws again.
 */
export function generatePassword(ctx: PasswordContext = {}): string {
  for (;;) {
    const password = randomBytes(18).toString('base64url');
    if (checkPassword(password, ctx) === null) return password;
  }
}

/**
 * Throws `ERR_VALIDATION` (details `{ field: 'password', reason }`) when the password breaks the
 * policy; returns otherwise.
 */
export function assertPasswordPolicy(password: string, ctx: PasswordContext = {}): void {
  const reason = checkPassword(password, ctx);
  if (reason === null) return;
  const messages: Record<PasswordRejection, string> = {
    too_short: `The password must be at least ${PASSWORD_MIN_LENGTH} characters long.`,
    too_long: `The password must be at most ${PASSWORD_MAX_LENGTH} characters long.`,
    contains_email: 'The password must not contain your email address.',
    contains_org_name: "The password must not contain the organisation's name.",
    common_password: 'The password is too common; it appears in lists attackers try first.',
    repeated_pattern: 'The password is a repeated pattern; choose something less predictable.',
    sequence: 'The password is mostly a sequence or keyboard pattern; choose something less predictable.',
  };
  throw new AppError('ERR_VALIDATION', messages[reason], { details: { field: 'password', reason } });
}
