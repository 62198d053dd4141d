// Bounded label values for the Prometheus metrics: every raw value (model, route, error code,
// upstream name, retry reason) is mapped into a fixed or capped set, with `other` past it.
import { ERROR_CODES, type LlmuxErrorCode } from '../errors/catalog.js';
import { BUILTIN_PROTOCOLS, BUILTIN_ROUTES } from '../protocol/builtin.js';
import { CATALOG_MODELS } from '../pricing/catalog.js';

/** The label value of anything outside a known set. */
export const OTHER_LABEL = 'other';
/** The label value when there is nothing to label (no model, no error code, no status sent). */
export const NONE_LABEL = 'none';

/** The models labelled by name when `createMetrics` gets no `models`: those with a default price. */
export const DEFAULT_METRIC_MODELS: readonly string[] = CATALOG_MODELS;

/**
 * The routes labelled by path: every route of every protocol llmux speaks (an `{id}` in it is
 * `:id`), and the other OpenAI routes a host may pass through; any other path is `other`.
 */
export const METRIC_ROUTES: readonly string[] = Object.freeze([
  ...new Set(BUILTIN_PROTOCOLS.flatMap((p) => p.routes.map((r) => r.path.replace('{id}', ':id')))),
  '/v1/moderations',
  '/v1/models',
  '/v1/images/generations',
  '/v1/images/edits',
  '/v1/images/variations',
  '/v1/audio/speech',
  '/v1/audio/transcriptions',
  '/v1/audio/translations',
  '/v1/files',
  '/v1/batches',
  '/v1/fine_tuning/jobs',
]);

/** Paths with an id in them, labelled by their family so ids never become label values. */
const ROUTE_FAMILIES: readonly (readonly [prefix: string, label: string])[] = [
  ['/v1/models/', '/v1/models/:model'],
  ['/v1/files/', '/v1/files/:file_id'],
  ['/v1/batches/', '/v1/batches/:batch_id'],
  ['/v1/fine_tuning/jobs/', '/v1/fine_tuning/jobs/:job_id'],
];

/** Error codes of llmux's own errors (its catalog), labelled by name on `requests_total`; others are `other`. */
export const KNOWN_ERROR_CODES: readonly string[] = ERROR_CODES;

/** Codes of a request body refused by `bodyLimit` (`bodies_refused_total{code}`). */
export const BODY_REFUSAL_CODES: ReadonlySet<string> = new Set<LlmuxErrorCode>([
  'body_too_large',
  'invalid_json',
  'unsupported_media_type',
  'unsupported_encoding',
  'length_required',
  'invalid_encoding',
]);

/** Codes of a request refused by `keyAuth` (`auth_failures_total{reason}`). */
export const AUTH_FAILURE_CODES: ReadonlySet<string> = new Set<LlmuxErrorCode>([
  'invalid_api_key',
  'too_many_auth_failures',
  'model_not_allowed',
  'insufficient_quota',
  'rate_limited',
  'daily_quota_exceeded',
  'too_many_parallel_requests',
]);

/** How an upstream attempt ended (`ok` or a failure category), and why a retry happened. */
export const ATTEMPT_OUTCOMES: readonly string[] = Object.freeze([
  'ok',
  'invalid_request',
  'auth',
  'rate_limit',
  'server',
  'timeout',
  'decode',
  'network',
  'cancelled',
  'unknown',
]);

const STATUS_CLASSES = [OTHER_LABEL, '1xx', '2xx', '3xx', '4xx', '5xx'] as const;

/** `2xx`…`5xx` for an HTTP status; `none` when no status was sent (the client left first). */
export function statusClassOf(headersSent: boolean, statusCode: number): string {
  if (!headersSent) return NONE_LABEL;
  return STATUS_CLASSES[Math.floor(statusCode / 100)] ?? OTHER_LABEL;
}

/**
 * A bounded set of label values: a value in the set is its own label, anything else is `other`.
 * With `learnLimit`, up to that many unseen values join the set as they come (for values the host
 * configures, such as upstream names, never for values a client controls).
 */
export class LabelSet {
  private readonly known: Set<string>;
  private learned = 0;

  constructor(
    values: Iterable<string>,
    private readonly learnLimit = 0,
  ) {
    this.known = new Set(values);
  }

  /** The label of `value`; `absent` when there is none. */
  label(value: string | undefined, absent: string = NONE_LABEL): string {
    if (value === undefined) return absent;
    if (this.known.has(value)) return value;
    if (this.learned < this.learnLimit) {
      this.learned++;
      this.known.add(value);
      return value;
    }
    return OTHER_LABEL;
  }

  /** Adds a value the host configured (for example an upstream pool's endpoint names). */
  add(value: string): void {
    this.known.add(value);
  }
}

/** Maps a request URL to its route label: a path of {@link METRIC_ROUTES} or `extra`, a family, or `other`. */
export class RouteLabels {
  private readonly exact: Set<string>;

  constructor(extra: readonly string[]) {
    this.exact = new Set([...METRIC_ROUTES, ...extra]);
  }

  /** The route label of `url` (a path with an optional query string). */
  label(url: string | undefined): string {
    if (url === undefined) return OTHER_LABEL;
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);
    if (this.exact.has(path)) return path;
    const route = BUILTIN_ROUTES.routeOf(path);
    if (route !== undefined) return route.path.replace('{id}', ':id');
    for (const [prefix, label] of ROUTE_FAMILIES) {
      if (path.length > prefix.length && path.startsWith(prefix)) return label;
    }
    return OTHER_LABEL;
  }
}
