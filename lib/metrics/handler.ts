// The `/metrics` endpoint: a registry's metrics in the Prometheus text format (or OpenMetrics,
// when the registry was made for it), collected at scrape time.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Registry } from 'prom-client';
import { errors, sendError } from '../errors/llmux-error.js';

/** The handler returned by {@link metricsHandler}. */
export type MetricsHandler = (req: IncomingMessage, res: ServerResponse) => void;

/**
 * Serves `registry`'s metrics with its content type (`text/plain; version=0.0.4` for a default
 * registry) and `Cache-Control: no-store`. Gauges that read live state (watched gates and pools)
 * are collected at this moment. A collect callback that throws answers 500 `internal_error`.
 * Mount it wherever Prometheus scrapes, behind your own access control if the host is public.
 *
 * @example
 * const metrics = createMetrics();
 * app.get('/metrics', metricsHandler(metrics.registry));
 * // or for the app's own registry, shared with other libraries:
 * app.get('/metrics', metricsHandler(hostRegistry));
 */
export function metricsHandler(registry: Registry): MetricsHandler {
  if (!isRegistry(registry)) {
    throw new TypeError(`metricsHandler: registry must be a prom-client Registry, got ${String(registry)}`);
  }
  return function llmuxMetricsHandler(_req: IncomingMessage, res: ServerResponse): void {
    registry.metrics().then(
      (text) => {
        if (res.headersSent || res.destroyed) return;
        res.statusCode = 200;
        res.setHeader('Content-Type', registry.contentType);
        res.setHeader('Cache-Control', 'no-store');
        res.setHeader('Content-Length', Buffer.byteLength(text));
        res.end(text);
      },
      (err: unknown) => sendError(res, errors.internal(err)),
    );
  };
}

/** True for a prom-client Registry, also from another copy of the package. */
export function isRegistry(value: unknown): value is Registry {
  if (typeof value !== 'object' || value === null) return false;
  const r = value as Partial<Registry>;
  return (
    typeof r.metrics === 'function' &&
    typeof r.registerMetric === 'function' &&
    typeof r.getSingleMetric === 'function' &&
    typeof r.removeSingleMetric === 'function'
  );
}
