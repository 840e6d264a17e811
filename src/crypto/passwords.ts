/**
 * Password hashing: argon2id with the OWASP parameters (m = 19456 KiB, t = 2, p = 1) via
 * `@node-rs/argon2` (prebuilt; the `argon2` package's binary crashes on Node 20 here).
 * The encoded PHC string carries its parameters, so raising them later re-hashes on next login.
 */
import { hash, verify, Algorithm } from '@node-rs/argon2';

export const ARGON2_OPTIONS = { algorithm: Algorithm.Argon2id, memoryCost: 19456, timeCost: 2, parallelism: 1 } as const;

export function hashPassword(password: string): Promise<string> {
  return hash(password, ARGON2_OPTIONS);
}

/** Verifies in constant time relative to the password; false (never throws) for a malformed hash. */
export async function verifyPassword(encoded: string, password: string): Promise<boolean> {
  try {
    return await verify(encoded, password);
  } catch {
    return false;
  }
}

/**
 * A hash of a random password, computed once: verifying against it when the account does not exist
 * makes "no such user" take as long as "wrong password" (no account-enumeration timing oracle).
 */
let dummy: Promise<string> | undefined;
export function dummyHash(): Promise<string> {
  dummy ??= hashPassword(`dummy-${Math.random()}-${Date.now()}`);
  return dummy;
}
