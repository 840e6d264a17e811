/** The listeners beside the main one: the HTTP→HTTPS redirect and Prometheus, when configured. */
import { randomUUID } from 'node:crypto';
import type { PerimeterSettings } from './settings.js';
import { startMetricsServer, type MetricsServer, type ProcessMetrics } from '../usage/metrics.js';
import { startRedirectServer, type RedirectServer } from './tls.js';

/** The listeners beside the main one: HTTP→HTTPS redirect and Prometheus, when configured. */
export interface SideListeners {
  readonly redirect: RedirectServer | null;
  readonly metrics: MetricsServer | null;
  close(): Promise<void>;
}

/** Starts the configured side listeners (called by `main.ts` after the main listener is up). */
export async function startSideListeners(config: { readonly host: string; readonly publicUrl: string; readonly perimeter: PerimeterSettings }, perimeter: { metrics: ProcessMetrics }, requestId: () => string = randomUUID): Promise<SideListeners> {
  const p = config.perimeter;
  const redirect = p.httpRedirectPort !== undefined ? await startRedirectServer({ host: config.host, port: p.httpRedirectPort, publicUrl: config.publicUrl, requestId }) : null;
  let metrics: MetricsServer | null = null;
  try {
    metrics = p.metricsPort !== undefined ? await startMetricsServer({ host: p.metricsHost, port: p.metricsPort, metrics: perimeter.metrics, token: p.metricsToken }) : null;
  } catch (err) {
    await redirect?.close();
    throw err;
  }
  return {
    redirect,
    metrics,
    async close() {
      await Promise.all([redirect?.close(), metrics?.close()]);
    },
  };
}
