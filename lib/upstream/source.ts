// The seam between the relay and where requests go: a source picks an endpoint per attempt and
// hears how the attempt ended. `staticUpstream` is the simple one; the pool plugs in here.
import type { LlmuxError } from '../errors/llmux-error.js';
import type { ModelPrice } from '../pricing/price.js';
import type { UpstreamRateLimits } from './rate-limits.js';
import type { UpstreamErrorCategory } from '../errors/upstream.js';
import type { RequestContext } from '../context.js';
import { maskKey } from '../redact.js';

/** One place an attempt can go: an origin, a base path and the relay's own key for it. */
export interface UpstreamEndpoint {
  /** Name used in logs, metrics and the tracker; never contains the key. */
  readonly name: string;
  /** `protocol://host:port`, the unit of connection pooling. */
  readonly origin: string;
  /** Path prefix prepended to the route, e.g. `/v1`; no trailing slash. */
  readonly basePath: string;
  /** Sent as `Authorization: Bearer …`; undefined sends none. */
  readonly apiKey: string | undefined;
  /** The model asked of this endpoint in place of the client's; undefined keeps the client's. */
  readonly model?: string;
  /** What this endpoint's tokens cost, instead of its model's catalog price. */
  readonly price?: ModelPrice;
}

/** What an attempt learned of its upstream from the answer's headers, when one came. */
export interface AnswerFacts {
  /** ms from sending the request to the answer's headers: the upstream's time to first byte. */
  readonly latencyMs?: number;
  /** The rate-limit state the upstream reported (`x-ratelimit-*`, `anthropic-ratelimit-*`). */
  readonly limits?: UpstreamRateLimits;
}

/** How one attempt ended, reported to the source that picked its endpoint. */
export type AttemptOutcome =
  | ({ readonly ok: true } & AnswerFacts)
  | ({
      readonly ok: false;
      readonly category: UpstreamErrorCategory;
      readonly status: number | undefined;
      /** The upstream's `Retry-After` / `retry-after-ms` hint. */
      readonly retryAfterMs: number | undefined;
    } & AnswerFacts);

/** Picks endpoints; the relay calls `release` exactly once for every `acquire`. */
export interface UpstreamSource {
  /** The endpoint for the next attempt. Throws an `LlmuxError` (e.g. 503) when none can serve. */
  acquire(ctx: RequestContext, exclude?: UpstreamEndpoint): UpstreamEndpoint;
  /** Reports how the attempt on `endpoint` ended. */
  release(endpoint: UpstreamEndpoint, outcome: AttemptOutcome): void;
  /**
   * Asked when an attempt failed with nothing sent to the client and no retry follows: true moves
   * the request elsewhere (a model router's next fallback group) and the relay tries again at
   * once, within the retry policy's deadline and budget. Optional: without it nothing falls back.
   */
  fallback?(ctx: RequestContext, outcome: AttemptOutcome, error: LlmuxError): boolean;
  /**
   * The models the request may be served as (a model router's deployments and fallbacks), each
   * with its endpoint's own price if it has one: `keyAuth` reserves for the dearest. Throws an
   * `LlmuxError` for a request it cannot route (404 `model_not_found`). Optional: without it a
   * request is served as the model it names.
   */
  servedModels?(ctx: RequestContext): readonly ServedModel[];
  /**
   * Whether another endpoint than `endpoint` could serve `ctx` now. The relay then retries at
   * once, without waiting out the `Retry-After` that `endpoint` gave (it cools, the others need
   * not wait). Optional: without it the wait is honoured.
   */
  hasAlternative?(ctx: RequestContext, endpoint: UpstreamEndpoint): boolean;
}

/** A model a request may be served as, and the price of its endpoint when it has its own. */
export interface ServedModel {
  readonly model: string;
  readonly price: ModelPrice | undefined;
}

/** One OpenAI-compatible upstream with one or more keys of its own. */
export interface StaticUpstreamOptions {
  /** Base URL, as an OpenAI SDK's `baseURL`: e.g. `https://api.openai.com/v1`. */
  url: string;
  /** The relay's keys for this upstream, used in turn. Omit for an upstream without auth. */
  apiKeys?: readonly string[];
  /** Name in logs and metrics. Default: the URL's host. */
  name?: string;
}

/** Parses and checks a base URL; throws a TypeError naming `owner` and the bad value. */
export function parseBaseUrl(url: string, owner: string): { origin: string; basePath: string } {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new TypeError(`${owner}: url must be an absolute http(s) URL, got ${JSON.stringify(url)}`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new TypeError(`${owner}: url must be an absolute http(s) URL, got ${JSON.stringify(url)}`);
  }
  return { origin: parsed.origin, basePath: parsed.pathname.replace(/\/+$/, '') };
}

/**
 * An {@link UpstreamSource} over one upstream URL whose keys are used round-robin.
 *
 * @example
 * streamRelay({ upstream: staticUpstream({ url: 'https://api.openai.com/v1', apiKeys: [process.env.OPENAI_API_KEY!] }) });
 */
export function staticUpstream(options: StaticUpstreamOptions): UpstreamSource {
  return new StaticUpstream(options);
}

class StaticUpstream implements UpstreamSource {
  private readonly endpoints: UpstreamEndpoint[];
  private next = 0;

  constructor(options: StaticUpstreamOptions) {
    if (typeof options !== 'object' || options === null || typeof options.url !== 'string') {
      throw new TypeError('staticUpstream: url is required');
    }
    const { origin, basePath } = parseBaseUrl(options.url, 'staticUpstream');
    const keys = options.apiKeys ?? [];
    for (const key of keys) {
      if (typeof key !== 'string' || key.length === 0) {
        throw new TypeError('staticUpstream: apiKeys must be non-empty strings');
      }
    }
    const name = options.name ?? new URL(options.url).host;
    this.endpoints =
      keys.length === 0
        ? [{ name, origin, basePath, apiKey: undefined }]
        : keys.map((apiKey, i) => ({
            name: keys.length === 1 ? name : `${name}#${i}`,
            origin,
            basePath,
            apiKey,
          }));
  }

  acquire(_ctx: RequestContext, exclude?: UpstreamEndpoint): UpstreamEndpoint {
    const count = this.endpoints.length;
    let endpoint = this.endpoints[this.next % count]!;
    this.next = (this.next + 1) % count;
    if (endpoint === exclude && count > 1) {
      endpoint = this.endpoints[this.next % count]!;
      this.next = (this.next + 1) % count;
    }
    return endpoint;
  }

  release(): void {
    // A static upstream keeps no health state; the pool does.
  }

  /** For health pages: names and masked keys. */
  toJSON() {
    return this.endpoints.map((e) => ({
      name: e.name,
      origin: e.origin,
      key: e.apiKey ? maskKey(e.apiKey) : null,
    }));
  }
}

/** Accepts a source, options for a static upstream, or a bare URL string. */
export function toUpstreamSource(
  upstream: UpstreamSource | StaticUpstreamOptions | string,
  owner: string,
): UpstreamSource {
  if (typeof upstream === 'string') return staticUpstream({ url: upstream });
  if (typeof upstream === 'object' && upstream !== null) {
    if (typeof (upstream as UpstreamSource).acquire === 'function') return upstream as UpstreamSource;
    return staticUpstream(upstream as StaticUpstreamOptions);
  }
  throw new TypeError(`${owner}: upstream must be a URL, { url, apiKeys } or an UpstreamSource`);
}
