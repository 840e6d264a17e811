/** The operations grammar on the client side (browser-safe). */
import type { Operation } from './types.js';

/**
 * The string spelling of operations with every value percent-encoded (so `/`, `,`, `%` and `#` in a
 * value cannot change the grammar). Keys keep their given order; the MAC covers this exact string.
 */
export function operationsPath(ops: readonly Operation[] | string): string {
  if (typeof ops === 'string') return ops;
  return ops
    .map((o) => {
      if (typeof o === 'string') return o;
      const { op, ...args } = o;
      const keys = Object.keys(args).filter((k) => args[k] !== undefined);
      return keys.length ? `${op}:${keys.map((k) => `${k}=${encodeURIComponent(String(args[k]))}`).join(',')}` : String(op);
    })
    .join('/');
}
