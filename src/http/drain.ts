/**
 * Graceful shutdown for the HTTP side (issue 9, item 19). On `startDraining()`:
 * - every new request — `/readyz` included, so a load balancer stops routing here at once — is
 *   answered `503 ERR_UNAVAILABLE` with `Retry-After` and `Connection: close`, while the listener
 *   stays open so probes see the 503 rather than a refused connection;
 * - requests already running (uploads, downloads) continue; `drained` resolves when none is left or
 *   the drain time runs out (then the caller cuts the remaining connections).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify';
import { AppError } from '../errors.js';

export interface Drain {
  /** Stops taking requests; resolves `true` when in-flight requests finished within `ms`, else `false`. */
  drain(ms: number): Promise<boolean>;
  /** Ends a running `drain` wait at once (a second signal: cut now). */
  cut(): void;
  /** Requests running now. */
  readonly inFlight: number;
}

/** Installs the draining gate as the first onRequest hook of `app`. */
export function installDrain(app: FastifyInstance): Drain {
  let draining = false;
  let inFlight = 0;
  let wake: (() => void) | null = null;
  // 'close' fires once per response, finished or aborted, so the count cannot leak. One listener
  // shared by every response and a callback hook: no closure or promise per request (issue 12, item 4).
  const closed = (): void => {
    inFlight--;
    if (inFlight === 0) wake?.();
  };
  app.addHook('onRequest', (_req: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction) => {
    if (draining) {
      reply.header('Connection', 'close');
      return done(new AppError('ERR_UNAVAILABLE', 'This server is shutting down; retry (another instance will answer).', { headers: { 'Retry-After': '5' } }));
    }
    inFlight++;
    reply.raw.on('close', closed);
    done();
  });
  return {
    get inFlight() {
      return inFlight;
    },
    drain(ms) {
      draining = true;
      if (inFlight === 0) return Promise.resolve(true);
      return new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => {
          wake = null;
          resolve(false);
        }, ms);
        timer.unref();
        wake = () => {
          clearTimeout(timer);
          wake = null;
          resolve(inFlight === 0);
        };
      });
    },
    cut() {
      wake?.();
    },
  };
}
