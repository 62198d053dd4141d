// The prom-client instruments of one `createMetrics` instance, registered on one Registry. Names
// follow Prometheus conventions: counters end in `_total`, durations are in `_seconds`.
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

/** Buckets of `request_duration_seconds`: LLM requests run from milliseconds to minutes. */
export const DEFAULT_DURATION_BUCKETS: readonly number[] = Object.freeze([
  0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300,
]);

/** Buckets of `time_to_first_byte_seconds`. */
export const DEFAULT_TTFB_BUCKETS: readonly number[] = Object.freeze([
  0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60,
]);

/** Buckets of `gate_wait_seconds`: most requests pass at once, a queue adds up to its timeout. */
export const GATE_WAIT_BUCKETS: readonly number[] = Object.freeze([
  0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
]);

/** Metric names without the prefix, in registration order. */
export const METRIC_NAMES = [
  'requests_total',
  'request_duration_seconds',
  'time_to_first_byte_seconds',
  'prompt_tokens_total',
  'completion_tokens_total',
  'token_class_total',
  'spend_usd_total',
  'in_flight_requests',
  'gate_queue_depth',
  'gate_in_flight',
  'gate_wait_seconds',
  'retries_total',
  'upstream_requests_total',
  'upstream_state',
  'recovered_panics_total',
  'bodies_refused_total',
  'auth_failures_total',
] as const;

/** The collect callbacks of the gauges read at scrape time. */
export interface ScrapeSources {
  gateQueueDepth(gauge: Gauge<'gate'>): void;
  gateInFlight(gauge: Gauge<'gate'>): void;
  upstreamState(gauge: Gauge<'upstream' | 'state'>): void;
}

/** Settings the instruments are made with. */
export interface InstrumentSettings {
  registry: Registry;
  prefix: string;
  durationBuckets: readonly number[];
  ttfbBuckets: readonly number[];
}

/** Every instrument of one metrics instance. */
export interface Instruments {
  requests: Counter<'route' | 'model' | 'status_class' | 'code'>;
  duration: Histogram<'route' | 'model'>;
  ttfb: Histogram<'model'>;
  promptTokens: Counter<'model'>;
  completionTokens: Counter<'model'>;
  tokenClasses: Counter<'model' | 'class'>;
  spendUsd: Counter<'model'>;
  inFlight: Gauge;
  gateQueueDepth: Gauge<'gate'>;
  gateInFlight: Gauge<'gate'>;
  gateWait: Histogram;
  retries: Counter<'reason'>;
  upstreamRequests: Counter<'upstream' | 'outcome'>;
  upstreamState: Gauge<'upstream' | 'state'>;
  recoveredPanics: Counter;
  bodiesRefused: Counter<'code'>;
  authFailures: Counter<'reason'>;
}

/** Creates and registers the instruments; the registry must not hold any of their names yet. */
export function createInstruments(settings: InstrumentSettings, sources: ScrapeSources): Instruments {
  const { prefix } = settings;
  const registers = [settings.registry];
  const name = (suffix: (typeof METRIC_NAMES)[number]) => prefix + suffix;
  return {
    requests: new Counter({
      name: name('requests_total'),
      help: 'Client requests by route, model, HTTP status class and llmux error code (none on success).',
      labelNames: ['route', 'model', 'status_class', 'code'],
      registers,
    }),
    duration: new Histogram({
      name: name('request_duration_seconds'),
      help: 'Time from the request reaching llmux to its response closing.',
      labelNames: ['route', 'model'],
      buckets: [...settings.durationBuckets],
      registers,
    }),
    ttfb: new Histogram({
      name: name('time_to_first_byte_seconds'),
      help: 'Time from the request reaching llmux to the first relayed byte sent to the client.',
      labelNames: ['model'],
      buckets: [...settings.ttfbBuckets],
      registers,
    }),
    promptTokens: new Counter({
      name: name('prompt_tokens_total'),
      help: 'Prompt tokens reported by upstreams.',
      labelNames: ['model'],
      registers,
    }),
    completionTokens: new Counter({
      name: name('completion_tokens_total'),
      help: 'Completion tokens reported by upstreams.',
      labelNames: ['model'],
      registers,
    }),
    tokenClasses: new Counter({
      name: name('token_class_total'),
      help: 'Tokens of each class inside the prompt and completion totals (cached, cache_write, reasoning, audio_prompt, audio_completion).',
      labelNames: ['model', 'class'],
      registers,
    }),
    spendUsd: new Counter({
      name: name('spend_usd_total'),
      help: 'Spend in USD settled by key accounting.',
      labelNames: ['model'],
      registers,
    }),
    inFlight: new Gauge({
      name: name('in_flight_requests'),
      help: 'Client requests received and not yet closed.',
      registers,
    }),
    gateQueueDepth: new Gauge({
      name: name('gate_queue_depth'),
      help: 'Requests waiting in a watched concurrency gate, read at scrape time.',
      labelNames: ['gate'],
      registers,
      collect() {
        sources.gateQueueDepth(this);
      },
    }),
    gateInFlight: new Gauge({
      name: name('gate_in_flight'),
      help: 'Requests holding a slot of a watched concurrency gate, read at scrape time.',
      labelNames: ['gate'],
      registers,
      collect() {
        sources.gateInFlight(this);
      },
    }),
    gateWait: new Histogram({
      name: name('gate_wait_seconds'),
      help: 'Time requests waited in a concurrency gate for a slot.',
      buckets: [...GATE_WAIT_BUCKETS],
      registers,
    }),
    retries: new Counter({
      name: name('retries_total'),
      help: 'Upstream retries by the failure category of the attempt before.',
      labelNames: ['reason'],
      registers,
    }),
    upstreamRequests: new Counter({
      name: name('upstream_requests_total'),
      help: 'Upstream attempts by upstream name and outcome (ok or the failure category).',
      labelNames: ['upstream', 'outcome'],
      registers,
    }),
    upstreamState: new Gauge({
      name: name('upstream_state'),
      help: 'State of each endpoint of a watched upstream pool: 1 for its current state, else 0.',
      labelNames: ['upstream', 'state'],
      registers,
      collect() {
        sources.upstreamState(this);
      },
    }),
    recoveredPanics: new Counter({
      name: name('recovered_panics_total'),
      help: 'Requests that ended in an internal error caught by llmux.',
      registers,
    }),
    bodiesRefused: new Counter({
      name: name('bodies_refused_total'),
      help: 'Request bodies refused before parsing, by error code.',
      labelNames: ['code'],
      registers,
    }),
    authFailures: new Counter({
      name: name('auth_failures_total'),
      help: 'Requests refused by key authentication or admission, by reason.',
      labelNames: ['reason'],
      registers,
    }),
  };
}
