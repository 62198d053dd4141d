// Prometheus metrics of the relay (prom-client): one middleware observes each request once when
// its response closes, reading the request context; gates and pools are read at scrape time.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Gauge, Registry } from 'prom-client';
import { ensureContext, getContext } from '../context.js';
import type { TokenClasses } from '../usage.js';
import type { ConcurrencyGate } from '../middleware/concurrency-gate.js';
import type { UpstreamStatus } from '../upstream/pool.js';
import { metricsHandler, type MetricsHandler } from './handler.js';
import { createInstruments, type Instruments } from './instruments.js';
import {
  ATTEMPT_OUTCOMES,
  AUTH_FAILURE_CODES,
  BODY_REFUSAL_CODES,
  KNOWN_ERROR_CODES,
  LabelSet,
  OTHER_LABEL,
  RouteLabels,
  statusClassOf,
} from './labels.js';
import { resolveMetricsOptions, type MetricsOptions } from './options.js';

export { metricsHandler, type MetricsHandler } from './handler.js';
export { DEFAULT_DURATION_BUCKETS, DEFAULT_TTFB_BUCKETS } from './instruments.js';
export { DEFAULT_METRIC_MODELS, KNOWN_ERROR_CODES, METRIC_ROUTES } from './labels.js';
export type { MetricsOptions } from './options.js';

type Next = (err?: unknown) => void;

/** The middleware returned by {@link LlmuxMetrics.middleware}. */
export type MetricsMiddleware = (req: IncomingMessage, res: ServerResponse, next: Next) => void;

/** What {@link LlmuxMetrics.watchGate} reads: a {@link ConcurrencyGate}, or anything with its `stats()`. */
export type WatchableGate = Pick<ConcurrencyGate, 'stats'>;

/** What {@link LlmuxMetrics.watchPool} reads: an `UpstreamPool`, or anything with its `status()`. */
export interface WatchablePool {
  status(): readonly Pick<UpstreamStatus, 'name' | 'state'>[];
}

/** The metrics of one relay, returned by {@link createMetrics}. */
export interface LlmuxMetrics {
  /** The Registry the metrics are on: the one passed in, or this instance's own. */
  readonly registry: Registry;
  /**
   * The middleware that observes requests; mount it first so it sees every request and its whole
   * duration. Returns the same function on every call, and a request passing it twice is
   * observed once.
   */
  middleware(): MetricsMiddleware;
  /**
   * Reports `gate_queue_depth{gate}` and `gate_in_flight{gate}` from `gate.stats()` at each
   * scrape. Returns a function that stops watching it. Throws a TypeError when a gate of that
   * name is already watched.
   * @param name - the `gate` label. Default `'default'`.
   */
  watchGate(gate: WatchableGate, name?: string): () => void;
  /**
   * Reports `upstream_state{upstream,state}` for each endpoint of `pool` from `pool.status()` at
   * each scrape, and labels its endpoint names on `upstream_requests_total`. Returns a function
   * that stops watching it. Throws a TypeError when an endpoint name is already watched.
   */
  watchPool(pool: WatchablePool): () => void;
  /** {@link metricsHandler} for this instance's registry. */
  handler(): MetricsHandler;
  /**
   * Resolves once every request observed so far is recorded, i.e. has settled (its cost priced,
   * its last upstream attempt logged). For tests and a last scrape before shutdown: no polling.
   *
   * @example
   * await request(app).post('/v1/chat/completions').send(body);
   * await metrics.whenRecorded();
   * expect(await metrics.registry.getSingleMetricAsString('llmux_requests_total')).toContain('2xx');
   */
  whenRecorded(): Promise<void>;
  /** Stops watching every gate and pool; counters keep their values for a last scrape. Idempotent. */
  close(): Promise<void>;
}

const UPSTREAM_STATES = ['healthy', 'cooling', 'half-open', 'disabled'] as const;

/** The `class` label of each token class of a usage. */
const TOKEN_CLASS_LABELS = [
  ['cachedTokens', 'cached'],
  ['cacheWriteTokens', 'cache_write'],
  ['reasoningTokens', 'reasoning'],
  ['audioPromptTokens', 'audio_prompt'],
  ['audioCompletionTokens', 'audio_completion'],
] as const satisfies readonly (readonly [keyof TokenClasses, string])[];

/**
 * Prometheus metrics for llmux on the host's prom-client Registry or a private one (two instances
 * never share a series). The middleware records each request once, when its response closes, from
 * the request context that the other llmux middlewares fill in; gate and pool gauges are read at
 * scrape time, so nothing runs between scrapes. Metric names (with the default `llmux_` prefix):
 *
 * - `requests_total{route,model,status_class,code}`, `request_duration_seconds{route,model}`,
 *   `time_to_first_byte_seconds{model}`, `in_flight_requests`
 * - `prompt_tokens_total{model}`, `completion_tokens_total{model}`, `spend_usd_total{model}`
 * - `gate_queue_depth{gate}`, `gate_in_flight{gate}`, `gate_wait_seconds`, `retries_total{reason}`
 * - `upstream_requests_total{upstream,outcome}`, `upstream_state{upstream,state}`
 * - `recovered_panics_total`, `bodies_refused_total{code}`, `auth_failures_total{reason}`
 *
 * Every label is bounded: routes, models, error codes and upstream names outside their known sets
 * are `other`; no key, user, team or request id is ever a label.
 *
 * @example
 * const metrics = createMetrics({ models: ['gpt-4o', 'gpt-4o-mini'] });
 * app.use(metrics.middleware()); // first
 * app.get('/metrics', metricsHandler(metrics.registry));
 * const gateway = llmux({ upstream: pool, auth: { keys }, gate: { max: 16 } });
 * metrics.watchPool(pool);
 * metrics.watchGate(gateway.pieces.gate!);
 * app.use(gateway);
 */
export function createMetrics(options: MetricsOptions = {}): LlmuxMetrics {
  return new PrometheusMetrics(options);
}

class PrometheusMetrics implements LlmuxMetrics {
  readonly registry: Registry;
  private readonly instruments: Instruments;
  private readonly routes: RouteLabels;
  private readonly models: LabelSet;
  private readonly upstreams: LabelSet;
  private readonly codes = new LabelSet(KNOWN_ERROR_CODES);
  private readonly outcomes = new LabelSet(ATTEMPT_OUTCOMES);
  private readonly gates = new Map<string, WatchableGate>();
  private readonly pools = new Map<WatchablePool, readonly string[]>();
  private readonly watchedUpstreams = new Set<string>();
  /** Requests observed and not yet recorded, with their route label; the once-only guard. */
  private readonly pending = new WeakMap<ServerResponse, string>();
  /** How many observed requests are not recorded yet, and who waits for none to be. */
  private unrecorded = 0;
  private idleWaiters: (() => void)[] = [];
  private readonly observe: MetricsMiddleware;

  constructor(options: MetricsOptions) {
    const settings = resolveMetricsOptions(options);
    this.registry = settings.registry;
    this.routes = new RouteLabels(settings.routes);
    this.models = new LabelSet(settings.models);
    this.upstreams = new LabelSet(settings.upstreams, settings.upstreamLearnLimit);
    this.instruments = createInstruments(settings, {
      gateQueueDepth: (gauge) => this.collectGates(gauge, 'queued'),
      gateInFlight: (gauge) => this.collectGates(gauge, 'inFlight'),
      upstreamState: (gauge) => this.collectPools(gauge),
    });
    const pending = this.pending;
    const routes = this.routes;
    const inFlight = this.instruments.inFlight;
    this.observe = (req: IncomingMessage, res: ServerResponse, next: Next): void => {
      if (!pending.has(res)) {
        const ctx = ensureContext(req, res);
        pending.set(res, routes.label((req as { originalUrl?: string }).originalUrl ?? req.url));
        inFlight.inc();
        this.unrecorded++;
        // Read once the request is settled: the cost priced, the relay's last attempt logged.
        ctx.onSettled(() => this.record(res));
      }
      next();
    };
  }

  middleware(): MetricsMiddleware {
    return this.observe;
  }

  watchGate(gate: WatchableGate, name = 'default'): () => void {
    if (typeof gate?.stats !== 'function') {
      throw new TypeError(`watchGate: gate must have a stats() method, got ${String(gate)}`);
    }
    if (typeof name !== 'string' || name.length === 0) {
      throw new TypeError(`watchGate: name must be a non-empty string, got ${String(name)}`);
    }
    if (this.gates.has(name))
      throw new TypeError(`watchGate: a gate named ${JSON.stringify(name)} is already watched`);
    this.gates.set(name, gate);
    return () => {
      if (this.gates.get(name) === gate) this.gates.delete(name);
    };
  }

  watchPool(pool: WatchablePool): () => void {
    if (typeof pool?.status !== 'function') {
      throw new TypeError(`watchPool: pool must have a status() method, got ${String(pool)}`);
    }
    if (this.pools.has(pool)) throw new TypeError('watchPool: this pool is already watched');
    const endpointNames = pool.status().map((s) => s.name);
    for (const name of endpointNames) {
      if (this.watchedUpstreams.has(name)) {
        throw new TypeError(`watchPool: an upstream named ${JSON.stringify(name)} is already watched`);
      }
    }
    for (const name of endpointNames) {
      this.watchedUpstreams.add(name);
      this.upstreams.add(name);
    }
    this.pools.set(pool, endpointNames);
    return () => this.unwatchPool(pool);
  }

  handler(): MetricsHandler {
    return metricsHandler(this.registry);
  }

  whenRecorded(): Promise<void> {
    if (this.unrecorded === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  close(): Promise<void> {
    this.gates.clear();
    for (const pool of [...this.pools.keys()]) this.unwatchPool(pool);
    return Promise.resolve();
  }

  private unwatchPool(pool: WatchablePool): void {
    const endpointNames = this.pools.get(pool);
    if (endpointNames === undefined) return;
    this.pools.delete(pool);
    for (const name of endpointNames) this.watchedUpstreams.delete(name);
  }

  private collectGates(gauge: Gauge<'gate'>, field: 'queued' | 'inFlight'): void {
    gauge.reset();
    for (const [name, gate] of this.gates) gauge.set({ gate: name }, gate.stats()[field]);
  }

  private collectPools(gauge: Gauge<'upstream' | 'state'>): void {
    gauge.reset();
    for (const pool of this.pools.keys()) {
      for (const endpoint of pool.status()) {
        for (const state of UPSTREAM_STATES) {
          gauge.set({ upstream: endpoint.name, state }, endpoint.state === state ? 1 : 0);
        }
      }
    }
  }

  /** Records a closed request once, from its context. */
  private record(res: ServerResponse): void {
    const route = this.pending.get(res);
    if (route === undefined) return;
    this.pending.delete(res);
    try {
      this.observeClosed(res, route);
    } finally {
      if (--this.unrecorded === 0) {
        const waiters = this.idleWaiters;
        this.idleWaiters = [];
        for (const resolve of waiters) resolve();
      }
    }
  }

  /** Counts one settled request from its context. */
  private observeClosed(res: ServerResponse, route: string): void {
    const m = this.instruments;
    m.inFlight.dec();
    const ctx = getContext(res);
    const statusClass = statusClassOf(res.headersSent, res.statusCode);
    if (ctx === undefined) {
      // The host replaced res.locals: only what the response itself tells.
      m.requests.inc({ route, model: 'none', status_class: statusClass, code: 'none' });
      return;
    }
    const model = this.models.label(ctx.model);
    const errorCode = ctx.errorCode;
    const code = this.codes.label(errorCode);
    m.requests.inc({ route, model, status_class: statusClass, code });
    m.duration.observe({ route, model }, (performance.now() - ctx.startedAt) / 1000);
    // Latency to the first byte, tokens and spend belong to the model that served the request.
    const served = ctx.servedModel === ctx.model ? model : this.models.label(ctx.servedModel);
    if (ctx.firstByteAt !== undefined)
      m.ttfb.observe({ model: served }, (ctx.firstByteAt - ctx.startedAt) / 1000);
    const usage = ctx.usage;
    if (usage !== undefined) {
      if (usage.promptTokens > 0) m.promptTokens.inc({ model: served }, usage.promptTokens);
      if (usage.completionTokens > 0) m.completionTokens.inc({ model: served }, usage.completionTokens);
      for (const [field, label] of TOKEN_CLASS_LABELS) {
        const tokens = usage[field];
        if (tokens !== undefined && tokens > 0) m.tokenClasses.inc({ model: served, class: label }, tokens);
      }
    }
    const costUsd = ctx.costUsd;
    if (costUsd !== undefined && costUsd > 0 && Number.isFinite(costUsd))
      m.spendUsd.inc({ model: served }, costUsd);
    if (ctx.gateWaitMs !== undefined) m.gateWait.observe(ctx.gateWaitMs / 1000);
    for (const reason of ctx.retryReasons) m.retries.inc({ reason: this.outcomes.label(reason) });
    for (const attempt of ctx.attemptLog) {
      m.upstreamRequests.inc({
        upstream: this.upstreams.label(attempt.upstream, OTHER_LABEL),
        outcome: this.outcomes.label(attempt.outcome),
      });
    }
    if (ctx.failureLogged || errorCode === 'internal_error') m.recoveredPanics.inc();
    if (errorCode === undefined) return;
    if (BODY_REFUSAL_CODES.has(errorCode)) m.bodiesRefused.inc({ code: errorCode });
    // Refusals before any upstream attempt are keyAuth's; an upstream's 429 is `rate_limited` too.
    else if (ctx.attempts === 0 && AUTH_FAILURE_CODES.has(errorCode))
      m.authFailures.inc({ reason: errorCode });
  }
}
