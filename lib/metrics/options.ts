// Options of `createMetrics`, resolved and validated once at construction.
import { OptionReader } from '../options.js';
import { Registry } from 'prom-client';
import { isRegistry } from './handler.js';
import { DEFAULT_DURATION_BUCKETS, DEFAULT_TTFB_BUCKETS, METRIC_NAMES } from './instruments.js';
import { DEFAULT_METRIC_MODELS } from './labels.js';

/** Options of `createMetrics`. */
export interface MetricsOptions {
  /**
   * The prom-client Registry the metrics go on, e.g. the one your app already serves. Default: a
   * private Registry of this instance (never prom-client's global one unless you pass it).
   */
  registry?: Registry;
  /**
   * Prepended to every metric name; `''` or a valid Prometheus name prefix.
   * @defaultValue `'llmux_'`
   */
  prefix?: string;
  /**
   * Model names labelled by name; any other model is labelled `other`, a request without one
   * `none`. Names match exactly: list dated snapshots (`gpt-4o-2024-08-06`) you want apart.
   * @defaultValue the models of `DEFAULT_PRICING` (`gpt-4o`, `gpt-4o-mini`, `gpt-4.1`, `o3`, …)
   */
  models?: readonly string[];
  /**
   * Upstream endpoint names labelled by name; any other is labelled `other`. Endpoint names of
   * watched pools are always added.
   * @defaultValue the names of watched pools plus the first 32 other names seen (upstream names
   * come from your configuration, never from clients)
   */
  upstreams?: readonly string[];
  /**
   * Paths labelled by name on top of the OpenAI routes (`METRIC_ROUTES`), e.g. `['/metrics']`;
   * any other path is labelled `other`.
   * @defaultValue `[]`
   */
  routes?: readonly string[];
  /**
   * Upper bounds of the `request_duration_seconds` buckets, in seconds, strictly increasing.
   * @defaultValue `DEFAULT_DURATION_BUCKETS` (0.05 s … 300 s)
   */
  durationBuckets?: readonly number[];
  /**
   * Upper bounds of the `time_to_first_byte_seconds` buckets, in seconds, strictly increasing.
   * @defaultValue `DEFAULT_TTFB_BUCKETS` (0.025 s … 60 s)
   */
  ttfbBuckets?: readonly number[];
}

/** {@link MetricsOptions} after defaults. */
export interface MetricsSettings {
  registry: Registry;
  prefix: string;
  models: readonly string[];
  /** Known upstream names, and how many more may be learned. */
  upstreams: readonly string[];
  upstreamLearnLimit: number;
  routes: readonly string[];
  durationBuckets: readonly number[];
  ttfbBuckets: readonly number[];
}

/** Upstream names learned as seen when `upstreams` is not given. */
export const DEFAULT_UPSTREAM_LEARN_LIMIT = 32;

const OWNER = 'createMetrics';
const READ: OptionReader = new OptionReader(OWNER);
const PREFIX_PATTERN = /^(?:[a-zA-Z_:][a-zA-Z0-9_:]*)?$/;

/** Fills defaults and validates; throws a TypeError naming a bad option. */
export function resolveMetricsOptions(options: MetricsOptions): MetricsSettings {
  READ.options(options);
  const prefix = options.prefix ?? 'llmux_';
  if (typeof prefix !== 'string' || !PREFIX_PATTERN.test(prefix)) {
    READ.fail('prefix', 'empty or match [a-zA-Z_:][a-zA-Z0-9_:]*', prefix);
  }
  let registry: Registry;
  if (options.registry === undefined) {
    registry = new Registry();
  } else {
    if (!isRegistry(options.registry)) {
      READ.fail('registry', 'a prom-client Registry', options.registry);
    }
    registry = options.registry;
    for (const name of METRIC_NAMES) {
      if (registry.getSingleMetric(prefix + name) !== undefined) {
        throw new TypeError(
          `${OWNER}: registry already has a metric named ${prefix + name}; pass another prefix`,
        );
      }
    }
  }
  return {
    registry,
    prefix,
    models: names('models', options.models) ?? DEFAULT_METRIC_MODELS,
    upstreams: names('upstreams', options.upstreams) ?? [],
    upstreamLearnLimit: options.upstreams === undefined ? DEFAULT_UPSTREAM_LEARN_LIMIT : 0,
    routes: routes(options.routes),
    durationBuckets: buckets('durationBuckets', options.durationBuckets) ?? DEFAULT_DURATION_BUCKETS,
    ttfbBuckets: buckets('ttfbBuckets', options.ttfbBuckets) ?? DEFAULT_TTFB_BUCKETS,
  };
}

function names(option: string, value: readonly string[] | undefined): readonly string[] | undefined {
  if (value === undefined) return undefined;
  if (!Array.isArray(value)) READ.fail(option, 'an array', value);
  value.forEach((name: unknown, i) => {
    if (typeof name !== 'string' || name.length === 0)
      READ.fail(`${option}[${i}]`, 'a non-empty string', name);
  });
  return [...value];
}

function routes(value: readonly string[] | undefined): readonly string[] {
  const list = names('routes', value) ?? [];
  list.forEach((route, i) => {
    if (!route.startsWith('/') || route.includes('?')) {
      READ.fail(`routes[${i}]`, 'a path starting with / and without a query', route);
    }
  });
  return list;
}

function buckets(option: string, value: readonly number[] | undefined): readonly number[] | undefined {
  if (value === undefined) return undefined;
  if (!Array.isArray(value) || value.length === 0) READ.fail(option, 'a non-empty array of seconds', value);
  let previous = 0;
  value.forEach((bound: unknown, i) => {
    if (typeof bound !== 'number' || !Number.isFinite(bound) || bound <= previous) {
      READ.fail(
        `${option}[${i}]`,
        `a finite number above ${previous} (strictly increasing, positive)`,
        bound,
      );
    }
    previous = bound;
  });
  return [...value];
}
