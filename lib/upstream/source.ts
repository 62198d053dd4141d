// The seam between the relay and where requests go: a source picks an endpoint per attempt and
// hears how the attempt ended. `staticUpstream` is the simple one; the pool plugs in here.
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
}

/** How one attempt ended, reported to the source that picked its endpoint. */
export type AttemptOutcome =
  | { readonly ok: true }
  | {
      readonly ok: false;
      readonly category: UpstreamErrorCategory;
      readonly status: number | undefined;
      readonly retryAfterMs: number | undefined;
    };

/** Picks endpoints; the relay calls `release` exactly once for every `acquire`. */
export interface UpstreamSource {
  /** The endpoint for the next attempt. Throws an `LlmuxError` (e.g. 503) when none can serve. */
  acquire(ctx: RequestContext, exclude?: UpstreamEndpoint): UpstreamEndpoint;
  /** Reports how the attempt on `endpoint` ended. */
  release(endpoint: UpstreamEndpoint, outcome: AttemptOutcome): void;
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
